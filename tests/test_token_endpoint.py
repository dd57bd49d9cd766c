"""Code exchange at POST /oauth/token (RFC 6749 §4.1.3, RFC 7636, RFC 9700 §4.5)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest

from starlette_broker_oauth import ClientStatus, OAuthSettings

from .conftest import BACKENDS, Platform, open_storage, pkce_pair, seed_platform

pytestmark = pytest.mark.anyio

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description", "error_uri"}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", AUTH_METHODS)
async def test_exchange_returns_token(platform: Platform, method: str) -> None:
    code = await platform.code()
    response = await platform.exchange(code, method=method)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "general trading"
    assert "expires_in" not in body
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert (await platform.account(body["access_token"])).json()["client_id"] == platform.client_id


@pytest.mark.parametrize("method", AUTH_METHODS)
async def test_exchange_with_pkce(platform: Platform, method: str) -> None:
    verifier, challenge = pkce_pair()
    code = await platform.code(code_challenge=challenge, code_challenge_method="S256")
    response = await platform.exchange(code, method=method, code_verifier=verifier)
    assert response.status_code == 200, response.text


async def test_pkce_wrong_verifier(platform: Platform) -> None:
    _, challenge = pkce_pair()
    other, _ = pkce_pair()
    code = await platform.code(code_challenge=challenge, code_challenge_method="S256")
    assert_oauth_error(await platform.exchange(code, code_verifier=other), 400, "invalid_grant")


async def test_pkce_missing_verifier(platform: Platform) -> None:
    _, challenge = pkce_pair()
    code = await platform.code(code_challenge=challenge, code_challenge_method="S256")
    assert_oauth_error(await platform.exchange(code), 400, "invalid_request")


async def test_pkce_verifier_syntax(platform: Platform) -> None:
    _, challenge = pkce_pair()
    code = await platform.code(code_challenge=challenge, code_challenge_method="S256")
    response = await platform.exchange(code, code_verifier="too-short")
    assert_oauth_error(response, 400, "invalid_request")


async def test_verifier_without_challenge_is_refused(platform: Platform) -> None:
    verifier, _ = pkce_pair()
    code = await platform.code()
    assert_oauth_error(
        await platform.exchange(code, code_verifier=verifier), 400, "invalid_request"
    )


async def test_redirect_uri_must_match_exactly(platform: Platform) -> None:
    code = await platform.code()
    response = await platform.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": platform.redirect_uri + "/",
        },
        auth=(platform.client_id, platform.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_grant")


async def test_redirect_uri_is_required(platform: Platform) -> None:
    code = await platform.code()
    response = await platform.http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code},
        auth=(platform.client_id, platform.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_grant")


async def test_code_bound_to_client(platform: Platform) -> None:
    other = await platform.storage.create_client(
        name="Other", redirect_uris=[platform.redirect_uri]
    )
    code = await platform.code()
    response = await platform.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": platform.redirect_uri,
        },
        auth=(other.client_id, other.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_grant")
    # The legitimate client can still use it: a foreign attempt does not burn it.
    assert (await platform.exchange(code)).status_code == 200


@pytest.mark.parametrize("method", AUTH_METHODS)
async def test_client_authentication_failures_are_identical(
    platform: Platform, method: str
) -> None:
    code = await platform.code()
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": platform.redirect_uri}

    async def attempt(client_id: str, secret: str) -> httpx.Response:
        if method == "client_secret_basic":
            return await platform.http.post("/oauth/token", data=data, auth=(client_id, secret))
        form = data | {"client_id": client_id, "client_secret": secret}
        return await platform.http.post("/oauth/token", data=form)

    wrong = await attempt(platform.client_id, "wrong")
    unknown = await attempt("unknown-client", "wrong")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


async def test_no_client_authentication(platform: Platform) -> None:
    code = await platform.code()
    response = await platform.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": platform.redirect_uri,
            "client_id": platform.client_id,
        },
    )
    assert_oauth_error(response, 401, "invalid_client")


async def test_unknown_code(platform: Platform) -> None:
    assert_oauth_error(await platform.exchange("no-such-code"), 400, "invalid_grant")


async def test_missing_code(platform: Platform) -> None:
    response = await platform.http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "redirect_uri": platform.redirect_uri},
        auth=(platform.client_id, platform.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_unsupported_grant_type(platform: Platform) -> None:
    response = await platform.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "u", "password": "p"},
        auth=(platform.client_id, platform.client_secret),
    )
    assert_oauth_error(response, 400, "unsupported_grant_type")


async def test_json_body_is_not_accepted(platform: Platform) -> None:
    response = await platform.http.post(
        "/oauth/token",
        json={"grant_type": "authorization_code", "code": "x"},
        auth=(platform.client_id, platform.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_replay_fails_and_revokes_issued_token(platform: Platform) -> None:
    code = await platform.code()
    first = await platform.exchange(code)
    token = first.json()["access_token"]
    assert (await platform.account(token)).status_code == 200
    second = await platform.exchange(code)
    assert_oauth_error(second, 400, "invalid_grant")
    assert (await platform.account(token)).status_code == 401


async def test_disabled_client_cannot_exchange(platform: Platform) -> None:
    code = await platform.code()
    await platform.storage.set_client_status(platform.client_id, ClientStatus.DISABLED)
    response = await platform.exchange(code)
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_grant", "unauthorized_client"}


async def test_code_expires(backend: str, settings: OAuthSettings, tmp_path: Path) -> None:
    short = dataclasses.replace(settings, code_lifetime=timedelta(seconds=1))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, short)
        async with world.http:
            code = await world.code()
            world.clock.advance(timedelta(milliseconds=999))
            fresh = await world.code()
            world.clock.advance(timedelta(milliseconds=1))
            assert_oauth_error(await world.exchange(code), 400, "invalid_grant")
            assert (await world.exchange(fresh)).status_code == 200


async def test_access_token_lifetime_gives_expires_in(
    backend: str, settings: OAuthSettings, tmp_path: Path
) -> None:
    timed = dataclasses.replace(settings, access_token_lifetime=timedelta(seconds=1))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, timed)
        async with world.http:
            body = (await world.exchange(await world.code())).json()
            assert body["expires_in"] == 1
            assert (await world.account(body["access_token"])).status_code == 200
            world.clock.advance(timedelta(seconds=1))
            assert (await world.account(body["access_token"])).status_code == 401


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "memory"], indirect=True)
async def test_concurrent_redemptions_yield_one_token(platform: Platform) -> None:
    code = await platform.code()
    results: list[httpx.Response] = []

    async def redeem() -> None:
        results.append(await platform.exchange(code))

    async with anyio.create_task_group() as tg:
        for _ in range(24):
            tg.start_soon(redeem)
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    losers = [r for r in results if r.status_code != 200]
    assert len(losers) == 23
    assert all(r.json()["error"] == "invalid_grant" for r in losers)
