"""A third party's own repositories (plain ``sqlite3``), proven by the contract suite.

Written from ``docs/repositories.md`` and the README alone: its own schema, every operation
one SQLite transaction on its own connection in a worker thread, atomic steps as a single
conditional ``UPDATE`` whose row count decides, revocations announced after the commit.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import anyio.to_thread
import httpx
import pytest

from starlette_broker_oauth import (
    AccessToken,
    Account,
    AccountRepository,
    AuthorizationCode,
    Client,
    ClientRepository,
    ClientStatus,
    Connection,
    GrantStore,
    OAuthSettings,
    Partner,
    PartnerAuthenticator,
    RefreshToken,
    create_oauth_app,
)
from starlette_broker_oauth.security import hash_secret
from starlette_broker_oauth.storage import gather_connections
from starlette_broker_oauth.testing import (
    AccountRepositoryContract,
    ClientRepositoryContract,
    GrantStoreContract,
    PartnerAuthenticatorContract,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE broker_apps (
    app_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL, description TEXT NOT NULL, url TEXT NOT NULL,
    terms_of_use TEXT NOT NULL, privacy_policy TEXT NOT NULL, status TEXT NOT NULL,
    live_trading_approved INTEGER NOT NULL, scopes TEXT, response_types TEXT NOT NULL
);
CREATE TABLE brokerage_accounts (account_uuid TEXT PRIMARY KEY, is_live INTEGER NOT NULL);
CREATE TABLE correspondents (
    key_id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_sha256 TEXT NOT NULL
);
CREATE TABLE correspondent_apps (
    key_id TEXT NOT NULL, app_id TEXT NOT NULL, PRIMARY KEY (key_id, app_id)
);
CREATE TABLE auth_codes (
    code_sha256 TEXT PRIMARY KEY, app_id TEXT NOT NULL, account_uuid TEXT NOT NULL,
    redirect_uri TEXT NOT NULL, scope TEXT NOT NULL, issued_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL, challenge TEXT, challenge_method TEXT, used_us INTEGER
);
CREATE TABLE access_tokens (
    token_sha256 TEXT PRIMARY KEY, app_id TEXT NOT NULL, account_uuid TEXT NOT NULL,
    scope TEXT NOT NULL, account_live INTEGER NOT NULL, issued_us INTEGER NOT NULL,
    expires_us INTEGER, revoked_us INTEGER, family TEXT
);
CREATE TABLE refresh_tokens (
    token_sha256 TEXT PRIMARY KEY, family TEXT NOT NULL, app_id TEXT NOT NULL,
    account_uuid TEXT NOT NULL, scope TEXT NOT NULL, account_live INTEGER NOT NULL,
    issued_us INTEGER NOT NULL, expires_us INTEGER NOT NULL, used_us INTEGER,
    revoked_us INTEGER
);
"""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Hashed for an unknown key id, so that it costs what a wrong secret costs.
NO_PARTNER_HASH = hash_secret("no such partner")


