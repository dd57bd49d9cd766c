"""The security baseline, one test per rule of RFC 9700 / OAuth 2.1 (and the RFCs they cite)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from .conftest import Platform, full_settings, open_storage, pkce_pair, seed_full_platform

pytestmark = pytest.mark.anyio

REGISTERED = "https://app.example.com/callback"
LOOKALIKES = [
    "https://app.example.com/callback/",  # trailing slash
    "https://APP.example.com/callback",  # case of the host
    "https://app.example.com/Callback",  # case of the path
    "https://app.example.com/callback?next=1",  # added query
    "https://app.example.com/callback#frag",  # fragment
    "https://app.example.com@evil.example/callback",  # userinfo trick
    "https://app.example.com/callback/..%2f..%2fevil",  # encoded path traversal
    "https://app.example.com/callback/../other",  # dot segments
    "http://app.example.com/callback",  # scheme downgrade
    "https://app.example.com:443/callback",  # explicit default port
]


@pytest.mark.parametrize("redirect_uri", LOOKALIKES)
async def test_rfc9700_4_1_3_exact_redirect_uri_match(full: Platform, redirect_uri: str) -> None:
    assert redirect_uri != REGISTERED
    partner = await full.authorize(redirect_uri=redirect_uri)
    assert partner.status_code == 422
    details = await full.http.get(
        f"/v1/oauth/clients/{full.client_id}",
        params={"redirect_uri": redirect_uri},
        auth=full.partner,
    )
    assert details.status_code == 422
    hosted = await full.http.get(
        "/oauth/authorize?"
        + urlencode(
            {"response_type": "code", "client_id": full.client_id, "redirect_uri": redirect_uri}
        ),
        headers={"Cookie": f"session={full.paper_account}"},
    )
    assert hosted.status_code == 400
    assert "location" not in hosted.headers
    code = await full.code()
    exchange = await full.http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        auth=(full.client_id, full.client_secret),
    )
    assert exchange.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "unknown-client", "redirect_uri": "https://evil.example/cb"},
        {"redirect_uri": "https://evil.example/cb"},
        {"client_id": "", "redirect_uri": REGISTERED},
        {"redirect_uri": "https://evil.example/cb", "scope": "bogus", "response_type": "token"},
    ],
)
async def test_rfc9700_4_11_no_redirect_on_invalid_client_or_redirect_uri(
    full: Platform, params: dict[str, str]
) -> None:
    query = {"response_type": "code", "client_id": full.client_id, "state": "s"} | params
    for cookie in ({"Cookie": f"session={full.paper_account}"}, {}):
        response = await full.http.get("/oauth/authorize?" + urlencode(query), headers=cookie)
        assert response.status_code == 400
        assert "location" not in response.headers


async def test_rfc9700_2_1_1_pkce_s256_only(full: Platform) -> None:
    _, challenge = pkce_pair()
    for method in ("plain", "", "s256", "S512"):
        response = await full.authorize(code_challenge=challenge, code_challenge_method=method)
        assert response.status_code == 422, method
    doc = (await full.http.get("/.well-known/oauth-authorization-server")).json()
    assert doc["code_challenge_methods_supported"] == ["S256"]


@pytest.mark.parametrize(
    "verifier", ["a" * 42, "a" * 129, "a" * 42 + "!", "a" * 42 + " ", "é" * 43]
)
async def test_rfc7636_4_1_code_verifier_syntax_enforced(full: Platform, verifier: str) -> None:
    _, challenge = pkce_pair()
    code = await full.code(code_challenge=challenge, code_challenge_method="S256")
    response = await full.exchange(code, code_verifier=verifier)
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}


async def test_rfc6749_4_1_2_code_lifetime(backend: str, tmp_path: Path) -> None:
    assert full_settings().code_lifetime <= timedelta(seconds=60)
    settings = full_settings(code_lifetime=timedelta(seconds=1))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, settings)
        async with world.http:
            code = await world.code()
            world.clock.advance(timedelta(seconds=1))
            response = await world.exchange(code)
            assert response.json()["error"] == "invalid_grant"


async def test_rfc6749_4_1_3_code_bound_to_client(full: Platform) -> None:
    thief = await full.storage.create_client(name="Thief", redirect_uris=[REGISTERED])
    code = await full.code()
    stolen = await full.http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REGISTERED},
        auth=(thief.client_id, thief.client_secret),
    )
    assert stolen.json()["error"] == "invalid_grant"


async def test_rfc9700_4_5_code_replay_revokes_issued_tokens(full: Platform) -> None:
    code = await full.code()
    first = (await full.exchange(code)).json()
    assert (await full.account(first["access_token"])).status_code == 200
    assert (await full.exchange(code)).json()["error"] == "invalid_grant"
    assert (await full.account(first["access_token"])).status_code == 401
    refreshed = await full.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(full.client_id, full.client_secret),
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_rfc9700_4_14_2_refresh_token_rotation(full: Platform) -> None:
    first = (await full.exchange(await full.code())).json()
    second = await full.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(full.client_id, full.client_secret),
    )
    assert second.json()["refresh_token"] != first["refresh_token"]


async def test_rfc9700_4_14_2_refresh_token_reuse_revokes_the_grant(full: Platform) -> None:
    first = (await full.exchange(await full.code())).json()

    async def use(token: str) -> httpx.Response:
        return await full.http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=(full.client_id, full.client_secret),
        )

    second = (await use(first["refresh_token"])).json()
    assert (await use(first["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await full.account(second["access_token"])).status_code == 401
    assert (await use(second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_rfc6749_2_3_1_unknown_client_and_wrong_secret_indistinguishable(
    full: Platform,
) -> None:
    async def pair_of(path: str, **form: str) -> tuple[httpx.Response, httpx.Response]:
        wrong = await full.http.post(path, data=form, auth=(full.client_id, "wrong"))
        unknown = await full.http.post(path, data=form, auth=("no-such-client", "wrong"))
        return wrong, unknown

    for path, form in (
        ("/oauth/token", {"grant_type": "authorization_code", "code": "c", "redirect_uri": "r"}),
        ("/oauth/revoke", {"token": "t"}),
        ("/oauth/introspect", {"token": "t"}),
    ):
        wrong, unknown = await pair_of(path, **form)
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.content == unknown.content
        assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    partner_wrong = await full.authorize(client_secret="wrong")
    partner_unknown = await full.authorize(client_id="no-such-client")
    assert partner_wrong.content == partner_unknown.content


async def test_rfc6749_5_1_no_store_on_token_responses(full: Platform) -> None:
    good = await full.exchange(await full.code())
    refreshed = await full.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": good.json()["refresh_token"]},
        auth=(full.client_id, full.client_secret),
    )
    responses = [
        good,
        refreshed,
        await full.exchange("bad-code"),
        await full.http.post("/oauth/token", data={"grant_type": "password"}),
        await full.http.post("/v1/oauth/token", json=full.grant_body(), auth=full.partner),
        await full.authorize(),
    ]
    for response in responses:
        assert response.headers["cache-control"] == "no-store", response.request.url
        assert response.headers["pragma"] == "no-cache"


async def test_no_secret_in_any_log_line_or_error(
    full: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [full.client_secret, full.partner[1]]
    bodies: list[str] = []

    def seen(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:  # an error: it must not echo a credential
            bodies.append(response.text + repr(response.headers))
        data: dict[str, Any] = response.json() if response.content else {}
        return data

    verifier, challenge = pkce_pair()
    code = seen(await full.authorize(code_challenge=challenge, code_challenge_method="S256"))[
        "code"
    ]
    tokens = seen(await full.exchange(code, code_verifier=verifier))
    secrets += [code, verifier, tokens["access_token"], tokens["refresh_token"]]
    seen(await full.exchange(code, code_verifier=verifier))  # replay
    seen(await full.exchange(code, code_verifier="x" * 43))
    rotated = seen(
        await full.http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(full.client_id, full.client_secret),
        )
    )
    secrets += [r for r in (rotated.get("access_token"), rotated.get("refresh_token")) if r]
    direct = seen(
        await full.http.post("/v1/oauth/token", json=full.grant_body(), auth=full.partner)
    )
    secrets.append(direct["access_token"])
    seen(await full.account(direct["access_token"] + "x"))
    seen(await full.http.delete(f"/v1/oauth/token/{direct['access_token']}", auth=full.partner))
    seen(await full.authorize(client_secret=full.client_secret + "x"))
    seen(
        await full.http.post(
            "/oauth/introspect",
            data={"token": direct["access_token"]},
            auth=(full.client_id, full.client_secret),
        )
    )
    seen(
        await full.http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": "x"},
            auth=(full.client_id, full.client_secret + "x"),
        )
    )
    # Every server-side logger (the library, Authlib, SQLAlchemy, Starlette); the test's own
    # HTTP client logs request URLs, and the seed's DELETE puts the token in one.
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(
        record.getMessage() + repr(record.args) + (record.exc_text or "")
        for record in server_records
    )
    assert server_records  # the flow did log
    assert len(bodies) >= 5  # and did fail
    everything = logged + "\n".join(bodies)
    for secret in secrets:
        assert secret not in everything
