"""The four seed endpoints, status by status, on every storage backend."""

from __future__ import annotations

import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from starlette_broker_oauth import (
    ClientStatus,
    StorageUnavailable,
    create_oauth_app,
)

from .conftest import ISSUER, FailingClients, FailingPartners, Platform

pytestmark = pytest.mark.anyio

BROKER_SHAPE = {"code", "message"}


def assert_broker_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == BROKER_SHAPE
    assert body["code"] == status * 100000 + 10000
    assert isinstance(body["message"], str)
    assert body["message"]


# GET /v1/oauth/clients/{client_id}


async def test_get_client_200_fields(platform: Platform) -> None:
    response = await platform.http.get(
        f"/v1/oauth/clients/{platform.client_id}",
        params={"response_type": "code", "redirect_uri": platform.redirect_uri, "scope": "general"},
        auth=platform.partner,
    )
    assert response.status_code == 200
    assert response.json() == {
        "client_id": platform.client_id,
        "name": "TradingApp",
        "description": "Sample description",
        "url": "https://app.example.com",
        "terms_of_use": "https://app.example.com/tos",
        "privacy_policy": "https://app.example.com/privacy",
        "status": "ACTIVE",
        "redirect_uri": [platform.redirect_uri, "https://app.example.com/other"],
        "live_trading_approved": False,
    }


async def test_get_client_without_parameters(platform: Platform) -> None:
    response = await platform.http.get(
        f"/v1/oauth/clients/{platform.client_id}", auth=platform.partner
    )
    assert response.status_code == 200


async def test_get_client_tolerates_json_body(platform: Platform) -> None:
    response = await platform.http.request(
        "GET",
        f"/v1/oauth/clients/{platform.client_id}",
        json={"response_type": "token", "redirect_uri": "https://evil.example/cb"},
        auth=platform.partner,
    )
    assert_broker_error(response, 422)


@pytest.mark.parametrize(
    "params",
    [
        {"response_type": "id_token"},
        {"redirect_uri": "https://app.example.com/callback/"},
        {"redirect_uri": "https://APP.example.com/callback"},
        {"scope": "general admin"},
    ],
)
async def test_get_client_422_for_invalid_parameters(
    platform: Platform, params: dict[str, str]
) -> None:
    response = await platform.http.get(
        f"/v1/oauth/clients/{platform.client_id}", params=params, auth=platform.partner
    )
    assert_broker_error(response, 422)


async def test_get_client_401_unknown_and_foreign_client_alike(platform: Platform) -> None:
    foreign = await platform.storage.create_client(
        name="Other", redirect_uris=["https://o.example"]
    )
    unknown = await platform.http.get("/v1/oauth/clients/nope", auth=platform.partner)
    other = await platform.http.get(f"/v1/oauth/clients/{foreign.client_id}", auth=platform.partner)
    assert_broker_error(unknown, 401)
    assert_broker_error(other, 401)
    assert unknown.json() == other.json()


@pytest.mark.parametrize(
    "auth",
    [None, ("wrong", "secret"), "right-key-wrong-secret"],
)
async def test_partner_authentication_401(platform: Platform, auth: object) -> None:
    credentials = (platform.partner[0], "x" * 43) if auth == "right-key-wrong-secret" else auth
    response = await platform.http.get(
        f"/v1/oauth/clients/{platform.client_id}",
        auth=credentials,  # type: ignore[arg-type]
    )
    assert_broker_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_partner_authentication_garbage_header(platform: Platform) -> None:
    response = await platform.http.get(
        f"/v1/oauth/clients/{platform.client_id}", headers={"Authorization": "Basic !!!"}
    )
    assert_broker_error(response, 401)


# POST /v1/oauth/token and POST /v1/oauth/authorize


