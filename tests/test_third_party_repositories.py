"""A third party's own repositories (plain ``sqlite3``), proven by the contract suite.

Written from ``docs/repositories.md`` and the README alone: its own schema, every operation
one SQLite transaction on its own connection in a worker thread, atomic steps as a single
conditional ``UPDATE`` whose row count decides.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit
from uuid import UUID

import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

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
    PartnerRepository,
    RefreshToken,
    SQLAlchemyStorage,
    create_oauth_app,
    health_routes,
)
from starlette_broker_oauth.core import Administrator, ConnectedApps
from starlette_broker_oauth.errors import ConfigurationError, TokenError
from starlette_broker_oauth.security import hash_secret
from starlette_broker_oauth.storage import gather_connections
from starlette_broker_oauth.storage.base import RevocationMessage, TokensRevoked
from starlette_broker_oauth.testing import (
    AccountRepositoryContract,
    ClientRepositoryContract,
    GrantStoreContract,
    PartnerRepositoryContract,
)
from starlette_broker_oauth.web.hosted import HostedConsent

from .conftest import CONSENT_SECRET, CookieSession, pkce_pair
from .test_consent import Form

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
CREATE TABLE correspondent_accounts (account_uuid TEXT PRIMARY KEY, key_id TEXT NOT NULL);
CREATE TABLE used_keys (key TEXT PRIMARY KEY, expires_us INTEGER NOT NULL);
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


class SqlitePartners(PartnerRepository):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, key_id: str, secret: str, *, name: str = "") -> Partner:
        row = (key_id, name, hash_secret(secret))
        await self.db.run(lambda c: c.execute("INSERT INTO correspondents VALUES (?, ?, ?)", row))
        return Partner(partner_id=key_id, name=name, secret_hash=hash_secret(secret))

    async def allow(self, key_id: str, client_id: str) -> None:
        sql = "INSERT INTO correspondent_apps VALUES (?, ?)"
        await self.db.run(lambda c: c.execute(sql, (key_id, client_id)))

    async def own(self, key_id: str, account_id: UUID) -> None:
        sql = "INSERT INTO correspondent_accounts VALUES (?, ?)"
        await self.db.run(lambda c: c.execute(sql, (str(account_id), key_id)))

    async def get_partner(self, key_id: str) -> Partner | None:
        sql = "SELECT * FROM correspondents WHERE key_id = ?"
        row = await self.db.run(lambda c: c.execute(sql, (key_id,)).fetchone())
        if row is None:
            return None
        return Partner(partner_id=row["key_id"], name=row["name"], secret_hash=row["secret_sha256"])

    async def is_client_allowed(self, partner_id: str, client_id: str) -> bool:
        sql = "SELECT 1 FROM correspondent_apps WHERE key_id = ? AND app_id = ?"
        row = await self.db.run(lambda c: c.execute(sql, (partner_id, client_id)).fetchone())
        return row is not None

    async def account_owner(self, account_id: UUID) -> str | None:
        sql = "SELECT key_id FROM correspondent_accounts WHERE account_uuid = ?"
        row = await self.db.run(lambda c: c.execute(sql, (str(account_id),)).fetchone())
        return None if row is None else str(row["key_id"])

    async def partner_count(self) -> int:
        sql = "SELECT count(*) AS n FROM correspondents"
        row = await self.db.run(lambda c: c.execute(sql).fetchone())
        return int(row["n"])


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
        self,
        condition: str,
        args: tuple[Any, ...],
        codes: tuple[str, tuple[Any, ...]] | None,
        now: datetime,
    ) -> list[str]:
        """One transaction: delete the unused codes ``codes`` picks (a condition and its
        arguments), revoke the live access and refresh tokens ``condition`` picks."""

        def work(c: sqlite3.Connection) -> list[str]:
            if codes is not None:
                c.execute(f"DELETE FROM auth_codes WHERE used_us IS NULL AND {codes[0]}", codes[1])
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

        return await self.db.run(work)

    async def use_once(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        def work(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM used_keys WHERE key = ? AND expires_us <= ?", (key, to_us(now)))
            inserted = c.execute(
                "INSERT INTO used_keys VALUES (?, ?) ON CONFLICT DO NOTHING",
                (key, to_us(expires_at)),
            )
            return inserted.rowcount == 1

        return await self.db.run(work)

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

        return await self.db.run(work)

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

    async def revoke_grant(
        self, family_id: str, *, account_id: UUID, client_id: str, now: datetime
    ) -> list[str]:
        codes = ("account_uuid = ? AND app_id = ?", (str(account_id), client_id))
        return await self._revoke_where("family = ?", (family_id,), codes, now)

    async def revoke_tokens(
        self,
        *,
        account_id: UUID | None = None,
        client_id: str | None = None,
        live_only: bool = False,
        now: datetime,
    ) -> list[str]:
        parts, args = [], []
        if account_id is not None:
            parts.append("account_uuid = ?")
            args.append(str(account_id))
        if client_id is not None:
            parts.append("app_id = ?")
            args.append(client_id)
        if not parts:
            raise ValueError("revoke_tokens needs an account_id or a client_id")
        codes = (" AND ".join(parts), tuple(args))
        if live_only:
            parts.append("account_live = 1")
        return await self._revoke_where(" AND ".join(parts), tuple(args), codes, now)


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


class TestSqlitePartners(PartnerRepositoryContract):
    @pytest.fixture
    async def partners(self, db: Database) -> SqlitePartners:
        clients = SqliteClients(db)
        await clients.add(a_client("mine"))
        await clients.add(a_client("theirs"))
        partners = SqlitePartners(db)
        await partners.add("partner-2", "other-secret")
        await partners.allow("partner-2", "theirs")
        return partners

    @pytest.fixture
    async def known_partner(self, partners: SqlitePartners) -> Partner:
        partner = await partners.add("partner-1", "partner-secret", name="Correspondent")
        await partners.allow("partner-1", "mine")
        return partner

    @pytest.fixture
    async def owned_account_id(self, partners: SqlitePartners, known_partner: Partner) -> UUID:
        account_id = uuid.uuid4()
        await partners.own(known_partner.partner_id, account_id)
        return account_id

    @pytest.fixture
    def partner_count(self, known_partner: Partner) -> int:
        return 2

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
    heard: list[RevocationMessage] = []
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
    assert heard == [TokensRevoked((token_hash,))]
    answer = await client.post("/oauth/introspect", auth=app_auth, data=introspect)
    assert answer.json() == {"active": False}

    # The code was single-use: a replay is refused.
    answer = await client.post("/oauth/token", auth=app_auth, data=exchange)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


# Mixed platforms: the platform's own repositories beside the built-in storage.

HOSTED_REDIRECT = "https://app.example/cb"


async def hosted_flow(http: httpx.AsyncClient, account_id: UUID, client_id: str) -> str:
    """The hosted consent flow as a browser makes it: the page, Allow, the code."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": HOSTED_REDIRECT,
        "scope": "general",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    cookie = {"Cookie": f"session={account_id}"}
    page = await http.get("/oauth/authorize?" + urlencode(params), headers=cookie)
    assert page.status_code == 200, page.text
    form = Form(page.text)
    answer = await http.post(
        form.action, data=form.submit("approve") | {"account_id": str(account_id)}, headers=cookie
    )
    assert answer.status_code == 303, answer.text
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    return f"{code} {verifier}"