def to_us(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def to_us_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def from_us_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


class Database:
    """A SQLite file; each operation is one transaction on a fresh connection, in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with closing(self._connect()) as connection:
            connection.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.row_factory = sqlite3.Row
        return connection

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._transaction, work)


class SqliteClients(ClientRepository):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, client: Client) -> Client:
        scopes = None if client.scopes is None else json.dumps(sorted(client.scopes))
        row = (
            client.client_id,
            client.secret_hash,
            client.name,
            json.dumps(list(client.redirect_uris)),
            client.description,
            client.url,
            client.terms_of_use,
            client.privacy_policy,
            client.status.value,
            int(client.live_trading_approved),
            scopes,
            json.dumps(sorted(client.response_types)),
        )
        await self.db.run(
            lambda c: c.execute(f"INSERT INTO broker_apps VALUES ({', '.join('?' * 12)})", row)
        )
        return client

    async def get_client(self, client_id: str) -> Client | None:
        def work(c: sqlite3.Connection) -> Client | None:
            row = c.execute("SELECT * FROM broker_apps WHERE app_id = ?", (client_id,)).fetchone()
            if row is None:
                return None
            scopes = None if row["scopes"] is None else frozenset(json.loads(row["scopes"]))
            return Client(
                client_id=row["app_id"],
                secret_hash=row["secret_sha256"],
                name=row["name"],
                redirect_uris=tuple(json.loads(row["redirect_uris"])),
                description=row["description"],
                url=row["url"],
                terms_of_use=row["terms_of_use"],
                privacy_policy=row["privacy_policy"],
                status=ClientStatus(row["status"]),
                live_trading_approved=bool(row["live_trading_approved"]),
                scopes=scopes,
                response_types=frozenset(json.loads(row["response_types"])),
            )

        return await self.db.run(work)


class SqliteAccounts(AccountRepository):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, account: Account) -> Account:
        row = (str(account.account_id), int(account.live))
        await self.db.run(lambda c: c.execute("INSERT INTO brokerage_accounts VALUES (?, ?)", row))
        return account

    async def get_account(self, account_id: UUID) -> Account | None:
        def work(c: sqlite3.Connection) -> Account | None:
            sql = "SELECT * FROM brokerage_accounts WHERE account_uuid = ?"
            row = c.execute(sql, (str(account_id),)).fetchone()
            if row is None:
                return None
            return Account(account_id=UUID(row["account_uuid"]), live=bool(row["is_live"]))

        return await self.db.run(work)


class SqlitePartners(PartnerAuthenticator):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, key_id: str, secret: str, *, name: str = "") -> Partner:
        row = (key_id, name, hash_secret(secret))
        await self.db.run(lambda c: c.execute("INSERT INTO correspondents VALUES (?, ?, ?)", row))
        return Partner(partner_id=key_id, name=name)

    async def allow(self, key_id: str, client_id: str) -> None:
        sql = "INSERT INTO correspondent_apps VALUES (?, ?)"
        await self.db.run(lambda c: c.execute(sql, (key_id, client_id)))

    async def authenticate_partner(self, key_id: str, secret: str) -> Partner | None:
        sql = "SELECT * FROM correspondents WHERE key_id = ?"
        row = await self.db.run(lambda c: c.execute(sql, (key_id,)).fetchone())
        stored = NO_PARTNER_HASH if row is None else row["secret_sha256"]
        # Hash and compare in constant time whether or not the key id exists.
        matches = hmac.compare_digest(hash_secret(secret), str(stored))
        if row is None or not matches or not secret:
            return None
        return Partner(partner_id=row["key_id"], name=row["name"])

    async def partner_can_use_client(self, partner: Partner, client_id: str) -> bool:
        sql = (
            "SELECT 1 FROM correspondent_apps ca"
            " JOIN correspondents p ON p.key_id = ca.key_id"
            " JOIN broker_apps a ON a.app_id = ca.app_id"
            " WHERE ca.key_id = ? AND ca.app_id = ?"
        )
        row = await self.db.run(
            lambda c: c.execute(sql, (partner.partner_id, client_id)).fetchone()
        )
        return row is not None


def insert_access_token(c: sqlite3.Connection, t: AccessToken) -> None:
    c.execute(
        "INSERT INTO access_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            t.token_hash,
            t.client_id,
            str(t.account_id),
            t.scope,
            int(t.account_live),
            to_us(t.issued_at),
            to_us_or_none(t.expires_at),
            to_us_or_none(t.revoked_at),
            t.family_id,
        ),
    )


def insert_refresh_token(c: sqlite3.Connection, t: RefreshToken) -> None:
    c.execute(
        "INSERT INTO refresh_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            t.token_hash,
            t.family_id,
            t.client_id,
            str(t.account_id),
            t.scope,
            int(t.account_live),
            to_us(t.issued_at),
            to_us(t.expires_at),
            to_us_or_none(t.used_at),
            to_us_or_none(t.revoked_at),
        ),
    )


def access_token_of(row: sqlite3.Row) -> AccessToken:
    return AccessToken(
        token_hash=row["token_sha256"],
        client_id=row["app_id"],
        account_id=UUID(row["account_uuid"]),
        scope=row["scope"],
        account_live=bool(row["account_live"]),
        issued_at=from_us(row["issued_us"]),
        expires_at=from_us_or_none(row["expires_us"]),
        revoked_at=from_us_or_none(row["revoked_us"]),
        family_id=row["family"],
    )


class SqliteGrants(GrantStore):
    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    async def _revoke_where(
        self, condition: str, args: tuple[Any, ...], now: datetime
    ) -> list[str]:
        """Revoke the live access and refresh tokens matching; announce after the commit."""

        def work(c: sqlite3.Connection) -> list[str]:
            revoked = c.execute(
                f"UPDATE access_tokens SET revoked_us = ? WHERE revoked_us IS NULL AND {condition}"
                " RETURNING token_sha256",
                (to_us(now), *args),
            ).fetchall()
            c.execute(
                f"UPDATE refresh_tokens SET revoked_us = ? WHERE revoked_us IS NULL"
                f" AND {condition}",
                (to_us(now), *args),
            )
            return [row["token_sha256"] for row in revoked]

        hashes = await self.db.run(work)
        for token_hash in hashes:
            self.announce_revocation(f"t:{token_hash}")
        return hashes

    async def save_code(self, code: AuthorizationCode) -> None:
        row = (
            code.code_hash,
            code.client_id,
            str(code.account_id),
            code.redirect_uri,
            code.scope,
            to_us(code.issued_at),
            to_us(code.expires_at),
            code.code_challenge,
            code.code_challenge_method,
            to_us_or_none(code.used_at),
        )
        sql = "INSERT INTO auth_codes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        await self.db.run(lambda c: c.execute(sql, row))

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        sql = "SELECT * FROM auth_codes WHERE code_sha256 = ?"
        row = await self.db.run(lambda c: c.execute(sql, (code_hash,)).fetchone())
        if row is None:
            return None
        return AuthorizationCode(
            code_hash=row["code_sha256"],
            client_id=row["app_id"],
            account_id=UUID(row["account_uuid"]),
            redirect_uri=row["redirect_uri"],
            scope=row["scope"],
            issued_at=from_us(row["issued_us"]),
            expires_at=from_us(row["expires_us"]),
            code_challenge=row["challenge"],
            code_challenge_method=row["challenge_method"],
            used_at=from_us_or_none(row["used_us"]),
        )

    async def redeem_code(
        self,
        code_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken | None = None,
        now: datetime,
    ) -> bool:
        def work(c: sqlite3.Connection) -> bool:
            marked = c.execute(
                "UPDATE auth_codes SET used_us = ? WHERE code_sha256 = ? AND used_us IS NULL"
                " AND app_id = ? AND ? < expires_us",
                (to_us(now), code_hash, client_id, to_us(now)),
            )
            if marked.rowcount != 1:
                return False
            insert_access_token(c, token)
            if refresh_token is not None:
                insert_refresh_token(c, refresh_token)
            return True

        return await self.db.run(work)

    async def list_connections(self, account_id: UUID, *, now: datetime) -> list[Connection]:
        def work(c: sqlite3.Connection) -> list[sqlite3.Row]:
            return c.execute(
                "SELECT app_id, scope, issued_us FROM access_tokens WHERE account_uuid = ?"
                " AND revoked_us IS NULL AND (expires_us IS NULL OR expires_us > ?)"
                " UNION ALL SELECT app_id, scope, issued_us FROM refresh_tokens"
                " WHERE account_uuid = ? AND revoked_us IS NULL AND used_us IS NULL"
                " AND expires_us > ?",
                (str(account_id), to_us(now), str(account_id), to_us(now)),
            ).fetchall()

        rows = await self.db.run(work)
        return gather_connections(
            account_id,
            (
                (r["app_id"], r["scope"], from_us(r["issued_us"]), from_us(r["issued_us"]))
                for r in rows
            ),
        )

    async def save_token(self, token: AccessToken) -> None:
        await self.db.run(lambda c: insert_access_token(c, token))

    async def get_token(self, token_hash: str) -> AccessToken | None:
        sql = "SELECT * FROM access_tokens WHERE token_sha256 = ?"
        row = await self.db.run(lambda c: c.execute(sql, (token_hash,)).fetchone())
        return None if row is None else access_token_of(row)

    async def revoke_token(self, token_hash: str, *, now: datetime) -> AccessToken | None:
        def work(c: sqlite3.Connection) -> AccessToken | None:
            sql = "SELECT * FROM access_tokens WHERE token_sha256 = ?"
            row = c.execute(sql, (token_hash,)).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE access_tokens SET revoked_us = ? WHERE token_sha256 = ?"
                " AND revoked_us IS NULL",
                (to_us(now), token_hash),
            )
            return access_token_of(row)

        before = await self.db.run(work)
        if before is not None and before.revoked_at is None:
            self.announce_revocation(f"t:{token_hash}")
        return before

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        sql = "SELECT * FROM refresh_tokens WHERE token_sha256 = ?"
        row = await self.db.run(lambda c: c.execute(sql, (token_hash,)).fetchone())
        if row is None:
            return None
        return RefreshToken(
            token_hash=row["token_sha256"],
            family_id=row["family"],
            client_id=row["app_id"],
            account_id=UUID(row["account_uuid"]),
            scope=row["scope"],
            account_live=bool(row["account_live"]),
            issued_at=from_us(row["issued_us"]),
            expires_at=from_us(row["expires_us"]),
            used_at=from_us_or_none(row["used_us"]),
            revoked_at=from_us_or_none(row["revoked_us"]),
        )

    async def rotate_refresh_token(
        self,
        token_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken,
        now: datetime,
    ) -> bool:
        def work(c: sqlite3.Connection) -> bool:
            marked = c.execute(
                "UPDATE refresh_tokens SET used_us = ? WHERE token_sha256 = ? AND used_us IS NULL"
                " AND revoked_us IS NULL AND app_id = ? AND ? < expires_us",
                (to_us(now), token_hash, client_id, to_us(now)),
            )
            if marked.rowcount != 1:
                return False
            insert_access_token(c, token)
            insert_refresh_token(c, refresh_token)
            return True

        return await self.db.run(work)

    async def revoke_family(self, family_id: str, *, now: datetime) -> list[str]:
        return await self._revoke_where("family = ?", (family_id,), now)

    async def revoke_tokens(
        self, *, account_id: UUID, client_id: str | None = None, now: datetime
    ) -> list[str]:
        if client_id is None:
            return await self._revoke_where("account_uuid = ?", (str(account_id),), now)
        condition = "account_uuid = ? AND app_id = ?"
        return await self._revoke_where(condition, (str(account_id), client_id), now)


# The contract suite, against the repositories above.


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "brokerage.sqlite3")


def a_client(client_id: str) -> Client:
    return Client(
        client_id=client_id,
        secret_hash=hash_secret(f"{client_id}-secret"),
        name="TradingApp",
        redirect_uris=("https://app.example/cb", "https://app.example/alt"),
        description="Charts and orders",
        url="https://app.example",
        terms_of_use="https://app.example/terms",
        privacy_policy="https://app.example/privacy",
        status=ClientStatus.ACTIVE,
        live_trading_approved=True,
        scopes=frozenset({"general", "trading"}),
        response_types=frozenset({"code"}),
    )


class TestSqliteClients(ClientRepositoryContract):
    @pytest.fixture
    async def clients(self, db: Database) -> SqliteClients:
        return SqliteClients(db)

    @pytest.fixture
    async def known_client(self, clients: SqliteClients) -> Client:
        return await clients.add(a_client("app-1"))


class TestSqliteAccounts(AccountRepositoryContract):
    @pytest.fixture
    async def accounts(self, db: Database) -> SqliteAccounts:
        return SqliteAccounts(db)

    @pytest.fixture
    async def known_account(self, accounts: SqliteAccounts) -> Account:
        return await accounts.add(Account(account_id=uuid.uuid4(), live=True))


class TestSqlitePartners(PartnerAuthenticatorContract):
    @pytest.fixture
    async def partners(self, db: Database) -> SqlitePartners:
        clients = SqliteClients(db)
        await clients.add(a_client("mine"))
        await clients.add(a_client("theirs"))
        partners = SqlitePartners(db)
        await partners.add("partner-1", "partner-secret", name="Correspondent")
        await partners.add("partner-2", "other-secret")
        await partners.allow("partner-1", "mine")
        await partners.allow("partner-2", "theirs")
        return partners

    @pytest.fixture
    def partner_credentials(self) -> tuple[str, str]:
        return ("partner-1", "partner-secret")

    @pytest.fixture
    def partner_client_id(self) -> str:
        return "mine"

    @pytest.fixture
    def foreign_client_id(self) -> str:
        return "theirs"


class TestSqliteGrants(GrantStoreContract):
    @pytest.fixture
    async def grants(self, db: Database) -> SqliteGrants:
        return SqliteGrants(db)


# End to end: the four repositories behind the HTTP API, no built-in storage.


@pytest.fixture
async def http(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, SqliteGrants, UUID]]:
    clients, accounts = SqliteClients(db), SqliteAccounts(db)
    partners, grants = SqlitePartners(db), SqliteGrants(db)
    await clients.add(a_client("app-1"))
    account = await accounts.add(Account(account_id=uuid.uuid4(), live=False))
    await partners.add("partner-1", "partner-secret")
    await partners.allow("partner-1", "app-1")
    app = create_oauth_app(
        settings=OAuthSettings(issuer="https://broker.example.com"),
        clients=clients,
        accounts=accounts,
        partners=partners,
        grants=grants,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://broker.example.com") as c:
        yield c, grants, account.account_id


@pytest.mark.anyio
async def test_partner_code_exchange_and_revocation(
    http: tuple[httpx.AsyncClient, SqliteGrants, UUID],
) -> None:
    client, grants, account_id = http
    heard: list[str] = []
    grants.add_revocation_listener(heard.append)
    partner_auth = ("partner-1", "partner-secret")
    app_auth = ("app-1", "app-1-secret")

    answer = await client.post(
        "/v1/oauth/authorize",
        auth=partner_auth,
        json={
            "client_id": "app-1",
            "client_secret": "app-1-secret",
            "redirect_uri": "https://app.example/cb",
            "scope": "general trading",
            "account_id": str(account_id),
        },
    )
    assert answer.status_code == 200, answer.text
    code = answer.json()["code"]
    assert answer.json()["client_id"] == "app-1"
    stored_code = await grants.get_code(hash_secret(code))
    assert stored_code is not None
    assert stored_code.used_at is None

    exchange = {"grant_type": "authorization_code", "code": code}
    exchange["redirect_uri"] = "https://app.example/cb"
    answer = await client.post("/oauth/token", auth=app_auth, data=exchange)
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "Bearer"
    access_token = answer.json()["access_token"]
    token_hash = hash_secret(access_token)
    stored = await grants.get_token(token_hash)
    assert stored is not None
    assert (stored.client_id, stored.account_id, stored.revoked_at) == ("app-1", account_id, None)
    redeemed = await grants.get_code(hash_secret(code))
    assert redeemed is not None
    assert redeemed.used_at is not None

    introspect = {"token": access_token}
    answer = await client.post("/oauth/introspect", auth=app_auth, data=introspect)
    assert answer.json()["active"] is True

    answer = await client.delete(f"/v1/oauth/token/{access_token}", auth=partner_auth)
    assert answer.status_code == 204, answer.text
    revoked = await grants.get_token(token_hash)
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert heard == [f"t:{token_hash}"]
    answer = await client.post("/oauth/introspect", auth=app_auth, data=introspect)
    assert answer.json() == {"active": False}

    # The code was single-use: a replay is refused.
    answer = await client.post("/oauth/token", auth=app_auth, data=exchange)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
