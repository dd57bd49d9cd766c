"""The OAuth protocol engine: Authlib's server and grants, adapted to the broker API.

This is the only module that imports Authlib. Grant classes are synchronous; they run
under :func:`._bridge.run_sync` and reach the async repositories through
:func:`._bridge.await_`, so nothing blocks the event loop.

Deliberate departures from Authlib's defaults:

* the code is consumed and the token stored in one atomic ``redeem_code`` call, not
  "save token, then delete code" (which lets two concurrent redemptions both succeed);
* a reused code revokes the tokens issued from it (RFC 9700 §4.5);
* secrets are compared as SHA-256 hashes in constant time, never stored in clear;
* unknown client and wrong secret give the identical error;
* PKCE accepts only ``S256`` and compares in constant time;
* tokens live for ``OAuthSettings.access_token_lifetime`` (none by default), not 10 days;
* refresh tokens rotate atomically, and a reused one revokes its grant (RFC 9700 §4.14);
* revocation and introspection answer a token of another client exactly like an unknown
  one (RFC 7009 §2.2, RFC 7662 §2.2), so token values cannot be probed.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    AuthorizationServer,
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749 import grants as authlib_grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from ._bridge import await_, run_sync
from .errors import Unauthorized, UnprocessableEntity
from .events import (
    ClientAuthenticationFailed,
    CodeIssued,
    CodeReplayDetected,
    EventListener,
    OAuthEvent,
    RefreshTokenReuseDetected,
    TokenIssued,
    TokenRevoked,
)
from .models import AccessToken, Account, AuthorizationCode, Client, RefreshToken
from .security import hash_secret, new_secret, secrets_equal, utcnow
from .settings import OAuthSettings
from .storage.base import AccountRepository, ClientRepository, GrantStore

__all__ = ["ConsentRequest", "HostedError", "OAuthProtocol", "ProtocolResponse"]

log = logging.getLogger("starlette_broker_oauth")

_NO_SECRET = hash_secret("")
_JSON_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
)


@dataclass(frozen=True, slots=True)
class ProtocolResponse:
    """What an endpoint answers: status, JSON body and headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...]


