"""The OpenAPI document: valid 3.1, and every status it documents is really answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from openapi_spec_validator import validate

from starlette_broker_oauth import (
    StorageUnavailable,
    create_oauth_app,
)
from starlette_broker_oauth.web.hosted import HostedConsent

from .conftest import (
    CONSENT_SECRET,
    ISSUER,
    CookieSession,
    FailingClients,
    FailingPartners,
    Platform,
)

pytestmark = pytest.mark.anyio

Scenario = Callable[[Platform], Awaitable[httpx.Response]]


def failing(world: Platform, error: Exception) -> httpx.AsyncClient:
    app = create_oauth_app(
        settings=world.settings,
        storage=world.storage,
        clients=FailingClients(error),
        partners=FailingPartners(error),
        consent=HostedConsent(session=CookieSession(), secret_key=CONSENT_SECRET),
    )
    # A bug (a 500) is raised on once answered: the answer is what is documented.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=ISSUER)


def cookie(world: Platform) -> dict[str, str]:
    return {"Cookie": f"session={world.paper_account}"}


def consent_query(world: Platform, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": world.client_id,
        "state": "s",
        "redirect_uri": world.redirect_uri,
        "scope": "general",
    } | extra
    return "/oauth/authorize?" + urlencode(params)


async def consent_form(world: Platform) -> dict[str, str]:
    from .test_consent import Form

    page = await world.http.get(consent_query(world), headers=cookie(world))
    return Form(page.text).submit("approve")


Call = Callable[..., Awaitable[httpx.Response]]


class FailingSession(CookieSession):
    """The platform's session store is broken (``error`` on every lookup)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def current_user(self, request: Any) -> Any:
        raise self.error


def hosted_failure(method: str, path: str, error: Exception) -> Scenario:
    """A hosted page whose platform session lookup fails."""

    async def scenario(world: Platform) -> httpx.Response:
        app = create_oauth_app(
            settings=world.settings,
            storage=world.storage,
            consent=HostedConsent(session=FailingSession(error), secret_key=CONSENT_SECRET),
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=ISSUER
        ) as http:
            if method == "GET":
                return await http.get(path if "?" in path else consent_query(world))
            return await http.post(path, data={"decision": "deny", "csrf_token": "x"})

    return scenario


def raw(method: str, path: str, query: bytes = b"\xff") -> Scenario:
    """Bytes no handler can read (a query string that is not UTF-8, control characters
    in the path), sent to the sub-app as a server hands them over."""

    async def scenario(world: Platform) -> httpx.Response:
        from .test_strictness import raw_request

        assert world.oauth is not None
        return await raw_request(world.oauth, method, path, query)

    return scenario


def connections_form(world: Platform) -> Scenario:
    async def scenario(w: Platform) -> httpx.Response:
        return await w.http.post(
            "/oauth/connections",
            data={"csrf_token": "forged", "account_id": str(w.paper_account), "client_id": "c"},
            headers=cookie(w),
        )

    return scenario


async def _disconnect(world: Platform) -> httpx.Response:
    from .test_hosted_pages import AppsPage, connect

    await connect(world, world.paper_account)
    page = await world.http.get("/oauth/connections", headers=cookie(world))
    form = AppsPage(page.text).form_for(world.paper_account, world.client_id)
    return await world.http.post(form.action, data=form.fields, headers=cookie(world))


def partner_call(method: str, path: str, **kw: Any) -> Call:
    async def call(world: Platform, http: Any = None) -> httpx.Response:
        client = http or world.http
        body = kw.get("json", world.grant_body()) if method == "POST" else None
        return await client.request(
            method, path.format(client_id=world.client_id), json=body, auth=world.partner
        )

    return call


def with_failure(call: Any, error: Exception) -> Scenario:
    async def scenario(world: Platform) -> httpx.Response:
        async with failing(world, error) as http:
            return await call(world, http)  # type: ignore[no-any-return]

    return scenario


