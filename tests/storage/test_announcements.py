"""Revocations reach the token cache once, when - and only if - they commit.

On SQLite with the cache on: a revocation that is still uncommitted while another
transaction commits is not announced early (a check in between sees the token as still
valid, as it is), is announced the moment it commits (the next check refuses it), and a
revocation that rolls back is never announced.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.util import await_only

from starlette_broker_oauth import (
    OAuthSettings,
    SQLAlchemyStorage,
    TokenError,
    TokenErrorKind,
    TokenVerifier,
    create_oauth_app,
)
from starlette_broker_oauth.security import hash_secret
from starlette_broker_oauth.storage.base import RevocationMessage, TokensRevoked

from ..conftest import ISSUER, seed_platform

pytestmark = pytest.mark.anyio


class Aborted(Exception):
    """Raised at COMMIT to roll a transaction back."""


class CommitGate:
    """Holds the next COMMIT on the engine until released (or makes it fail)."""

    def __init__(self, storage: SQLAlchemyStorage) -> None:
        self.armed = False
        self.fail = False
        self.reached = anyio.Event()
        self.release = anyio.Event()
        sa.event.listen(storage.engine.sync_engine, "commit", self._on_commit)

    def _on_commit(self, conn: Any) -> None:
        if not self.armed:
            return
        self.armed = False
        self.reached.set()
        await_only(self.release.wait())  # the COMMIT waits; the event loop does not
        if self.fail:
            raise Aborted


@dataclass
class World:
    storage: SQLAlchemyStorage
    http: httpx.AsyncClient
    verifier: TokenVerifier
    partner: tuple[str, str]
    token: str
    heard: list[RevocationMessage]
    account: uuid.UUID


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = OAuthSettings(issuer=ISSUER, token_cache_ttl=timedelta(minutes=5))
    async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}") as storage:
        platform = await seed_platform("sqlite", storage, settings)
        await platform.http.aclose()
        oauth = create_oauth_app(settings=settings, storage=storage)
        # A failed commit is a bug: answered, then raised on to the platform; the tests
        # read the answer.
        transport = httpx.ASGITransport(app=oauth, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            issued = await http.post(
                "/v1/oauth/token", json=platform.grant_body(), auth=platform.partner
            )
            heard: list[RevocationMessage] = []
            storage.add_revocation_listener(heard.append)
            yield World(
                storage=storage,
                http=http,
                verifier=oauth.state.token_verifier,
                partner=platform.partner,
                token=issued.json()["access_token"],
                heard=heard,
                account=platform.paper_account,
            )


async def test_revocation_is_announced_when_it_commits_not_before(world: World) -> None:
    gate = CommitGate(world.storage)
    await world.verifier.verify(world.token)  # cached
    results: list[int] = []

    async def revoke() -> None:
        response = await world.http.delete(f"/v1/oauth/token/{world.token}", auth=world.partner)
        results.append(response.status_code)

    async with anyio.create_task_group() as tg:
        gate.armed = True
        tg.start_soon(revoke)
        await gate.reached.wait()
        # The revocation is written but not committed; another transaction commits now
        # (one that only reads: SQLite's write lock is the revocation's until it commits,
        # and the storage queues its own writers behind it, so this one goes straight to
        # the engine).
        async with world.storage.engine.begin() as conn:
            await conn.execute(sa.text("SELECT 1"))
        assert world.heard == []
        verified = await world.verifier.verify(world.token)  # still valid: not committed
        assert verified.scopes == frozenset({"general", "trading"})
        gate.release.set()
    assert results == [204]
    assert world.heard == [TokensRevoked((hash_secret(world.token),))]
    with pytest.raises(TokenError) as refused:
        await world.verifier.verify(world.token)
    assert refused.value.kind is TokenErrorKind.REVOKED


async def test_a_rolled_back_revocation_is_never_announced(world: World) -> None:
    gate = CommitGate(world.storage)
    await world.verifier.verify(world.token)
    gate.armed, gate.fail = True, True
    gate.release.set()
    response = await world.http.delete(f"/v1/oauth/token/{world.token}", auth=world.partner)
    assert response.status_code == 500
    assert response.json() == {"code": 50010000, "message": "internal server error"}
    assert world.heard == []
    stored = await world.storage.get_token(hash_secret(world.token))
    assert stored is not None
    assert stored.revoked_at is None
    assert (await world.verifier.verify(world.token)).client_id == stored.client_id
    # The next revocation is announced once, for itself alone.
    response = await world.http.delete(f"/v1/oauth/token/{world.token}", auth=world.partner)
    assert response.status_code == 204
    assert world.heard == [TokensRevoked((hash_secret(world.token),))]


async def test_a_check_that_races_a_revocation_does_not_cache_it(world: World) -> None:
    """A check that read the token before a revocation was announced must not put what it
    read into the cache after the announcement."""
    token_hash = hash_secret(world.token)
    original = world.storage.token_with_client
    read = anyio.Event()
    resume = anyio.Event()

    async def slow_read(token_hash_: str) -> Any:
        found = await original(token_hash_)
        read.set()
        await resume.wait()
        return found

    world.storage.token_with_client = slow_read  # type: ignore[method-assign,assignment]
    async with anyio.create_task_group() as tg:
        tg.start_soon(world.verifier.verify, world.token)
        await read.wait()
        world.storage.token_with_client = original  # type: ignore[method-assign]
        assert await world.http.delete(f"/v1/oauth/token/{world.token}", auth=world.partner)
        resume.set()
    assert world.heard == [TokensRevoked((token_hash,))]
    with pytest.raises(TokenError) as refused:
        await world.verifier.verify(world.token)
    assert refused.value.kind is TokenErrorKind.REVOKED
