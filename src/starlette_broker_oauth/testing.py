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
  (registration, disabling, secret rotation, purge), seeding the others' fixtures itself.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from .models import (
    AccessToken,
    Account,
    AuthorizationCode,
    Client,
    ClientStatus,
    Partner,
    RefreshToken,
)
from .security import hash_secret, new_secret
from .storage.base import (
    AccountRepository,
    ClientRepository,
    GrantStore,
    PartnerAuthenticator,
    Storage,
)

__all__ = [
    "AccountRepositoryContract",
    "ClientRepositoryContract",
    "GrantStoreContract",
    "PartnerAuthenticatorContract",
    "StorageContract",
]

CONCURRENCY = 20


def _now() -> datetime:
    # Whole milliseconds: every database keeps them exactly.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class _Contract:
    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The async library the tests run on; override to add ``"trio"``."""
        return "asyncio"


class ClientRepositoryContract(_Contract):
    """What every :class:`~.storage.base.ClientRepository` must do.

    Fixtures to provide:
        clients: The repository under test.
        known_client: A :class:`~.models.Client` the repository holds, as it should
            return it.
    """

    async def test_known_client_is_returned_whole(
        self, clients: ClientRepository, known_client: Client
    ) -> None:
        found = await clients.get_client(known_client.client_id)
        assert found == known_client

    async def test_unknown_client_is_none(self, clients: ClientRepository) -> None:
        assert await clients.get_client("no-such-client-" + uuid.uuid4().hex) is None

    async def test_client_ids_are_exact(
        self, clients: ClientRepository, known_client: Client
    ) -> None:
        client_id = known_client.client_id
        for near in (client_id.upper(), client_id + " ", " " + client_id, client_id[:-1]):
            if near != client_id:
                assert await clients.get_client(near) is None, near

    async def test_client_never_holds_its_secret(
        self, clients: ClientRepository, known_client: Client
    ) -> None:
        found = await clients.get_client(known_client.client_id)
        assert found is not None
        assert len(found.secret_hash) == 64 and int(found.secret_hash, 16) >= 0


class AccountRepositoryContract(_Contract):
    """What every :class:`~.storage.base.AccountRepository` must do.

    Fixtures to provide:
        accounts: The repository under test.
        known_account: An :class:`~.models.Account` it holds, as it should return it.
    """

    async def test_known_account_is_returned_whole(
        self, accounts: AccountRepository, known_account: Account
    ) -> None:
        assert await accounts.get_account(known_account.account_id) == known_account

    async def test_unknown_account_is_none(self, accounts: AccountRepository) -> None:
        assert await accounts.get_account(uuid.uuid4()) is None


class PartnerAuthenticatorContract(_Contract):
    """What every :class:`~.storage.base.PartnerAuthenticator` must do.

    Fixtures to provide:
        partners: The authenticator under test.
        partner_credentials: ``(key_id, secret)`` of a partner it knows.
        partner_client_id: A client that partner may use.
        foreign_client_id: A client that exists but that partner may not use.
    """

    async def test_right_credentials_authenticate(
        self, partners: PartnerAuthenticator, partner_credentials: tuple[str, str]
    ) -> None:
        key_id, secret = partner_credentials
        partner = await partners.authenticate_partner(key_id, secret)
        assert isinstance(partner, Partner)
        assert partner.partner_id == key_id

    async def test_wrong_secret_and_unknown_key_are_refused(
        self, partners: PartnerAuthenticator, partner_credentials: tuple[str, str]
    ) -> None:
        key_id, secret = partner_credentials
        assert await partners.authenticate_partner(key_id, secret + "x") is None
        assert await partners.authenticate_partner(key_id, secret[:-1]) is None
        assert await partners.authenticate_partner(key_id, "") is None
        assert await partners.authenticate_partner("no-such-partner", secret) is None
        assert await partners.authenticate_partner("", "") is None

    async def test_partner_uses_only_its_clients(
        self,
        partners: PartnerAuthenticator,
        partner_credentials: tuple[str, str],
        partner_client_id: str,
        foreign_client_id: str,
    ) -> None:
        partner = await partners.authenticate_partner(*partner_credentials)
        assert partner is not None
        assert await partners.partner_can_use_client(partner, partner_client_id) is True
        assert await partners.partner_can_use_client(partner, foreign_client_id) is False
        assert await partners.partner_can_use_client(partner, "no-such-client") is False

    async def test_unknown_partner_uses_nothing(
        self, partners: PartnerAuthenticator, partner_client_id: str
    ) -> None:
        stranger = Partner(partner_id="no-such-partner-" + uuid.uuid4().hex)
        assert await partners.partner_can_use_client(stranger, partner_client_id) is False


class GrantStoreContract(_Contract):
    """What every :class:`~.storage.base.GrantStore` must do.

    Fixtures to provide:
        grants: The store under test, empty, ready to use.
    """

    # records

    @staticmethod
    def code(**overrides: Any) -> AuthorizationCode:
        now = _now()
        values: dict[str, Any] = {
            "code_hash": hash_secret(new_secret()),
            "client_id": "client-a",
            "account_id": uuid.uuid4(),
            "redirect_uri": "https://app.example/callback",
            "scope": "general trading",
            "issued_at": now,
            "expires_at": now + timedelta(seconds=60),
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
        values.update(overrides)
        return AuthorizationCode(**values)

    @staticmethod
    def token(code: AuthorizationCode | None = None, **overrides: Any) -> AccessToken:
        now = _now()
        values: dict[str, Any] = {
            "token_hash": hash_secret(new_secret()),
            "client_id": "client-a" if code is None else code.client_id,
            "account_id": uuid.uuid4() if code is None else code.account_id,
            "scope": "general trading",
            "account_live": False,
            "issued_at": now,
            "expires_at": now + timedelta(minutes=15),
            "family_id": None if code is None else code.code_hash,
        }
        values.update(overrides)
        return AccessToken(**values)

    @staticmethod
    def refresh(token: AccessToken, **overrides: Any) -> RefreshToken:
        assert token.family_id is not None
        values: dict[str, Any] = {
            "token_hash": hash_secret(new_secret()),
            "family_id": token.family_id,
            "client_id": token.client_id,
            "account_id": token.account_id,
            "scope": token.scope,
            "account_live": token.account_live,
            "issued_at": token.issued_at,
            "expires_at": token.issued_at + timedelta(days=30),
        }
        values.update(overrides)
        return RefreshToken(**values)

    @staticmethod
    def heard(grants: GrantStore) -> list[str]:
        """Subscribe to the store's announcements; the list fills as they arrive."""
        messages: list[str] = []
        grants.add_revocation_listener(messages.append)
        return messages

    async def issued(
        self, grants: GrantStore, *, refresh: bool = False, **code_overrides: Any
    ) -> tuple[AuthorizationCode, AccessToken, RefreshToken | None]:
        """A code redeemed for a token (and a refresh token)."""
        code = self.code(**code_overrides)
        await grants.save_code(code)
        token = self.token(code)
        refresh_token = self.refresh(token) if refresh else None
        assert await grants.redeem_code(
            code.code_hash,
            client_id=code.client_id,
            token=token,
            refresh_token=refresh_token,
            now=_now(),
        )
        return code, token, refresh_token

    # codes

    async def test_code_round_trip(self, grants: GrantStore) -> None:
        code = self.code()
        await grants.save_code(code)
        assert await grants.get_code(code.code_hash) == code
        assert await grants.get_code(hash_secret("unknown")) is None

    async def test_redeem_marks_used_and_stores_tokens(self, grants: GrantStore) -> None:
        code, token, refresh = await self.issued(grants, refresh=True)
        stored = await grants.get_code(code.code_hash)
        assert stored is not None and stored.used_at is not None
        assert await grants.get_token(token.token_hash) == token
        assert refresh is not None
        assert await grants.get_refresh_token(refresh.token_hash) == refresh

    async def test_redeem_refuses_and_stores_nothing(self, grants: GrantStore) -> None:
        now = _now()
        expired = self.code(issued_at=now - timedelta(minutes=2), expires_at=now)
        for code, client_id in (
            (self.code(), "another-client"),  # bound to another client
            (expired, expired.client_id),  # expired
        ):
            await grants.save_code(code)
            token = self.token(code)
            assert not await grants.redeem_code(
                code.code_hash, client_id=client_id, token=token, now=now
            )
            assert await grants.get_token(token.token_hash) is None
            stored = await grants.get_code(code.code_hash)
            assert stored is not None and stored.used_at is None
        unknown = self.token()
        assert not await grants.redeem_code(
            hash_secret("unknown"), client_id="client-a", token=unknown, now=now
        )
        assert await grants.get_token(unknown.token_hash) is None

    async def test_concurrent_redemptions_one_wins(self, grants: GrantStore) -> None:
        code = self.code()
        await grants.save_code(code)
        tokens = [self.token(code) for _ in range(CONCURRENCY)]
        results: list[bool] = []

        async def redeem(token: AccessToken) -> None:
            results.append(
                await grants.redeem_code(
                    code.code_hash, client_id=code.client_id, token=token, now=_now()
                )
            )

        async with anyio.create_task_group() as tg:
            for token in tokens:
                tg.start_soon(redeem, token)
        assert results.count(True) == 1
        stored = [t for t in tokens if await grants.get_token(t.token_hash) is not None]
        assert len(stored) == 1

    # tokens

    async def test_token_round_trip(self, grants: GrantStore) -> None:
        token = self.token(expires_at=None)
        await grants.save_token(token)
        assert await grants.get_token(token.token_hash) == token
        assert await grants.get_token(hash_secret("unknown")) is None

    async def test_revoke_token_once_and_announce_once(self, grants: GrantStore) -> None:
        heard = self.heard(grants)
        token = self.token()
        await grants.save_token(token)
        now = _now()
        was = await grants.revoke_token(token.token_hash, now=now)
        assert was == token  # as it was: not yet revoked
        assert heard == [f"t:{token.token_hash}"]
        again = await grants.revoke_token(token.token_hash, now=now)
        assert again is not None and again.revoked_at == now
        assert heard == [f"t:{token.token_hash}"]
        assert await grants.revoke_token(hash_secret("unknown"), now=now) is None
        assert heard == [f"t:{token.token_hash}"]

    async def test_revoke_family_ends_the_whole_grant(self, grants: GrantStore) -> None:
        code, first, refresh = await self.issued(grants, refresh=True)
        assert refresh is not None
        second = self.token(code)
        next_refresh = self.refresh(second)
        assert await grants.rotate_refresh_token(
            refresh.token_hash,
            client_id=code.client_id,
            token=second,
            refresh_token=next_refresh,
            now=_now(),
        )
        _, other, _ = await self.issued(grants, refresh=True)
        heard = self.heard(grants)
        revoked = await grants.revoke_family(code.code_hash, now=_now())
        assert sorted(revoked) == sorted([first.token_hash, second.token_hash])
        assert sorted(heard) == sorted(f"t:{h}" for h in revoked)
        for token in (first, second):
            stored = await grants.get_token(token.token_hash)
            assert stored is not None and stored.revoked_at is not None
        stored_refresh = await grants.get_refresh_token(next_refresh.token_hash)
        assert stored_refresh is not None and stored_refresh.revoked_at is not None
        untouched = await grants.get_token(other.token_hash)
        assert untouched is not None and untouched.revoked_at is None
        assert await grants.revoke_family(code.code_hash, now=_now()) == []
        assert len(heard) == 2

    async def test_revoke_tokens_of_an_account(self, grants: GrantStore) -> None:
        account = uuid.uuid4()
        _, a1, r1 = await self.issued(grants, refresh=True, account_id=account)
        _, b1, _ = await self.issued(grants, account_id=account, client_id="client-b")
        _, elsewhere, _ = await self.issued(grants)
        heard = self.heard(grants)
        only_b = await grants.revoke_tokens(account_id=account, client_id="client-b", now=_now())
        assert only_b == [b1.token_hash]
        still = await grants.get_token(a1.token_hash)
        assert still is not None and still.revoked_at is None
        rest = await grants.revoke_tokens(account_id=account, now=_now())
        assert rest == [a1.token_hash]
        assert r1 is not None
        refresh = await grants.get_refresh_token(r1.token_hash)
        assert refresh is not None and refresh.revoked_at is not None
        other = await grants.get_token(elsewhere.token_hash)
        assert other is not None and other.revoked_at is None
        assert heard == [f"t:{b1.token_hash}", f"t:{a1.token_hash}"]

    async def test_token_with_client_default(self, grants: GrantStore) -> None:
        class OneClient(ClientRepository):
            async def get_client(self, client_id: str) -> Client | None:
                return None

        token = self.token()
        await grants.save_token(token)
        assert await grants.get_token_with_client(token.token_hash, OneClient()) == (token, None)
        assert await grants.get_token_with_client(hash_secret("unknown"), OneClient()) is None

    # refresh tokens

    async def test_rotation_uses_the_old_token_once(self, grants: GrantStore) -> None:
        code, _, refresh = await self.issued(grants, refresh=True)
        assert refresh is not None
        pairs = [self.token(code) for _ in range(CONCURRENCY)]
        results: list[bool] = []

        async def rotate(new: AccessToken) -> None:
            results.append(
                await grants.rotate_refresh_token(
                    refresh.token_hash,
                    client_id=code.client_id,
                    token=new,
                    refresh_token=self.refresh(new),
                    now=_now(),
                )
            )

        async with anyio.create_task_group() as tg:
            for new in pairs:
                tg.start_soon(rotate, new)
        assert results.count(True) == 1
        old = await grants.get_refresh_token(refresh.token_hash)
        assert old is not None and old.used_at is not None
        stored = [t for t in pairs if await grants.get_token(t.token_hash) is not None]
        assert len(stored) == 1

    async def test_rotation_refuses_and_stores_nothing(self, grants: GrantStore) -> None:
        now = _now()
        code, token, _ = await self.issued(grants)
        live = self.refresh(token)
        expired = self.refresh(token, expires_at=now - timedelta(seconds=1))
        revoked = self.refresh(token, revoked_at=now)
        cases = [(live, "another-client"), (expired, code.client_id), (revoked, code.client_id)]
        for old, client_id in cases:
            # Stored the way a redemption stores them: with a code of their own.
            holder = self.code(client_id=code.client_id, account_id=code.account_id)
            await grants.save_code(holder)
            assert await grants.redeem_code(
                holder.code_hash,
                client_id=holder.client_id,
                token=self.token(holder),
                refresh_token=old,
                now=now,
            )
            new = self.token(code)
            assert not await grants.rotate_refresh_token(
                old.token_hash,
                client_id=client_id,
                token=new,
                refresh_token=self.refresh(new),
                now=now,
            )
            assert await grants.get_token(new.token_hash) is None
        missing = self.token(code)
        assert not await grants.rotate_refresh_token(
            hash_secret("unknown"),
            client_id=code.client_id,
            token=missing,
            refresh_token=self.refresh(missing),
            now=now,
        )


