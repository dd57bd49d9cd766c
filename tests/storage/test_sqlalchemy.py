"""The SQLAlchemy storage: what reaches the disk, and what survives a restart."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from starlette_broker_oauth import (
    ConfigurationError,
    OAuthSettings,
    SQLAlchemyStorage,
    StorageUnavailable,
)
from starlette_broker_oauth.models import AccessToken
from starlette_broker_oauth.security import hash_secret
from starlette_broker_oauth.storage.sqlalchemy.database import is_disconnect

from ..conftest import (
    ISSUER,
    POSTGRES_URL,
    REDIRECT_URI,
    build_platform,
    drop_tables,
    pkce_pair,
    seed_platform,
)

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


async def test_a_write_waits_out_another_process_without_stopping_the_loop(
    tmp_path: Path, settings: OAuthSettings
) -> None:
    """While another connection holds SQLite's write lock, an issuance waits its turn (it
    neither fails nor blocks): the same process keeps answering token checks, and the
    issuance completes once the lock is released."""
    path = tmp_path / "oauth.db"
    async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{path}") as storage:
        world = await seed_platform("sqlite", storage, settings)
        async with world.http:
            token = (await world.exchange(await world.code())).json()["access_token"]
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # another process, writing
            answers: list[httpx.Response] = []

            async def issue() -> None:
                answers.append(
                    await world.http.post(
                        "/v1/oauth/token", json=world.grant_body(), auth=world.partner
                    )
                )

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(issue)
                for _ in range(20):  # the loop is free: other requests are answered
                    assert (await world.account(token)).status_code == 200
                    await anyio.sleep(0.005)
                assert answers == [], "the issuance did not wait for the lock"
                other.execute("COMMIT")
            other.close()
            assert answers[0].status_code == 200, answers[0].text
            issued = answers[0].json()["access_token"]
            assert (await world.account(issued)).status_code == 200


@pytest.mark.parametrize("kind", ["sqlite", "sqlite-memory", "postgres"])
async def test_a_failed_redemption_writes_nothing(
    kind: str, tmp_path: Path, settings: OAuthSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """The code is spent and its token saved in one transaction: when saving the token
    fails, the code is not spent, and can be redeemed once the fault is gone."""
    if kind == "postgres" and POSTGRES_URL is None:
        pytest.skip("needs the PostgreSQL of scripts/with-postgres")
    url = {
        "sqlite": f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}",
        "sqlite-memory": "sqlite+aiosqlite://",
        "postgres": POSTGRES_URL,
    }[kind]
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    storage = SQLAlchemyStorage(str(url), table_prefix=prefix)
    tokens = f"{prefix}tokens"
    if kind == "postgres":
        fault = [
            f"CREATE FUNCTION {prefix}fail() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'no room for tokens'; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER {prefix}fail BEFORE INSERT ON {tokens} "
            f"FOR EACH ROW EXECUTE FUNCTION {prefix}fail()",
        ]
        cure = [f"DROP TRIGGER {prefix}fail ON {tokens}", f"DROP FUNCTION {prefix}fail()"]
    else:
        fault = [
            f"CREATE TRIGGER {prefix}fail BEFORE INSERT ON {tokens} "
            "BEGIN SELECT RAISE(ABORT, 'no room for tokens'); END"
        ]
        cure = [f"DROP TRIGGER {prefix}fail"]
    async with storage:
        try:
            world = await seed_platform(kind, storage, settings)
            async with world.http:
                code = await world.code()
                async with storage.engine.begin() as conn:
                    for statement in fault:
                        await conn.exec_driver_sql(statement)
                # A failing database is a bug: answered, then raised on to the platform.
                transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                    failed = await http.post(
                        "/oauth/token",
                        data={
                            "grant_type": "authorization_code",
                            "code": code,
                            "redirect_uri": world.redirect_uri,
                        },
                        auth=(world.client_id, world.client_secret),
                    )
                assert (failed.status_code, failed.json()) == (
                    500,
                    {"error": "server_error", "error_description": "internal server error"},
                )
                async with storage.engine.begin() as conn:
                    for statement in cure:
                        await conn.exec_driver_sql(statement)
                    spent = await conn.scalar(
                        sa.select(sa.func.count()).where(
                            storage.tables.codes.c.used_at.is_not(None)
                        )
                    )
                    saved = await conn.scalar(
                        sa.select(sa.func.count(storage.tables.tokens.c.token_hash))
                    )
                assert (spent, saved) == (0, 0)
                assert "no room for tokens" in caplog.text  # the fault is logged, not shown
                exchanged = await world.exchange(code)
                assert exchanged.status_code == 200, exchanged.text
                assert (await world.account(exchanged.json()["access_token"])).status_code == 200
        finally:
            await drop_tables(storage)


async def test_every_sqlite_connection_has_the_databases_own_settings(tmp_path: Path) -> None:
    """WAL, ``synchronous=NORMAL``, automatic checkpoints, a journal size limit and a busy
    timeout, on the engine's connections (the requests' engine shares the settings)."""
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}")
    async with storage, storage.engine.connect() as conn:
        values = {
            name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in (
                "journal_mode",
                "synchronous",
                "wal_autocheckpoint",
                "journal_size_limit",
                "busy_timeout",
                "foreign_keys",
            )
        }
    assert values == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "wal_autocheckpoint": 1000,
        "journal_size_limit": 64 * 1024 * 1024,
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }


async def test_the_log_stays_bounded_while_another_process_writes(tmp_path: Path) -> None:
    """Thousands of writes, with another process writing all along, leave the write-ahead
    log about the size of one checkpoint's pages: SQLite's automatic checkpoints copy it
    into the database and rewind it, and the journal size limit cuts it back."""
    path = tmp_path / "oauth.db"
    stop = threading.Event()

    def other_process() -> None:  # writes a page about every millisecond
        conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        conn.execute("CREATE TABLE IF NOT EXISTS other (n INTEGER PRIMARY KEY, v BLOB)")
        while not stop.is_set():
            conn.execute("INSERT INTO other (v) VALUES (randomblob(3000))")
            time.sleep(0.001)
        conn.close()

    async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{path}") as storage:
        save = await _token_saver(storage)
        writer = threading.Thread(target=other_process)
        writer.start()
        try:
            for _ in range(40):
                await save(50)
                await anyio.sleep(0.01)
        finally:
            stop.set()
            await anyio.to_thread.run_sync(writer.join)
        wal = (tmp_path / "oauth.db-wal").stat().st_size
        written = _log_pages(path)
    # 2000 tokens wrote about 12,000 pages and the other process a few thousand more;
    # a checkpoint runs every 1000.
    assert written < 2500, f"the log holds {written} pages: it was not rewound"
    assert wal < 16 * 1024 * 1024, f"the log file is {wal} bytes"


PAGE = 4096 + 24  # a page in the log, with its frame header


def _log_pages(path: Path) -> int:
    """How many pages the log holds now."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _, pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return int(pages)


