"""Domain records: frozen values that cross the storage boundary."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

__all__ = [
    "AccessToken",
    "Account",
    "AuthorizationCode",
    "Client",
    "ClientAuthMethod",
    "ClientCredentials",
    "ClientStatus",
    "Connection",
    "Partner",
    "PartnerCredentials",
    "PushedRequest",
    "RefreshToken",
]


class ClientStatus(enum.StrEnum):
    """Whether a client may obtain codes and tokens."""

    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class ClientAuthMethod(enum.StrEnum):
    """How a client authenticates at the token, revocation and introspection endpoints
    (RFC 7591 §2 ``token_endpoint_auth_method``)."""

    #: A shared secret, in HTTP Basic or in the body (``client_secret_post``); with a
    #: registered JWKS, ``private_key_jwt`` too.
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method's name
    #: A JWT signed with one of the client's registered keys only (RFC 7523 §2.2); its
    #: secret is refused everywhere.
    PRIVATE_KEY_JWT = "private_key_jwt"


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A registered third-party app.

    Parameters:
        client_id: Public identifier (RFC 6749 §2.2).
        secret_hash: Hash of the client secret (``security.hash_secret``); never the secret.
        redirect_uris: Registered redirect URIs, compared by exact string match.
        scopes: Scopes this client may ask for; ``None`` means every supported scope.
        response_types: Response types the client may use (``code``, ``token``).
        live_trading_approved: Whether the client may obtain tokens for live accounts.
        jwks: The client's public keys, a JWK Set (RFC 7517 §5) as JSON text, checked at
            registration (:func:`~starlette_broker_oauth.registration.check_client_jwks`);
            ``None`` when it registered none.
        token_endpoint_auth_method: How it may authenticate (:class:`ClientAuthMethod`).
        require_pushed_authorization_requests: Whether the client's authorization requests
            must come through the PAR endpoint (RFC 9126 §6): a front-channel request
            without a ``request_uri`` is refused.
        dpop_bound_access_tokens: Whether the client always uses DPoP (RFC 9449 §5.2):
            its token requests without a proof are refused.
    """

    client_id: str
    secret_hash: str
    name: str
    redirect_uris: tuple[str, ...]
    description: str = ""
    url: str = ""
    terms_of_use: str = ""
    privacy_policy: str = ""
    status: ClientStatus = ClientStatus.ACTIVE
    live_trading_approved: bool = False
    scopes: frozenset[str] | None = None
    response_types: frozenset[str] = frozenset({"code", "token"})
    jwks: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: ClientAuthMethod = ClientAuthMethod.CLIENT_SECRET_BASIC
    require_pushed_authorization_requests: bool = False
    dpop_bound_access_tokens: bool = False

    @property
    def active(self) -> bool:
        """True unless the client is disabled."""
        return self.status is ClientStatus.ACTIVE


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """An end user's brokerage account.

    Parameters:
        account_id: The account's UUID.
        live: True for a live (real money) account, False for paper trading.
    """

    account_id: UUID
    live: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Partner:
    """A broker that calls the ``/v1/oauth/*`` endpoints.

    Parameters:
        partner_id: The partner's key id (the HTTP Basic user name).
        name: Display name.
        secret_hash: Hash of its secret (``security.hash_secret``); never the secret.
            Empty for a partner that cannot authenticate with a secret.
    """

    partner_id: str
    name: str = ""
    secret_hash: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationCode:
    """A one-time authorization code, stored by hash (RFC 6749 §4.1.2).

    Parameters:
        code_hash: Hash of the code value.
        code_challenge: PKCE S256 challenge (RFC 7636 §4.2) or ``None``.
        used_at: When the code was redeemed; ``None`` until then.
        dpop_jkt: The thumbprint of the key the authorization request bound the code to
            (``dpop_jkt``, RFC 9449 §10); its exchange needs a proof by that key.
    """

    code_hash: str
    client_id: str
    account_id: UUID
    redirect_uri: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    used_at: datetime | None = None
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushedRequest:
    """A pushed authorization request (RFC 9126), stored by the hash of its
    ``request_uri``'s random part until it is used once or expires.

    Parameters:
        request_hash: Hash of the random part of the ``request_uri``.
        client_id: The client that pushed it, authenticated.
        params: The validated authorization request's parameters (RFC 6749 §4.1.1,
            RFC 7636 §4.3), as ``(name, value)`` pairs.
        expires_at: When the ``request_uri`` stops working.
    """

    request_hash: str
    client_id: str
    params: tuple[tuple[str, str], ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessToken:
    """An issued bearer token, stored by hash.

    Parameters:
        token_hash: Hash of the token value; the value itself is never stored.
        account_live: Whether the account was live when the token was issued.
        expires_at: ``None`` for a token that lives until revoked.
        family_id: The grant the token belongs to: the hash of the authorization code it
            came from, shared by every token refreshed from it, so a replayed code or a
            reused refresh token revokes them all (RFC 9700 §4.5, §4.14). A token issued
            directly is a grant of its own: its family is its own hash (``None`` on rows
            stored before 0.1, which are revoked alike).
        dpop_jkt: The RFC 7638 thumbprint of the key the token is bound to (DPoP,
            RFC 9449 §6: ``cnf.jkt``); ``None`` for a bearer token.
    """

    token_hash: str
    client_id: str
    account_id: UUID
    scope: str
    account_live: bool
    issued_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    family_id: str | None = None
    dpop_jkt: str | None = None

    def is_expired(self, now: datetime) -> bool:
        """True once the token's lifetime has passed."""
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshToken:
    """A refresh token (RFC 6749 §6), stored by hash, rotated on every use.

    Parameters:
        token_hash: Hash of the token value.
        family_id: The grant it belongs to (see :class:`AccessToken`).
        used_at: When it was exchanged for a new pair; using it again after that is
            reuse, and revokes the family (RFC 9700 §4.14.2).
        dpop_jkt: The thumbprint of the key it is bound to (RFC 9449 §5); using it needs
            a proof by that key.
    """

    token_hash: str
    family_id: str
    client_id: str
    account_id: UUID
    scope: str
    account_live: bool
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    dpop_jkt: str | None = None

    def is_expired(self, now: datetime) -> bool:
        """True once the token's lifetime has passed."""
        return now >= self.expires_at


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCredentials:
    """A new client's id and secret; the secret is shown once and never stored."""

    client_id: str
    client_secret: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerCredentials:
    """A new partner's HTTP Basic key id and secret; the secret is never stored."""

    key_id: str
    secret: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """A client connected to an account: it holds a token that still works.

    Parameters:
        account_id: The account.
        client_id: The connected client.
        scopes: Every scope its working access and refresh tokens carry.
        connected_at: When the oldest of those tokens was issued.
        last_issued_at: When the newest was issued (a refresh counts as use).
    """

    account_id: UUID
    client_id: str
    scopes: frozenset[str]
    connected_at: datetime
    last_issued_at: datetime