async def exchanged(http: httpx.AsyncClient, code_and_verifier: str, auth: tuple[str, str]) -> str:
    code, verifier = code_and_verifier.split(" ")
    answer = await http.post(
        "/oauth/token",
        auth=auth,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": HOSTED_REDIRECT,
            "code_verifier": verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def partner_code(
    http: httpx.AsyncClient, partner: tuple[str, str], client_id: str, account_id: UUID
) -> httpx.Response:
    return await http.post(
        "/v1/oauth/authorize",
        auth=partner,
        json={
            "client_id": client_id,
            "client_secret": f"{client_id}-secret",
            "redirect_uri": HOSTED_REDIRECT,
            "scope": "general",
            "account_id": str(account_id),
        },
    )


@pytest.mark.anyio
@pytest.mark.parametrize("mix", ["own clients", "own clients and accounts", "own everything"])
async def test_a_mixed_platform_serves_partners_and_hosted_consent(
    db: Database, tmp_path: Path, mix: str
) -> None:
    """The platform's own clients (and accounts) beside the built-in storage for the rest,
    or every repository its own: a partner is allowed one of its clients and owns one of
    its accounts through the admin service, then a partner token, a hosted consent flow,
    a disconnection that ends the pending code, and an admin change all work."""
    clients = SqliteClients(db)
    await clients.add(a_client("own-app"))
    settings = OAuthSettings(issuer="https://broker.example.com")
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'builtin.db'}")
    async with storage:
        if mix == "own everything":
            accounts: AccountRepository = SqliteAccounts(db)
            partners_repo = SqlitePartners(db)
            grants: GrantStore = SqliteGrants(db)
            account = await SqliteAccounts(db).add(Account(account_id=uuid.uuid4()))
            partner = ("partner-1", "partner-secret")
            await partners_repo.add(*partner)
            await partners_repo.allow("partner-1", "own-app")
            await partners_repo.own("partner-1", account.account_id)
            oauth = create_oauth_app(
                settings=settings,
                clients=clients,
                accounts=accounts,
                partners=partners_repo,
                grants=grants,
                consent=HostedConsent(session=CookieSession(), secret_key=CONSENT_SECRET),
            )
            with pytest.raises(ConfigurationError, match="no built-in storage"):
                await oauth.state.admin.create_partner(name="P")  # nothing built-in
        else:
            own_accounts = mix == "own clients and accounts"
            accounts = SqliteAccounts(db) if own_accounts else storage
            if own_accounts:
                account = await SqliteAccounts(db).add(Account(account_id=uuid.uuid4()))
            else:
                account = await storage.create_account()
            oauth = create_oauth_app(
                settings=settings,
                storage=storage,
                clients=clients,
                accounts=accounts,
                consent=HostedConsent(session=CookieSession(), secret_key=CONSENT_SECRET),
            )
            admin: Administrator = oauth.state.admin
            created = await admin.create_partner(name="Correspondent")
            partner = (created.key_id, created.secret)
            await admin.create_partner(name="Another")  # so that ownership matters
            assert await admin.allow_partner_client(created.key_id, "own-app")
            assert await admin.give_account(account.account_id, created.key_id)
            assert not await admin.allow_partner_client(created.key_id, "nobodys-app")
            with pytest.raises(ConfigurationError, match="platform's own repository"):
                await admin.create_client(name="X", redirect_uris=[HOSTED_REDIRECT])
            grants = storage
        transport = httpx.ASGITransport(app=oauth)
        app_auth = ("own-app", "own-app-secret")
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            given = await partner_code(http, partner, "own-app", account.account_id)
            assert given.status_code == 200, given.text
            assert given.json()["client_id"] == "own-app"
            token = await exchanged(
                http, await hosted_flow(http, account.account_id, "own-app"), app_auth
            )
            introspected = await http.post(
                "/oauth/introspect", auth=app_auth, data={"token": token}
            )
            assert introspected.json()["active"] is True
            pending = await hosted_flow(http, account.account_id, "own-app")
            apps: ConnectedApps = oauth.state.connected_apps
            assert await apps.disconnect(account.account_id, "own-app") == 1
            code, verifier = pending.split(" ")
            refused = await http.post(
                "/oauth/token",
                auth=app_auth,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": HOSTED_REDIRECT,
                    "code_verifier": verifier,
                },
            )
            assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
            # The platform disables its own client in its registry, and tells the core.
            fresh = await exchanged(
                http, await hosted_flow(http, account.account_id, "own-app"), app_auth
            )
            await db.run(
                lambda c: c.execute(
                    "UPDATE broker_apps SET status = 'DISABLED' WHERE app_id = ?", ("own-app",)
                )
            )
            assert await oauth.state.admin.client_changed("own-app") == 1
            stored = await grants.get_token(hash_secret(fresh))
            assert stored is not None
            assert stored.revoked_at is not None  # enabling it again revives nothing
            verifier_ = oauth.state.token_verifier
            with pytest.raises(TokenError):
                await verifier_.verify(fresh)  # checked on every use either way