async def test_issue_token_200_and_it_works(platform: Platform) -> None:
    response = await platform.http.post(
        "/v1/oauth/token", json=platform.grant_body(), auth=platform.partner
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "general trading"
    assert set(body) == {"access_token", "token_type", "scope"}
    assert response.headers["cache-control"] == "no-store"
    me = await platform.account(body["access_token"])
    assert me.status_code == 200
    assert me.json()["account_id"] == str(platform.paper_account)


async def test_issue_token_form_encoded(platform: Platform) -> None:
    response = await platform.http.post(
        "/v1/oauth/token", data=platform.grant_body(), auth=platform.partner
    )
    assert response.status_code == 200


async def test_authorize_200_shape(platform: Platform) -> None:
    response = await platform.authorize(scope="trading")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"code", "client_id", "redirect_uri", "scope"}
    assert body["client_id"] == platform.client_id
    assert body["redirect_uri"] == platform.redirect_uri
    assert body["scope"] == "trading"
    assert len(body["code"]) >= 43


async def test_authorize_form_encoded(platform: Platform) -> None:
    response = await platform.http.post(
        "/v1/oauth/authorize", data=platform.grant_body(), auth=platform.partner
    )
    assert response.status_code == 200


async def test_numeric_scope_is_its_decimal_text(platform: Platform) -> None:
    response = await platform.authorize(scope=7)
    assert_broker_error(response, 422)  # "7" is not a configured scope
    assert "scope" in response.json()["message"].lower()


async def test_empty_scope_grants_no_scope(platform: Platform) -> None:
    response = await platform.authorize(scope="")
    assert response.status_code == 200
    assert response.json()["scope"] == ""


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
@pytest.mark.parametrize(
    "overrides",
    [
        {"client_secret": "wrong-secret"},
        {"client_id": "unknown-client"},
    ],
)
async def test_issue_401(platform: Platform, path: str, overrides: dict[str, str]) -> None:
    response = await platform.http.post(
        path, json=platform.grant_body(**overrides), auth=platform.partner
    )
    assert_broker_error(response, 401)


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
async def test_issue_401_wrong_secret_and_unknown_client_identical(
    platform: Platform, path: str
) -> None:
    wrong = await platform.http.post(
        path, json=platform.grant_body(client_secret="x"), auth=platform.partner
    )
    unknown = await platform.http.post(
        path, json=platform.grant_body(client_id="nobody"), auth=platform.partner
    )
    assert wrong.json() == unknown.json()


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
async def test_issue_401_client_of_another_partner(platform: Platform, path: str) -> None:
    other = await platform.storage.create_client(
        name="Other", redirect_uris=[platform.redirect_uri]
    )
    response = await platform.http.post(
        path,
        json=platform.grant_body(client_id=other.client_id, client_secret=other.client_secret),
        auth=platform.partner,
    )
    assert_broker_error(response, 401)


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "https://app.example.com/callback?x=1"},
        {"redirect_uri": "https://app.example.com/callback#frag"},
        {"redirect_uri": "https://evil.example/callback"},
        {"scope": "general superuser"},
        {"account_id": "not-a-uuid"},
        {"account_id": str(uuid.uuid4())},
        {"client_id": None},
        {"client_secret": None},
        {"redirect_uri": None},
        {"scope": None},
        {"account_id": None},
        {"scope": True},
        {"account_id": ["x"]},
    ],
)
async def test_issue_422(platform: Platform, path: str, overrides: dict[str, object]) -> None:
    body = platform.grant_body(**overrides)
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
    response = await platform.http.post(path, json=body, auth=platform.partner)
    assert_broker_error(response, 422)


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
async def test_issue_422_disabled_client(platform: Platform, path: str) -> None:
    await platform.storage.set_client_status(platform.client_id, ClientStatus.DISABLED)
    response = await platform.http.post(path, json=platform.grant_body(), auth=platform.partner)
    assert_broker_error(response, 422)
    assert "disabled" in response.json()["message"]


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
async def test_issue_422_live_account_without_approval(platform: Platform, path: str) -> None:
    response = await platform.http.post(
        path, json=platform.grant_body(account_id=str(platform.live_account)), auth=platform.partner
    )
    assert_broker_error(response, 422)
    assert "live" in response.json()["message"]


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
async def test_issue_422_response_type_not_allowed_for_client(
    platform: Platform, path: str
) -> None:
    only_other = "code" if path.endswith("token") else "token"
    limited = await platform.storage.create_client(
        name="Limited", redirect_uris=[platform.redirect_uri], response_types=[only_other]
    )
    await platform.storage.allow_partner_client(platform.partner[0], limited.client_id)
    response = await platform.http.post(
        path,
        json=platform.grant_body(client_id=limited.client_id, client_secret=limited.client_secret),
        auth=platform.partner,
    )
    assert_broker_error(response, 422)


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"\xff\xfe", "application/x-www-form-urlencoded", 400),
        (b"<xml/>", "application/xml", 400),
        (b"", "application/json", 422),
        (b"x" * 70000, "application/json", 400),
    ],
)
async def test_malformed_bodies(
    platform: Platform,
    path: str,
    content: bytes,
    content_type: str,
    status: int,
    anyio_backend: str,
) -> None:
    if len(content) > 65536 and anyio_backend == "trio":
        pytest.skip("httpx's ASGITransport leaves its body generator open when the app stops")
    response = await platform.http.post(
        path, content=content, headers={"Content-Type": content_type}, auth=platform.partner
    )
    assert_broker_error(response, status)


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
async def test_duplicate_form_field_is_422(platform: Platform, path: str) -> None:
    body = platform.grant_body()
    content = "&".join(f"{k}={v}" for k, v in body.items()) + "&scope=data"
    response = await platform.http.post(
        path,
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=platform.partner,
    )
    assert_broker_error(response, 422)


