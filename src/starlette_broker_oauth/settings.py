"""Configuration of the authorization server: one frozen value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import ip_address
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = [
    "ASSERTION_ALGORITHMS",
    "DEFAULT_ASSERTION_ALGORITHMS",
    "DEFAULT_SCOPE_DESCRIPTIONS",
    "OAuthSettings",
]

DEFAULT_SCOPES = frozenset({"general", "account:write", "trading", "data"})
#: What the default scopes let an app do, in the words the consent page shows a trader.
DEFAULT_SCOPE_DESCRIPTIONS: Mapping[str, str] = {
    "general": "See your account: balances, positions, orders and activity",
    "account:write": "Change your account's settings",
    "trading": "Place, change and cancel orders for you",
    "data": "Read market data through your account",
}
#: The JWS algorithms a client assertion may be signed with (RFC 7518 §3, RFC 8037 §3.1,
#: RFC 9864): asymmetric only; never ``none`` nor an HMAC keyed with a shared secret.
ASSERTION_ALGORITHMS = frozenset(
    {"PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
    | {"RS256", "RS384", "RS512"}
)
#: FAPI 2.0 Security Profile §5.4.1: PS256, ES256 and EdDSA (Ed25519).
DEFAULT_ASSERTION_ALGORITHMS = frozenset({"PS256", "ES256", "EdDSA"})
#: The DPoP proof algorithms accepted by default (RFC 9449 §4.2), in the order published.
DEFAULT_DPOP_ALGS = ("ES256", "PS256", "EdDSA")
# The asymmetric JWS algorithms (RFC 7518 §3.1, RFC 8037, RFC 9864) a DPoP proof may use:
# never "none" nor a MAC (HS256, ...), which would need a secret shared with the server.
DPOP_ALGS_KNOWN = (
    *DEFAULT_DPOP_ALGS,
    "Ed25519",
    "ES384",
    "ES512",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
)
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3 scope-token


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthSettings:
    """How the authorization server behaves.

    Parameters:
        issuer: The server's issuer identifier (RFC 8414 §2): an ``https`` URL with no
            query or fragment; ``http`` is accepted only for loopback hosts (development).
            Endpoint URLs in the metadata document are built from it.
        scopes_supported: Every scope a client may ask for (RFC 6749 §3.3).
        code_lifetime: How long an authorization code may be exchanged; at most 10 minutes
            (RFC 6749 §4.1.2), 60 seconds by default.
        access_token_lifetime: Lifetime of access tokens; ``None`` (the default, like the
            reference API) issues tokens that live until revoked. When set, token responses
            carry ``expires_in``.
        refresh_token_lifetime: Lifetime of refresh tokens (RFC 6749 §6); ``None`` (the
            default) issues none. Needs ``access_token_lifetime``. Refresh tokens rotate
            on every use, and a rotated-out token used again revokes its whole grant.
        response_types: Response types the partner endpoints accept (``code``, ``token``).
        allow_live_without_approval: Platform policy that lets clients without
            ``live_trading_approved`` obtain tokens for live accounts. Off by default.
        authorization_endpoint: URL of the consent page a third-party app sends users to
            (the partner's, or the platform's own); published in the metadata document.
        token_cache_ttl: How long the token check may reuse a verified token without asking
            the storage again. ``0`` (the default) turns the cache off. A revocation made
            through this process takes effect at once whatever the value; a client disabled
            in the storage, or a revocation made by another process without notification,
            takes effect within this bound. Expiry is always checked exactly.
        token_cache_size: Most tokens the cache holds; the oldest entries go first.
        scope_descriptions: What each scope lets an app do, in a trader's words; defined
            once and shown on the consent page, the connected-apps page, the OpenAPI
            document and the FastAPI security scheme. ``None`` (the default) describes the
            default scopes; a scope without a description is shown by its name.
        private_key_jwt: Accept ``private_key_jwt`` client authentication (RFC 7523 §2.2,
            OIDC Core §9) at the token, revocation and introspection endpoints, for
            clients that registered a JWKS, and publish it in the metadata. Off by
            default. A client registered for ``private_key_jwt`` only is refused a shared
            secret whether this is on or not.
        client_assertion_algorithms: The JWS algorithms an assertion may be signed with
            (``token_endpoint_auth_signing_alg_values_supported``): PS256, ES256 and
            EdDSA by default (FAPI 2.0); any of PS/ES/RS 256-512, EdDSA and Ed25519.
        client_assertion_max_lifetime: How far in the future an assertion's ``exp`` may
            be (5 minutes by default, at most 10): its ``jti`` is remembered until then.
        par_lifetime: How long a ``request_uri`` from the pushed authorization request
            endpoint (RFC 9126) may be used; 60 seconds by default, at most 10 minutes.
        require_pushed_authorization_requests: Refuse every front-channel authorization
            request without a ``request_uri`` (RFC 9126 §6), on the hosted consent page
            and the partner's ``POST /v1/oauth/authorize``. Off by default; a client can
            also be marked so on its own (``Client.require_pushed_authorization_requests``).
        dpop_signing_algs: The algorithms a DPoP proof (RFC 9449) may be signed with, in
            the order the metadata and the ``WWW-Authenticate`` challenges list them;
            asymmetric ones only (ES256, PS256 and EdDSA by default; ``none`` and HS*
            are refused). The token endpoint accepts a proof from any client and then
            binds the tokens it issues to the proof's key.
        dpop_required: Refuse token requests without a DPoP proof, from every client
            (a client can ask for it alone: ``Client.dpop_bound_access_tokens``).
        dpop_proof_max_age: How old a proof's ``iat`` may be (60 seconds by default).
        dpop_proof_leeway: How far in the future a proof's ``iat`` may be (clock skew;
            5 seconds by default).
        dpop_nonce: Require every proof to carry a nonce the server issued
            (``use_dpop_nonce`` and a ``DPoP-Nonce`` header, RFC 9449 §8, §9). Needs
            ``dpop_nonce_secret``.
        dpop_nonce_secret: The key of the nonces' HMAC, at least 32 characters, the same
            in every worker; a nonce holds no state.
        dpop_nonce_lifetime: How long each nonce is issued for; a nonce stays valid for
            up to twice as long (the current and the previous one are accepted).
        fapi: The FAPI 2.0 Security Profile for the whole platform, in one switch: it
            turns on ``private_key_jwt`` and refuses every shared secret at the token,
            revocation, introspection and PAR endpoints, requires pushed authorization
            requests and DPoP-bound tokens, and keeps codes at most 60 seconds (the
            default); the partner endpoints then issue no token directly. PKCE S256 (at
            PAR) and ``iss`` in every authorization response hold already. One client
            takes the profile on its own when it is registered for ``private_key_jwt``
            only, with ``require_pushed_authorization_requests`` and
            ``dpop_bound_access_tokens``.
    """

    issuer: str
    scopes_supported: frozenset[str] = DEFAULT_SCOPES
    code_lifetime: timedelta = timedelta(seconds=60)
    access_token_lifetime: timedelta | None = None
    refresh_token_lifetime: timedelta | None = None
    response_types: frozenset[str] = frozenset({"code", "token"})
    allow_live_without_approval: bool = False
    authorization_endpoint: str | None = None
    token_cache_ttl: timedelta = timedelta(0)
    token_cache_size: int = 10_000
    scope_descriptions: Mapping[str, str] | None = None
    private_key_jwt: bool = False
    client_assertion_algorithms: frozenset[str] = DEFAULT_ASSERTION_ALGORITHMS
    client_assertion_max_lifetime: timedelta = timedelta(minutes=5)
    par_lifetime: timedelta = timedelta(seconds=60)
    require_pushed_authorization_requests: bool = False
    dpop_signing_algs: tuple[str, ...] = DEFAULT_DPOP_ALGS
    dpop_required: bool = False
    dpop_proof_max_age: timedelta = timedelta(seconds=60)
    dpop_proof_leeway: timedelta = timedelta(seconds=5)
    dpop_nonce: bool = False
    dpop_nonce_secret: str | None = field(default=None, repr=False)
    dpop_nonce_lifetime: timedelta = timedelta(minutes=5)
    fapi: bool = False

    def __post_init__(self) -> None:
        if self.fapi:
            # FAPI 2.0 Security Profile §5.3.2.1 (private_key_jwt), §5.3.2.2 (PAR, PKCE,
            # codes of at most 60 s), §5.3.2.1 / §5.3.3 (sender-constrained tokens: DPoP).
            for name in ("private_key_jwt", "require_pushed_authorization_requests"):
                object.__setattr__(self, name, True)
            object.__setattr__(self, "dpop_required", True)
            if self.code_lifetime > timedelta(seconds=60):
                raise ConfigurationError(
                    "fapi: code_lifetime must be at most 60 seconds (FAPI 2.0 §5.3.2.2)"
                )
        for name in ("scopes_supported", "response_types", "client_assertion_algorithms"):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not all(isinstance(v, str) for v in value):
                raise ConfigurationError(
                    f"{name} must be a set of strings, such as frozenset({{'general'}}); "
                    f"got {value!r}"
                )
            object.__setattr__(self, name, frozenset(value))
        if not isinstance(self.issuer, str):
            raise ConfigurationError(f"issuer must be a string, got {self.issuer!r}")
        parts = urlsplit(self.issuer)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise ConfigurationError(f"issuer must be an absolute https URL, got {self.issuer!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigurationError("issuer must use https (http is allowed only on loopback)")
        if parts.query or parts.fragment:
            raise ConfigurationError("issuer must not have a query or fragment (RFC 8414 §2)")
        if not self.scopes_supported:
            raise ConfigurationError("scopes_supported must name at least one scope")
        for scope in self.scopes_supported:
            if not _SCOPE_TOKEN.match(scope):
                raise ConfigurationError(f"invalid scope name {scope!r} (RFC 6749 §3.3)")
        if not timedelta(0) < self.code_lifetime <= timedelta(minutes=10):
            raise ConfigurationError("code_lifetime must be between 0 and 10 minutes")
        if self.access_token_lifetime is not None and self.access_token_lifetime <= timedelta(0):
            raise ConfigurationError("access_token_lifetime must be positive or None")
        if self.token_cache_ttl < timedelta(0) or self.token_cache_size < 1:
            raise ConfigurationError("token_cache_ttl must be >= 0 and token_cache_size >= 1")
        if self.refresh_token_lifetime is not None:
            if self.access_token_lifetime is None:
                raise ConfigurationError("refresh tokens need an access_token_lifetime")
            if self.refresh_token_lifetime <= timedelta(0):
                raise ConfigurationError("refresh_token_lifetime must be positive or None")
        if not self.response_types or not self.response_types <= {"code", "token"}:
            raise ConfigurationError("response_types must be a non-empty subset of code, token")
        if not self.client_assertion_algorithms <= ASSERTION_ALGORITHMS:
            unknown = sorted(self.client_assertion_algorithms - ASSERTION_ALGORITHMS)
            raise ConfigurationError(
                f"client_assertion_algorithms may name {sorted(ASSERTION_ALGORITHMS)} only "
                f"(asymmetric algorithms), not {unknown}"
            )
        if self.private_key_jwt and not self.client_assertion_algorithms:
            raise ConfigurationError("private_key_jwt needs client_assertion_algorithms")
        if not timedelta(0) < self.client_assertion_max_lifetime <= timedelta(minutes=10):
            raise ConfigurationError(
                "client_assertion_max_lifetime must be between 0 and 10 minutes"
            )
        if not timedelta(0) < self.par_lifetime <= timedelta(minutes=10):
            raise ConfigurationError("par_lifetime must be between 0 and 10 minutes")
        self._check_dpop()
        described = set(self.scope_descriptions or ())
        if unknown := sorted(described - self.scopes_supported):
            raise ConfigurationError(f"scope_descriptions names unknown scopes: {unknown}")

    def _check_dpop(self) -> None:
        algs = self.dpop_signing_algs
        if isinstance(algs, str) or not algs:
            raise ConfigurationError("dpop_signing_algs must name at least one algorithm")
        object.__setattr__(self, "dpop_signing_algs", tuple(dict.fromkeys(algs)))
        if unknown := [a for a in algs if a not in DPOP_ALGS_KNOWN]:
            raise ConfigurationError(
                f"dpop_signing_algs may name asymmetric algorithms only "
                f"({', '.join(DPOP_ALGS_KNOWN)}); got {unknown}"
            )
        if self.dpop_proof_max_age <= timedelta(0) or self.dpop_proof_leeway < timedelta(0):
            raise ConfigurationError("dpop_proof_max_age must be positive, dpop_proof_leeway >= 0")
        if self.dpop_nonce_lifetime <= timedelta(0):
            raise ConfigurationError("dpop_nonce_lifetime must be positive")
        if self.dpop_nonce_secret is not None and len(self.dpop_nonce_secret) < 32:
            raise ConfigurationError("dpop_nonce_secret must be at least 32 characters")
        if self.dpop_nonce and self.dpop_nonce_secret is None:
            raise ConfigurationError(
                "dpop_nonce needs a dpop_nonce_secret (the same in every worker)"
            )

    def describe(self, scope: str) -> str:
        """The description of ``scope``, or its name when it has none."""
        given = self.scope_descriptions
        return (DEFAULT_SCOPE_DESCRIPTIONS if given is None else given).get(scope) or scope

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (``/oauth/token``, …) under the issuer."""
        return self.issuer.rstrip("/") + path

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = "BROKER_OAUTH_"
    ) -> OAuthSettings:
        """Read settings from environment variables (opt-in; nothing is read at import).

        Parameters:
            environ: The mapping to read, ``os.environ`` by default.
            prefix: Variable name prefix: ``ISSUER``, ``SCOPES`` (space-separated),
                ``CODE_LIFETIME_SECONDS``, ``ACCESS_TOKEN_LIFETIME_SECONDS``,
                ``REFRESH_TOKEN_LIFETIME_SECONDS``,
                ``RESPONSE_TYPES``, ``AUTHORIZATION_ENDPOINT``, ``TOKEN_CACHE_TTL_SECONDS``,
                ``ALLOW_LIVE_WITHOUT_APPROVAL``, ``PRIVATE_KEY_JWT``,
                ``CLIENT_ASSERTION_ALGORITHMS`` (space-separated), ``PAR_LIFETIME_SECONDS``,
                ``REQUIRE_PUSHED_AUTHORIZATION_REQUESTS``, ``DPOP_REQUIRED``,
                ``DPOP_NONCE``, ``DPOP_NONCE_SECRET``, ``DPOP_SIGNING_ALGS``
                (space-separated) and ``FAPI`` follow it.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(prefix + name)
            return value if value not in (None, "") else None

        issuer = get("ISSUER")
        if issuer is None:
            raise ConfigurationError(f"{prefix}ISSUER is not set")
        kwargs: dict[str, object] = {"issuer": issuer}
        if (scopes := get("SCOPES")) is not None:
            kwargs["scopes_supported"] = frozenset(scopes.split())
        if (types := get("RESPONSE_TYPES")) is not None:
            kwargs["response_types"] = frozenset(types.split())
        try:
            if (code := get("CODE_LIFETIME_SECONDS")) is not None:
                kwargs["code_lifetime"] = timedelta(seconds=int(code))
            if (access := get("ACCESS_TOKEN_LIFETIME_SECONDS")) is not None:
                kwargs["access_token_lifetime"] = timedelta(seconds=int(access))
            if (refresh := get("REFRESH_TOKEN_LIFETIME_SECONDS")) is not None:
                kwargs["refresh_token_lifetime"] = timedelta(seconds=int(refresh))
            if (ttl := get("TOKEN_CACHE_TTL_SECONDS")) is not None:
                kwargs["token_cache_ttl"] = timedelta(seconds=float(ttl))
            if (par := get("PAR_LIFETIME_SECONDS")) is not None:
                kwargs["par_lifetime"] = timedelta(seconds=int(par))
        except ValueError as exc:
            raise ConfigurationError(f"lifetimes must be numbers of seconds: {exc}") from None
        if (endpoint := get("AUTHORIZATION_ENDPOINT")) is not None:
            kwargs["authorization_endpoint"] = endpoint
        if (live := get("ALLOW_LIVE_WITHOUT_APPROVAL")) is not None:
            kwargs["allow_live_without_approval"] = live.lower() in {"1", "true", "yes", "on"}
        if (keys := get("PRIVATE_KEY_JWT")) is not None:
            kwargs["private_key_jwt"] = keys.lower() in {"1", "true", "yes", "on"}
        if (algorithms := get("CLIENT_ASSERTION_ALGORITHMS")) is not None:
            kwargs["client_assertion_algorithms"] = frozenset(algorithms.split())
        if (secret := get("DPOP_NONCE_SECRET")) is not None:
            kwargs["dpop_nonce_secret"] = secret
        for name, field_name in (
            ("REQUIRE_PUSHED_AUTHORIZATION_REQUESTS", "require_pushed_authorization_requests"),
            ("DPOP_REQUIRED", "dpop_required"),
            ("DPOP_NONCE", "dpop_nonce"),
            ("FAPI", "fapi"),
        ):
            if (flag := get(name)) is not None:
                kwargs[field_name] = flag.lower() in {"1", "true", "yes", "on"}
        if (dpop_algorithms := get("DPOP_SIGNING_ALGS")) is not None:
            kwargs["dpop_signing_algs"] = tuple(dpop_algorithms.split())
        return cls(**kwargs)  # type: ignore[arg-type]
