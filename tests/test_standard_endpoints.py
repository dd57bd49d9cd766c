"""Refresh (RFC 6749 §6), revocation (RFC 7009), introspection (RFC 7662), metadata, events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from starlette_broker_oauth import ClientStatus
from starlette_broker_oauth.events import (
    ClientAuthenticationFailed,
    CodeIssued,
    CodeReplayDetected,
    OAuthEvent,
    RefreshTokenReuseDetected,
    TokenIssued,
    TokenRevoked,
)

from .conftest import BACKENDS, Platform, full_settings, open_storage, seed_full_platform

pytestmark = pytest.mark.anyio


async def pair(world: Platform, scope: str = "general trading") -> dict[str, Any]:
    response = await world.exchange(await world.code(scope=scope))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(
    world: Platform, refresh_token: str, *, scope: str | None = None, auth: Any = None
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is not None:
        data["scope"] = scope
    return await world.http.post(
        "/oauth/token", data=data, auth=auth or (world.client_id, world.client_secret)
    )


async def post(
    world: Platform, path: str, token: str, auth: Any = None, **extra: str
) -> httpx.Response:
    return await world.http.post(
        path, data={"token": token, **extra}, auth=auth or (world.client_id, world.client_secret)
    )


# refresh


async def test_exchange_issues_refresh_token_when_enabled(full: Platform) -> None:
    body = await pair(full)
    assert body["expires_in"] == 900
    assert len(body["refresh_token"]) >= 43
    assert body["refresh_token"] != body["access_token"]


async def test_refresh_rotates(full: Platform) -> None:
    first = await pair(full)
    response = await refresh(full, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert response.headers["cache-control"] == "no-store"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == "general trading"
    assert (await full.account(second["access_token"])).status_code == 200
    third = await refresh(full, second["refresh_token"])
    assert third.status_code == 200


async def test_reused_refresh_token_revokes_the_family(full: Platform) -> None:
    first = await pair(full)
    second = (await refresh(full, first["refresh_token"])).json()
    reused = await refresh(full, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert (await full.account(first["access_token"])).status_code == 401
    assert (await full.account(second["access_token"])).status_code == 401
    assert (await refresh(full, second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_refresh_can_only_narrow_scope(full: Platform) -> None:
    first = await pair(full, "general trading")
    wider = await refresh(full, first["refresh_token"], scope="general trading data")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"
    narrower = await refresh(full, first["refresh_token"], scope="trading")
    assert narrower.status_code == 200
    assert narrower.json()["scope"] == "trading"


async def test_refresh_bound_to_client(full: Platform) -> None:
    other = await full.storage.create_client(name="Other", redirect_uris=[full.redirect_uri])
    first = await pair(full)
    stolen = await refresh(
        full, first["refresh_token"], auth=(other.client_id, other.client_secret)
    )
    assert stolen.json()["error"] == "invalid_grant"
    assert (await refresh(full, first["refresh_token"])).status_code == 200


async def test_refresh_refused_for_disabled_client(full: Platform) -> None:
    first = await pair(full)
    await full.storage.set_client_status(full.client_id, ClientStatus.DISABLED)
    assert (await refresh(full, first["refresh_token"])).status_code in {400, 401}


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "memory"], indirect=True)
async def test_concurrent_refreshes_at_most_one_succeeds(full: Platform) -> None:
    first = await pair(full)
    results: list[httpx.Response] = []

    async def attempt() -> None:
        results.append(await refresh(full, first["refresh_token"]))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(attempt)
    assert [r.status_code for r in results].count(200) <= 1
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code != 200)


async def test_refresh_disabled_by_default(platform: Platform) -> None:
    body = (await platform.exchange(await platform.code())).json()
    assert "refresh_token" not in body
    response = await refresh(platform, "anything")
    assert response.json()["error"] == "unsupported_grant_type"


# revocation


async def test_revoke_access_token(full: Platform) -> None:
    body = await pair(full)
    response = await post(full, "/oauth/revoke", body["access_token"])
    assert response.status_code == 200
    assert (await full.account(body["access_token"])).status_code == 401
    assert (await refresh(full, body["refresh_token"])).status_code == 200


async def test_revoke_refresh_token_ends_the_grant(full: Platform) -> None:
    body = await pair(full)
    response = await post(
        full, "/oauth/revoke", body["refresh_token"], token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    assert (await full.account(body["access_token"])).status_code == 401
    assert (await refresh(full, body["refresh_token"])).json()["error"] == "invalid_grant"


async def test_revoke_unknown_token_is_200(full: Platform) -> None:
    assert (await post(full, "/oauth/revoke", "no-such-token")).status_code == 200


async def test_revoke_only_own_tokens(full: Platform) -> None:
    other = await full.storage.create_client(name="Other", redirect_uris=[full.redirect_uri])
    body = await pair(full)
    response = await post(
        full, "/oauth/revoke", body["access_token"], auth=(other.client_id, other.client_secret)
    )
    assert response.status_code == 200
    assert (await full.account(body["access_token"])).status_code == 200


async def test_revoke_needs_client_authentication(full: Platform) -> None:
    body = await pair(full)
    response = await full.http.post("/oauth/revoke", data={"token": body["access_token"]})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    missing = await full.http.post(
        "/oauth/revoke", data={}, auth=(full.client_id, full.client_secret)
    )
    assert missing.json()["error"] == "invalid_request"
    hint = await post(full, "/oauth/revoke", "x", token_type_hint="id_token")
    assert hint.json()["error"] == "unsupported_token_type"


# introspection


async def test_introspect_active_token(full: Platform) -> None:
    body = await pair(full)
    response = await post(full, "/oauth/introspect", body["access_token"])
    assert response.status_code == 200
    data = response.json()
    assert data["active"] is True
    assert data["client_id"] == full.client_id
    assert data["scope"] == "general trading"
    assert data["sub"] == str(full.paper_account)
    assert data["token_type"] == "Bearer"
    assert data["exp"] - data["iat"] == 900
    refresh_info = (await post(full, "/oauth/introspect", body["refresh_token"])).json()
    assert refresh_info["active"] is True
    assert refresh_info["token_type"] == "refresh_token"


async def test_introspect_inactive_answers_are_identical(backend: str, tmp_path: Path) -> None:
    settings = full_settings(access_token_lifetime=timedelta(seconds=1))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, settings)
        async with world.http:
            expired = await pair(world)
            revoked = await pair(world)
            await post(world, "/oauth/revoke", revoked["access_token"])
            other = await world.storage.create_client(name="O", redirect_uris=[world.redirect_uri])
            foreign = await pair(world)
            world.clock.advance(timedelta(seconds=1))
            answers = [
                await post(world, "/oauth/introspect", "unknown-token"),
                await post(world, "/oauth/introspect", expired["access_token"]),
                await post(world, "/oauth/introspect", revoked["access_token"]),
                await post(
                    world,
                    "/oauth/introspect",
                    foreign["refresh_token"],
                    auth=(other.client_id, other.client_secret),
                ),
            ]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.content == answers[0].content
        assert answer.json() == {"active": False}


async def test_introspect_needs_client_authentication(full: Platform) -> None:
    body = await pair(full)
    response = await full.http.post("/oauth/introspect", data={"token": body["access_token"]})
    assert response.status_code == 401


async def test_introspect_disabled_client_token_is_inactive(full: Platform) -> None:
    body = await pair(full)
    other = await full.storage.create_client(name="Watcher", redirect_uris=[full.redirect_uri])
    assert (await post(full, "/oauth/introspect", body["access_token"])).json()["active"]
    await full.storage.set_client_status(full.client_id, ClientStatus.DISABLED)
    # the disabled client cannot authenticate... its tokens are inactive to anyone allowed
    answer = await post(full, "/oauth/introspect", body["access_token"])
    assert answer.json() == {"active": False}
    assert other.client_id


# metadata


async def test_metadata_lists_every_endpoint(full: Platform) -> None:
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    doc = (await full.http.get("/.well-known/oauth-authorization-server")).json()
    assert doc["revocation_endpoint"].endswith("/oauth/revoke")
    assert doc["introspection_endpoint"].endswith("/oauth/introspect")
    assert doc["authorization_endpoint"].endswith("/oauth/authorize")
    assert doc["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    AuthorizationServerMetadata(doc).validate()


# events


async def test_events_carry_ids_never_secrets(backend: str, tmp_path: Path) -> None:
    events: list[OAuthEvent] = []
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings(), events=events)
        async with world.http:
            code = await world.code()
            body = (await world.exchange(code)).json()
            await world.exchange(code)  # replay
            second = await pair(world)
            rotated = (await refresh(world, second["refresh_token"])).json()
            await refresh(world, second["refresh_token"])  # reuse
            third = await pair(world)
            await world.http.delete(f"/v1/oauth/token/{third['access_token']}", auth=world.partner)
            await world.http.post(
                "/oauth/token",
                data={"grant_type": "authorization_code", "code": "x", "redirect_uri": "y"},
                auth=(world.client_id, "wrong-secret"),
            )
    kinds = {type(e) for e in events}
    assert kinds >= {
        CodeIssued,
        TokenIssued,
        TokenRevoked,
        ClientAuthenticationFailed,
        CodeReplayDetected,
        RefreshTokenReuseDetected,
    }
    reasons = {e.reason for e in events if isinstance(e, TokenRevoked)}
    assert reasons == {"code_replay", "refresh_reuse", "partner_delete"}
    secrets = [
        code,
        body["access_token"],
        second["access_token"],
        second["refresh_token"],
        rotated["access_token"],
        rotated["refresh_token"],
        third["access_token"],
        world.client_secret,
        world.partner[1],
        "wrong-secret",
    ]
    text = repr(events)
    for secret in secrets:
        assert secret not in text


async def test_failing_listener_does_not_break_the_flow(backend: str, tmp_path: Path) -> None:
    def listener(event: OAuthEvent) -> None:
        raise RuntimeError("audit sink down")

    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings())
        from starlette_broker_oauth import create_oauth_app

        app = create_oauth_app(settings=world.settings, storage=storage, on_event=listener)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://broker.test") as http:
            world.http = http
            assert (await world.exchange(await world.code())).status_code == 200


async def test_revoke_refuses_an_unsupported_token_type_hint(full: Platform) -> None:
    body = await pair(full)
    response = await post(full, "/oauth/revoke", body["access_token"], token_type_hint="jwt")
    assert response.status_code == 400  # RFC 7009 §2.2.1
    assert response.json() == {"error": "unsupported_token_type"}
    assert response.headers["cache-control"] == "no-store"
    assert (await full.account(body["access_token"])).status_code == 200  # nothing revoked


async def test_errors_without_a_description_carry_only_the_code(full: Platform) -> None:
    response = await full.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "u", "password": "p"},
        auth=(full.client_id, full.client_secret),
    )
    assert response.status_code == 400
    assert response.json() == {"error": "unsupported_grant_type"}


async def test_introspection_searches_past_a_hint_it_does_not_know(full: Platform) -> None:
    """RFC 7662 §2.1: an unknown hint widens the search; it is no error there."""
    body = await pair(full)
    for hint in ("id_token", "refresh_token", "access_token"):
        answer = await post(full, "/oauth/introspect", body["access_token"], token_type_hint=hint)
        assert answer.status_code == 200
        assert answer.json()["active"] is True
        assert answer.json()["client_id"] == full.client_id