class StorageContract(
    GrantStoreContract,
    ClientRepositoryContract,
    AccountRepositoryContract,
    PartnerAuthenticatorContract,
):
    """What every :class:`~.storage.base.Storage` must do: the four repository contracts
    on one backend, seeded through its admin operations, and the admin operations.

    Fixtures to provide:
        storage: The backend under test, empty and entered (``async with``).
    """

    @pytest.fixture
    async def grants(self, storage: Storage) -> GrantStore:
        return storage

    @pytest.fixture
    async def clients(self, storage: Storage) -> ClientRepository:
        return storage

    @pytest.fixture
    async def accounts(self, storage: Storage) -> AccountRepository:
        return storage

    @pytest.fixture
    async def partners(self, storage: Storage) -> PartnerAuthenticator:
        return storage

    @pytest.fixture
    async def known_client(self, storage: Storage) -> Client:
        creds = await storage.create_client(
            name="Charting App",
            redirect_uris=["https://app.example/callback", "https://app.example/other"],
            description="Charts",
            url="https://app.example",
            terms_of_use="https://app.example/terms",
            privacy_policy="https://app.example/privacy",
            live_trading_approved=True,
            scopes=["general", "trading"],
            response_types=["code"],
        )
        return Client(
            client_id=creds.client_id,
            secret_hash=hash_secret(creds.client_secret),
            name="Charting App",
            redirect_uris=("https://app.example/callback", "https://app.example/other"),
            description="Charts",
            url="https://app.example",
            terms_of_use="https://app.example/terms",
            privacy_policy="https://app.example/privacy",
            live_trading_approved=True,
            scopes=frozenset({"general", "trading"}),
            response_types=frozenset({"code"}),
        )

    @pytest.fixture
    async def known_account(self, storage: Storage) -> Account:
        return await storage.create_account(live=True)

    @pytest.fixture
    async def partner_credentials(self, storage: Storage) -> tuple[str, str]:
        creds = await storage.create_partner(name="Correspondent")
        return creds.key_id, creds.secret

    @pytest.fixture
    async def partner_client_id(
        self, storage: Storage, partner_credentials: tuple[str, str]
    ) -> str:
        creds = await storage.create_client(name="Mine", redirect_uris=["https://a.example/cb"])
        assert await storage.allow_partner_client(partner_credentials[0], creds.client_id)
        return creds.client_id

    @pytest.fixture
    async def foreign_client_id(self, storage: Storage) -> str:
        creds = await storage.create_client(name="Theirs", redirect_uris=["https://b.example/cb"])
        return creds.client_id

    async def test_disabling_a_client_is_announced(
        self, storage: Storage, known_client: Client
    ) -> None:
        heard = self.heard(storage)
        assert await storage.set_client_status(known_client.client_id, ClientStatus.DISABLED)
        assert heard == [f"c:{known_client.client_id}"]
        found = await storage.get_client(known_client.client_id)
        assert found is not None and not found.active
        assert await storage.set_client_status(known_client.client_id, ClientStatus.ACTIVE)
        assert heard == [f"c:{known_client.client_id}"]
        assert not await storage.set_client_status("no-such-client", ClientStatus.DISABLED)

    async def test_secret_rotation(self, storage: Storage, known_client: Client) -> None:
        renewed = await storage.reset_client_secret(known_client.client_id)
        assert renewed is not None and renewed.client_id == known_client.client_id
        found = await storage.get_client(known_client.client_id)
        assert found == dataclasses.replace(
            known_client, secret_hash=hash_secret(renewed.client_secret)
        )
        assert await storage.reset_client_secret("no-such-client") is None
        partner = await storage.create_partner(name="P")
        again = await storage.reset_partner_secret(partner.key_id)
        assert again is not None
        assert await storage.authenticate_partner(partner.key_id, partner.secret) is None
        assert await storage.authenticate_partner(partner.key_id, again.secret) is not None
        assert await storage.reset_partner_secret("no-such-partner") is None

    async def test_allowing_unknown_partner_or_client_is_refused(
        self, storage: Storage, partner_credentials: tuple[str, str], known_client: Client
    ) -> None:
        key_id = partner_credentials[0]
        assert (
            await storage.allow_partner_client("no-such-partner", known_client.client_id) is False
        )
        assert await storage.allow_partner_client(key_id, "no-such-client") is False
        assert await storage.allow_partner_client(key_id, known_client.client_id) is True
        assert await storage.allow_partner_client(key_id, known_client.client_id) is True

    async def test_create_account_is_idempotent(self, storage: Storage) -> None:
        account_id = uuid.uuid4()
        first = await storage.create_account(account_id=account_id, live=True)
        again = await storage.create_account(account_id=account_id, live=False)
        assert first == again == Account(account_id=account_id, live=True)

    async def test_purge_keeps_what_still_matters(self, storage: Storage) -> None:
        now = _now()
        old = now - timedelta(days=3)
        gone_code = self.code(issued_at=old, expires_at=old + timedelta(seconds=60))
        live_code = self.code()
        for code in (gone_code, live_code):
            await storage.save_code(code)
        expired = self.token(issued_at=old, expires_at=old + timedelta(minutes=15))
        revoked = self.token(issued_at=old, expires_at=None, revoked_at=old)
        fresh_revoked = self.token(revoked_at=now)
        forever = self.token(expires_at=None)
        for token in (expired, revoked, fresh_revoked, forever):
            await storage.save_token(token)
        result = await storage.purge_expired(now=now, retention=timedelta(days=1), batch_size=1)
        assert (result.codes, result.tokens) == (1, 2)
        assert await storage.get_code(gone_code.code_hash) is None
        assert await storage.get_code(live_code.code_hash) == live_code
        for token in (expired, revoked):
            assert await storage.get_token(token.token_hash) is None
        for token in (fresh_revoked, forever):
            assert await storage.get_token(token.token_hash) == token