def oauth_call(path: str, data: dict[str, str], auth: str = "good") -> Call:
    async def call(world: Platform, http: Any = None) -> httpx.Response:
        client = http or world.http
        credentials = (world.client_id, world.client_secret if auth == "good" else "bad")
        return await client.post(path, data=data, auth=credentials)

    return call


async def bad_json(world: Platform, path: str, method: str = "POST") -> httpx.Response:
    return await world.http.request(
        method,
        path,
        content=b"{oops",
        headers={"Content-Type": "application/json"},
        auth=world.partner,
    )


DOWN = StorageUnavailable("down")
BOOM = RuntimeError("boom")
CLIENT_PATH = "/v1/oauth/clients/{client_id}"
token_ok = oauth_call("/oauth/token", {"grant_type": "refresh_token", "refresh_token": "x"})

PAR_BODY = {
    "response_type": "code",
    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
}


async def par_ok(world: Platform) -> httpx.Response:
    body = PAR_BODY | {"redirect_uri": world.redirect_uri, "code_challenge_method": "S256"}
    return await oauth_call("/oauth/par", body)(world)


SCENARIOS: dict[tuple[str, str, str], Scenario] = {
    # partner endpoints
    (CLIENT_PATH, "get", "200"): lambda w: partner_call("GET", CLIENT_PATH)(w),
    (CLIENT_PATH, "get", "400"): lambda w: bad_json(
        w, CLIENT_PATH.format(client_id=w.client_id), "GET"
    ),
    (CLIENT_PATH, "get", "401"): lambda w: partner_call("GET", "/v1/oauth/clients/nope")(w),
    (CLIENT_PATH, "get", "422"): lambda w: w.http.get(
        f"/v1/oauth/clients/{w.client_id}?scope=nope", auth=w.partner
    ),
    (CLIENT_PATH, "get", "500"): with_failure(partner_call("GET", CLIENT_PATH), BOOM),
    (CLIENT_PATH, "get", "503"): with_failure(partner_call("GET", CLIENT_PATH), DOWN),
    ("/v1/oauth/token", "post", "200"): lambda w: partner_call("POST", "/v1/oauth/token")(w),
    ("/v1/oauth/token", "post", "400"): lambda w: bad_json(w, "/v1/oauth/token"),
    ("/v1/oauth/token", "post", "401"): lambda w: w.http.post(
        "/v1/oauth/token", json=w.grant_body()
    ),
    ("/v1/oauth/token", "post", "422"): lambda w: w.http.post(
        "/v1/oauth/token", json=w.grant_body(scope="nope"), auth=w.partner
    ),
    ("/v1/oauth/token", "post", "500"): with_failure(partner_call("POST", "/v1/oauth/token"), BOOM),
    ("/v1/oauth/token", "post", "503"): with_failure(partner_call("POST", "/v1/oauth/token"), DOWN),
    ("/v1/oauth/authorize", "post", "200"): lambda w: w.authorize(),
    ("/v1/oauth/authorize", "post", "400"): lambda w: bad_json(w, "/v1/oauth/authorize"),
    ("/v1/oauth/authorize", "post", "401"): lambda w: w.authorize(client_secret="bad"),
    ("/v1/oauth/authorize", "post", "422"): lambda w: w.authorize(account_id="nope"),
    ("/v1/oauth/authorize", "post", "500"): with_failure(
        partner_call("POST", "/v1/oauth/authorize"), BOOM
    ),
    ("/v1/oauth/authorize", "post", "503"): with_failure(
        partner_call("POST", "/v1/oauth/authorize"), DOWN
    ),
    ("/v1/oauth/token/{token_id}", "delete", "204"): lambda w: w.http.delete(
        "/v1/oauth/token/x", auth=w.partner
    ),
    ("/v1/oauth/token/{token_id}", "delete", "400"): raw("DELETE", "/v1/oauth/token/x"),
    ("/v1/oauth/token/{token_id}", "delete", "401"): lambda w: w.http.delete("/v1/oauth/token/x"),
    ("/v1/oauth/token/{token_id}", "delete", "404"): raw("DELETE", "/v1/oauth/token/a\nb", b""),
    (CLIENT_PATH, "get", "404"): raw("GET", "/v1/oauth/clients/a\x00b", b""),
    ("/v1/oauth/token/{token_id}", "delete", "500"): with_failure(
        partner_call("DELETE", "/v1/oauth/token/x"), BOOM
    ),
    ("/v1/oauth/token/{token_id}", "delete", "503"): with_failure(
        partner_call("DELETE", "/v1/oauth/token/x"), DOWN
    ),
    # standard endpoints
    ("/oauth/token", "post", "200"): lambda w: _exchange(w),
    ("/oauth/token", "post", "400"): lambda w: token_ok(w),
    ("/oauth/token", "post", "401"): lambda w: oauth_call(
        "/oauth/token",
        {"grant_type": "authorization_code", "code": "c", "redirect_uri": "r"},
        "bad",
    )(w),
    ("/oauth/token", "post", "500"): with_failure(token_ok, BOOM),
    ("/oauth/token", "post", "503"): with_failure(token_ok, DOWN),
    ("/oauth/par", "post", "201"): lambda w: par_ok(w),
    ("/oauth/par", "post", "400"): lambda w: oauth_call("/oauth/par", {"response_type": "code"})(w),
    ("/oauth/par", "post", "401"): lambda w: oauth_call("/oauth/par", PAR_BODY, "bad")(w),
    ("/oauth/par", "post", "500"): with_failure(oauth_call("/oauth/par", PAR_BODY), BOOM),
    ("/oauth/par", "post", "503"): with_failure(oauth_call("/oauth/par", PAR_BODY), DOWN),
    ("/oauth/revoke", "post", "200"): lambda w: oauth_call("/oauth/revoke", {"token": "t"})(w),
    ("/oauth/revoke", "post", "400"): lambda w: oauth_call("/oauth/revoke", {})(w),
    ("/oauth/revoke", "post", "401"): lambda w: oauth_call("/oauth/revoke", {"token": "t"}, "bad")(
        w
    ),
    ("/oauth/revoke", "post", "500"): with_failure(
        oauth_call("/oauth/revoke", {"token": "t"}), BOOM
    ),
    ("/oauth/revoke", "post", "503"): with_failure(
        oauth_call("/oauth/revoke", {"token": "t"}), DOWN
    ),
    ("/oauth/introspect", "post", "200"): lambda w: oauth_call("/oauth/introspect", {"token": "t"})(
        w
    ),
    ("/oauth/introspect", "post", "400"): lambda w: oauth_call("/oauth/introspect", {})(w),
    ("/oauth/introspect", "post", "401"): lambda w: oauth_call(
        "/oauth/introspect", {"token": "t"}, "bad"
    )(w),
    ("/oauth/introspect", "post", "500"): with_failure(
        oauth_call("/oauth/introspect", {"token": "t"}), BOOM
    ),
    ("/oauth/introspect", "post", "503"): with_failure(
        oauth_call("/oauth/introspect", {"token": "t"}), DOWN
    ),
    ("/.well-known/oauth-authorization-server", "get", "200"): lambda w: w.http.get(
        "/.well-known/oauth-authorization-server"
    ),
    ("/.well-known/oauth-authorization-server", "get", "400"): raw(
        "GET", "/.well-known/oauth-authorization-server"
    ),
    ("/oauth/openapi.json", "get", "200"): lambda w: w.http.get("/oauth/openapi.json"),
    ("/oauth/openapi.json", "get", "400"): raw("GET", "/oauth/openapi.json"),
    # hosted consent
    ("/oauth/authorize", "get", "200"): lambda w: w.http.get(consent_query(w), headers=cookie(w)),
    ("/oauth/authorize", "get", "303"): lambda w: w.http.get(consent_query(w)),
    ("/oauth/authorize", "get", "400"): lambda w: w.http.get(consent_query(w, client_id="nope")),
    ("/oauth/authorize", "post", "303"): lambda w: _decide(w),
    ("/oauth/authorize", "get", "500"): hosted_failure("GET", "/oauth/authorize", BOOM),
    ("/oauth/authorize", "get", "503"): hosted_failure("GET", "/oauth/authorize", DOWN),
    ("/oauth/authorize", "post", "400"): lambda w: w.http.post(
        "/oauth/authorize", data={"decision": "approve"}, headers=cookie(w)
    ),
    ("/oauth/authorize", "post", "401"): lambda w: w.http.post(
        "/oauth/authorize", data={"decision": "approve"}
    ),
    ("/oauth/authorize", "post", "403"): lambda w: w.http.post(
        "/oauth/authorize", data={"decision": "approve"}, headers={"Sec-Fetch-Site": "cross-site"}
    ),
    ("/oauth/authorize", "post", "500"): hosted_failure("POST", "/oauth/authorize", BOOM),
    ("/oauth/authorize", "post", "503"): hosted_failure("POST", "/oauth/authorize", DOWN),
    # connected apps
    ("/oauth/connections", "get", "200"): lambda w: w.http.get(
        "/oauth/connections", headers=cookie(w)
    ),
    ("/oauth/connections", "get", "303"): lambda w: w.http.get("/oauth/connections"),
    ("/oauth/connections", "get", "400"): raw("GET", "/oauth/connections"),
    ("/oauth/connections", "get", "500"): hosted_failure("GET", "/oauth/connections?", BOOM),
    ("/oauth/connections", "get", "503"): hosted_failure("GET", "/oauth/connections?", DOWN),
    ("/oauth/connections", "post", "303"): _disconnect,
    ("/oauth/connections", "post", "400"): lambda w: connections_form(w)(w),
    ("/oauth/connections", "post", "401"): lambda w: w.http.post(
        "/oauth/connections", data={"csrf_token": "x"}
    ),
    ("/oauth/connections", "post", "403"): lambda w: w.http.post(
        "/oauth/connections", data={"csrf_token": "x"}, headers={"Sec-Fetch-Site": "cross-site"}
    ),
    ("/oauth/connections", "post", "500"): hosted_failure("POST", "/oauth/connections", BOOM),
    ("/oauth/connections", "post", "503"): hosted_failure("POST", "/oauth/connections", DOWN),
}