async def _token_saver(storage: SQLAlchemyStorage) -> Callable[[int], Awaitable[None]]:
    client = await storage.create_client(name="c", redirect_uris=[REDIRECT_URI])
    account = await storage.create_account()

    async def save(n: int) -> None:
        for _ in range(n):
            await storage.save_token(
                AccessToken(
                    token_hash=hash_secret(uuid.uuid4().hex),
                    client_id=client.client_id,
                    account_id=account.account_id,
                    scope="general",
                    account_live=False,
                    issued_at=datetime.now(UTC),
                )
            )

    return save


async def test_postgres_options_of_sqlalchemys_driver_reach_every_connection(
    settings: OAuthSettings,
) -> None:
    """Options written for SQLAlchemy's asyncpg dialect (in the URL or in
    ``connect_args``) open the storage and serve requests, and the connection arguments
    reach every connection: the engine's, the hot path's, and the revocation listener's,
    which is one of the engine's."""
    if POSTGRES_URL is None:
        pytest.skip("needs the PostgreSQL of scripts/with-postgres")
    name = f"broker-{uuid.uuid4().hex[:8]}"
    storage = SQLAlchemyStorage(
        f"{POSTGRES_URL}?prepared_statement_cache_size=0",
        table_prefix=f"t{uuid.uuid4().hex[:10]}_",
        engine_options={
            "connect_args": {
                "prepared_statement_cache_size": 0,
                "server_settings": {"application_name": name},
            }
        },
    )
    async with storage:
        try:
            storage.add_revocation_listener(lambda message: None)  # a token cache listens
            world = await seed_platform("postgres", storage, settings)
            async with world.http:
                token = (await world.exchange(await world.code())).json()["access_token"]
                assert (await world.account(token)).status_code == 200
            query = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n "
                "AND query LIKE 'LISTEN%'"
            )
            for _ in range(100):
                async with storage.engine.connect() as conn:
                    listening = await conn.scalar(query, {"n": name})
                if listening:
                    break
                await anyio.sleep(0.05)
            assert listening == 1  # the listener's connection has the engine's settings
        finally:
            await drop_tables(storage)


