"""Housekeeping: expired and revoked rows go, in batches; live ones and replay evidence stay."""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from starlette_broker_oauth import AccessToken, AuthorizationCode, RefreshToken, SQLAlchemyStorage
from starlette_broker_oauth.security import hash_secret, new_secret, utcnow

from ..conftest import POSTGRES_URL, open_storage

pytestmark = pytest.mark.anyio

DAY = timedelta(days=1)


def token(
    age: timedelta, *, lifetime: timedelta | None, revoked_ago: timedelta | None = None
) -> AccessToken:
    now = utcnow()
    return AccessToken(
        token_hash=hash_secret(new_secret()),
        client_id="c",
        account_id=uuid.uuid4(),
        scope="general",
        account_live=False,
        issued_at=now - age,
        expires_at=None if lifetime is None else now - age + lifetime,
        revoked_at=None if revoked_ago is None else now - revoked_ago,
    )


async def test_purge_expired(backend: str, tmp_path: Path) -> None:
    now = utcnow()
    async with open_storage(backend, tmp_path) as storage:
        old_codes = [
            AuthorizationCode(
                code_hash=hash_secret(new_secret()),
                client_id="c",
                account_id=uuid.uuid4(),
                redirect_uri="https://a/cb",
                scope="",
                issued_at=now - 3 * DAY,
                expires_at=now - 3 * DAY + timedelta(seconds=60),
            )
            for _ in range(5)
        ]
        fresh_code = AuthorizationCode(
            code_hash=hash_secret(new_secret()),
            client_id="c",
            account_id=uuid.uuid4(),
            redirect_uri="https://a/cb",
            scope="",
            issued_at=now,
            expires_at=now + timedelta(seconds=60),
            used_at=now,
        )
        for code in [*old_codes, fresh_code]:
            await storage.save_code(code)
        gone = [
            token(3 * DAY, lifetime=timedelta(hours=1)),  # long expired
            token(3 * DAY, lifetime=None, revoked_ago=2 * DAY),  # long revoked
            token(3 * DAY, lifetime=None, revoked_ago=2 * DAY),
        ]
        kept = [
            token(3 * DAY, lifetime=None),  # lives until revoked
            token(timedelta(hours=2), lifetime=timedelta(hours=1)),  # expired within retention
            token(3 * DAY, lifetime=None, revoked_ago=timedelta(hours=1)),  # revoked recently
        ]
        for item in [*gone, *kept]:
            await storage.save_token(item)
        family = hash_secret(new_secret())
        old_refresh = RefreshToken(
            token_hash=hash_secret(new_secret()),
            family_id=family,
            client_id="c",
            account_id=uuid.uuid4(),
            scope="",
            account_live=False,
            issued_at=now - 40 * DAY,
            expires_at=now - 10 * DAY,
            used_at=now - 39 * DAY,
        )
        used_refresh = RefreshToken(  # rotated out but unexpired: evidence of reuse
            token_hash=hash_secret(new_secret()),
            family_id=family,
            client_id="c",
            account_id=uuid.uuid4(),
            scope="",
            account_live=False,
            issued_at=now - DAY,
            expires_at=now + 29 * DAY,
            used_at=now - DAY,
        )
        for refresh in (old_refresh, used_refresh):
            await _save_refresh(storage, refresh)

        result = await storage.purge_expired(now=now, retention=DAY, batch_size=2)
        assert (result.codes, result.tokens, result.refresh_tokens) == (5, 3, 1)
        for item in gone:
            assert await storage.get_token(item.token_hash) is None
        for item in kept:
            assert await storage.get_token(item.token_hash) is not None
        assert await storage.get_code(fresh_code.code_hash) is not None
        assert await storage.get_refresh_token(used_refresh.token_hash) is not None
        assert await storage.get_refresh_token(old_refresh.token_hash) is None
        again = await storage.purge_expired(now=now, retention=DAY, batch_size=2)
        assert (again.codes, again.tokens, again.refresh_tokens) == (0, 0, 0)


async def _save_refresh(storage: object, refresh: RefreshToken) -> None:
    """Refresh tokens enter the store through a rotation; seed one directly."""
    from starlette_broker_oauth import MemoryStorage

    if isinstance(storage, MemoryStorage):
        storage._refresh[refresh.token_hash] = refresh
        return
    assert isinstance(storage, SQLAlchemyStorage)
    import sqlalchemy as sa

    table = next(t for t in storage.metadata.sorted_tables if t.name.endswith("refresh_tokens"))
    async with storage.engine.begin() as conn:
        await conn.execute(
            sa.insert(table).values(
                **{f: getattr(refresh, f) for f in refresh.__dataclass_fields__}
            )
        )


async def test_cli_purge(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'purge.db'}"
    async with SQLAlchemyStorage(url) as storage:
        await storage.save_token(token(3 * DAY, lifetime=timedelta(hours=1)))
    result = await anyio.run_process(
        [sys.executable, "-m", "starlette_broker_oauth.cli", "db", "purge", "--database-url", url],
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"purged 0 codes, 1 access tokens, 0 refresh tokens" in result.stdout


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_each_batch_walks_an_index(kind: str, tmp_path: Path) -> None:
    """Every batch's query finds its rows through an index on the purged condition, so
    its cost does not grow with the table: no full scan, on either database."""
    if kind == "postgres" and POSTGRES_URL is None:
        pytest.skip("needs the PostgreSQL of scripts/with-postgres")
    async with open_storage(kind, tmp_path) as storage:
        assert isinstance(storage, SQLAlchemyStorage)
        t, r, c = storage.tables.tokens, storage.tables.refresh_tokens, storage.tables.codes
        cutoff = utcnow()
        batches = [
            (table, column)
            for table in (t, r)
            for column in (table.c.expires_at, table.c.revoked_at)
        ] + [(c, c.c.expires_at)]
        async with storage.engine.connect() as conn:
            if kind == "postgres":
                await conn.exec_driver_sql("SET enable_seqscan = off")  # an index if any
            for table, column in batches:
                key = table.primary_key.columns.values()[0]
                query = sa.select(key).where(column < cutoff).order_by(column).limit(1000)
                compiled = query.compile(
                    conn.sync_connection, compile_kwargs={"literal_binds": True}
                )
                prefix = "EXPLAIN QUERY PLAN " if kind == "sqlite" else "EXPLAIN "
                plan = " ".join(
                    str(row[-1]) for row in await conn.exec_driver_sql(prefix + str(compiled))
                )
                assert f"ix_{table.name}_{column.name}" in plan, plan
                assert "SCAN " + table.name + " " not in plan + " ", plan
