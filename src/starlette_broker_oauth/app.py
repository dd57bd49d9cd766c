"""The mountable Starlette sub-application: the broker endpoints and the standard ones."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ._openapi import openapi_document
from ._protocol import OAuthProtocol
from .consent import ConsentEndpoints, HostedConsent
from .errors import (
    APIError,
    BadRequest,
    ConfigurationError,
    NotFound,
    ServiceUnavailable,
    StorageUnavailable,
    Unauthorized,
    UnprocessableEntity,
)
from .events import EventListener
from .models import Client, Partner
from .security import hash_secret, utcnow
from .settings import OAuthSettings
from .storage.base import AccountRepository, ClientRepository, GrantStore, PartnerAuthenticator
from .verifier import TokenVerifier

__all__ = ["create_oauth_app"]

log = logging.getLogger("starlette_broker_oauth")

MAX_BODY = 64 * 1024
_REQUIRED = ("client_id", "client_secret", "redirect_uri", "scope", "account_id")
_PARTNER_REALM = 'Basic realm="broker-oauth", charset="UTF-8"'

Params = dict[str, list[str]]
Endpoint = Callable[[Request], Awaitable[Response]]


def create_oauth_app(
    *,
    settings: OAuthSettings,
    storage: (
        ClientRepository | AccountRepository | PartnerAuthenticator | GrantStore | None
    ) = None,
    clients: ClientRepository | None = None,
    accounts: AccountRepository | None = None,
    partners: PartnerAuthenticator | None = None,
    grants: GrantStore | None = None,
    verifier: TokenVerifier | None = None,
    consent: HostedConsent | None = None,
    on_event: EventListener | None = None,
) -> Starlette:
    """Build the OAuth sub-application to mount into the platform's app.

    Parameters:
        settings: Server settings.
        storage: A backend implementing every repository (``SQLAlchemyStorage``,
            ``MemoryStorage``); each of the next four overrides its part.
        clients: Where clients are looked up.
        accounts: Where accounts are looked up (usually the platform's own).
        partners: Who may call ``/v1/oauth/*`` and which clients each partner uses.
        grants: Where codes and tokens are kept.
        verifier: The token verifier of the platform's protected routes, told of every
            revocation made here; one is created when omitted. Either way it is
            ``app.state.token_verifier``.
        consent: Turns on platform-hosted consent at ``/oauth/authorize``.
        on_event: Receives audit events (:mod:`starlette_broker_oauth.events`).

    The storage is not entered here: a mounted app's lifespan does not run, so the host
    enters the storage in its own lifespan (see the README).
    """
    repos = _Repositories(storage, clients, accounts, partners, grants)
    api = _BrokerAPI(settings=settings, repos=repos, verifier=verifier, on_event=on_event)
    routes = [
        Route("/v1/oauth/clients/{client_id}", api.get_client, methods=["GET"]),
        Route("/v1/oauth/token", api.issue_token, methods=["POST"]),
        Route("/v1/oauth/authorize", api.authorize, methods=["POST"]),
        Route("/v1/oauth/token/{token_id}", api.delete_token, methods=["DELETE"]),
        Route("/oauth/token", api.token, methods=["POST"]),
        Route("/oauth/revoke", api.revoke, methods=["POST"]),
        Route("/oauth/introspect", api.introspect, methods=["POST"]),
        Route("/.well-known/oauth-authorization-server", api.metadata, methods=["GET"]),
        Route("/oauth/openapi.json", api.openapi, methods=["GET"]),
    ]
    if consent is not None:
        api.consent = ConsentEndpoints(
            protocol=api.protocol, config=consent, action=settings.url("/oauth/authorize")
        )
        routes.append(Route("/oauth/authorize", api.authorize_page, methods=["GET", "POST"]))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.token_verifier = api.verifier
    app.state.oauth_settings = settings
    return app


class _Repositories:
    def __init__(
        self,
        storage: object,
        clients: ClientRepository | None,
        accounts: AccountRepository | None,
        partners: PartnerAuthenticator | None,
        grants: GrantStore | None,
    ) -> None:
        if clients is None and isinstance(storage, ClientRepository):
            clients = storage
        if accounts is None and isinstance(storage, AccountRepository):
            accounts = storage
        if partners is None and isinstance(storage, PartnerAuthenticator):
            partners = storage
        if grants is None and isinstance(storage, GrantStore):
            grants = storage
        if clients is None or accounts is None or partners is None or grants is None:
            raise ConfigurationError(
                "pass storage= (a backend with every repository) or each of "
                "clients=, accounts=, partners=, grants="
            )
        self.clients = clients
        self.accounts = accounts
        self.partners = partners
        self.grants = grants


class _BrokerAPI:
    def __init__(
        self,
        *,
        settings: OAuthSettings,
        repos: _Repositories,
        verifier: TokenVerifier | None,
        on_event: EventListener | None,
    ) -> None:
        self.settings = settings
        self.repos = repos
        self.verifier = verifier or TokenVerifier(
            grants=repos.grants,
            clients=repos.clients,
            cache_ttl=settings.token_cache_ttl,
            cache_size=settings.token_cache_size,
        )
        self.protocol = OAuthProtocol(
            settings=settings,
            clients=repos.clients,
            accounts=repos.accounts,
            grants=repos.grants,
            on_revoked=self._revoked,
            on_event=on_event,
        )
        self.consent: ConsentEndpoints | None = None
        self.get_client = _broker_errors(self._get_client)
        self.issue_token = _broker_errors(self._issue_token)
        self.authorize = _broker_errors(self._authorize)
        self.delete_token = _broker_errors(self._delete_token)

    def _revoked(self, token_hashes: Sequence[str]) -> None:  # the verifier's cache
        for token_hash in token_hashes:
            self.verifier.forget(token_hash)

    async def _partner(self, request: Request) -> Partner:
        key_id, secret = _basic_credentials(request.headers.get("authorization"))
        partner = None
        if key_id is not None and secret is not None:
            partner = await self.repos.partners.authenticate_partner(key_id, secret)
        if partner is None:
            raise Unauthorized("partner authentication failed")
        return partner

    async def _usable_client(self, partner: Partner, client_id: str) -> Client:
        # An unknown client and one the partner may not use get the same answer.
        client = None
        if await self.repos.partners.partner_can_use_client(partner, client_id):
            client = await self.repos.clients.get_client(client_id)
        if client is None:
            raise Unauthorized.client_refused()
        return client

    async def _get_client(self, request: Request) -> Response:
        partner = await self._partner(request)
        params = _query_params(request)
        if request.headers.get("content-length") not in (None, "0"):
            for key, values in (await _read_params(request)).items():
                params.setdefault(key, values)
        client = await self._usable_client(partner, request.path_params["client_id"])
        await self.protocol.check_client_request(
            client,
            response_type=_optional(params, "response_type"),
            redirect_uri=_optional(params, "redirect_uri"),
            scope=_optional(params, "scope"),
        )
        return JSONResponse(
            {
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
        )

    async def _issue(self, request: Request, response_type: str) -> Response:
        partner = await self._partner(request)
        params = await _read_params(request)
        for name in _REQUIRED:
            if _optional(params, name) is None:
                raise UnprocessableEntity(f"{name} is required")
        try:
            account_id = UUID(params["account_id"][0])
        except ValueError:
            raise UnprocessableEntity("account_id must be a UUID") from None
        await self._usable_client(partner, params["client_id"][0])
        body = await self.protocol.partner_issue(
            response_type=response_type, params=params, account_id=account_id
        )
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _issue_token(self, request: Request) -> Response:
        return await self._issue(request, "token")

    async def _authorize(self, request: Request) -> Response:
        return await self._issue(request, "code")

    async def _delete_token(self, request: Request) -> Response:
        partner = await self._partner(request)
        token_hash = hash_secret(request.path_params["token_id"])
        token = await self.repos.grants.get_token(token_hash)
        # A token of a client the partner may not use is left alone and answered like an
        # unknown one, so token values cannot be probed.
        if token is not None and await self.repos.partners.partner_can_use_client(
            partner, token.client_id
        ):
            was = await self.repos.grants.revoke_token(token_hash, now=utcnow())
            newly = was is not None and was.revoked_at is None
            await self.protocol.revoked(
                [token_hash], token.client_id, "partner_delete", newly=newly
            )
        return Response(status_code=204)

    async def token(self, request: Request) -> Response:
        return await self._standard(request, None)

    async def revoke(self, request: Request) -> Response:
        return await self._standard(request, "revocation")

    async def introspect(self, request: Request) -> Response:
        return await self._standard(request, "introspection")

    async def _standard(self, request: Request, endpoint: str | None) -> Response:
        try:
            params = await _read_params(request, json_allowed=False)
            if endpoint is None:
                result = await self.protocol.token_endpoint(headers=request.headers, params=params)
            else:
                result = await self.protocol.endpoint(
                    endpoint, request.url.path, headers=request.headers, params=params
                )
        except APIError as exc:
            return _oauth_error(exc.status_code, "invalid_request", exc.message)
        except StorageUnavailable:
            return _oauth_error(503, "temporarily_unavailable", "storage is unavailable")
        except Exception:
            log.exception("unexpected error at %s", request.url.path)
            return _oauth_error(500, "server_error", "internal server error")
        return JSONResponse(result.body, status_code=result.status, headers=dict(result.headers))

    async def authorize_page(self, request: Request) -> Response:
        assert self.consent is not None
        try:
            if request.method == "GET":
                return await self.consent.get(request)
            return await self.consent.post(request, await _read_params(request, json_allowed=False))
        except APIError as exc:
            return PlainTextResponse(exc.message, status_code=exc.status_code)
        except StorageUnavailable:
            return PlainTextResponse("service temporarily unavailable", status_code=503)

    async def openapi(self, request: Request) -> Response:
        document = openapi_document(self.settings, hosted_consent=self.consent is not None)
        return JSONResponse(document)

    async def metadata(self, request: Request) -> Response:
        s = self.settings
        methods = ["client_secret_basic", "client_secret_post"]
        grant_types = ["authorization_code"]
        if s.refresh_token_lifetime is not None:
            grant_types.append("refresh_token")
        document: dict[str, Any] = {
            "issuer": s.issuer,
            "token_endpoint": s.url("/oauth/token"),
            "revocation_endpoint": s.url("/oauth/revoke"),
            "introspection_endpoint": s.url("/oauth/introspect"),
            "scopes_supported": sorted(s.scopes_supported),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grant_types,
            "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_methods_supported": methods,
            "code_challenge_methods_supported": ["S256"],
        }
        if self.consent is not None:
            document["authorization_endpoint"] = s.url("/oauth/authorize")
            document["authorization_response_iss_parameter_supported"] = True
        elif s.authorization_endpoint:
            document["authorization_endpoint"] = s.authorization_endpoint
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})


def _broker_errors(endpoint: Endpoint) -> Endpoint:
    """Render every failure of a partner endpoint in the ``{"code", "message"}`` shape."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except APIError as exc:
            return _broker_error(exc)
        except StorageUnavailable:
            return _broker_error(ServiceUnavailable("service temporarily unavailable"))
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return JSONResponse({"code": 50010000, "message": "internal server error"}, 500)

    guarded.__name__ = endpoint.__name__
    return guarded


def _broker_error(exc: APIError) -> Response:
    headers = {"WWW-Authenticate": _PARTNER_REALM} if isinstance(exc, Unauthorized) else None
    return JSONResponse(dict(exc.body()), status_code=exc.status_code, headers=headers)


def _oauth_error(status: int, error: str, description: str) -> Response:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _broker_error(NotFound("not found"))
    body = {"code": exc.status_code * 100000 + 10000, "message": str(exc.detail).lower()}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def _query_params(request: Request) -> Params:
    params: Params = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def _optional(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise UnprocessableEntity(f"{name} is given more than once")
    return values[0]


async def _read_params(request: Request, *, json_allowed: bool = True) -> Params:
    """The body's parameters: JSON object or form-encoded (RFC 6749 §3.2 wants the latter)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest("request body is too large")
    if not body:
        return {}
    if content_type == "application/json" and json_allowed:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return {key: [_json_text(key, value)] for key, value in data.items() if value is not None}
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise BadRequest("request body is not valid UTF-8") from None
        params: Params = {}
        for key, value in pairs:
            params.setdefault(key, []).append(value)
        return params
    expected = "application/x-www-form-urlencoded"
    if json_allowed:
        expected = "application/json or " + expected
    raise BadRequest(f"unsupported content type; send {expected}")


def _json_text(name: str, value: object) -> str:
    # The seed accepts scope as "string/numeric": a number counts as its decimal text.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise UnprocessableEntity(f"{name} must be a string")
