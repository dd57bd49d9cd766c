"""The repository contract: pytest tests any implementation of the storage ABCs must pass.

A platform that brings its own repositories subclasses the contract for each one it
implements and provides the fixtures named in the class docstring; pytest then runs
every test of the contract against it::

    # tests/test_my_repositories.py
    import pytest
    from starlette_broker_oauth.testing import AccountRepositoryContract

    class TestMyAccounts(AccountRepositoryContract):
        @pytest.fixture
        async def accounts(self):
            async with MyAccounts(dsn) as repository:
                yield repository

        @pytest.fixture
        async def known_account(self, accounts):
            return await accounts.add_paper_account()

Needs pytest and AnyIO's pytest plugin (installed with AnyIO). The tests run on asyncio;
override the ``anyio_backend`` fixture to run them on trio too.

The contracts:

* :class:`ClientRepositoryContract` - lookups of registered clients;
* :class:`AccountRepositoryContract` - lookups of accounts;
* :class:`PartnerRepositoryContract` - partners with their secrets' hashes, the clients
  each was allowed, who owns an account, how many partners there are;
* :class:`GrantStoreContract` - codes and tokens: atomic redemption and rotation under
  concurrency, revocation of a grant with its pending codes, of an account's and of a
  client's tokens, single-use keys, and announcements;
* :class:`PushedRequestContract` - pushed authorization requests (RFC 9126): stored by
  hash, used once atomically by their client while unexpired (optional for a platform's
  own grant store; without it, the PAR endpoint is unavailable);
* :class:`StorageContract` - all four on one built-in backend, plus the admin operations
  (registering, listing, changing and deleting clients, partners and accounts, what
  deleting revokes through the core, disabling, secret rotation, purge), seeding the
  others' fixtures itself.
"""

import pytest

# The contracts' assertions say what differed when they fail, as a test's own do.
pytest.register_assert_rewrite(
    "starlette_broker_oauth.testing._base",
    "starlette_broker_oauth.testing.admin",
    "starlette_broker_oauth.testing.grants",
    "starlette_broker_oauth.testing.pushed",
    "starlette_broker_oauth.testing.repositories",
    "starlette_broker_oauth.testing.storage",
)

from .grants import GrantStoreContract  # noqa: E402
from .pushed import PushedRequestContract  # noqa: E402
from .repositories import (  # noqa: E402
    AccountRepositoryContract,
    ClientRepositoryContract,
    PartnerRepositoryContract,
)
from .storage import StorageContract  # noqa: E402

__all__ = [
    "AccountRepositoryContract",
    "ClientRepositoryContract",
    "GrantStoreContract",
    "PartnerRepositoryContract",
    "PushedRequestContract",
    "StorageContract",
]
