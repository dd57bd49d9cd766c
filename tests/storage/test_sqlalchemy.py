"""The SQLAlchemy storage: what reaches the disk, and what survives a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from starlette_broker_oauth import (
    ConfigurationError,
    OAuthSettings,
    SQLAlchemyStorage,
)

from ..conftest import ISSUER, build_platform, pkce_pair, seed_platform

pytestmark = pytest.mark.anyio


async def test_sqlite_file_holds_no_raw_credential(tmp_path: Path, settings: OAuthSettings) -> None:
    path = tmp_path / "oauth.db"
    seen: list[str] = []
    async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{path}") as storage:
        world = await seed_platform("sqlite", storage, settings)
        async with world.http:
            seen += [world.client_secret, world.partner[1]]
            verifier, challenge = pkce_pair()
            code = await world.code(code_challenge=challenge, code_challenge_method="S256")
            token = (await world.exchange(code, code_verifier=verifier)).json()["access_token"]
            direct = await world.http.post(
                "/v1/oauth/token", json=world.grant_body(), auth=world.partner
            )
            unused_code = await world.code()
            seen += [code, token, direct.json()["access_token"], unused_code, verifier]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("oauth.db"))
    assert world.client_id.encode() in raw  # the file really holds the data
    for value in seen:
        assert value.encode() not in raw, "a raw credential reached the database file"


async def test_tokens_survive_reopening(tmp_path: Path, settings: OAuthSettings) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}"
    async with SQLAlchemyStorage(url) as storage:
        world = await seed_platform("sqlite", storage, settings)
        async with world.http:
            token = (await world.exchange(await world.code())).json()["access_token"]
    async with SQLAlchemyStorage(url) as reopened:
        app = build_platform(reopened, settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as c:
            me = await c.get("/v2/account", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200


async def test_table_prefix(tmp_path: Path) -> None:
    async with (
        SQLAlchemyStorage(
            f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", table_prefix="broker_"
        ) as storage,
        storage.engine.connect() as conn,
    ):
        names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    assert set(names) == {
        "broker_clients",
        "broker_accounts",
        "broker_partners",
        "broker_partner_clients",
        "broker_partner_accounts",
        "broker_used_keys",
        "broker_codes",
        "broker_tokens",
        "broker_refresh_tokens",
        "broker_alembic_version",
    }


def test_rejects_unknown_database_scheme() -> None:
    with pytest.raises(ConfigurationError):
        SQLAlchemyStorage("mysql://localhost/db")


def test_rejects_bad_prefix() -> None:
    with pytest.raises(ConfigurationError):
        SQLAlchemyStorage("sqlite://", table_prefix="x; drop")


async def test_use_before_open_is_a_clear_error() -> None:
    storage = SQLAlchemyStorage("sqlite+aiosqlite://")
    with pytest.raises(ConfigurationError, match="the storage is not open: enter it"):
        await storage.get_client("x")


async def test_plain_sqlite_url_gets_async_driver(tmp_path: Path) -> None:
    storage = SQLAlchemyStorage(f"sqlite:///{tmp_path / 'x.db'}")
    assert storage.url.drivername == "sqlite+aiosqlite"