async def test_a_file_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    """Writes that find the file locked by another process for longer than the busy
    timeout (the driver's ``timeout``) get the storage's 'unavailable' answer, and write
    nothing; the next write after the lock is released succeeds."""
    path = tmp_path / "oauth.db"
    storage = SQLAlchemyStorage(
        f"sqlite+aiosqlite:///{path}", engine_options={"connect_args": {"timeout": 0.3}}
    )
    async with storage:
        save = await _token_saver(storage)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await save(1)
                outcomes.append("saved")
            except StorageUnavailable:
                outcomes.append("unavailable")

        started = time.monotonic()
        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(one)
        waited = time.monotonic() - started
        other.execute("ROLLBACK")
        other.close()
        assert outcomes == ["unavailable"] * 5
        # Each waited at most the busy timeout for its turn and as long for the lock, not
        # one timeout after another (1.5 s for five).
        assert waited < 1.2, f"the writers waited {waited:.1f}s"
        async with storage.engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(storage.tables.tokens))
        assert count == 0
        await save(1)


async def test_a_partner_revocation_is_one_transaction_on_one_connection(
    settings: OAuthSettings,
) -> None:
    """A partner's ``DELETE`` of a token issued directly ends its grant (the token and the
    client's unused codes for the account) in one transaction, and announces it to every
    process in a second (``NOTIFY``); its reads share the request's one connection."""
    if POSTGRES_URL is None:
        pytest.skip("needs the PostgreSQL of scripts/with-postgres")
    storage = SQLAlchemyStorage(POSTGRES_URL, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    async with storage:
        try:
            world = await seed_platform("postgres", storage, settings)
            async with world.http:
                issued = await world.http.post(
                    "/v1/oauth/token", json=world.grant_body(), auth=world.partner
                )
                token = issued.json()["access_token"]
                pending = await world.code()
                commits: list[str] = []
                checkouts: list[object] = []

                def committed(conn: sa.Connection) -> None:
                    # A commit of a connection in autocommit writes nothing.
                    level = conn.get_execution_options().get("isolation_level")
                    if level != "AUTOCOMMIT":
                        commits.append(str(level))

                def checked_out(*args: object) -> None:
                    checkouts.append(args)

                sync_engine = storage.engine.sync_engine
                sa.event.listen(sync_engine, "commit", committed)
                sa.event.listen(sync_engine.pool, "checkout", checked_out)
                try:
                    deleted = await world.http.delete(
                        f"/v1/oauth/token/{token}", auth=world.partner
                    )
                finally:
                    sa.event.remove(sync_engine, "commit", committed)
                    sa.event.remove(sync_engine.pool, "checkout", checked_out)
                assert deleted.status_code == 204
                # The revocation and its announcement, on the request's one connection.
                assert commits == ["READ COMMITTED", "READ COMMITTED"]
                assert len(checkouts) == 1
                assert (await world.account(token)).status_code == 401
                refused = await world.exchange(pending)
                assert refused.status_code == 400, refused.text
        finally:
            await drop_tables(storage)


async def test_a_missing_table_is_a_bug_not_an_outage(tmp_path: Path) -> None:
    """SQLite answers 'no such table' with the same exception class as 'database is
    locked': only the latter is the storage's 'unavailable' (503); the former is raised as
    it is (a 500, logged), like PostgreSQL's."""
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}", migrate=False)
    async with storage:
        with pytest.raises(sa.exc.OperationalError) as raised:
            await storage.get_client("nobody")
    assert "no such table" in str(raised.value)
    assert not isinstance(raised.value, StorageUnavailable)