class _Request(OAuth2Request):  # type: ignore[misc]
    """An OAuth2Request over parameters already read from the HTTP request."""

    def __init__(
        self,
        *,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        params: Mapping[str, Sequence[str]],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._params = {key: values[0] for key, values in params.items() if values}
        self.payload = BasicOAuth2Payload(self._params)
        self.payload._datalist = {key: list(values) for key, values in params.items()}
        self.partner_flow = False

    @property
    def form(self) -> dict[str, str]:
        return self._params

    @property
    def args(self) -> dict[str, str]:
        return self._params


class _Client(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a :class:`~.models.Client`."""

    def __init__(self, client: Client, settings: OAuthSettings) -> None:
        self.model = client
        self._settings = settings

    def get_client_id(self) -> str:
        return self.model.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.model.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        requested = scope_to_list(scope) or []
        allowed = (
            self.model.scopes if self.model.scopes is not None else self._settings.scopes_supported
        )
        if not set(requested) <= allowed:
            return None
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 9700 §4.1.3: exact string comparison, no normalisation.
        return any(secrets_equal(redirect_uri, uri) for uri in self.model.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets_equal(hash_secret(client_secret), self.model.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in {"client_secret_basic", "client_secret_post"}

    def check_response_type(self, response_type: str) -> bool:
        return (
            response_type in self.model.response_types
            and response_type in self._settings.response_types
        )

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "refresh_token":
            return self._settings.refresh_token_lifetime is not None
        return grant_type == "authorization_code"


class _TokenView:
    """Authlib's view of a stored access or refresh token (revocation, introspection)."""

    def __init__(self, record: AccessToken | RefreshToken, server: BrokerAuthorizationServer):
        self.model = record
        self.refresh = isinstance(record, RefreshToken)
        self._server = server

    def check_client(self, client: _Client) -> bool:
        return secrets_equal(self.model.client_id, client.model.client_id)

    def get_scope(self) -> str:
        return self.model.scope

    def is_expired(self) -> bool:
        return self.model.is_expired(utcnow())

    def is_revoked(self) -> bool:
        if self.model.revoked_at is not None:
            return True
        if isinstance(self.model, RefreshToken) and self.model.used_at is not None:
            return True
        client: Client | None = await_(self._server.clients.get_client(self.model.client_id))
        return client is None or not client.active


class _Code:
    """Authlib's view of an :class:`~.models.AuthorizationCode`."""

    def __init__(self, code: AuthorizationCode) -> None:
        self.model = code
        self.code_challenge = code.code_challenge
        self.code_challenge_method = code.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.model.redirect_uri

    def get_scope(self) -> str:
        return self.model.scope


def _verify_s256(code_verifier: str, code_challenge: str) -> bool:
    return hmac.compare_digest(create_s256_code_challenge(code_verifier), code_challenge)


class _S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE (RFC 7636) with ``S256`` only: ``plain`` and a missing method are refused."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - Authlib's class attribute
    CODE_CHALLENGE_METHODS = {"S256": _verify_s256}  # noqa: RUF012

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class _PolicyMixin:
    """The broker's rules on who may receive a code or token."""

    server: BrokerAuthorizationServer

    def check_policy(self, client: _Client, account: Account | None) -> None:
        if not client.model.active:
            raise UnauthorizedClientError("The client is disabled.")
        if account is None:
            raise InvalidRequestError("Unknown 'account_id'.")
        settings = self.server.settings
        approved = client.model.live_trading_approved or settings.allow_live_without_approval
        if account.live and not approved:
            raise UnauthorizedClientError("The client is not approved for live trading.")

    def token_account(self, client: _Client, account: Account | None) -> Account:
        """The account a token endpoint grant issues for; policy failures are invalid_grant."""
        try:
            self.check_policy(client, account)
        except OAuth2Error as exc:
            raise InvalidGrantError(exc.description) from None
        assert account is not None
        self.request.user = account  # type: ignore[attr-defined]
        return account


class _CodeGrant(_PolicyMixin, authlib_grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 §4.1: the partner's code endpoint, hosted consent, and the exchange with
    atomic, replay-aware redemption."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

    def validate_authorization_request(self) -> str:
        if self.request.partner_flow:
            # The partner endpoint carries the client's secret (client_secret_post).
            self.server.authenticate_client(self.request, ["client_secret_post"], "authorize")
        redirect_uri: str = super().validate_authorization_request()
        if not self.request.client.model.active:
            raise UnauthorizedClientError("The client is disabled.", redirect_uri=redirect_uri)
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user: Account) -> Any:
        self.check_policy(self.request.client, grant_user)
        self.request.user = grant_user
        code = new_secret()
        now = utcnow()
        payload = self.request.payload.data
        record = AuthorizationCode(
            code_hash=hash_secret(code),
            client_id=self.request.client.model.client_id,
            account_id=grant_user.account_id,
            redirect_uri=redirect_uri,
            scope=self.request.scope or "",
            issued_at=now,
            expires_at=now + self.server.settings.code_lifetime,
            code_challenge=payload.get("code_challenge") or None,
            code_challenge_method=payload.get("code_challenge_method") or None,
        )
        await_(self.server.grants.save_code(record))
        via = "partner" if self.request.partner_flow else "consent"
        self.server.emit(
            CodeIssued(
                client_id=record.client_id,
                account_id=record.account_id,
                scope=record.scope,
                via=via,
            )
        )
        if not self.request.partner_flow:
            location = self.server.redirect_location(
                redirect_uri, [("code", code)], self.request.payload.state
            )
            return 303, "", [("Location", location)]
        body = {
            "code": code,
            "client_id": record.client_id,
            "redirect_uri": redirect_uri,
            "scope": record.scope,
        }
        return 200, body, list(_JSON_HEADERS)

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        code_hash = hash_secret(code)
        record: AuthorizationCode | None = await_(self.server.grants.get_code(code_hash))
        if record is None or not secrets_equal(record.client_id, client.model.client_id):
            return None
        if record.used_at is not None:
            self._replayed(record)
        if utcnow() >= record.expires_at:
            raise InvalidGrantError("The code has expired.")
        return _Code(record)

    def _replayed(self, record: AuthorizationCode) -> None:
        server = self.server
        server.emit(CodeReplayDetected(client_id=record.client_id, account_id=record.account_id))
        server.revoke_family(record.code_hash, client_id=record.client_id, reason="code_replay")
        log.warning("authorization code replayed; its grant is revoked")
        raise InvalidGrantError("The code has already been used.")

    def authenticate_user(self, authorization_code: _Code) -> Account | None:
        account: Account | None = await_(
            self.server.accounts.get_account(authorization_code.model.account_id)
        )
        return account

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: _Client = self.request.client
        code: _Code = self.request.authorization_code
        account = self.token_account(client, self.authenticate_user(code))
        server = self.server
        token = self.generate_token(
            user=account, scope=code.get_scope(), include_refresh_token=server.refresh_enabled
        )
        family = code.model.code_hash
        record, refresh = server.records(token, client.model, account, family)
        redeemed = await_(
            server.grants.redeem_code(
                family,
                client_id=client.model.client_id,
                token=record,
                refresh_token=refresh,
                now=record.issued_at,
            )
        )
        if not redeemed:
            self._replayed(code.model)
        server.token_issued(record, self.GRANT_TYPE)
        return 200, token, list(_JSON_HEADERS)


class _RefreshGrant(_PolicyMixin, authlib_grants.RefreshTokenGrant):  # type: ignore[misc]
    """RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> _TokenView | None:
        record: RefreshToken | None = await_(
            self.server.grants.get_refresh_token(hash_secret(refresh_token))
        )
        if record is None or record.revoked_at is not None:
            return None
        client = self.request.client
        if not secrets_equal(record.client_id, client.model.client_id):
            return None
        if record.used_at is not None:
            self._reused(record)
        if record.is_expired(utcnow()):
            return None
        return _TokenView(record, self.server)

    def _reused(self, record: RefreshToken) -> None:
        server = self.server
        server.emit(
            RefreshTokenReuseDetected(client_id=record.client_id, account_id=record.account_id)
        )
        server.revoke_family(record.family_id, client_id=record.client_id, reason="refresh_reuse")
        log.warning("refresh token reused; its grant is revoked")
        raise InvalidGrantError("The refresh token has already been used.")

    def authenticate_user(self, refresh_token: _TokenView) -> Account | None:
        account: Account | None = await_(
            self.server.accounts.get_account(refresh_token.model.account_id)
        )
        return account

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        old: _TokenView = self.request.refresh_token
        assert isinstance(old.model, RefreshToken)
        client: _Client = self.request.client
        account = self.token_account(client, self.authenticate_user(old))
        server = self.server
        token = self.issue_token(account, old)
        record, refresh = server.records(token, client.model, account, old.model.family_id)
        assert refresh is not None
        rotated = await_(
            server.grants.rotate_refresh_token(
                old.model.token_hash,
                client_id=client.model.client_id,
                token=record,
                refresh_token=refresh,
                now=record.issued_at,
            )
        )
        if not rotated:
            self._reused(old.model)
        server.token_issued(record, self.GRANT_TYPE)
        return 200, token, list(_JSON_HEADERS)


class _DirectTokenGrant(_PolicyMixin, authlib_grants.ImplicitGrant):  # type: ignore[misc]
    """The seed's ``response_type=token``: the partner obtains a token for the client."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]  # noqa: RUF012

    @classmethod
    def check_authorization_endpoint(cls, request: _Request) -> bool:
        # Only the partner endpoint issues tokens this way; never a browser redirect.
        return bool(request.partner_flow and request.payload.response_type == "token")

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        if not self.request.client.model.active:
            raise UnauthorizedClientError("The client is disabled.")
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user: Account) -> Any:
        self.check_policy(self.request.client, grant_user)
        self.request.user = grant_user
        token = self.generate_token(
            user=grant_user, scope=self.request.scope or "", include_refresh_token=False
        )
        self.save_token(token)
        return 200, token, list(_JSON_HEADERS)


class _TokenLookup:
    """Finds a presented token among access and refresh tokens."""

    server: BrokerAuthorizationServer
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> _TokenView | None:
        token_hash = hash_secret(token_string)
        grants = self.server.grants
        order = ("refresh_token", "access_token")
        if token_type_hint != "refresh_token":  # noqa: S105 - a hint's name, not a secret
            order = ("access_token", "refresh_token")
        for kind in order:
            record: AccessToken | RefreshToken | None
            if kind == "access_token":
                record = await_(grants.get_token(token_hash))
            else:
                record = await_(grants.get_refresh_token(token_hash))
            if record is not None:
                return _TokenView(record, self.server)
        return None


class _Revocation(_TokenLookup, RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: a client revokes its own access or refresh token."""

    def authenticate_token(self, request: _Request, client: _Client) -> _TokenView | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        # Another client's token is answered like an unknown one: 200, nothing revoked.
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: _TokenView, request: _Request) -> None:
        model = token.model
        if isinstance(model, RefreshToken):
            # RFC 7009 §2.1: revoking a refresh token ends the grant's access tokens too.
            self.server.revoke_family(
                model.family_id, client_id=model.client_id, reason="revocation_endpoint"
            )
            return
        was = await_(self.server.grants.revoke_token(model.token_hash, now=utcnow()))
        newly = was is not None and was.revoked_at is None
        self.server.revoked([model.token_hash], model.client_id, "revocation_endpoint", newly=newly)


class _Introspection(_TokenLookup, IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662: a client asks about its own token; anything else is ``active: false``."""

    def check_permission(self, token: _TokenView, client: _Client, request: _Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: _TokenView) -> dict[str, Any]:
        model = token.model
        payload: dict[str, Any] = {
            "active": True,
            "scope": model.scope,
            "client_id": model.client_id,
            "token_type": "refresh_token" if token.refresh else "Bearer",
            "sub": str(model.account_id),
            "iat": int(model.issued_at.timestamp()),
            "iss": self.server.settings.issuer,
        }
        if model.expires_at is not None:
            payload["exp"] = int(model.expires_at.timestamp())
        return payload


class BrokerAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's authorization server over the library's async repositories."""

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        clients: ClientRepository,
        accounts: AccountRepository,
        grants: GrantStore,
        on_revoked: Callable[[Sequence[str]], None],
        on_event: EventListener | None,
    ) -> None:
        super().__init__(scopes_supported=sorted(settings.scopes_supported))
        self.on_revoked = on_revoked
        self.on_event = on_event
        self.settings = settings
        self.refresh_enabled = settings.refresh_token_lifetime is not None
        self.clients = clients
        self.accounts = accounts
        self.grants = grants
        self.register_client_auth_method("client_secret_basic", self._authenticate_basic)
        self.register_client_auth_method("client_secret_post", self._authenticate_post)
        self.register_client_auth_method("none", lambda query_client, request: None)
        self.register_token_generator("default", self._generate_token)
        self.register_grant(_CodeGrant, [_S256Only(required=False)])
        self.register_grant(_DirectTokenGrant)
        if self.refresh_enabled:
            self.register_grant(_RefreshGrant)
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    # events and revocations

    def emit(self, event: OAuthEvent) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(event)
            if inspect.isawaitable(result):
                await_(result)
        except Exception:
            log.exception("event listener failed on %s", type(event).__name__)

    def revoked(
        self,
        token_hashes: Sequence[str],
        client_id: str | None,
        reason: str,
        *,
        newly: bool = True,
    ) -> None:
        """Tell the token cache (always) and the event listener (when ``newly`` revoked)."""
        self.on_revoked(token_hashes)
        if token_hashes and newly:
            self.emit(
                TokenRevoked(client_id=client_id, token_ids=tuple(token_hashes), reason=reason)
            )

    def revoke_family(self, family_id: str, *, client_id: str, reason: str) -> None:
        revoked = await_(self.grants.revoke_family(family_id, now=utcnow()))
        self.revoked(revoked, client_id, reason)

    def token_issued(self, record: AccessToken, grant_type: str) -> None:
        self.emit(
            TokenIssued(
                client_id=record.client_id,
                account_id=record.account_id,
                scope=record.scope,
                grant_type=grant_type,
                token_id=record.token_hash,
            )
        )

    # client authentication

    def _authenticate_basic(self, query_client: Any, request: _Request) -> _Client | None:
        client_id, secret = extract_basic_authorization(request.headers)
        return self._authenticate(query_client, client_id, secret, request)

    def _authenticate_post(self, query_client: Any, request: _Request) -> _Client | None:
        form = request.form
        return self._authenticate(
            query_client, form.get("client_id"), form.get("client_secret"), request
        )

    def _authenticate(
        self, query_client: Any, client_id: str | None, secret: str | None, request: _Request
    ) -> _Client | None:
        # An unknown client costs the same hash and comparison as a wrong secret, and both
        # end in the same InvalidClientError: client ids cannot be probed.
        if not client_id or not secret:
            return None
        client: _Client | None = query_client(client_id)
        stored = client.model.secret_hash if client is not None else _NO_SECRET
        if secrets_equal(hash_secret(secret), stored) and client is not None:
            return client
        endpoint = request.uri.rsplit("/", 1)[-1]
        self.emit(ClientAuthenticationFailed(client_id=client_id[:128], endpoint=endpoint))
        return None

    # storage

    def query_client(self, client_id: str) -> _Client | None:
        client: Client | None = await_(self.clients.get_client(client_id))
        return None if client is None else _Client(client, self.settings)

    def _generate_token(
        self,
        grant_type: str,
        client: _Client,
        user: Account | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "access_token": new_secret(),
            "token_type": "Bearer",
            "scope": scope or "",
        }
        lifetime = self.settings.access_token_lifetime
        if lifetime is not None:
            token["expires_in"] = int(lifetime.total_seconds())
        if include_refresh_token and self.refresh_enabled:
            token["refresh_token"] = new_secret()
        return token

    def records(
        self, token: Mapping[str, Any], client: Client, account: Account, family_id: str
    ) -> tuple[AccessToken, RefreshToken | None]:
        """The storage records of a token response: the access token and any refresh token."""
        return (
            self.token_record(token, client, account, family_id),
            self.refresh_record(token, client, account, family_id),
        )

    def token_record(
        self, token: Mapping[str, Any], client: Client, account: Account, family_id: str | None
    ) -> AccessToken:
        now = utcnow()
        lifetime = self.settings.access_token_lifetime
        return AccessToken(
            token_hash=hash_secret(token["access_token"]),
            client_id=client.client_id,
            account_id=account.account_id,
            scope=token["scope"],
            account_live=account.live,
            issued_at=now,
            expires_at=None if lifetime is None else now + lifetime,
            family_id=family_id,
        )

    def refresh_record(
        self, token: Mapping[str, Any], client: Client, account: Account, family_id: str
    ) -> RefreshToken | None:
        lifetime = self.settings.refresh_token_lifetime
        if "refresh_token" not in token or lifetime is None:
            return None
        now = utcnow()
        return RefreshToken(
            token_hash=hash_secret(token["refresh_token"]),
            family_id=family_id,
            client_id=client.client_id,
            account_id=account.account_id,
            scope=token["scope"],
            account_live=account.live,
            issued_at=now,
            expires_at=now + lifetime,
        )

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        record = self.token_record(token, request.client.model, request.user, None)
        await_(self.grants.save_token(record))
        self.token_issued(record, "partner")

    # responses

    def redirect_location(
        self, redirect_uri: str, params: list[tuple[str, str]], state: str | None
    ) -> str:
        """The redirect back to the client, with ``state`` and ``iss`` (RFC 9207)."""
        if state:
            params.append(("state", state))
        params.append(("iss", self.settings.issuer))
        location: str = add_params_to_uri(redirect_uri, params)
        return location

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(
        self, status: int, body: Any, headers: Sequence[tuple[str, str]]
    ) -> ProtocolResponse:
        return ProtocolResponse(status, dict(body) if body else {}, tuple(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A validated authorization request (RFC 6749 §4.1.1), waiting for the user."""

    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    params: tuple[tuple[str, str], ...]


class HostedError(Exception):
    """An authorization request that fails before or after the redirect URI is trusted.

    ``location`` is set when the error may be sent back to the client (RFC 6749
    §4.1.2.1); otherwise the user agent must be shown an error page, never redirected
    (RFC 9700 §4.11).
    """

    def __init__(self, error: str, description: str, location: str | None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.location = location


CONSENT_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


class OAuthProtocol:
    """The async face of the protocol engine, used by the HTTP layer.

    Parameters:
        settings: Server settings.
        clients, accounts, grants: The repositories.
        on_revoked: Told the hashes of access tokens the protocol revokes.
        on_event: The audit event listener, if any.
    """

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        clients: ClientRepository,
        accounts: AccountRepository,
        grants: GrantStore,
        on_revoked: Callable[[Sequence[str]], None],
        on_event: EventListener | None = None,
    ) -> None:
        self.settings = settings
        self.server = BrokerAuthorizationServer(
            settings=settings,
            clients=clients,
            accounts=accounts,
            grants=grants,
            on_revoked=on_revoked,
            on_event=on_event,
        )

    async def emit(self, event: OAuthEvent) -> None:
        """Send an event from async code."""
        await run_sync(self.server.emit, event)

    async def revoked(
        self, token_hashes: Sequence[str], client_id: str, reason: str, *, newly: bool
    ) -> None:
        """Tell the cache and the listener about tokens revoked outside the protocol."""
        await run_sync(
            functools.partial(self.server.revoked, newly=newly), token_hashes, client_id, reason
        )

    # the partner endpoints

    async def partner_issue(
        self,
        *,
        response_type: str,
        params: Mapping[str, Sequence[str]],
        account_id: UUID,
    ) -> dict[str, Any]:
        """Issue a code (``code``) or token (``token``) for the partner endpoints.

        Raises :class:`~.errors.Unauthorized` for client authentication failures and
        :class:`~.errors.UnprocessableEntity` for everything the client or account
        does not allow.
        """
        values = {key: list(v) for key, v in params.items()}
        values["response_type"] = [response_type]
        request = _Request(
            method="POST", uri=self.settings.url("/v1/oauth/authorize"), headers={}, params=values
        )
        request.partner_flow = True
        response: ProtocolResponse = await run_sync(self._partner_issue, request, account_id)
        return response.body

    def _partner_issue(self, request: _Request, account_id: UUID) -> ProtocolResponse:
        server = self.server
        try:
            grant = server.get_authorization_grant(request)
            redirect_uri = grant.validate_authorization_request()
            account: Account | None = await_(server.accounts.get_account(account_id))
            status, body, headers = grant.create_authorization_response(redirect_uri, account)
        except InvalidClientError:
            raise Unauthorized.client_refused() from None
        except OAuth2Error as exc:
            raise UnprocessableEntity(exc.description or exc.error) from None
        return ProtocolResponse(status, body, tuple(headers))

    async def check_client_request(
        self,
        client: Client,
        *,
        response_type: str | None,
        redirect_uri: str | None,
        scope: str | None,
    ) -> None:
        """Validate optional authorization parameters against a client (422 if invalid)."""
        view = _Client(client, self.settings)
        if response_type is not None and not view.check_response_type(response_type):
            raise UnprocessableEntity(f"response_type {response_type!r} is not allowed")
        if redirect_uri is not None and not view.check_redirect_uri(redirect_uri):
            raise UnprocessableEntity("redirect_uri is not registered for this client")
        if scope is not None:
            try:
                self.server.validate_requested_scope(scope)
            except InvalidScopeError:
                raise UnprocessableEntity("scope is invalid") from None
            if view.get_allowed_scope(scope) is None:
                raise UnprocessableEntity("scope is invalid")

    # the standard endpoints

    async def token_endpoint(
        self, *, headers: Mapping[str, str], params: Mapping[str, Sequence[str]]
    ) -> ProtocolResponse:
        """``POST /oauth/token`` (RFC 6749 §4.1.3, §6), answered in the RFC 6749 §5 shapes."""
        request = _Request(
            method="POST", uri=self.settings.url("/oauth/token"), headers=headers, params=params
        )
        response: ProtocolResponse = await run_sync(self.server.create_token_response, request)
        return response

    async def endpoint(
        self,
        name: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, Sequence[str]],
    ) -> ProtocolResponse:
        """``POST /oauth/revoke`` (RFC 7009, ``revocation``) or ``POST /oauth/introspect``
        (RFC 7662, ``introspection``)."""
        request = _Request(
            method="POST", uri=self.settings.url(path), headers=headers, params=params
        )
        response: ProtocolResponse = await run_sync(
            self.server.create_endpoint_response, name, request
        )
        return response

    # hosted consent

    async def consent_request(self, params: Mapping[str, Sequence[str]]) -> ConsentRequest:
        """Validate an authorization request (RFC 6749 §4.1.1); raises :class:`HostedError`."""
        request = self._hosted_request(params)
        result: ConsentRequest = await run_sync(self._consent_request, request)
        return result

    def _hosted_request(self, params: Mapping[str, Sequence[str]]) -> _Request:
        values = {key: list(params[key]) for key in CONSENT_PARAMS if key in params}
        return _Request(
            method="GET", uri=self.settings.url("/oauth/authorize"), headers={}, params=values
        )

    def _validated(self, request: _Request) -> tuple[Any, str]:
        server = self.server
        try:
            grant = server.get_authorization_grant(request)
            grant.validate_no_multiple_request_parameter(request)
            redirect_uri: str = grant.validate_authorization_request()
        except OAuth2Error as exc:
            raise self._hosted_error(exc, request) from None
        return grant, redirect_uri

    def _hosted_error(self, exc: OAuth2Error, request: _Request) -> HostedError:
        description = exc.description or exc.error
        location = None
        if exc.redirect_uri:
            params = [("error", exc.error), ("error_description", description)]
            location = self.server.redirect_location(
                exc.redirect_uri, params, request.payload.state
            )
        return HostedError(exc.error, description, location)

    def _consent_request(self, request: _Request) -> ConsentRequest:
        _, redirect_uri = self._validated(request)
        params = tuple(
            (key, request.payload.data[key])
            for key in CONSENT_PARAMS
            if request.payload.data.get(key)
        )
        return ConsentRequest(
            client=request.client.model,
            redirect_uri=redirect_uri,
            scopes=tuple(scope_to_list(request.scope) or ()),
            state=request.payload.state,
            params=params,
        )

    async def consent_decision(
        self, params: Mapping[str, Sequence[str]], account_id: UUID, *, approve: bool
    ) -> str:
        """The user's answer: where to send the browser (code or ``access_denied``)."""
        request = self._hosted_request(params)
        location: str = await run_sync(self._consent_decision, request, account_id, approve)
        return location

    def _consent_decision(self, request: _Request, account_id: UUID, approve: bool) -> str:
        grant, redirect_uri = self._validated(request)
        try:
            if not approve:
                raise AccessDeniedError("The user denied the request.", redirect_uri=redirect_uri)
            account: Account | None = await_(self.server.accounts.get_account(account_id))
            _, _, headers = grant.create_authorization_response(redirect_uri, account)
        except OAuth2Error as exc:
            exc.redirect_uri = redirect_uri
            error = self._hosted_error(exc, request)
            assert error.location is not None
            return error.location
        return str(dict(headers)["Location"])