async def test_live_account_with_approved_client(platform: Platform) -> None:
    approved = await platform.storage.create_client(
        name="Approved", redirect_uris=[platform.redirect_uri], live_trading_approved=True
    )
    await platform.storage.allow_partner_client(platform.partner[0], approved.client_id)
    response = await platform.http.post(
        "/v1/oauth/token",
        json=platform.grant_body(
            client_id=approved.client_id,
            client_secret=approved.client_secret,
            account_id=str(platform.live_account),
        ),
        auth=platform.partner,
    )
    assert response.status_code == 200


async def test_pkce_plain_is_refused(platform: Platform) -> None:
    response = await platform.authorize(code_challenge="a" * 43, code_challenge_method="plain")
    assert_broker_error(response, 422)


async def test_pkce_challenge_without_method_is_refused(platform: Platform) -> None:
    response = await platform.authorize(code_challenge="a" * 43)
    assert_broker_error(response, 422)


async def test_pkce_malformed_challenge_is_refused(platform: Platform) -> None:
    response = await platform.authorize(code_challenge="short", code_challenge_method="S256")
    assert_broker_error(response, 422)


# DELETE /v1/oauth/token/{token_id}


async def test_delete_token_204_and_stops_working(platform: Platform) -> None:
    token = (
        await platform.http.post(
            "/v1/oauth/token", json=platform.grant_body(), auth=platform.partner
        )
    ).json()["access_token"]
    assert (await platform.account(token)).status_code == 200
    response = await platform.http.delete(f"/v1/oauth/token/{token}", auth=platform.partner)
    assert response.status_code == 204
    assert response.content == b""
    refused = await platform.account(token)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_delete_unknown_token_204(platform: Platform) -> None:
    response = await platform.http.delete("/v1/oauth/token/unknown", auth=platform.partner)
    assert response.status_code == 204


async def test_delete_token_401_without_partner(platform: Platform) -> None:
    response = await platform.http.delete("/v1/oauth/token/whatever")
    assert_broker_error(response, 401)


