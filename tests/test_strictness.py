"""The rules the RFCs set for what a request may carry, each refused in its endpoint's
documented shape, and the hostile inputs that once ended in a 500, each with its test."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from starlette_broker_oauth import create_oauth_app

from .conftest import ISSUER, Platform, pkce_pair

pytestmark = pytest.mark.anyio

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


async def a_code(world: Platform) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    code = await world.code(code_challenge=challenge, code_challenge_method="S256")
    return code, verifier


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """ERROR records logged while the test runs; a refusal logs none."""
    caplog.set_level(logging.ERROR)
    return caplog.records


# RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."


@pytest.mark.parametrize("repeated", ["grant_type", "code", "redirect_uri", "code_verifier"])
async def test_token_endpoint_refuses_a_repeated_parameter(full: Platform, repeated: str) -> None:
    code, verifier = await a_code(full)
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": full.redirect_uri,
        "code_verifier": verifier,
    }
    body = urlencode([*fields.items(), (repeated, fields[repeated])])
    answer = await full.http.post(
        "/oauth/token", content=body, headers=FORM, auth=(full.client_id, full.client_secret)
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_request",
        "error_description": f"{repeated} is given more than once",
    }
    # Nothing was issued: the code still works once.
    again = await full.exchange(code, code_verifier=verifier)
    assert again.status_code == 200


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
async def test_revocation_and_introspection_refuse_a_repeated_parameter(
    full: Platform, path: str
) -> None:
    answer = await full.http.post(
        path, content="token=a&token=b", headers=FORM, auth=(full.client_id, full.client_secret)
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


# RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
# request."


@pytest.mark.parametrize("basic_secret", ["right", "wrong"])
async def test_one_client_authentication_method_per_request(
    full: Platform, basic_secret: str
) -> None:
    code, verifier = await a_code(full)
    secret = full.client_secret if basic_secret == "right" else "wrong"
    answer = await full.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": full.redirect_uri,
            "code_verifier": verifier,
            "client_id": full.client_id,
            "client_secret": full.client_secret,
        },
        auth=(full.client_id, secret),
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_request",
        "error_description": "use one client authentication method per request",
    }


# RFC 6749 §5.2: invalid_client is 401 with a WWW-Authenticate challenge when the client
# tried HTTP Basic; credentials that are not Basic credentials at all are no credentials.


@pytest.mark.parametrize(
    "authorization",
    [
        basic(b"\xff\xfe", b"\x80"),  # not UTF-8
        "Basic " + "é" * 8,  # not base64 (and not ASCII)
        basic(b"no-colon", b"")[:-4],  # no user:password pair
        "Basic",
        "Basic ",
        "Bearer abc",
    ],
)
async def test_malformed_basic_credentials_are_invalid_client(
    full: Platform, authorization: str, errors: list[logging.LogRecord]
) -> None:
    answer = await full.http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": "x", "redirect_uri": full.redirect_uri},
        headers={b"Authorization": authorization.encode("utf-8")},
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert errors == []


@pytest.mark.parametrize("authorization", [basic(b"\xff", b"\xfe"), "Basic !!!", "Basic"])
async def test_partner_endpoints_refuse_malformed_basic_in_their_shape(
    full: Platform, authorization: str, errors: list[logging.LogRecord]
) -> None:
    answer = await full.http.post(
        "/v1/oauth/token",
        json=full.grant_body(),
        headers={b"Authorization": authorization.encode("utf-8")},
    )
    assert answer.status_code == 401
    assert answer.json()["code"] == 40110000
    assert errors == []


# A bearer token sent to a partner endpoint is the partner endpoint's business: it answers
# in its own shape, even under the platform's AuthenticationMiddleware.


@pytest.mark.parametrize("token", ["", "junk", "a" * 43])
async def test_bearer_on_partner_endpoints_is_answered_in_the_partner_shape(
    full: Platform, token: str
) -> None:
    for method, path in (
        ("GET", f"/v1/oauth/clients/{full.client_id}"),
        ("POST", "/v1/oauth/token"),
        ("DELETE", "/v1/oauth/token/abc"),
    ):
        answer = await full.http.request(method, path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["code"] == 40110000
        assert answer.headers["www-authenticate"].startswith("Basic")


# Values Authlib would quote in an error description it cannot build.


@pytest.mark.parametrize(
    "redirect_uri",
    [
        'https://app.example.com/callback"',
        "https://app.example.com/callback\\",
        "https://app.example.com/callback\x01",
        "https://app.example.com/callback\t",
        "https://app.example.com/cb\x00",
        "https://é.example/callback",
    ],
)
async def test_unquotable_redirect_uris_are_refused_not_crashed_on(
    full: Platform, redirect_uri: str, errors: list[logging.LogRecord]
) -> None:
    for path in ("/v1/oauth/authorize", "/v1/oauth/token"):
        answer = await full.http.post(
            path, json=full.grant_body(redirect_uri=redirect_uri), auth=full.partner
        )
        assert answer.status_code == 422, answer.text
        assert answer.json() == {"code": 42210000, "message": "redirect_uri is not valid"}
    page = await full.http.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": full.client_id, "redirect_uri": redirect_uri},
        headers={"Cookie": f"session={full.paper_account}"},
    )
    assert page.status_code == 400
    assert "location" not in page.headers
    assert '<code id="error-code">invalid_request</code>' in page.text
    assert errors == []


@pytest.mark.parametrize("response_type", ['"', "\\", "é"])
async def test_unquotable_response_type_on_the_consent_page(
    full: Platform, response_type: str, errors: list[logging.LogRecord]
) -> None:
    page = await full.http.get("/oauth/authorize", params={"response_type": response_type})
    assert page.status_code == 400
    assert '<code id="error-code">unsupported_response_type</code>' in page.text
    assert errors == []


# Bodies


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "request body is nested too deeply"),
        (b'{"scope": ' + b"[" * 5000 + b"]" * 5000 + b"}", "request body is nested too deeply"),
        (b'{"client_id": "\\ud800"}', "client_id is not valid Unicode text"),
        (b'{"\\udfff": "x"}', "a field name is not valid Unicode text"),
    ],
)
async def test_hostile_json_bodies(
    full: Platform, body: bytes, message: str, errors: list[logging.LogRecord]
) -> None:
    answer = await full.http.post(
        "/v1/oauth/token",
        content=body,
        headers={"Content-Type": "application/json"},
        auth=full.partner,
    )
    assert answer.status_code == 400
    assert answer.json() == {"code": 40010000, "message": message}
    assert errors == []


@pytest.mark.parametrize("extra", [{"n": 1}, {"nested": {"a": [1, 2]}}, {"flag": True}])
async def test_unknown_fields_of_any_json_type_are_ignored(
    full: Platform, extra: dict[str, Any]
) -> None:
    answer = await full.http.post(
        "/v1/oauth/token", json=full.grant_body() | extra, auth=full.partner
    )
    assert answer.status_code == 200, answer.text


async def test_known_fields_must_still_be_text(full: Platform) -> None:
    answer = await full.http.post(
        "/v1/oauth/token", json=full.grant_body(client_id={"a": 1}), auth=full.partner
    )
    assert answer.status_code == 422
    assert answer.json() == {"code": 42210000, "message": "client_id must be a string"}


# The edge: bytes no handler can read.


async def raw_get(app: Any, path: str, query: bytes) -> httpx.Response:
    """GET with a query string of raw bytes, as a server hands it to the app."""
    return await raw_request(app, "GET", path, query)


async def raw_request(app: Any, method: str, path: str, query: bytes) -> httpx.Response:
    """A request with a raw path and query string, as a server hands them to the app."""
    status, headers, chunks = 0, [], []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], message["headers"]
        else:
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"broker.test")],
        "scheme": "https",
        "server": ("broker.test", 443),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    await app(scope, receive, send)
    return httpx.Response(status, headers=headers, content=b"".join(chunks))


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/oauth/token", "partner"),
        ("/oauth/token", "oauth"),
        ("/oauth/introspect", "oauth"),
        ("/oauth/authorize", "page"),
        ("/oauth/connections", "page"),
        ("/.well-known/oauth-authorization-server", "partner"),
    ],
)
async def test_query_strings_that_are_not_utf8(
    full: Platform, path: str, shape: str, errors: list[logging.LogRecord]
) -> None:
    assert full.oauth is not None
    answer = await raw_get(full.oauth, path, b"a=%ff&b=\xff\xfe")
    assert answer.status_code == 400
    if shape == "partner":
        assert answer.json() == {
            "code": 40010000,
            "message": "the query string is not valid UTF-8",
        }
    elif shape == "oauth":
        assert answer.json() == {
            "error": "invalid_request",
            "error_description": "the query string is not valid UTF-8",
        }
    else:
        assert answer.headers["content-type"].startswith("text/html")
        assert "the query string is not valid UTF-8" in answer.text
    assert errors == []


@pytest.mark.parametrize("segment", ["a%0Ab", "%00", "x%7F"])
async def test_control_characters_in_a_path_parameter_get_the_json_404(
    full: Platform, segment: str
) -> None:
    app = create_oauth_app(settings=full.settings, storage=full.storage)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        answer = await http.delete(f"/v1/oauth/token/{segment}", auth=full.partner)
        lookup = await http.get(f"/v1/oauth/clients/{segment}", auth=full.partner)
    for response in (answer, lookup):
        assert response.status_code == 404
        assert response.json() == {"code": 40410000, "message": "not found"}


async def test_a_client_that_leaves_mid_body_is_not_an_error(
    full: Platform, errors: list[logging.LogRecord]
) -> None:
    """A load balancer or a client giving up mid-request: no traceback, no 500."""
    assert full.oauth is not None
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/oauth/token",
        "raw_path": b"/v1/oauth/token",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"broker.test"),
            (b"content-type", b"application/json"),
            (
                b"authorization",
                ("Basic " + basic(*(p.encode() for p in full.partner))[6:]).encode(),
            ),
        ],
        "scheme": "https",
        "server": ("broker.test", 443),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    await full.oauth(scope, receive, send)
    assert sent[0]["status"] == 400
    assert errors == []


# RFC 6749 §5.2: a required parameter missing is invalid_request, not an unsupported grant.


@pytest.mark.parametrize("body", [{}, {"code": "x"}, {"grant_type": ""}])
async def test_a_missing_grant_type_is_an_invalid_request(
    full: Platform, body: dict[str, str]
) -> None:
    answer = await full.http.post(
        "/oauth/token", data=body, auth=(full.client_id, full.client_secret)
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_request",
        "error_description": "grant_type is missing",
    }
    assert answer.headers["cache-control"] == "no-store"
