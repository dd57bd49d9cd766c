"""The async face of the Authlib adapter: what the HTTP faces call.

Authlib's grants are synchronous; they run under :func:`.bridge.run_sync` and reach the
async domain core through :func:`.bridge.await_`, so nothing blocks the event loop.
Every refusal leaves as a :class:`~..errors.Refusal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from authlib.oauth2.rfc6749 import OAuth2Error

from .. import routes
from ..core import AUTHORIZATION_PARAMS, AuthorizationCore, IssuedCode, PushedAuthorization
from ..errors import AccessDenied, InvalidDPoPProof, InvalidRequest, InvalidRequestURI, Refusal
from ..models import Account, Client
from ..routes import RouteSpec
from .bridge import await_, run_sync
from .endpoints import Introspection, Revocation
from .grants import AUTH_METHODS, JSON_HEADERS
from .requests import OAuthRequest
from .server import BrokerAuthorizationServer, refusal

__all__ = ["Authorized", "ConsentRequest", "OAuthProtocol", "ProtocolResponse"]

# Authlib's name for the endpoint served at each route.
_ENDPOINTS: dict[RouteSpec, str] = {
    routes.REVOCATION: Revocation.ENDPOINT_NAME,
    routes.INTROSPECTION: Introspection.ENDPOINT_NAME,
}


@dataclass(frozen=True, slots=True)
class ProtocolResponse:
    """What a standard endpoint answers: status, JSON body and headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A validated authorization request (RFC 6749 §4.1.1), waiting for the user."""

    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    params: tuple[tuple[str, str], ...]
    #: The hash of the ``request_uri`` it came through (RFC 9126), if it was pushed.
    pushed: str | None = None


@dataclass(frozen=True, slots=True)
class Authorized:
    """An approved authorization request: the code to send to the redirect URI."""

    redirect_uri: str
    code: str
    state: str | None


class OAuthProtocol:
    """Authlib's request validation over the domain core, as coroutines.

    Parameters:
        core: The domain core.
    """

    def __init__(self, core: AuthorizationCore) -> None:
        self.core = core
        self.settings = core.settings
        self.server = BrokerAuthorizationServer(core)

    # the partner endpoints

    async def partner_issue(
        self,
        *,
        response_type: str,
        params: Mapping[str, Sequence[str]],
        client: Client,
        account: Account,
    ) -> dict[str, Any]:
        """Issue a code (``code``) or token (``token``) for the partner endpoints, for the
        client and account the partner endpoint has already read and checked."""
        values = {key: list(v) for key, v in params.items()}
        values["response_type"] = [response_type]
        request = OAuthRequest(
            method="POST",
            uri=self.settings.url(routes.PARTNER_AUTHORIZE.path),
            headers={},
            params=values,
            partner_flow=True,
            known_client=client,
            account=account,
        )
        result: Any = await run_sync(self._partner_issue, request, account.account_id)
        if isinstance(result, IssuedCode):
            return {
                "code": result.code,
                "client_id": result.record.client_id,
                "redirect_uri": result.record.redirect_uri,
                "scope": result.record.scope,
            }
        body: dict[str, Any] = result
        return body

    def _partner_issue(self, request: OAuthRequest, account_id: UUID) -> Any:
        try:
            grant = self.server.get_authorization_grant(request)
            redirect_uri = grant.validate_authorization_request()
            _, body, _ = grant.create_authorization_response(redirect_uri, account_id)
        except OAuth2Error as exc:
            raise refusal(exc) from None
        return body

    # the standard endpoints

    async def token(
        self,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, Sequence[str]],
        dpop_proofs: Sequence[str] = (),
    ) -> ProtocolResponse:
        """``POST /oauth/token`` (RFC 6749 §4.1.3, §6); ``dpop_proofs``: the request's
        ``DPoP`` header values (RFC 9449 §5), checked before the grant runs."""
        if not params.get("grant_type", [""])[0]:
            # A required parameter missing is invalid_request (RFC 6749 §5.2); Authlib
            # would answer unsupported_grant_type.
            raise InvalidRequest("grant_type is missing")
        uri = self.settings.url(routes.TOKEN.path)
        dpop = self.core.dpop
        proof = None
        if dpop_proofs:
            # htu is the token endpoint's URL under the issuer, never the Host header's.
            proof = await dpop.check(dpop_proofs, method="POST", url=uri)
        request = OAuthRequest(method="POST", uri=uri, headers=headers, params=params, dpop=proof)
        status, body, response_headers = await run_sync(self.server.create_token_response, request)
        nonce = dpop.nonce()
        if nonce is not None:
            response_headers = (*response_headers, ("DPoP-Nonce", nonce))
        return ProtocolResponse(status, dict(body), response_headers)

    async def endpoint(
        self,
        route: RouteSpec,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, Sequence[str]],
    ) -> ProtocolResponse:
        """``POST /oauth/revoke`` (RFC 7009, :data:`.routes.REVOCATION`) or
        ``POST /oauth/introspect`` (RFC 7662, :data:`.routes.INTROSPECTION`)."""
        request = OAuthRequest(
            method="POST", uri=self.settings.url(route.path), headers=headers, params=params
        )
        status, body, response_headers = await run_sync(
            self.server.create_endpoint_response, _ENDPOINTS[route], request
        )
        return ProtocolResponse(status, dict(body) if body else {}, response_headers)

    # hosted consent

    async def consent_request(self, params: Mapping[str, Sequence[str]]) -> ConsentRequest:
        """Validate an authorization request (RFC 6749 §4.1.1) sent through the front
        channel; refused where requests must be pushed (RFC 9126 §6)."""
        await self.core.pushed.check_front_channel(_first(params, "client_id"))
        request = self._hosted_request(params)
        result: ConsentRequest = await run_sync(self._consent_request, request)
        return result

    def _hosted_request(self, params: Mapping[str, Sequence[str]]) -> OAuthRequest:
        values = {key: list(params[key]) for key in AUTHORIZATION_PARAMS if key in params}
        return OAuthRequest(
            method="GET", uri=self.settings.url(routes.CONSENT.path), headers={}, params=values
        )

    def _validated(self, request: OAuthRequest) -> tuple[Any, str]:
        try:
            grant = self.server.get_authorization_grant(request)
            grant.validate_no_multiple_request_parameter(request)
            redirect_uri: str = grant.validate_authorization_request()
        except OAuth2Error as exc:
            exc.state = request.payload.state
            raise refusal(exc) from None
        except Refusal as exc:
            exc.state = request.payload.state
            raise
        return grant, redirect_uri

    def _consent_request(self, request: OAuthRequest) -> ConsentRequest:
        _, redirect_uri = self._validated(request)
        data = request.payload.data
        return ConsentRequest(
            client=request.client.model,
            redirect_uri=redirect_uri,
            scopes=tuple((request.scope or "").split()),
            state=request.payload.state,
            params=tuple((key, data[key]) for key in AUTHORIZATION_PARAMS if data.get(key)),
        )

    async def consent_decision(
        self,
        params: Mapping[str, Sequence[str]],
        account_id: UUID | None,
        *,
        approve: bool,
        pushed: str | None = None,
        presented_at: datetime | None = None,
    ) -> Authorized:
        """The user's answer: a code for the redirect URI, or a refusal to send there
        (``access_denied``, or a rule that refuses this account).

        ``pushed``: the hash of the ``request_uri`` the request came through, which is
        used up here, once (RFC 9126 §4), as it stood when it was ``presented_at``."""
        if pushed is None:
            await self.core.pushed.check_front_channel(_first(params, "client_id"))
        else:
            record = await self.core.grants.get_pushed_request(pushed)
            if record is None:
                raise InvalidRequestURI()
            await self.core.pushed.use(record, presented_at=presented_at)
        request = self._hosted_request(params)
        result: Authorized = await run_sync(self._consent_decision, request, account_id, approve)
        return result

    def _consent_decision(
        self, request: OAuthRequest, account_id: UUID | None, approve: bool
    ) -> Any:
        grant, redirect_uri = self._validated(request)
        state = request.payload.state
        try:
            if not approve or account_id is None:
                raise AccessDenied("The user denied the request.")
            _, issued, _ = grant.create_authorization_response(redirect_uri, account_id)
        except Refusal as exc:
            exc.redirect_uri, exc.state = redirect_uri, state
            raise
        return Authorized(redirect_uri=redirect_uri, code=issued.code, state=state)

    # pushed authorization requests (RFC 9126)

    async def push(
        self,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, Sequence[str]],
        dpop_proofs: Sequence[str] = (),
    ) -> ProtocolResponse:
        """``POST /oauth/par`` (RFC 9126 §2): authenticate the client as the token
        endpoint does, validate the request as the hosted consent page does, and store
        it: ``201`` with its ``request_uri``. A ``DPoP`` proof binds the code to come to
        its key, as ``dpop_jkt`` does (RFC 9449 §10.1); with both, they must agree."""
        if dpop_proofs:
            uri = self.settings.url(routes.PUSHED_AUTHORIZATION.path)
            proof = await self.core.dpop.check(dpop_proofs, method="POST", url=uri)
            named = params.get("dpop_jkt", ())
            if any(value != proof.jkt for value in named):
                raise InvalidDPoPProof("dpop_jkt is not the thumbprint of the proof's key")
            params = {**params, "dpop_jkt": [proof.jkt]}
        request = OAuthRequest(
            method="POST",
            uri=self.settings.url(routes.PUSHED_AUTHORIZATION.path),
            headers=headers,
            params=params,
        )
        pushed: PushedAuthorization = await run_sync(self._push, request)
        return ProtocolResponse(201, pushed.response(), JSON_HEADERS)

    def _push(self, request: OAuthRequest) -> PushedAuthorization:
        try:
            client = self.server.authenticate_client(request, AUTH_METHODS, endpoint="par")
        except OAuth2Error as exc:
            raise refusal(exc) from None
        pushed = self.core.pushed
        params = request.payload.all_values
        pushed.check_pushable(params)
        pushed.check_client_id(client.model, params)
        values = {key: params[key] for key in AUTHORIZATION_PARAMS if key in params}
        values["client_id"] = [client.model.client_id]
        validated = self._consent_request(self._hosted_request(values))
        result: PushedAuthorization = await_(pushed.push(client.model, validated.params))
        return result

    async def pushed_consent_request(
        self, client_id: str | None, request_uri: str | None
    ) -> ConsentRequest:
        """The request a ``request_uri`` stands for (RFC 9126 §4), validated again (a
        client's registration may have changed since), if ``client_id`` pushed it and it
        is unused and unexpired; the other front-channel parameters are ignored."""
        record = await self.core.pushed.find(client_id, request_uri)
        request = self._hosted_request({key: [value] for key, value in record.params})
        consent: ConsentRequest = await run_sync(self._consent_request, request)
        return replace(consent, pushed=record.request_hash)


def _first(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None
