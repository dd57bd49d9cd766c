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
* tokens live for ``OAuthSettings.access_token_lifetime`` (none by default), not 10 days.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from authlib.oauth2.rfc6749 import (
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
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge

from ._bridge import await_, run_sync
from .errors import Unauthorized, UnprocessableEntity
from .models import AccessToken, Account, AuthorizationCode, Client
from .security import hash_secret, new_secret, secrets_equal, utcnow
from .settings import OAuthSettings
from .storage.base import AccountRepository, ClientRepository, GrantStore

__all__ = ["OAuthProtocol", "ProtocolResponse"]

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
        return grant_type == "authorization_code"


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


class _CodeGrant(_PolicyMixin, authlib_grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 §4.1 with the broker's partner step and atomic, replay-aware redemption."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

    def validate_authorization_request(self) -> str:
        if self.request.partner_flow:
            # The partner endpoint carries the client's secret (client_secret_post).
            self.server.authenticate_client(self.request, ["client_secret_post"], "authorize")
        redirect_uri: str = super().validate_authorization_request()
        if not self.request.client.model.active:
            raise UnauthorizedClientError("The client is disabled.")
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
            self._replayed(code_hash)
        if utcnow() >= record.expires_at:
            raise InvalidGrantError("The code has expired.")
        return _Code(record)

    def _replayed(self, code_hash: str) -> None:
        revoked = await_(self.server.grants.revoke_code_tokens(code_hash, now=utcnow()))
        self.server.on_revoked(revoked)
        log.warning("authorization code replayed; %d token(s) revoked", len(revoked))
        raise InvalidGrantError("The code has already been used.")

    def authenticate_user(self, authorization_code: _Code) -> Account | None:
        account: Account | None = await_(
            self.server.accounts.get_account(authorization_code.model.account_id)
        )
        return account

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: _Client = self.request.client
        code: _Code = self.request.authorization_code
        account = self.authenticate_user(code)
        try:
            self.check_policy(client, account)
        except OAuth2Error as exc:
            raise InvalidGrantError(exc.description) from None
        assert account is not None
        self.request.user = account
        token = self.generate_token(
            user=account, scope=code.get_scope(), include_refresh_token=False
        )
        record = self.server.token_record(token, client.model, account, code.model.code_hash)
        redeemed = await_(
            self.server.grants.redeem_code(
                code.model.code_hash,
                client_id=client.model.client_id,
                token=record,
                now=record.issued_at,
            )
        )
        if not redeemed:
            self._replayed(code.model.code_hash)
        return 200, token, list(_JSON_HEADERS)


class _DirectTokenGrant(_PolicyMixin, authlib_grants.ImplicitGrant):  # type: ignore[misc]
    """The seed's ``response_type=token``: the partner obtains a token for the client."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]  # noqa: RUF012

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


def _authenticate_basic(query_client: Any, request: _Request) -> _Client | None:
    client_id, secret = extract_basic_authorization(request.headers)
    return _authenticate(query_client, client_id, secret)


def _authenticate_post(query_client: Any, request: _Request) -> _Client | None:
    form = request.form
    return _authenticate(query_client, form.get("client_id"), form.get("client_secret"))


def _authenticate(query_client: Any, client_id: str | None, secret: str | None) -> _Client | None:
    # An unknown client costs the same hash and comparison as a wrong secret, and both
    # end in the same InvalidClientError: ids cannot be probed (RFC 9700 §4.x).
    if not client_id or not secret:
        return None
    client: _Client | None = query_client(client_id)
    stored = client.model.secret_hash if client is not None else _NO_SECRET
    if secrets_equal(hash_secret(secret), stored) and client is not None:
        return client
    return None


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
    ) -> None:
        super().__init__(scopes_supported=sorted(settings.scopes_supported))
        self.on_revoked = on_revoked
        self.settings = settings
        self.clients = clients
        self.accounts = accounts
        self.grants = grants
        self.register_client_auth_method("client_secret_basic", _authenticate_basic)
        self.register_client_auth_method("client_secret_post", _authenticate_post)
        self.register_client_auth_method("none", lambda query_client, request: None)
        self.register_token_generator("default", self._generate_token)
        self.register_grant(_CodeGrant, [_S256Only(required=False)])
        self.register_grant(_DirectTokenGrant)

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
        return token

    def token_record(
        self, token: Mapping[str, Any], client: Client, account: Account, code_hash: str | None
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
            code_hash=code_hash,
        )

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        record = self.token_record(token, request.client.model, request.user, None)
        await_(self.grants.save_token(record))

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(
        self, status: int, body: Any, headers: Sequence[tuple[str, str]]
    ) -> ProtocolResponse:
        return ProtocolResponse(status, dict(body) if body else {}, tuple(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class OAuthProtocol:
    """The async face of the protocol engine, used by the HTTP layer.

    Parameters:
        settings: Server settings.
        clients, accounts, grants: The repositories.
        on_revoked: Told the hashes of tokens the protocol revokes (a replayed code).
    """

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        clients: ClientRepository,
        accounts: AccountRepository,
        grants: GrantStore,
        on_revoked: Callable[[Sequence[str]], None],
    ) -> None:
        self.settings = settings
        self.server = BrokerAuthorizationServer(
            settings=settings,
            clients=clients,
            accounts=accounts,
            grants=grants,
            on_revoked=on_revoked,
        )

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

    async def token_endpoint(
        self, *, headers: Mapping[str, str], params: Mapping[str, Sequence[str]]
    ) -> ProtocolResponse:
        """``POST /oauth/token`` (RFC 6749 §4.1.3), answered in the RFC 6749 §5 shapes."""
        request = _Request(
            method="POST", uri=self.settings.url("/oauth/token"), headers=headers, params=params
        )
        response: ProtocolResponse = await run_sync(self.server.create_token_response, request)
        return response