async def test_delete_token_of_foreign_client_is_left_alone(platform: Platform) -> None:
    token = (
        await platform.http.post(
            "/v1/oauth/token", json=platform.grant_body(), auth=platform.partner
        )
    ).json()["access_token"]
    stranger = await platform.storage.create_partner(name="Stranger")
    response = await platform.http.delete(
        f"/v1/oauth/token/{token}", auth=(stranger.key_id, stranger.secret)
    )
    assert response.status_code == 204
    assert (await platform.account(token)).status_code == 200


async def test_disabled_client_tokens_stop_working(platform: Platform) -> None:
    token = (
        await platform.http.post(
            "/v1/oauth/token", json=platform.grant_body(), auth=platform.partner
        )
    ).json()["access_token"]
    await platform.storage.set_client_status(platform.client_id, ClientStatus.DISABLED)
    assert (await platform.account(token)).status_code == 401


async def test_unknown_path_is_404_in_broker_shape(platform: Platform) -> None:
    assert_broker_error(await platform.http.get("/v1/oauth/nothing"), 404)


async def test_wrong_method_is_405_in_broker_shape(platform: Platform) -> None:
    response = await platform.http.put("/v1/oauth/token", auth=platform.partner)
    assert_broker_error(response, 405)


# 500 and 503: a repository that fails


@pytest.mark.parametrize(
    ("error", "status"),
    [(RuntimeError("db exploded: secret=hunter2"), 500), (StorageUnavailable("down"), 503)],
)
async def test_failing_storage_answers_in_shape(
    platform: Platform, error: Exception, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    oauth = create_oauth_app(
        settings=platform.settings, storage=platform.storage, clients=FailingClients(error)
    )
    # What the client gets; a bug is then raised on to the platform (the next test).
    transport = httpx.ASGITransport(app=oauth, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        responses = [
            await http.get(f"/v1/oauth/clients/{platform.client_id}", auth=platform.partner),
            await http.post("/v1/oauth/token", json=platform.grant_body(), auth=platform.partner),
            await http.post(
                "/v1/oauth/authorize", json=platform.grant_body(), auth=platform.partner
            ),
        ]
        retry_after = "1" if status == 503 else None
        for response in responses:
            assert_broker_error(response, status)
            assert response.headers.get("retry-after") == retry_after
            assert "hunter2" not in response.text
            assert "Traceback" not in response.text
        if status == 500:
            assert responses[0].json() == {"code": 50010000, "message": "internal server error"}
        token = await http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "code": "c", "redirect_uri": "x"},
            auth=(platform.client_id, platform.client_secret),
        )
        assert token.status_code == status
        expected = "server_error" if status == 500 else "temporarily_unavailable"
        assert token.json()["error"] == expected
        assert token.headers.get("retry-after") == retry_after
        assert "hunter2" not in token.text


async def test_a_bug_is_answered_then_raised_on_to_the_platform(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """An error nobody foresaw gets the documented 500, is logged with the endpoint's path
    template (never the path, which carries a token here), and goes on to the host's error
    middleware and the server, as Starlette's own error middleware does."""
    error = RuntimeError("db exploded")
    oauth = create_oauth_app(
        settings=platform.settings, storage=platform.storage, partners=FailingPartners(error)
    )
    host = Starlette(routes=[Mount("/", oauth)])
    raised: list[BaseException] = []

    async def platform_error_middleware(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await host(scope, receive, send)
        except Exception as exc:
            raised.append(exc)
            raise

    transport = httpx.ASGITransport(app=platform_error_middleware, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        response = await http.delete("/v1/oauth/token/the-token-value", auth=platform.partner)
    assert response.status_code == 500
    assert response.json() == {"code": 50010000, "message": "internal server error"}
    assert raised == [error]
    logged = [r for r in caplog.records if r.name == "starlette_broker_oauth"]
    assert [r.getMessage() for r in logged] == [
        "unexpected error on DELETE /v1/oauth/token/{token_id}"
    ]
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[1] is error
    assert "the-token-value" not in caplog.text
