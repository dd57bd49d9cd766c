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
* :class:`PartnerAuthenticatorContract` - partner credentials and partner-client access;
* :class:`GrantStoreContract` - codes and tokens: atomic redemption and rotation under
  concurrency, grant, account and client revocation, and revocation announcements;
* :class:`StorageContract` - all four on one backend, plus the admin operations
  (registering, listing, changing and deleting clients, partners and accounts, what
  deleting revokes, disabling, secret rotation, purge), seeding the others' fixtures
  itself.
"""

from .grants import GrantStoreContract
from .repositories import (
    AccountRepositoryContract,
    ClientRepositoryContract,
    PartnerAuthenticatorContract,
)
from .storage import StorageContract

__all__ = [
    "AccountRepositoryContract",
    "ClientRepositoryContract",
    "GrantStoreContract",
    "PartnerAuthenticatorContract",
    "StorageContract",
]