async def _exchange(world: Platform) -> httpx.Response:
    return await world.exchange(await world.code())


async def _decide(world: Platform) -> httpx.Response:
    return await world.http.post(
        "/oauth/authorize", data=await consent_form(world), headers=cookie(world)
    )


async def test_document_is_valid_openapi_3_1(full: Platform) -> None:
    doc = (await full.http.get("/oauth/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_documented_status_is_reachable(full: Platform) -> None:
    doc = (await full.http.get("/oauth/openapi.json")).json()
    documented = {
        (path, method, status)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }
    assert documented == set(SCENARIOS)
    for (path, method, status), scenario in sorted(SCENARIOS.items()):
        response = await scenario(full)
        assert str(response.status_code) == status, (path, method, status, response.text)
        documented_response = doc["paths"][path][method]["responses"][status]
        for header in documented_response.get("headers", {}):
            assert header in response.headers, (path, method, status, header)
        if "application/json" in documented_response.get("content", {}):
            schema = documented_response["content"]["application/json"]["schema"]
            _check_shape(doc, schema, response.json())


def _check_shape(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """Required properties present with the documented JSON types (enough to catch drift)."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "object":
        assert isinstance(value, dict)
        for name in schema.get("required", []):
            assert name in value, name
        types = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}
        for name, prop in schema.get("properties", {}).items():
            if name in value and prop.get("type") in types:
                assert isinstance(value[name], types[prop["type"]]), name
