"""Where the sub-app's endpoints are: one table of paths, methods and faces.

The app's routes, the face that answers an error at a path, the bearer backend's list of
paths it leaves alone, the metadata, the OpenAPI document and the URIs the protocol adapter
hands Authlib are all read from :data:`ROUTES`. Paths are relative to the issuer, which
is where the sub-app is mounted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "BROKER_API",
    "CONNECTIONS",
    "CONSENT",
    "INTROSPECTION",
    "METADATA",
    "OPENAPI",
    "PARTNER_AUTHORIZE",
    "PARTNER_CLIENT",
    "PARTNER_REVOKE",
    "PARTNER_TOKEN",
    "PUSHED_AUTHORIZATION",
    "REVOCATION",
    "ROUTES",
    "TOKEN",
    "Face",
    "Feature",
    "RouteSpec",
    "route_at",
    "served",
]


class Face(enum.Enum):
    """Who calls an endpoint, and so the shape its errors take."""

    #: The Broker API's partner endpoints, the documents, and any path nothing serves:
    #: ``{"code", "message"}``.
    PARTNER = "partner"
    #: The standard endpoints an OAuth client calls: RFC 6749 §5.2.
    STANDARD = "standard"
    #: The hosted pages a user's browser shows: an error page, or a redirect to the client.
    PAGE = "page"
    #: The platform's own routes behind the token check (none in this table): RFC 6750 §3.
    BEARER = "bearer"


class Feature(enum.Enum):
    """What must be turned on for an endpoint to be served."""

    #: Hosted consent (``create_oauth_app(consent=…)``).
    CONSENT = "consent"
    #: Hosted consent with its connected-apps page (``HostedConsent.connections_page``).
    CONNECTIONS = "connections"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteSpec:
    """One endpoint of the sub-app.

    Parameters:
        name: What the code calls it.
        path: Its path template below the issuer; a ``{name}`` is one path segment.
        methods: The methods it is served with (``HEAD`` comes with ``GET``).
        face: Who calls it, and so the shape of its errors.
        feature: What must be on for it to be served; ``None``: always.
        secret_path: Whether its path carries a secret (the token of the partner
            ``DELETE``, as the Broker API defines it): logs and traces name the template.
    """

    name: str
    path: str
    methods: tuple[str, ...]
    face: Face
    feature: Feature | None = None
    secret_path: bool = False

    @property
    def prefix(self) -> str:
        """The path up to its first ``{name}``: what every request to it starts with."""
        return self.path.partition("{")[0]


#: The Broker API's namespace: every path under it is the partner endpoints' to answer.
BROKER_API = "/v1/oauth/"

PARTNER_CLIENT = RouteSpec(
    name="partner_client",
    path="/v1/oauth/clients/{client_id}",
    methods=("GET",),
    face=Face.PARTNER,
)
PARTNER_TOKEN = RouteSpec(
    name="partner_token", path="/v1/oauth/token", methods=("POST",), face=Face.PARTNER
)
PARTNER_AUTHORIZE = RouteSpec(
    name="partner_authorize", path="/v1/oauth/authorize", methods=("POST",), face=Face.PARTNER
)
PARTNER_REVOKE = RouteSpec(
    name="partner_revoke",
    path="/v1/oauth/token/{token_id}",
    methods=("DELETE",),
    face=Face.PARTNER,
    secret_path=True,
)
TOKEN = RouteSpec(name="token", path="/oauth/token", methods=("POST",), face=Face.STANDARD)
#: RFC 9126: the client pushes its authorization request and gets a ``request_uri``.
PUSHED_AUTHORIZATION = RouteSpec(
    name="pushed_authorization", path="/oauth/par", methods=("POST",), face=Face.STANDARD
)
REVOCATION = RouteSpec(
    name="revocation", path="/oauth/revoke", methods=("POST",), face=Face.STANDARD
)
INTROSPECTION = RouteSpec(
    name="introspection", path="/oauth/introspect", methods=("POST",), face=Face.STANDARD
)
METADATA = RouteSpec(
    name="metadata",
    path="/.well-known/oauth-authorization-server",
    methods=("GET",),
    face=Face.PARTNER,
)
OPENAPI = RouteSpec(name="openapi", path="/oauth/openapi.json", methods=("GET",), face=Face.PARTNER)
CONSENT = RouteSpec(
    name="consent",
    path="/oauth/authorize",
    methods=("GET", "POST"),
    face=Face.PAGE,
    feature=Feature.CONSENT,
)
CONNECTIONS = RouteSpec(
    name="connections",
    path="/oauth/connections",
    methods=("GET", "POST"),
    face=Face.PAGE,
    feature=Feature.CONNECTIONS,
)

#: Every endpoint, in the order the app routes them.
ROUTES: tuple[RouteSpec, ...] = (
    PARTNER_CLIENT,
    PARTNER_TOKEN,
    PARTNER_AUTHORIZE,
    PARTNER_REVOKE,
    TOKEN,
    PUSHED_AUTHORIZATION,
    REVOCATION,
    INTROSPECTION,
    METADATA,
    OPENAPI,
    CONSENT,
    CONNECTIONS,
)


def served(*, consent: bool, connections: bool) -> tuple[RouteSpec, ...]:
    """The endpoints a sub-app serves, with hosted consent and its connected-apps page on
    or off."""
    on: set[Feature | None] = {None}
    if consent:
        on.add(Feature.CONSENT)
        if connections:
            on.add(Feature.CONNECTIONS)
    return tuple(route for route in ROUTES if route.feature in on)


def route_at(path: str, *, pages: bool) -> RouteSpec | None:
    """The endpoint a request for ``path`` (below the issuer) was sent to: the one whose
    path it starts with, the longest such, even when the rest cannot be read. The hosted
    pages count only when ``pages`` is true. ``None``: no endpoint's."""
    found: RouteSpec | None = None
    for route in ROUTES:
        if route.face is Face.PAGE and not pages:
            continue
        if path.startswith(route.prefix) and (
            found is None or len(route.prefix) > len(found.prefix)
        ):
            found = route
    return found
