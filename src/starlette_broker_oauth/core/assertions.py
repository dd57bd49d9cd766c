"""``private_key_jwt`` client authentication: the rules of a client assertion.

RFC 7523 §2.2 and §3, OIDC Core §9, with the FAPI 2.0 Security Profile's audience rule
(§5.3.2.1): a client proves who it is with a JWT it signed with one of the public keys it
registered (:attr:`~starlette_broker_oauth.models.Client.jwks`). The assertion is
accepted when, in this order:

1. it is a JWS compact serialization whose ``alg`` is one of
   ``OAuthSettings.client_assertion_algorithms`` (never ``none`` nor an HMAC);
2. the client it names (the ``client_id`` parameter if sent, else ``sub``) exists and
   registered keys;
3. the key is the one named by ``kid``, or else the only registered key for ``alg``;
4. the signature verifies with it (joserfc does the cryptography);
5. ``iss`` and ``sub`` are both the client id; ``aud`` is the issuer identifier, as one
   string (an array, or the token endpoint's URL, is refused: the audience-injection
   fix);
6. ``exp`` is a number in the future, at most ``client_assertion_max_lifetime`` away;
   ``nbf`` and ``iat``, when present, are numbers not later than now (with
   :data:`CLOCK_SKEW`);
7. ``jti`` is a non-empty string used for the first time: it is recorded in the grant
   store (:meth:`~starlette_broker_oauth.storage.base.GrantStore.use_once`, shared by
   every worker) until ``exp``.

Any failure raises :class:`~starlette_broker_oauth.errors.ClientAssertionRefused` with
its :class:`~starlette_broker_oauth.errors.AssertionProblem`; every face answers them
alike (``invalid_client``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey

from ..clock import Clock
from ..errors import AssertionProblem, ClientAssertionRefused
from ..models import Client, ClientAuthMethod
from ..security import hash_secret
from ..settings import OAuthSettings
from ..storage.base import ClientRepository, GrantStore

__all__ = [
    "ASSERTION_TYPE",
    "CLOCK_SKEW",
    "MAX_ASSERTION_LENGTH",
    "ClientAssertions",
    "may_use_secret",
]

#: ``client_assertion_type`` of a JWT client assertion (RFC 7523 §2.2).
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: How far a client's clock may be ahead of ours for ``iat`` and ``nbf``.
CLOCK_SKEW = timedelta(seconds=30)
#: The longest assertion read (a PS512 signature with a generous header and claims).
MAX_ASSERTION_LENGTH = 8192

Problem = AssertionProblem

# The key type (and curve) each algorithm signs with.
_RSA = frozenset({"PS256", "PS384", "PS512", "RS256", "RS384", "RS512"})
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_OKP_CURVES = {"EdDSA": frozenset({"Ed25519", "Ed448"}), "Ed25519": frozenset({"Ed25519"})}


def may_use_secret(client: Client, *, fapi: bool = False) -> bool:
    """Whether ``client`` may authenticate with its shared secret: not when it is
    registered for ``private_key_jwt`` only, nor on a platform under the FAPI 2.0
    profile (``OAuthSettings.fapi``)."""
    return not fapi and client.token_endpoint_auth_method is not ClientAuthMethod.PRIVATE_KEY_JWT


def _fits(key: Key, alg: str) -> bool:
    """Whether ``key`` signs with ``alg``, by its type and curve, and its own ``alg`` and
    ``use`` when it names them."""
    if key.get("alg") not in (None, alg) or key.get("use") not in (None, "sig"):
        return False
    if isinstance(key, RSAKey):
        return alg in _RSA
    if isinstance(key, ECKey):
        return _EC_CURVES.get(alg) == key.curve_name
    if isinstance(key, OKPKey):
        return key.curve_name in _OKP_CURVES.get(alg, ())
    return False


def _number(value: Any) -> float | None:
    """A NumericDate (RFC 7519 §2) as a float, or ``None`` when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class ClientAssertions:
    """Authenticates clients by their ``private_key_jwt`` assertions (see the module).

    Parameters:
        settings: The issuer (the one audience), the algorithms, the longest lifetime.
        clients: Where clients and their keys are read.
        grants: The replay store of every worker (``use_once``).
        clock: Where time is read.
    """

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        clients: ClientRepository,
        grants: GrantStore,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.grants = grants
        self.clock = clock

    async def authenticate(
        self,
        assertion_type: str | None,
        assertion: str | None,
        *,
        client_id: str | None = None,
        known: Client | None = None,
    ) -> Client:
        """The client that signed ``assertion``; raises
        :class:`~starlette_broker_oauth.errors.ClientAssertionRefused`.

        Parameters:
            assertion_type: ``client_assertion_type``; must be :data:`ASSERTION_TYPE`.
            assertion: ``client_assertion``, the signed JWT.
            client_id: The request's ``client_id`` parameter, if it has one: it must
                name the same client (RFC 7521 §4.2).
            known: The client as this request already read it, if it did.
        """
        if assertion_type != ASSERTION_TYPE:
            raise ClientAssertionRefused(problem=Problem.UNSUPPORTED_TYPE)
        if not assertion or len(assertion) > MAX_ASSERTION_LENGTH:
            raise ClientAssertionRefused(problem=Problem.MALFORMED)
        signed, header, claims = self._read(assertion)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.client_assertion_algorithms:
            raise ClientAssertionRefused(problem=Problem.ALGORITHM)
        named = client_id if client_id is not None else claims.get("sub")
        if not isinstance(named, str) or not named:
            raise ClientAssertionRefused(problem=Problem.ISSUER)
        if known is not None and known.client_id == named:
            client: Client | None = known
        else:
            client = await self.clients.get_client(named)
        if client is None:
            raise ClientAssertionRefused(problem=Problem.UNKNOWN_CLIENT)
        if client.jwks is None:
            raise ClientAssertionRefused(problem=Problem.NO_KEYS)
        key = self._key(client.jwks, header.get("kid"), alg)
        self._verify(signed, key, alg)
        now = self.clock.now()
        expires_at = self._check_claims(claims, client.client_id, now)
        # Last, so that only a valid assertion of this client spends its jti.
        replay_key = hash_secret(f"private_key_jwt:{client.client_id}:{claims['jti']}")
        if not await self.grants.use_once(replay_key, now=now, expires_at=expires_at):
            raise ClientAssertionRefused(problem=Problem.REPLAYED)
        return client

    @staticmethod
    def _read(assertion: str) -> tuple[jws.CompactSignature, dict[str, Any], dict[str, Any]]:
        """The assertion's parts, before its signature is checked."""
        try:
            signed = jws.extract_compact(assertion.encode("ascii"))
            header = dict(signed.headers())
            claims = json.loads(signed.payload)
        except (JoseError, ValueError, TypeError, RecursionError, UnicodeError):
            raise ClientAssertionRefused(problem=Problem.MALFORMED) from None
        if not isinstance(claims, dict):
            raise ClientAssertionRefused(problem=Problem.MALFORMED)
        return signed, header, claims

    @staticmethod
    def _key(jwks: str, kid: Any, alg: str) -> Key:
        """The registered key named by ``kid``, or else the only one for ``alg``."""
        keys: list[Key] = []
        for data in json.loads(jwks)["keys"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                keys.append(JWKRegistry.import_key(data))
        if kid is not None:
            named = [k for k in keys if isinstance(kid, str) and k.get("kid") == kid]
            if len(named) != 1 or not _fits(named[0], alg):
                raise ClientAssertionRefused(problem=Problem.UNKNOWN_KEY)
            return named[0]
        fitting = [k for k in keys if _fits(k, alg)]
        if len(fitting) != 1:
            raise ClientAssertionRefused(problem=Problem.UNKNOWN_KEY)
        return fitting[0]

    @staticmethod
    def _verify(signed: jws.CompactSignature, key: Key, alg: str) -> None:
        try:
            with warnings.catch_warnings():  # EdDSA is named Ed25519 since RFC 9864
                warnings.simplefilter("ignore", SecurityWarning)
                valid = jws.validate_compact(signed, key, algorithms=[alg])
        except JoseError:
            valid = False
        if not valid:
            raise ClientAssertionRefused(problem=Problem.SIGNATURE)

    def _check_claims(self, claims: Mapping[str, Any], client_id: str, now: datetime) -> datetime:
        """Check the claims of a verified assertion; when it expires."""
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise ClientAssertionRefused(problem=Problem.ISSUER)
        audience = claims.get("aud")
        if not isinstance(audience, str) or audience != self.settings.issuer:
            raise ClientAssertionRefused(problem=Problem.AUDIENCE)
        if "exp" not in claims:
            raise ClientAssertionRefused(problem=Problem.NO_EXPIRY)
        exp = _number(claims["exp"])
        stamp = now.timestamp()
        if exp is None:
            raise ClientAssertionRefused(problem=Problem.MALFORMED)
        if exp <= stamp:
            raise ClientAssertionRefused(problem=Problem.EXPIRED)
        if exp - stamp > self.settings.client_assertion_max_lifetime.total_seconds():
            raise ClientAssertionRefused(problem=Problem.TOO_LONG)
        latest = stamp + CLOCK_SKEW.total_seconds()
        for name in ("nbf", "iat"):
            if name in claims:
                value = _number(claims[name])
                if value is None:
                    raise ClientAssertionRefused(problem=Problem.MALFORMED)
                if value > latest:
                    raise ClientAssertionRefused(problem=Problem.NOT_YET_VALID)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise ClientAssertionRefused(problem=Problem.NO_JTI)
        return now + timedelta(seconds=exp - stamp)