async def test_a_write_cancelled_by_asyncio_leaves_the_next_one_whole(tmp_path: Path) -> None:
    """A write waiting for another process's lock, cancelled by an asyncio timeout (as a
    host's timeout middleware does), goes on in its thread; the next write waits for it
    instead of sharing its connection, and both complete once the lock is free."""
    import asyncio

    path = tmp_path / "oauth.db"
    async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{path}") as storage:
        save = await _token_saver(storage)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(save(1), timeout=0.2)
        second = asyncio.ensure_future(save(1))
        await anyio.sleep(0.3)
        other.execute("COMMIT")
        other.close()
        await second
        await anyio.sleep(0.2)  # the first thread's transaction has ended
        async with storage.engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(storage.tables.tokens))
        assert count == 2
        await save(1)


async def test_a_failed_notify_still_tells_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The revocation has committed when it is announced: if the ``NOTIFY`` to the other
    processes fails, this process's token caches have heard it already."""
    if POSTGRES_URL is None:
        pytest.skip("needs the PostgreSQL of scripts/with-postgres")
    from starlette_broker_oauth.storage.base import TokensRevoked
    from starlette_broker_oauth.storage.sqlalchemy import repository

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise StorageUnavailable("ConnectionDoesNotExistError")

    monkeypatch.setattr(repository, "notify", unreachable)
    storage = SQLAlchemyStorage(POSTGRES_URL, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    heard: list[object] = []
    async with storage:
        try:
            storage.add_revocation_listener(heard.append)
            with pytest.raises(StorageUnavailable):
                await storage.announce(TokensRevoked(("a" * 64,)))
            assert TokensRevoked(("a" * 64,)) in heard
        finally:
            await drop_tables(storage)


async def test_a_task_started_in_a_unit_of_work_takes_its_own_connection() -> None:
    """A unit of work's connection is its task's: a task started inside it (which inherits
    the context) reads on a connection of its own, and nothing runs on the unit's once it
    has ended."""
    if POSTGRES_URL is None:
        pytest.skip("needs the PostgreSQL of scripts/with-postgres")
    storage = SQLAlchemyStorage(POSTGRES_URL, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    checkouts: list[object] = []

    def checked_out(*args: object) -> None:
        checkouts.append(args)

    async with storage:
        try:
            pool = storage.engine.sync_engine.pool
            sa.event.listen(pool, "checkout", checked_out)
            later: list[object] = []

            async def child() -> None:
                assert await storage.get_client("nobody") is None

            async with anyio.create_task_group() as outlive, storage.unit_of_work():
                assert await storage.get_client("nobody") is None
                assert await storage.get_client("nobody") is None
                assert len(checkouts) == 1  # the unit's
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(child)
                assert len(checkouts) == 2  # the child's own

                async def after_the_unit() -> None:
                    await anyio.sleep(0.05)
                    later.append(await storage.get_client("nobody"))

                outlive.start_soon(after_the_unit)
            assert later == [None]
            assert len(checkouts) == 3
            sa.event.remove(pool, "checkout", checked_out)
        finally:
            await drop_tables(storage)


async def test_many_storages_opening_a_new_file_at_once_all_open(tmp_path: Path) -> None:
    """Switching a new file to WAL needs it to itself, and SQLite refuses two connections
    asking at once without waiting: workers starting together on a new file take turns,
    and every one opens (and upgrades) it."""
    outcomes: list[str] = []
    for round_ in range(10):
        path = tmp_path / f"new-{round_}.db"

        async def start(path: Path = path) -> None:
            try:
                async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{path}") as storage:
                    outcomes.append(str(await storage.current_revision()))
            except StorageUnavailable as exc:
                outcomes.append(f"unavailable: {exc}")

        async with anyio.create_task_group() as tasks:
            for _ in range(8):
                tasks.start_soon(start)
    assert outcomes == ["0007"] * 80


def _postgres_errors() -> list[tuple[BaseException, bool]]:
    """Failures as the driver and SQLAlchemy raise them, and whether each means the
    database is away (the worker then answers 503 at once until it is back)."""
    from asyncpg import exceptions as errors

    return [
        (ConnectionRefusedError(111, "refused"), True),
        (ConnectionResetError(104, "reset"), True),
        (errors.AdminShutdownError("terminated by administrator command"), True),  # 57P01
        (errors.CannotConnectNowError("the database system is starting up"), True),  # 57P03
        (errors.ConnectionDoesNotExistError("closed in the middle of operation"), True),
        (errors.ConnectionFailureError("connection failure"), True),  # 08006
        (
            sa_exc.InterfaceError("SELECT 1", {}, Exception("closed"), connection_invalidated=True),
            True,
        ),
        (sa_exc.OperationalError("SELECT 1", {}, errors.AdminShutdownError("x")), True),
        # Busy, not away: a statement that timed out, a full pool, a conflict.
        (TimeoutError(), False),
        (sa_exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached"), False),
        (errors.TooManyConnectionsError("too many clients"), False),  # 53300
        (errors.SerializationError("could not serialize access"), False),  # 40001
        (errors.DeadlockDetectedError("deadlock detected"), False),  # 40P01
        (sa_exc.OperationalError("SELECT 1", {}, errors.SerializationError("x")), False),
        (errors.QueryCanceledError("canceling statement due to statement timeout"), False),
    ]


@pytest.mark.parametrize(("error", "away"), _postgres_errors(), ids=lambda v: repr(v)[:60])
def test_what_says_the_database_is_away(error: BaseException, away: bool) -> None:
    assert is_disconnect(error) is away


async def test_the_listener_comes_back_as_fast_after_every_loss() -> None:
    """A LISTEN connection that worked and was lost is retried after the shortest wait,
    however many times that happened before: the backoff grows only while connecting
    fails. (A wait that grew with every loss would leave a worker deaf to other workers'
    revocations for seconds after each blip.)"""
    if POSTGRES_URL is None:
        pytest.skip("needs the PostgreSQL of scripts/with-postgres")
    storage = SQLAlchemyStorage(POSTGRES_URL, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    resets: list[object] = []
    async with storage:
        try:
            storage.add_revocation_listener(resets.append)
            channel = storage.revocation_channel
            gaps: list[float] = []
            for _ in range(6):
                with anyio.fail_after(10):
                    while not storage.listener_connected:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                async with storage.engine.connect() as conn:
                    killed = await conn.scalar(
                        sa.text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE query LIKE :listen"
                        ),
                        {"listen": f'LISTEN "{channel}"%'},
                    )
                assert killed == 1
                lost = time.monotonic()
                with anyio.fail_after(10):
                    while storage.listener_connected:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                    while not storage.listener_connected:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                gaps.append(time.monotonic() - lost)
            # The shortest wait is 0.1 s; a backoff doubling from it would have reached
            # 3.2 s at the sixth loss.
            assert max(gaps) < 1.5, gaps
        finally:
            await drop_tables(storage)
