"""The broker's rules on what a client may ask for: pure decisions, no I/O."""

from __future__ import annotations

from datetime import timedelta

from ..errors import (
    ClientDisabled,
    InvalidRedirectURI,
    InvalidScope,
    LiveTradingNotApproved,
    TokenErrorKind,
    UnknownAccount,
    UnsupportedResponseType,
)
from ..models import Account, Client, ClientAuthMethod
from ..security import secrets_equal
from ..settings import OAuthSettings

__all__ = ["AUTHORIZATION_PARAMS", "Policy", "token_refusal"]

#: The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3,
#: RFC 9449 §10).
AUTHORIZATION_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "dpop_jkt",
)


def token_refusal(
    scope: str,
    account_live: bool,
    client: Client | None,
    *,
    supported: frozenset[str] | None = None,
    allow_live_without_approval: bool = False,
) -> TokenErrorKind | None:
    """Why a stored, unrevoked, unexpired token may no longer be used; ``None`` if it may.

    Checked on every token check, introspection and refresh, so that no token outlives
    the registration that admitted it: its client must exist and be active, may still
    ask for every scope the token carries (within ``supported``, the server's scopes),
    and, for a live account, must still be approved for live trading (unless the
    platform allows it without). The client is read with the token, so this costs no
    extra storage read.
    """
    if client is None or not client.active:
        return TokenErrorKind.CLIENT_DISABLED
    allowed = supported if client.scopes is None else client.scopes
    if allowed is not None and not set(scope.split()) <= allowed:
        return TokenErrorKind.NO_LONGER_ALLOWED
    if account_live and not (client.live_trading_approved or allow_live_without_approval):
        return TokenErrorKind.NO_LONGER_ALLOWED
    return None


class Policy:
    """What a client may ask for, and for which account.

    Parameters:
        settings: Server settings (scopes, response types, live-trading policy).
    """

    def __init__(self, settings: OAuthSettings) -> None:
        self.settings = settings
        self.refresh_enabled = settings.refresh_token_lifetime is not None

    def under_fapi(self, client: Client) -> bool:
        """Whether ``client`` connects under the FAPI 2.0 Security Profile
        (:func:`under_fapi`)."""
        return under_fapi(self.settings, client)

    def needs_dpop(self, client: Client) -> bool:
        """Whether every token ``client`` gets must be bound to a key it proves it holds
        (the platform's ``dpop_required``, the client's ``dpop_bound_access_tokens``, the
        profile): the partner endpoints, which see no proof, issue it no token."""
        return (
            self.settings.dpop_required
            or client.dpop_bound_access_tokens
            or self.under_fapi(client)
        )

    def scopes_for(self, client: Client) -> frozenset[str]:
        """The scopes ``client`` may ask for."""
        return self.settings.scopes_supported if client.scopes is None else client.scopes

    def allowed_scope(self, client: Client, scope: str | None) -> str:
        """``scope`` normalised (space-separated, no repeats), if the client may have it."""
        requested = (scope or "").split()
        if not set(requested) <= self.settings.scopes_supported & self.scopes_for(client):
            raise InvalidScope("scope is invalid")
        return " ".join(dict.fromkeys(requested))

    def response_type_allowed(self, client: Client, response_type: str) -> bool:
        """Whether the client, and the server, allow ``response_type``."""
        return (
            response_type in client.response_types and response_type in self.settings.response_types
        )

    def redirect_uri_registered(self, client: Client, redirect_uri: str) -> bool:
        """RFC 9700 §4.1.3: an exact string match with a registered URI, no normalisation."""
        return any(secrets_equal(redirect_uri, uri) for uri in client.redirect_uris)

    def token_refusal(
        self, scope: str, account_live: bool, client: Client | None
    ) -> TokenErrorKind | None:
        """:func:`token_refusal` with this server's settings."""
        return token_refusal(
            scope,
            account_live,
            client,
            supported=self.settings.scopes_supported,
            allow_live_without_approval=self.settings.allow_live_without_approval,
        )

    def grant_type_allowed(self, grant_type: str) -> bool:
        """The token endpoint's grant types: the code, and refresh when it is on."""
        if grant_type == "refresh_token":
            return self.refresh_enabled
        return grant_type == "authorization_code"

    def check_request(
        self,
        client: Client,
        *,
        response_type: str | None = None,
        redirect_uri: str | None = None,
        scope: str | None = None,
    ) -> None:
        """Check the authorization parameters given (RFC 6749 §4.1.1) against a client."""
        if response_type is not None and not self.response_type_allowed(client, response_type):
            raise UnsupportedResponseType(f"response_type {response_type!r} is not allowed")
        if redirect_uri is not None and not self.redirect_uri_registered(client, redirect_uri):
            raise InvalidRedirectURI("redirect_uri is not registered for this client")
        if scope is not None:
            self.allowed_scope(client, scope)

    def check_active(self, client: Client, *, redirect_uri: str | None = None) -> None:
        """Refuse a disabled client before anything is asked of the user."""
        if not client.active:
            raise ClientDisabled(redirect_uri=redirect_uri)

    def check_account(self, client: Client, account: Account | None) -> Account:
        """The account, if ``client`` may act for it: it exists, and a live account needs
        a client approved for live trading (unless the platform allows it)."""
        if account is None:
            raise UnknownAccount()
        approved = client.live_trading_approved or self.settings.allow_live_without_approval
        if account.live and not approved:
            raise LiveTradingNotApproved()
        return account


#: The longest an authorization code lives under the FAPI 2.0 profile (§5.3.2.1).
FAPI_CODE_LIFETIME = timedelta(seconds=60)


def under_fapi(settings: OAuthSettings, client: Client) -> bool:
    """Whether ``client`` connects under the FAPI 2.0 Security Profile: the whole
    platform does (``OAuthSettings.fapi``), or the client is registered for it
    (``private_key_jwt`` only, pushed requests required, DPoP-bound tokens)."""
    return settings.fapi or (
        client.token_endpoint_auth_method is ClientAuthMethod.PRIVATE_KEY_JWT
        and client.require_pushed_authorization_requests
        and client.dpop_bound_access_tokens
    )
