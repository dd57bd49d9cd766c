"""Alembic migrations: they build exactly the tables the storage uses, run twice harmlessly,
and carry data from the first revision to head."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage
from starlette_broker_oauth.models import ClientCredentials
from starlette_broker_oauth.security import hash_secret, new_secret
from starlette_broker_oauth.storage.sqlalchemy import migrations

from ..conftest import BACKENDS, ISSUER, POSTGRES_URL, build_platform, seed_platform

pytestmark = pytest.mark.anyio

SQL_BACKENDS = [b for b in BACKENDS if b != "memory"]


@pytest.fixture(params=SQL_BACKENDS)
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """(url, table prefix) of an empty database."""
    prefix = f"m{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}", prefix
        return
    assert POSTGRES_URL is not None
    yield POSTGRES_URL, prefix
    storage = SQLAlchemyStorage(POSTGRES_URL, table_prefix=prefix, migrate=False)
    async with storage, storage.engine.begin() as conn:
        await conn.run_sync(storage.metadata.drop_all)
        await conn.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}alembic_version"))


async def test_head_matches_the_storage_tables(database: tuple[str, str]) -> None:
    url, prefix = database
    async with SQLAlchemyStorage(url, table_prefix=prefix) as storage:
        assert await storage.current_revision() == "0009"
        async with storage.engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(
                        c, opts={"version_table": f"{prefix}alembic_version"}
                    ),
                    storage.metadata,
                )
            )
    assert diffs == []


async def test_upgrade_is_idempotent(database: tuple[str, str]) -> None:
    url, prefix = database
    async with SQLAlchemyStorage(url, table_prefix=prefix) as storage:
        await storage.upgrade()
        await storage.upgrade()
        assert await storage.current_revision() == "0009"


async def test_concurrent_upgrades(database: tuple[str, str]) -> None:
    url, prefix = database

    async def start() -> None:
        async with SQLAlchemyStorage(url, table_prefix=prefix) as storage:
            assert await storage.current_revision() == "0009"

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(start)


async def test_cli_upgrade(database: tuple[str, str]) -> None:
    url, prefix = database
    for _ in range(2):
        result = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "starlette_broker_oauth.cli",
                "db",
                "upgrade",
                "--database-url",
                url,
                "--table-prefix",
                prefix,
            ],
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
    async with SQLAlchemyStorage(url, table_prefix=prefix, migrate=False) as storage:
        assert await storage.current_revision() == "0009"


async def test_upgrade_from_first_revision_keeps_data(database: tuple[str, str]) -> None:
    url, prefix = database
    client_secret, partner_secret, token, code = (new_secret() for _ in range(4))
    account = uuid.uuid4()
    now = datetime.now(UTC).replace(tzinfo=None)
    async with SQLAlchemyStorage(url, table_prefix=prefix, migrate=False) as old:
        await old.upgrade("0001")
        assert await old.current_revision() == "0001"
        rows: dict[str, dict[str, Any]] = {
            "clients": {
                "client_id": "legacy-client",
                "secret_hash": hash_secret(client_secret),
                "name": "Legacy",
                "description": "",
                "url": "",
                "terms_of_use": "",
                "privacy_policy": "",
                "status": "ACTIVE",
                "live_trading_approved": False,
                "redirect_uris": '["https://legacy.example/cb"]',
                "scopes": None,
                "response_types": '["code", "token"]',
            },
            "partners": {
                "partner_id": "legacy-partner",
                "name": "P",
                "secret_hash": hash_secret(partner_secret),
            },
            "partner_clients": {"partner_id": "legacy-partner", "client_id": "legacy-client"},
            "accounts": {"account_id": account, "live": False},
            "tokens": {
                "token_hash": hash_secret(token),
                "client_id": "legacy-client",
                "account_id": account,
                "scope": "general",
                "account_live": False,
                "issued_at": now,
                "expires_at": None,
                "revoked_at": None,
                "code_hash": hash_secret(code),
            },
        }
        async with old.engine.begin() as conn:
            for table, values in rows.items():
                columns = ", ".join(values)
                params = ", ".join(f":{name}" for name in values)
                await conn.execute(
                    sa.text(f"INSERT INTO {prefix}{table} ({columns}) VALUES ({params})"),
                    {
                        k: (v.hex if isinstance(v, uuid.UUID) and url.startswith("sqlite") else v)
                        for k, v in values.items()
                    },
                )
    async with SQLAlchemyStorage(url, table_prefix=prefix) as storage:
        assert await storage.current_revision() == "0009"
        migrated = await storage.get_token(hash_secret(token))
        assert migrated is not None
        assert migrated.family_id == hash_secret(code)
        settings = OAuthSettings(issuer=ISSUER)
        app = build_platform(storage, settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as c:
            me = await c.get("/v2/account", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["account_id"] == str(account)
            issued = await c.post(
                "/v1/oauth/token",
                auth=("legacy-partner", partner_secret),
                json={
                    "client_id": "legacy-client",
                    "client_secret": client_secret,
                    "redirect_uri": "https://legacy.example/cb",
                    "scope": "general",
                    "account_id": str(account),
                },
            )
            assert issued.status_code == 200, issued.text
            revoked = await c.delete(
                f"/v1/oauth/token/{token}", auth=("legacy-partner", partner_secret)
            )
            assert revoked.status_code == 204
            gone = await c.get("/v2/account", headers={"Authorization": f"Bearer {token}"})
            assert gone.status_code == 401


async def test_upgrade_from_the_previous_head_with_several_partners(
    database: tuple[str, str],
) -> None:
    """0002 → 0003 with data in place: existing accounts have no owner. With two partners
    neither may use them until the platform gives each account to one; tokens issued
    before the upgrade keep working."""
    url, prefix = database
    async with SQLAlchemyStorage(url, table_prefix=prefix, migrate=False) as old:
        await old.upgrade("0002")
        # The client row as 0002 has it (today's create_client writes later columns).
        client = ClientCredentials(client_id="app-client", client_secret=new_secret())
        async with old.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    f"INSERT INTO {prefix}clients (client_id, secret_hash, name, description, "
                    "url, terms_of_use, privacy_policy, status, live_trading_approved, "
                    "redirect_uris, scopes, response_types) VALUES (:id, :hash, 'App', '', '', "
                    "'', '', 'ACTIVE', false, :uris, NULL, :types)"
                ),
                {
                    "id": client.client_id,
                    "hash": hash_secret(client.client_secret),
                    "uris": '["https://app.example/cb"]',
                    "types": '["code", "token"]',
                },
            )
        first = await old.create_partner(name="First")
        second = await old.create_partner(name="Second")
        for partner in (first, second):
            await old.allow_partner_client(partner.key_id, client.client_id)
        a = uuid.uuid4()
        async with old.engine.begin() as conn:
            await conn.execute(
                sa.text(f"INSERT INTO {prefix}accounts (account_id, live) VALUES (:a, :l)"),
                {"a": a.hex if url.startswith("sqlite") else a, "l": False},
            )
    async with SQLAlchemyStorage(url, table_prefix=prefix) as storage:
        assert await storage.current_revision() == "0009"
        app = build_platform(storage, OAuthSettings(issuer=ISSUER))
        body = {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "redirect_uri": "https://app.example/cb",
            "scope": "general",
            "account_id": str(a),
        }
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as c:
            for partner in (first, second):
                refused = await c.post(
                    "/v1/oauth/token", json=body, auth=(partner.key_id, partner.secret)
                )
                assert refused.status_code == 422
            assert await storage.give_account(a, second.key_id)
            given = await c.post("/v1/oauth/token", json=body, auth=(second.key_id, second.secret))
            assert given.status_code == 200
            mine = await c.post("/v1/oauth/token", json=body, auth=(first.key_id, first.secret))
            assert mine.status_code == 422
            assert (await storage.list_connections(a, now=datetime.now(UTC)))[0].client_id == (
                client.client_id
            )


async def test_upgrade_to_rowid_tables_keeps_codes_and_tokens(
    database: tuple[str, str],
) -> None:
    """Down to 0003 and up through 0004 with a token, a refresh token and an unused code
    in place, twice: on SQLite the three tables are rebuilt as rowid tables with their
    indexes, and every record still works through HTTP."""
    url, prefix = database
    settings = OAuthSettings(
        issuer=ISSUER,
        access_token_lifetime=timedelta(hours=1),
        refresh_token_lifetime=timedelta(days=30),
    )
    # Seeded through this version's code (which writes columns 0003 does not have), then
    # taken down to 0003 with the records in place.
    async with SQLAlchemyStorage(url, table_prefix=prefix) as old:
        world = await seed_platform("sqlite", old, settings)
        async with world.http:
            issued = (await world.exchange(await world.code())).json()
            code = await world.code()
        async with old.engine.begin() as conn:
            await conn.run_sync(lambda c: migrations._alembic(c, "downgrade", prefix, "0003"))
    sqlite = url.startswith("sqlite")
    for revision in ("0003", "head", "0003", "head"):
        async with SQLAlchemyStorage(url, table_prefix=prefix, migrate=False) as storage:
            if revision == "head":
                await storage.upgrade()
            else:
                async with storage.engine.begin() as conn:
                    await conn.run_sync(
                        lambda c: migrations._alembic(c, "downgrade", prefix, "0003")
                    )
            if sqlite:
                async with storage.engine.connect() as conn:
                    found = await conn.exec_driver_sql(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
                    )
                    rows: list[Any] = list(found.all())
                kinds = {str(row[0]): "WITHOUT ROWID" in str(row[1]).upper() for row in rows}
                for table in ("codes", "tokens", "refresh_tokens"):
                    assert kinds[f"{prefix}{table}"] is (revision == "0003")
    async with SQLAlchemyStorage(url, table_prefix=prefix) as storage:
        assert await storage.current_revision() == "0009"
        app = build_platform(storage, settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as c:
            bearer = {"Authorization": f"Bearer {issued['access_token']}"}
            assert (await c.get("/v2/account", headers=bearer)).status_code == 200
            redirect = world.redirect_uri
            auth = (world.client_id, world.client_secret)
            redeemed = await c.post(
                "/oauth/token",
                data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
                auth=auth,
            )
            assert redeemed.status_code == 200, redeemed.text
            refreshed = await c.post(
                "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                auth=auth,
            )
            assert refreshed.status_code == 200, refreshed.text
