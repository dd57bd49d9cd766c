"""The routes table: every place that names a path reads it, and what each reads is what
the sub-app serves."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Route

from starlette_broker_oauth import MemoryStorage, OAuthSettings, create_oauth_app, routes
from starlette_broker_oauth.events import ClientAuthenticationFailed, OAuthEvent
from starlette_broker_oauth.integrations.starlette import _oauth_route
from starlette_broker_oauth.routes import ROUTES, Face, route_at, served
from starlette_broker_oauth.web.hosted import HostedConsent
from starlette_broker_oauth.web.openapi import openapi_document

from .conftest import CONSENT_SECRET, ISSUER, CookieSession

pytestmark = pytest.mark.anyio

CONFIGS = {
    "plain": {"consent": False, "connections": False},
    "consent": {"consent": True, "connections": False},
    "connections": {"consent": True, "connections": True},
}


def build(consent: bool, connections: bool, **kwargs: Any) -> Any:
    hosted = (
        HostedConsent(
            session=CookieSession(), secret_key=CONSENT_SECRET, connections_page=connections
        )
        if consent
        else None
    )
    return create_oauth_app(
        settings=OAuthSettings(issuer=ISSUER), storage=MemoryStorage(), consent=hosted, **kwargs
    )


def test_names_and_paths_are_unique() -> None:
    assert len({r.name for r in ROUTES}) == len({r.path for r in ROUTES}) == len(ROUTES)
    for route in ROUTES:
        assert route.path.startswith("/")
        assert route.methods
        assert all(m == m.upper() and m != "HEAD" for m in route.methods)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_the_app_routes_what_the_table_serves(config: dict[str, bool]) -> None:
    app = build(**config)
    assert [(r.path, r.methods) for r in app.routes if isinstance(r, Route)] == [
        (spec.path, {*spec.methods, *(["HEAD"] if "GET" in spec.methods else [])})
        for spec in served(**config)
    ]


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_the_openapi_document_documents_what_is_served(config: dict[str, bool]) -> None:
    document = openapi_document(
        OAuthSettings(issuer=ISSUER),
        hosted_consent=config["consent"],
        connections=config["connections"],
    )
    assert {path: set(operations) for path, operations in document["paths"].items()} == {
        spec.path: {m.lower() for m in spec.methods} for spec in served(**config)
    }


async def test_the_metadata_names_the_tables_paths() -> None:
    app = build(consent=True, connections=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        metadata = (await http.get(routes.METADATA.path)).json()
    assert metadata["token_endpoint"] == ISSUER + routes.TOKEN.path
    assert metadata["revocation_endpoint"] == ISSUER + routes.REVOCATION.path
    assert metadata["introspection_endpoint"] == ISSUER + routes.INTROSPECTION.path
    assert metadata["authorization_endpoint"] == ISSUER + routes.CONSENT.path


@pytest.mark.parametrize(
    ("path", "pages", "expected"),
    [
        ("/oauth/token", True, routes.TOKEN),
        ("/oauth/tokenx", True, routes.TOKEN),  # what the edge cannot read is still theirs
        ("/v1/oauth/token", True, routes.PARTNER_TOKEN),
        ("/v1/oauth/token/abc", True, routes.PARTNER_REVOKE),  # the longest prefix
        ("/v1/oauth/clients/a\nb", True, routes.PARTNER_CLIENT),
        ("/oauth/authorize", True, routes.CONSENT),
        ("/oauth/authorize", False, None),
        ("/oauth/connections", True, routes.CONNECTIONS),
        ("/nothing", True, None),
        ("/", True, None),
    ],
)
def test_route_at(path: str, pages: bool, expected: routes.RouteSpec | None) -> None:
    assert route_at(path, pages=pages) is expected


def test_every_face_of_a_route_is_a_face_of_the_sub_app() -> None:
    assert {r.face for r in ROUTES} == {Face.PARTNER, Face.STANDARD, Face.PAGE}


@pytest.mark.parametrize("prefix", ["", "/auth", "/api/auth"])
def test_the_bearer_backend_leaves_every_route_alone_wherever_mounted(prefix: str) -> None:
    for route in ROUTES:
        assert _oauth_route(prefix + route.path.replace("{", "x").replace("}", "")), route
    assert _oauth_route(prefix + routes.BROKER_API + "anything")  # the Broker API's 404
    for path in ("/v2/account", "/oauth/tokenx", "/xoauth/token", "/oauth"):
        assert not _oauth_route(prefix + path), path


async def test_the_protocol_hands_authlib_the_tables_uris() -> None:
    """An event names the endpoint by the last segment of the URI Authlib was given."""
    events: list[OAuthEvent] = []
    app = build(consent=False, connections=False, on_event=events.append)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        for route in (routes.TOKEN, routes.REVOCATION, routes.INTROSPECTION):
            data = {"grant_type": "authorization_code", "code": "c", "token": "t"}
            answer = await http.post(route.path, data=data, auth=("nobody", "wrong"))
            assert answer.status_code == 401
    failed = [e.endpoint for e in events if isinstance(e, ClientAuthenticationFailed)]
    assert failed == [
        r.path.rsplit("/", 1)[-1] for r in (routes.TOKEN, routes.REVOCATION, routes.INTROSPECTION)
    ]
