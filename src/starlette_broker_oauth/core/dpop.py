"""DPoP (RFC 9449): the checks of a proof, at the token endpoint and on protected routes.

A client proves that it holds a key by signing a short JWT (the *proof*) for each
request; tokens issued with a proof are bound to the key's RFC 7638 thumbprint (``jkt``)
and work only with a fresh proof by that key. :class:`DPoPChecker` holds every rule of
RFC 9449 §4.3: one ``DPoP`` header, ``typ`` ``dpop+jwt``, an allow-listed asymmetric
``alg``, a public ``jwk``, a valid signature, ``htm`` and ``htu`` matching the request,
``iat`` within a window, a ``jti`` used once in every worker (the grant store's
:meth:`~starlette_broker_oauth.storage.base.GrantStore.use_once`), ``ath`` for a token,
and server nonces when the platform asks for them (RFC 9449 §8, §9).

Nonces hold no state: a nonce is an HMAC over a time window keyed by
``OAuthSettings.dpop_nonce_secret``, so every worker that shares the secret issues and
accepts the same nonces; the current window's and the previous one's are accepted. The
same nonce serves the token endpoint and the platform's routes (a client keeps one
nonce per origin).

JOSE is joserfc's: nothing here signs or verifies by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import string
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry
from joserfc.jws import JWSRegistry

from ..clock import Clock
from ..errors import InvalidDPoPProof, UseDPoPNonce
from ..security import hash_secret
from ..settings import OAuthSettings
from ..storage.base import GrantStore

__all__ = [
    "SeenInProcess",
    "quoted_path",
    "DPoPChecker",
    "DPoPProof",
    "access_token_hash",
    "is_thumbprint",
]

#: The header of a proof (RFC 9449 §4.2).
PROOF_TYPE = "dpop+jwt"
# A proof is a few hundred bytes (a 4096-bit RSA key makes it about 2 KB).
_MAX_PROOF_LENGTH = 8192
_MAX_JTI_LENGTH = 256
# joserfc's default bound on a JOSE header (512 bytes) is below an RSA key's ``jwk``.
_MAX_HEADER_LENGTH = 4096
# Members of a JWK that only a private key has (RFC 7517 §9.3, RFC 7518 §6, RFC 8037 §2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
# A base64url SHA-256 (RFC 7638 thumbprint, RFC 9449 ``ath``): 43 characters.
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters a path keeps unescaped: RFC 3986 §3.3 pchar and "/".
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True, slots=True, kw_only=True)
class DPoPProof:
    """A proof that passed every check.

    Parameters:
        jkt: The RFC 7638 SHA-256 thumbprint of its key: what tokens are bound to.
        jti: Its unique identifier.
        issued_at: Its ``iat``.
    """

    jkt: str
    jti: str
    issued_at: datetime


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """The ``ath`` of an access token: base64url(SHA-256(token)) (RFC 9449 §4.2)."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


def is_thumbprint(value: str) -> bool:
    """Whether ``value`` has the shape of a base64url SHA-256 JWK thumbprint
    (``dpop_jkt``, RFC 9449 §10)."""
    return len(value) == 43 and set(value) <= _B64URL


def normalized_url(url: str) -> str | None:
    """``url`` as RFC 9449 §4.3 compares ``htu``: without query and fragment, scheme and
    host in lower case, the scheme's default port dropped, the path's percent-encoding
    normalized (RFC 3986 §6.2.2, §6.2.3); ``None`` when it is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalized_path(parts.path) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _normalized_path(path: str) -> str:
    """A path in RFC 3986 §6.2.2's normal form: what may not appear raw is escaped, the
    escapes of unreserved characters are decoded and the others' hex is upper case; an
    escaped ``/``, ``?``, ``#`` or ``%`` stays escaped (it names another resource)."""

    def normal(escape: re.Match[str]) -> str:
        char = chr(int(escape.group(1), 16))
        return char if char in _UNRESERVED else "%" + escape.group(1).upper()

    return _ESCAPE.sub(normal, quote(path, safe=_PATH_SAFE + "%"))


def quoted_path(path: str) -> str:
    """A decoded request path (an ASGI ``path``) as the client sent it, for comparing
    with a proof's ``htu``: a decoded ``?``, ``#`` or ``%`` is escaped again."""
    return quote(path, safe=_PATH_SAFE)