@pytest.mark.anyio
async def test_a_grant_store_that_skips_super_init_is_refused_at_start(db: Database) -> None:
    class Forgetful(SqliteGrants):
        def __init__(self, db: Database) -> None:
            self.db = db  # no super().__init__()

    with pytest.raises(ConfigurationError, match=r"super\(\).__init__\(\)"):
        create_oauth_app(
            settings=OAuthSettings(issuer="https://broker.example.com"),
            clients=SqliteClients(db),
            accounts=SqliteAccounts(db),
            partners=SqlitePartners(db),
            grants=Forgetful(db),
        )


@pytest.mark.anyio
async def test_readiness_of_a_platform_whose_repositories_are_all_its_own(db: Database) -> None:
    """No storage of the library's to probe: readiness says so, and leaves the platform's
    database to the platform's own checks."""
    oauth = create_oauth_app(
        settings=OAuthSettings(issuer="https://broker.example.com"),
        clients=SqliteClients(db),
        accounts=SqliteAccounts(db),
        partners=SqlitePartners(db),
        grants=SqliteGrants(db),
    )
    host = Starlette(routes=[*health_routes(oauth), Mount("/", oauth)])
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="https://broker.example.com") as c:
        answer = await c.get("/healthz/ready")
    own = {
        "status": "skipped",
        "reason": "the repositories are the platform's own: nothing to probe",
    }
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready",
        "checks": {
            "database": own,
            "schema": own,
            "listener": {
                "status": "skipped",
                "reason": "no revocation listener: no token cache, or one process",
            },
        },
    }
