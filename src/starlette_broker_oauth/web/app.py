"""The mountable Starlette sub-application: the broker endpoints and the standard ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, overload
from urllib.parse import urlsplit
from uuid import UUID

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import routes
from .._oauth import OAuthProtocol
from ..clock import SYSTEM_CLOCK, Clock
from ..core import Administrator, AuthorizationCore, ConnectedApps, Readiness
from ..core.verifier import TokenVerifier
from ..errors import ConfigurationError, InvalidClient, InvalidRequest
from ..events import EventListener
from ..models import Partner
from ..routes import RouteSpec
from ..settings import OAuthSettings
from ..storage.base import (
    AccountRepository,
    ClientRepository,
    GrantStore,
    ManagedStorage,
    PartnerRepository,
    Storage,
)
from ..telemetry import annotate
from .edge import EdgeGuard
from .hosted import HostedConsent
from .hosted.connections import ConnectionsEndpoints
from .hosted.consent import ConsentEndpoints
from .hosted.render import page_templates
from .observe import Observed
from .openapi import openapi_document
from .params import basic_credentials, check_standard, optional, query_params, read_params
from .render import NO_STORE, ErrorHandlers

__all__ = ["create_oauth_app", "metadata_route"]

# The grant types a span may name (anything else a client sends is not repeated).
_GRANT_TYPES = frozenset({"authorization_code", "refresh_token", "client_credentials", "password"})

_REQUIRED = ("client_id", "client_secret", "redirect_uri", "scope", "account_id")

Endpoint = Callable[[Request], Awaitable[Response]]


@overload
def create_oauth_app(
    *,
    settings: OAuthSettings,
    storage: Storage,
    clients: ClientRepository | None = None,
    accounts: AccountRepository | None = None,
    partners: PartnerRepository | None = None,
    grants: GrantStore | None = None,
    verifier: TokenVerifier | None = None,
    consent: HostedConsent | None = None,
    on_event: EventListener | None = None,
    clock: Clock | None = None,
) -> Starlette: ...


@overload
def create_oauth_app(
    *,
    settings: OAuthSettings,
    storage: None = None,
    clients: ClientRepository,
    accounts: AccountRepository,
    partners: PartnerRepository,
    grants: GrantStore,
    verifier: TokenVerifier | None = None,
    consent: HostedConsent | None = None,
    on_event: EventListener | None = None,
    clock: Clock | None = None,
) -> Starlette: ...


def create_oauth_app(
    *,
    settings: OAuthSettings,
    storage: Storage | None = None,
    clients: ClientRepository | None = None,
    accounts: AccountRepository | None = None,
    partners: PartnerRepository | None = None,
    grants: GrantStore | None = None,
    verifier: TokenVerifier | None = None,
    consent: HostedConsent | None = None,
    on_event: EventListener | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """Build the OAuth sub-application to mount into the platform's app.

    Parameters:
        settings: Server settings.
        storage: A backend implementing every repository (``SQLAlchemyStorage``,
            ``MemoryStorage``); each of the next four overrides its part. Without it, all
            four are required.
        clients: Where clients are looked up.
        accounts: Where accounts are looked up (usually the platform's own).
        partners: Who may call ``/v1/oauth/*`` and which clients each partner uses.
        grants: Where codes and tokens are kept.
        verifier: The token verifier of the platform's protected routes; one is created
            when omitted. Either way it is ``app.state.token_verifier``, and it learns of
            every revocation through the grant store's announcements.
        consent: Turns on the hosted pages: consent at ``/oauth/authorize`` and the
            connected-apps page at ``/oauth/connections``.
        on_event: Receives audit events (:mod:`starlette_broker_oauth.events`).
        clock: Where time is read (codes, tokens, the cache); the system clock by default.

    The storage is not entered here: a mounted app's lifespan does not run, so the host
    enters the storage in its own lifespan (see the README).

    The returned app also carries ``app.state.connected_apps``
    (:class:`~.core.ConnectedApps`): list an account's connected apps, disconnect one, or
    cut every token of a closed account; and ``app.state.admin``
    (:class:`~.core.Administrator`): admin changes with their rules and audit events, as
    the CLI makes them (with a built-in ``storage``), and what a change in the platform's
    own registry ends (``client_changed``, ``account_changed``); and ``app.state.readiness``
    (:class:`~.core.Readiness`), which :func:`~.web.health.health_routes` answers.
    """
    clients = storage if clients is None else clients
    accounts = storage if accounts is None else accounts
    partners = storage if partners is None else partners
    grants = storage if grants is None else grants
    if clients is None or accounts is None or partners is None or grants is None:
        raise ConfigurationError(
            "pass storage= (a backend with every repository) or each of "
            "clients=, accounts=, partners=, grants="
        )
    if not isinstance(getattr(grants, "revocation_listeners", None), list):
        raise ConfigurationError(
            f"{type(grants).__name__}.__init__ must call super().__init__(): GrantStore "
            "keeps the token caches' revocation listeners"
        )
    clock = clock or SYSTEM_CLOCK
    core = AuthorizationCore(
        settings=settings,
        clients=clients,
        accounts=accounts,
        partners=partners,
        grants=grants,
        clock=clock,
        on_event=on_event,
    )
    verifier = verifier or TokenVerifier(
        grants=grants,
        clients=clients,
        settings=settings,
        cache_ttl=settings.token_cache_ttl,
        cache_size=settings.token_cache_size,
        clock=clock,
    )
    api = _BrokerAPI(core)
    connected = ConnectedApps(core.revocations, clients=clients)
    served = routes.served(
        consent=consent is not None, connections=consent is not None and consent.connections_page
    )
    endpoints: dict[RouteSpec, Endpoint] = {
        routes.PARTNER_CLIENT: api.get_client,
        routes.PARTNER_TOKEN: api.issue_token,
        routes.PARTNER_AUTHORIZE: api.authorize,
        routes.PARTNER_REVOKE: api.delete_token,
        routes.TOKEN: api.token,
        routes.PUSHED_AUTHORIZATION: api.push,
        routes.REVOCATION: api.revoke,
        routes.INTROSPECTION: api.introspect,
        routes.METADATA: api.metadata,
        routes.OPENAPI: api.openapi,
    }
    if consent is not None:
        connections_url = (
            settings.url(routes.CONNECTIONS.path) if consent.connections_page else None
        )
        pages = page_templates(consent.template_directory)
        api.consent = ConsentEndpoints(
            protocol=api.protocol,
            config=consent,
            pages=pages,
            action=settings.url(routes.CONSENT.path),
            connections_url=connections_url,
            clock=clock,
        )
        endpoints[routes.CONSENT] = api.authorize_page
        if connections_url is not None:
            page = ConnectionsEndpoints(
                core=core,
                connected=connected,
                config=consent,
                pages=pages,
                action=connections_url,
                clock=clock,
            )
            endpoints[routes.CONNECTIONS] = page.handle
    errors = ErrorHandlers(
        issuer=settings.issuer, page=None if api.consent is None else api.consent.error_page
    )
    app = Starlette(
        routes=[Route(r.path, endpoints[r], methods=list(r.methods)) for r in served],
        exception_handlers=errors.handlers(),
        middleware=[
            Middleware(Observed, pages=consent is not None),
            Middleware(EdgeGuard, issuer=settings.issuer, errors=errors),
            Middleware(UnitOfWork, storage=storage),
        ],
    )
    app.state.token_verifier = verifier
    app.state.oauth_settings = settings
    app.state.connected_apps = connected
    app.state.admin = Administrator(
        storage if isinstance(storage, ManagedStorage) else None,
        grants=grants,
        clients=clients,
        accounts=accounts,
        emit=core.emit,
        clock=clock,
    )
    app.state.metadata_endpoint = api.metadata
    probed = storage if storage is not None else grants if isinstance(grants, Storage) else None
    app.state.readiness = Readiness(storage=probed, grants=grants)
    return app


class UnitOfWork:
    """ASGI middleware: each request is one unit of work of the storage
    (:meth:`~.storage.Storage.unit_of_work`), so its statements can share a connection.

    Parameters:
        app: The sub-app's router.
        storage: The storage, when the app was given one.
    """

    def __init__(self, app: ASGIApp, storage: Storage | None) -> None:
        self.app = app
        self.storage = storage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.storage is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.storage.unit_of_work():
            await self.app(scope, receive, send)


def metadata_route(oauth: Starlette) -> Route:
    """The route for the host's root that serves the metadata where RFC 8414 §3.1 puts it
    for an issuer with a path: ``https://host/auth`` →
    ``/.well-known/oauth-authorization-server/auth``.

    The sub-app also serves it under its own mount (``/auth/.well-known/…``), where some
    clients look. Put this route in the host app's routes, before the ``Mount``::

        routes = [metadata_route(oauth), Mount("/auth", oauth)]
    """
    settings: OAuthSettings = oauth.state.oauth_settings
    path = urlsplit(settings.issuer).path.rstrip("/")
    if not path:
        raise ConfigurationError(
            "the issuer has no path: the sub-app, mounted at '/', already serves the "
            "metadata at /.well-known/oauth-authorization-server"
        )
    endpoint: Endpoint = oauth.state.metadata_endpoint
    return Route(routes.METADATA.path + path, endpoint, methods=list(routes.METADATA.methods))


class _BrokerAPI:
    def __init__(self, core: AuthorizationCore) -> None:
        self.core = core
        self.settings = core.settings
        self.protocol = OAuthProtocol(core)
        self.consent: ConsentEndpoints | None = None

    async def _partner(self, request: Request) -> Partner:
        key_id, secret = basic_credentials(request.headers.get("authorization"))
        return await self.core.authenticate_partner(key_id, secret)

    async def get_client(self, request: Request) -> Response:
        partner = await self._partner(request)
        params = query_params(request)
        if request.headers.get("content-length") not in (None, "0"):
            for key, values in (await read_params(request)).items():
                params.setdefault(key, values)
        client = await self.core.partner_client(partner, request.path_params["client_id"])
        pushed: dict[str, str] | None = None
        if (request_uri := optional(params, "request_uri")) is not None:
            # RFC 9126 §4: the pushed request, for the partner's consent page to show; it
            # is used up by POST /v1/oauth/authorize.
            record = await self.core.pushed.find(client.client_id, request_uri)
            pushed = {k: v for k, v in record.params if k != "client_id"}
        else:
            self.core.check_request(
                client,
                response_type=optional(params, "response_type"),
                redirect_uri=optional(params, "redirect_uri"),
                scope=optional(params, "scope"),
            )
        body: dict[str, Any] = {
            "client_id": client.client_id,
            "name": client.name,
            "description": client.description,
            "url": client.url,
            "terms_of_use": client.terms_of_use,
            "privacy_policy": client.privacy_policy,
            "status": client.status.value,
            "redirect_uri": list(client.redirect_uris),
            "live_trading_approved": client.live_trading_approved,
        }
        if pushed is not None:
            body["request"] = pushed
        return JSONResponse(body)

    async def _issue(self, request: Request, response_type: str) -> Response:
        partner = await self._partner(request)
        params = await read_params(request)
        if response_type == "code" and optional(params, "request_uri") is not None:
            return await self._issue_pushed(partner, params)
        for name in _REQUIRED:
            if optional(params, name) is None:
                raise InvalidRequest(f"{name} is required")
        try:
            account_id = UUID(params["account_id"][0])
        except ValueError:
            raise InvalidRequest("account_id must be a UUID") from None
        client = await self.core.partner_client(partner, params["client_id"][0])
        if response_type == "code":
            await self.core.pushed.check_front_channel(client.client_id, client=client)
        account = await self.core.partner_account(partner, account_id)
        body = await self.protocol.partner_issue(
            response_type=response_type, params=params, client=client, account=account
        )
        return JSONResponse(body, headers=NO_STORE)

    async def _issue_pushed(self, partner: Partner, params: dict[str, list[str]]) -> Response:
        """``POST /v1/oauth/authorize`` with a ``request_uri`` (RFC 9126 §4): the code is
        issued for the pushed request, which is used up; the body's other authorization
        parameters are ignored. The answer carries the request's ``state`` for the
        redirect."""
        for name in ("client_id", "client_secret", "account_id", "request_uri"):
            if optional(params, name) is None:
                raise InvalidRequest(f"{name} is required")
        try:
            account_id = UUID(params["account_id"][0])
        except ValueError:
            raise InvalidRequest("account_id must be a UUID") from None
        client = await self.core.partner_client(partner, params["client_id"][0])
        account = await self.core.partner_account(partner, account_id)
        record = await self.core.pushed.find(client.client_id, optional(params, "request_uri"))
        # The client authenticates before its pushed request is used up.
        secret = optional(params, "client_secret")
        known = await self.core.authenticate_client(
            client.client_id, secret, endpoint="authorization", known=client
        )
        if known is None:
            raise InvalidClient(InvalidClient.ONE_ANSWER)
        await self.core.pushed.use(record)
        pushed = {key: [value] for key, value in record.params}
        pushed["client_secret"] = params["client_secret"]
        body = await self.protocol.partner_issue(
            response_type="code", params=pushed, client=client, account=account
        )
        state = dict(record.params).get("state")
        if state:
            body["state"] = state
        return JSONResponse(body, headers=NO_STORE)

    async def issue_token(self, request: Request) -> Response:
        return await self._issue(request, "token")

    async def authorize(self, request: Request) -> Response:
        return await self._issue(request, "code")

    async def delete_token(self, request: Request) -> Response:
        partner = await self._partner(request)
        await self.core.partner_revoke(partner, request.path_params["token_id"])
        return Response(status_code=204)

    async def token(self, request: Request) -> Response:
        return await self._standard(request, routes.TOKEN)

    async def push(self, request: Request) -> Response:
        """``POST /oauth/par`` (RFC 9126 §2): form-encoded, client authentication as at the
        token endpoint."""
        params = await read_params(request, json_allowed=False)
        check_standard(params, request.headers.get("authorization"))
        result = await self.protocol.push(
            headers=request.headers, params=params, dpop_proofs=request.headers.getlist("dpop")
        )
        return JSONResponse(result.body, status_code=result.status, headers=dict(result.headers))

    async def revoke(self, request: Request) -> Response:
        return await self._standard(request, routes.REVOCATION)

    async def introspect(self, request: Request) -> Response:
        return await self._standard(request, routes.INTROSPECTION)

    async def _standard(self, request: Request, route: RouteSpec) -> Response:
        params = await read_params(request, json_allowed=False)
        check_standard(params, request.headers.get("authorization"))
        if route is routes.TOKEN:
            grant_type = optional(params, "grant_type")
            if grant_type in _GRANT_TYPES:
                annotate({"oauth.grant_type": grant_type})
            result = await self.protocol.token(
                headers=request.headers,
                params=params,
                dpop_proofs=request.headers.getlist("dpop"),
            )
        else:
            result = await self.protocol.endpoint(route, headers=request.headers, params=params)
        return JSONResponse(result.body, status_code=result.status, headers=dict(result.headers))

    async def authorize_page(self, request: Request) -> Response:
        assert self.consent is not None
        if request.method in ("GET", "HEAD"):
            return await self.consent.get(request)
        return await self.consent.post(request)

    async def openapi(self, request: Request) -> Response:
        document = openapi_document(
            self.settings,
            hosted_consent=self.consent is not None,
            connections=self.consent is not None and self.consent.connections_url is not None,
        )
        return JSONResponse(document)

    async def metadata(self, request: Request) -> Response:
        s = self.settings
        methods = [] if s.fapi else ["client_secret_basic", "client_secret_post"]
        if s.private_key_jwt:
            methods.append("private_key_jwt")
        grant_types = ["authorization_code"]
        if s.refresh_token_lifetime is not None:
            grant_types.append("refresh_token")
        document: dict[str, Any] = {
            "issuer": s.issuer,
            "token_endpoint": s.url(routes.TOKEN.path),
            "revocation_endpoint": s.url(routes.REVOCATION.path),
            "introspection_endpoint": s.url(routes.INTROSPECTION.path),
            "scopes_supported": sorted(s.scopes_supported),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grant_types,
            "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_methods_supported": methods,
            "code_challenge_methods_supported": ["S256"],
            # RFC 9126 §5
            "pushed_authorization_request_endpoint": s.url(routes.PUSHED_AUTHORIZATION.path),
            "require_pushed_authorization_requests": s.require_pushed_authorization_requests,
            # RFC 9449 §5.1
            "dpop_signing_alg_values_supported": list(s.dpop_signing_algs),
        }
        if s.private_key_jwt:
            algorithms = sorted(s.client_assertion_algorithms)
            for endpoint in ("token", "revocation", "introspection"):
                document[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] = algorithms
        if self.consent is not None:
            document["authorization_endpoint"] = s.url(routes.CONSENT.path)
            document["authorization_response_iss_parameter_supported"] = True
        elif s.authorization_endpoint:
            document["authorization_endpoint"] = s.authorization_endpoint
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})