class SeenInProcess:
    """The ``jti`` of the proofs this process accepted, each kept until its proof leaves
    the ``iat`` window (RFC 9449 §11.1), at most ``size`` of them (the oldest go first).

    The platform's routes record proofs here rather than in the grant store: a proof
    names one request (method, URL and the token's hash) and lives a minute, and a write
    to the database on every call of a protected route would cost more than the rest of
    the check. The token endpoint, where a proof buys tokens, records them for every
    worker (:meth:`~starlette_broker_oauth.storage.base.GrantStore.use_once`).
    """

    def __init__(self, size: int = 200_000) -> None:
        self._size = size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_use(self, key: str, *, until: float, now: float) -> bool:
        """Record ``key`` until ``until``: ``True`` the first time, ``False`` while it is
        kept."""
        seen = self._seen
        while seen:
            oldest, kept_until = next(iter(seen.items()))
            if kept_until > now and len(seen) < self._size:
                break
            del seen[oldest]
        if key in seen:
            return False
        seen[key] = until
        return True


class DPoPChecker:
    """Checks DPoP proofs (RFC 9449 §4.3) and issues the server's nonces (§8, §9).

    Parameters:
        settings: The server's settings: the accepted algorithms
            (``dpop_signing_algs``), the ``iat`` window (``dpop_proof_max_age``,
            ``dpop_proof_leeway``) and the nonces (``dpop_nonce``,
            ``dpop_nonce_secret``, ``dpop_nonce_lifetime``).
        grants: Where each proof's ``jti`` is recorded once for every worker.
        clock: Where time is read.
        seen: Record ``jti`` in this process only (:class:`SeenInProcess`: the
            platform's routes) instead of in ``grants`` (the token endpoint).
    """

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        grants: GrantStore,
        clock: Clock,
        seen: SeenInProcess | None = None,
    ) -> None:
        self.settings = settings
        self.grants = grants
        self.clock = clock
        self._seen = seen
        self.algorithms = settings.dpop_signing_algs
        self._registry = JWSRegistry(algorithms=list(self.algorithms))
        self._registry.max_header_length = _MAX_HEADER_LENGTH
        self._max_age = settings.dpop_proof_max_age.total_seconds()
        self._leeway = settings.dpop_proof_leeway.total_seconds()
        self._nonce_key = (
            None
            if not settings.dpop_nonce or settings.dpop_nonce_secret is None
            else hashlib.sha256(b"dpop-nonce:" + settings.dpop_nonce_secret.encode()).digest()
        )
        self._nonce_window = settings.dpop_nonce_lifetime.total_seconds()

    @property
    def algs_header(self) -> str:
        """The accepted algorithms, space-separated (``algs`` of the challenge, §7.1)."""
        return " ".join(self.algorithms)

    # nonces (RFC 9449 §8, §9)

    @property
    def nonces_required(self) -> bool:
        """Whether every proof must carry a nonce this server issued."""
        return self._nonce_key is not None

    def nonce(self) -> str | None:
        """The nonce to hand out now (``DPoP-Nonce``); ``None`` when nonces are off."""
        if self._nonce_key is None:
            return None
        return self._nonce_for(math.floor(self.clock.time() / self._nonce_window))

    def _nonce_for(self, window: int) -> str:
        assert self._nonce_key is not None
        mac = hmac.new(self._nonce_key, str(window).encode(), hashlib.sha256).digest()
        return f"{window}.{_b64url(mac[:18])}"

    def _nonce_valid(self, nonce: object) -> bool:
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        window_text, _, _ = nonce.partition(".")
        if not window_text.isdigit():
            return False
        current = math.floor(self.clock.time() / self._nonce_window)
        window = int(window_text)
        if window not in (current, current - 1):
            return False
        return hmac.compare_digest(nonce, self._nonce_for(window))

    # the proof

    async def check(
        self,
        proofs: Sequence[str],
        *,
        method: str,
        url: str,
        access_token: str | None = None,
    ) -> DPoPProof:
        """Every check of RFC 9449 §4.3 on the ``DPoP`` header values of a request.

        Parameters:
            proofs: Every ``DPoP`` header value the request carried (exactly one is
                accepted).
            method: The request's method (``htm``).
            url: The URL the request was sent to, as the server knows it (``htu``):
                built from the issuer's configured URL, never from the ``Host`` header.
            access_token: The access token the request presents, whose hash the proof
                must carry (``ath``); ``None`` at the token endpoint.

        Raises :class:`~starlette_broker_oauth.errors.InvalidDPoPProof`, or
        :class:`~starlette_broker_oauth.errors.UseDPoPNonce` (with the nonce to use)
        when nonces are required and the proof's is missing, stale or not this
        server's. The proof's ``jti`` is recorded as used only once every other check
        has passed.
        """
        if len(proofs) != 1:
            raise InvalidDPoPProof("send exactly one DPoP header")
        header, claims = self._decoded(proofs[0])
        key = self._key(header)
        self._verify_signature(proofs[0], key, header["alg"])
        self._check_request(claims, method=method, url=url, access_token=access_token)
        issued_at = self._check_time(claims)
        jkt = str(key.thumbprint())
        jti = claims["jti"]
        now = self.clock.now()
        expires_at = max(issued_at + timedelta(seconds=self._max_age + self._leeway), now)
        key_of_use = hash_secret(f"dpop:{jkt}:{jti}")
        if self._seen is not None:
            first = self._seen.first_use(
                key_of_use, until=expires_at.timestamp(), now=now.timestamp()
            )
        else:
            first = await self.grants.use_once(key_of_use, now=now, expires_at=expires_at)
        if not first:
            raise InvalidDPoPProof("the proof's jti was already used")
        return DPoPProof(jkt=jkt, jti=jti, issued_at=issued_at)

    def _decoded(self, proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The proof's JOSE header and claims, read without trusting them yet."""
        if not proof or len(proof) > _MAX_PROOF_LENGTH or proof.count(".") != 2:
            raise InvalidDPoPProof("the DPoP proof is not a compact JWS")
        try:
            compact = jws.extract_compact(proof.encode("ascii"), registry=self._registry)
            header = dict(compact.headers())
            claims = json.loads(compact.payload)
        except (JoseError, ValueError, UnicodeError, TypeError):
            raise InvalidDPoPProof("the DPoP proof is not a compact JWS") from None
        if not isinstance(claims, dict):
            raise InvalidDPoPProof("the DPoP proof's payload is not a JSON object")
        if header.get("typ") != PROOF_TYPE:
            raise InvalidDPoPProof("the DPoP proof's typ must be dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidDPoPProof(f"the DPoP proof's alg must be one of {self.algs_header}")
        for name, kind in (("jti", str), ("htm", str), ("htu", str)):
            if not isinstance(claims.get(name), kind) or not claims[name]:
                raise InvalidDPoPProof(f"the DPoP proof has no {name}")
        if len(claims["jti"]) > _MAX_JTI_LENGTH:
            raise InvalidDPoPProof("the DPoP proof's jti is too long")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
            raise InvalidDPoPProof("the DPoP proof has no iat")
        return header, claims

    def _key(self, header: dict[str, Any]) -> Any:
        """The public key of the proof's ``jwk`` header; a private key is refused."""
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or jwk.get("kty") not in _KEY_TYPES:
            raise InvalidDPoPProof("the DPoP proof's jwk must be an RSA, EC or OKP public key")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise InvalidDPoPProof("the DPoP proof's jwk must not hold a private key")
        try:
            key = JWKRegistry.import_key(jwk)
        except (JoseError, ValueError, TypeError, KeyError):
            raise InvalidDPoPProof("the DPoP proof's jwk is not a valid key") from None
        if key.is_private:
            raise InvalidDPoPProof("the DPoP proof's jwk must not hold a private key")
        return key

    def _verify_signature(self, proof: str, key: Any, alg: str) -> None:
        try:
            with warnings.catch_warnings():
                # joserfc warns that "EdDSA" is superseded (RFC 9864); clients still send it.
                warnings.simplefilter("ignore", SecurityWarning)
                jws.deserialize_compact(proof, key, algorithms=[alg], registry=self._registry)
        except (JoseError, ValueError, TypeError):
            raise InvalidDPoPProof("the DPoP proof's signature is not valid") from None

    def _check_request(
        self, claims: dict[str, Any], *, method: str, url: str, access_token: str | None
    ) -> None:
        if claims["htm"] != method:
            raise InvalidDPoPProof("the DPoP proof's htm is not the request's method")
        expected = normalized_url(url)
        if expected is None or normalized_url(claims["htu"]) != expected:
            raise InvalidDPoPProof("the DPoP proof's htu is not the request's URL")
        if self._nonce_key is not None and not self._nonce_valid(claims.get("nonce")):
            nonce = self.nonce()
            assert nonce is not None
            raise UseDPoPNonce("the DPoP proof must carry the server's nonce", nonce=nonce)
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str) or not hmac.compare_digest(
                ath.encode("ascii", "replace"), access_token_hash(access_token).encode("ascii")
            ):
                raise InvalidDPoPProof("the DPoP proof's ath is not the access token's hash")

    def _check_time(self, claims: dict[str, Any]) -> datetime:
        iat = float(claims["iat"])
        now = self.clock.time()
        if iat < now - self._max_age:
            raise InvalidDPoPProof("the DPoP proof is too old")
        if iat > now + self._leeway:
            raise InvalidDPoPProof("the DPoP proof is issued in the future")
        return datetime.fromtimestamp(iat, UTC)
