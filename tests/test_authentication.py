"""Token checking on the platform's Starlette routes (RFC 6750)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import (
    AccessToken,
    ClientStatus,
    OAuthSettings,
    TokenError,
    TokenErrorKind,
    TokenVerifier,
    create_oauth_app,
)
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    TokenUser,
    bearer_error_response,
    requires_token,
)
from starlette_broker_oauth.security import hash_secret, new_secret, utcnow

from .conftest import ISSUER, Platform, open_storage, seed_platform

pytestmark = pytest.mark.anyio


def describe(request: Request) -> Response:
    user = request.user
    if isinstance(user, TokenUser):
        return JSONResponse(
            {"account_id": str(user.token.account_id), "scopes": request.auth.scopes}
        )
    return JSONResponse({"anonymous": not user.is_authenticated})


async def public(request: Request) -> Response:
    return describe(request)


@requires("trading")
async def starlette_requires(request: Request) -> Response:
    return describe(request)


@requires_token("trading")
async def guarded(request: Request) -> Response:
    return describe(request)


@requires_token("trading", "data")
async def guarded_two(request: Request) -> Response:
    return describe(request)


def platform_app(platform: Platform, settings: OAuthSettings | None = None) -> Starlette:
    oauth = create_oauth_app(settings=settings or platform.settings, storage=platform.storage)
    app = Starlette(
        routes=[
            Route("/public", public),
            Route("/starlette-requires", starlette_requires),
            Route("/guarded", guarded),
            Route("/guarded-two", guarded_two),
            Mount("/", oauth),
        ],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(oauth.state.token_verifier),
                on_error=bearer_error_response,
            )
        ],
    )
    app.state.verifier = oauth.state.token_verifier
    return app


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=platform_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


async def issue(platform: Platform, scope: str = "general trading") -> str:
    response = await platform.http.post(
        "/v1/oauth/token", json=platform.grant_body(scope=scope), auth=platform.partner
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"] == "invalid_token"


async def test_valid_token(platform: Platform, http: httpx.AsyncClient) -> None:
    response = await http.get("/guarded", headers=bearer(await issue(platform)))
    assert response.status_code == 200
    assert response.json() == {
        "account_id": str(platform.paper_account),
        "scopes": ["general", "trading"],
    }


async def test_missing_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/guarded")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"  # RFC 6750 §3.1: no error code


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Bearer a b", "Bearer a%b", "Bearer " + "a" * 600]
)
async def test_malformed_token(http: httpx.AsyncClient, header: str) -> None:
    response = await http.get("/guarded", headers={"Authorization": header})
    if header.strip() == "Bearer":
        assert response.status_code == 401  # no credential at all
    else:
        assert_invalid_token(response)


async def test_unknown_token(http: httpx.AsyncClient) -> None:
    assert_invalid_token(await http.get("/guarded", headers=bearer(new_secret())))


async def test_revoked_token(platform: Platform, http: httpx.AsyncClient) -> None:
    token = await issue(platform)
    await platform.http.delete(f"/v1/oauth/token/{token}", auth=platform.partner)
    assert_invalid_token(await http.get("/guarded", headers=bearer(token)))


async def test_expired_token(platform: Platform, http: httpx.AsyncClient) -> None:
    token = new_secret()
    now = utcnow()
    await platform.storage.save_token(
        AccessToken(
            token_hash=hash_secret(token),
            client_id=platform.client_id,
            account_id=platform.paper_account,
            scope="trading",
            account_live=False,
            issued_at=now - timedelta(hours=2),
            expires_at=now - timedelta(hours=1),
        )
    )
    response = await http.get("/guarded", headers=bearer(token))
    assert_invalid_token(response)
    assert response.json()["error_description"] == "the access token expired"


async def test_disabled_client_token(platform: Platform, http: httpx.AsyncClient) -> None:
    token = await issue(platform)
    await platform.storage.set_client_status(platform.client_id, ClientStatus.DISABLED)
    assert_invalid_token(await http.get("/guarded", headers=bearer(token)))


async def test_verifier_reports_each_kind(platform: Platform) -> None:
    verifier = TokenVerifier(grants=platform.storage, clients=platform.storage)
    token = await issue(platform)

    async def kind(value: str | None, **kw: object) -> TokenErrorKind:
        with pytest.raises(TokenError) as info:
            await verifier.verify_header(value, **kw)  # type: ignore[arg-type]
        return info.value.kind

    assert await kind(None) is TokenErrorKind.MISSING
    assert await kind("Basic abc") is TokenErrorKind.MISSING
    assert await kind("Bearer {}") is TokenErrorKind.MALFORMED
    assert await kind("Bearer " + new_secret()) is TokenErrorKind.UNKNOWN
    assert await kind(f"Bearer {token}", scopes=["data"]) is TokenErrorKind.INSUFFICIENT_SCOPE
    verified = await verifier.verify(token)
    assert verified.client_id == platform.client_id
    assert verified.account_live is False
    assert verified.expires_at is None
    await platform.http.delete(f"/v1/oauth/token/{token}", auth=platform.partner)
    assert await kind(f"Bearer {token}") is TokenErrorKind.REVOKED
    other = await issue(platform)
    await platform.storage.set_client_status(platform.client_id, ClientStatus.DISABLED)
    assert await kind(f"Bearer {other}") is TokenErrorKind.CLIENT_DISABLED


async def test_insufficient_scope_names_the_scopes(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    token = await issue(platform, "general trading")
    response = await http.get("/guarded-two", headers=bearer(token))
    assert response.status_code == 403
    assert (
        response.headers["www-authenticate"]
        == 'Bearer error="insufficient_scope", scope="trading data"'
    )
    assert response.json()["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("scope", "guarded_status", "two_status"),
    [
        ("trading", 200, 403),
        ("trading data", 200, 200),
        ("data", 403, 403),
        ("general", 403, 403),
        ("", 403, 403),
    ],
)
async def test_scope_combinations(
    platform: Platform, http: httpx.AsyncClient, scope: str, guarded_status: int, two_status: int
) -> None:
    token = await issue(platform, scope)
    assert (await http.get("/guarded", headers=bearer(token))).status_code == guarded_status
    assert (await http.get("/guarded-two", headers=bearer(token))).status_code == two_status


async def test_starlette_requires_works_unchanged(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    ok = await http.get("/starlette-requires", headers=bearer(await issue(platform, "trading")))
    assert ok.status_code == 200
    lacking = await http.get("/starlette-requires", headers=bearer(await issue(platform, "data")))
    assert lacking.status_code == 403
    assert (await http.get("/starlette-requires")).status_code == 403


async def test_anonymous_routes_stay_anonymous(platform: Platform, http: httpx.AsyncClient) -> None:
    assert (await http.get("/public")).json() == {"anonymous": True}
    basic = await http.get("/public", auth=platform.partner)
    assert basic.json() == {"anonymous": True}
    # A refused token is refused even on an anonymous route (RFC 6750 §3.1).
    assert_invalid_token(await http.get("/public", headers=bearer(new_secret())))


async def test_requires_token_without_middleware(platform: Platform) -> None:
    verifier = TokenVerifier(grants=platform.storage, clients=platform.storage)

    @requires_token("trading", verifier=verifier)
    async def orders(request: Request) -> Response:
        assert isinstance(request.user, TokenUser)
        return JSONResponse({"client_id": request.user.token.client_id})

    app = Starlette(routes=[Route("/orders", orders)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as c:
        ok = await c.get("/orders", headers=bearer(await issue(platform, "trading")))
        assert ok.json() == {"client_id": platform.client_id}
        assert (await c.get("/orders")).headers["www-authenticate"] == "Bearer"
        assert_invalid_token(await c.get("/orders", headers=bearer("nope")))
        lacking = await c.get("/orders", headers=bearer(await issue(platform, "data")))
        assert lacking.status_code == 403


async def test_partner_endpoints_unaffected_by_middleware(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/v1/oauth/authorize", json=platform.grant_body(), auth=platform.partner
    )
    assert response.status_code == 200


# The cache


def cached(settings: OAuthSettings, ttl: float) -> OAuthSettings:
    return dataclasses.replace(settings, token_cache_ttl=timedelta(seconds=ttl))


async def test_revocation_is_immediate_with_cache(
    backend: str, settings: OAuthSettings, tmp_path: Path
) -> None:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, cached(settings, 300))
        async with world.http:
            token = await issue(world)
            assert (await world.account(token)).status_code == 200
            assert (await world.account(token)).status_code == 200  # served from the cache
            revoked = await world.http.delete(f"/v1/oauth/token/{token}", auth=world.partner)
            assert revoked.status_code == 204
            assert (await world.account(token)).status_code == 401


async def test_replay_revocation_is_immediate_with_cache(
    backend: str, settings: OAuthSettings, tmp_path: Path
) -> None:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, cached(settings, 300))
        async with world.http:
            code = await world.code()
            token = (await world.exchange(code)).json()["access_token"]
            assert (await world.account(token)).status_code == 200
            assert (await world.exchange(code)).status_code == 400
            assert (await world.account(token)).status_code == 401


async def test_cache_bound_for_changes_made_behind_its_back(
    backend: str, settings: OAuthSettings, tmp_path: Path
) -> None:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, cached(settings, 0.5))
        async with world.http:
            token = await issue(world)
            assert (await world.account(token)).status_code == 200
            await storage.set_client_status(world.client_id, ClientStatus.DISABLED)
            # Within the bound the cached answer may stand; past it, never.
            world.clock.advance(timedelta(seconds=0.5))
            assert (await world.account(token)).status_code == 401


async def test_cache_never_serves_an_expired_token(
    backend: str, settings: OAuthSettings, tmp_path: Path
) -> None:
    timed = dataclasses.replace(cached(settings, 300), access_token_lifetime=timedelta(seconds=1))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, timed)
        async with world.http:
            token = await issue(world)
            assert (await world.account(token)).status_code == 200
            world.clock.advance(timedelta(seconds=1))
            assert (await world.account(token)).status_code == 401


async def test_cache_off_sees_changes_at_once(platform: Platform) -> None:
    token = await issue(platform)
    assert (await platform.account(token)).status_code == 200
    await platform.storage.set_client_status(platform.client_id, ClientStatus.DISABLED)
    assert (await platform.account(token)).status_code == 401


async def test_cache_is_bounded_in_size(platform: Platform) -> None:
    verifier = TokenVerifier(
        grants=platform.storage,
        clients=platform.storage,
        cache_ttl=timedelta(seconds=60),
        cache_size=3,
    )
    tokens = [await issue(platform) for _ in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._cache) == 3
    for token in tokens:  # evicted ones are simply loaded again
        assert (await verifier.verify(token)).client_id == platform.client_id


async def test_stale_entries_leave_as_new_ones_arrive(platform: Platform) -> None:
    verifier = TokenVerifier(
        grants=platform.storage,
        clients=platform.storage,
        cache_ttl=timedelta(seconds=60),
        cache_size=100,
        clock=platform.clock,
    )
    # (On SQLite the cache keeps an entry a second at most: another process's revocation
    # cannot reach it.)
    ttl = verifier.cache_ttl
    assert ttl == (timedelta(seconds=1) if platform.kind == "sqlite" else timedelta(seconds=60))
    old = [await issue(platform) for _ in range(3)]
    for token in old:
        await verifier.verify(token)
    platform.clock.advance(ttl * 0.5)
    middle = await issue(platform)
    await verifier.verify(middle)
    platform.clock.advance(ttl * 0.51)  # the first three are stale, not middle
    newest = await issue(platform)
    await verifier.verify(newest)
    assert list(verifier._cache) == [middle, newest]
    assert verifier.cached(middle) is not None
    assert all(verifier.cached(token) is None for token in old)
