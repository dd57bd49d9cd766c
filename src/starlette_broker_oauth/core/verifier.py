"""The framework-neutral token check used on the platform's protected routes.

Tokens are looked up by their SHA-256, never compared as strings: how long a lookup
takes depends on the hash, which tells a guesser nothing about any real token.

A DPoP-bound token (RFC 9449) is accepted only with the ``DPoP`` scheme and a proof by
its key (:meth:`TokenVerifier.verify_dpop`), checked on every request, cached token or
not; sent as a bearer token it is refused.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import (
    InvalidDPoPProof,
    StorageUnavailable,
    TokenError,
    TokenErrorKind,
    UseDPoPNonce,
)
from ..models import AccessToken, Client
from ..security import hash_secret
from ..settings import OAuthSettings
from ..storage.base import (
    ClientChanged,
    ClientRepository,
    GrantStore,
    RevocationMessage,
    Storage,
    TokensRevoked,
)
from ..telemetry import (
    ENABLED,
    record_token_check,
    span,
    tracing,
    watch_token_cache,
)
from .dpop import DPoPChecker, SeenInProcess
from .policy import token_refusal

__all__ = [
    "UNANNOUNCED_CACHE_BOUND",
    "PresentedToken",
    "TokenVerifier",
    "VerifiedToken",
    "bearer_credential",
    "bearer_of_request",
    "bearer_token",
    "token_of_request",
]

# RFC 6750 §2.1 b64token, bounded in length
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedToken:
    """What a valid bearer token grants.

    Parameters:
        account_id: The brokerage account the token acts for.
        client_id: The third-party app it was issued to.
        scopes: The granted scopes.
        account_live: Whether the account is a live (not paper) account.
        expires_at: When the token expires; ``None`` if it lives until revoked.
        jkt: The thumbprint of the key a DPoP-bound token is bound to (``cnf.jkt``,
            RFC 9449 §6); ``None`` for a bearer token.
    """

    account_id: UUID
    client_id: str
    scopes: frozenset[str]
    account_live: bool
    expires_at: datetime | None
    jkt: str | None = None


def bearer_credential(authorization: bytes | str | None) -> str | None:
    """The credential of an ``Authorization: Bearer …`` header value (RFC 6750 §2.1), as
    sent; ``None`` when there is no header or it is of another scheme (HTTP Basic).

    The one parser of bearer headers: the Starlette backend and guard, the FastAPI
    dependency and :meth:`TokenVerifier.verify_header` all use it. Raw header bytes are
    read as Latin-1 (RFC 9110 §5.5); :meth:`TokenVerifier.verify` refuses whatever is not
    a b64token.
    """
    if not authorization:
        return None
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip(" ")


def bearer_of_request(headers: Iterable[tuple[bytes, bytes]], query: bytes = b"") -> str | None:
    """The bearer credential of a request (ASGI headers and query string), or ``None``.

    Refuses (``INVALID_REQUEST``, RFC 6750 §3.1: 400) a request that sends the token more
    than once: two ``Authorization`` headers, or the header and an ``access_token`` query
    parameter (RFC 6750 §2).
    """
    credential: str | None = None
    seen = 0
    for name, value in headers:
        if name == b"authorization":
            seen += 1
            credential = credential or bearer_credential(value)
    if credential is None:
        return None
    if seen > 1 or (
        b"access_token" in query
        and any(k == "access_token" for k, _ in parse_qsl(query.decode("latin-1")))
    ):
        raise TokenError(TokenErrorKind.INVALID_REQUEST)
    return credential


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """The access token a request presents, and how.

    Parameters:
        token: The credential, as sent.
        dpop: Whether it came with the ``DPoP`` scheme (RFC 9449 §7.1) rather than
            ``Bearer``.
        proofs: Every ``DPoP`` header value the request carried.
    """

    token: str
    dpop: bool
    proofs: tuple[str, ...]


def token_of_request(
    headers: Iterable[tuple[bytes, bytes]], query: bytes = b""
) -> PresentedToken | None:
    """The ``Bearer`` or ``DPoP`` credential of a request (ASGI headers and query
    string), with its ``DPoP`` proofs; ``None`` without one.

    Refuses, as :func:`bearer_of_request` does, a request that sends the token more than
    once (``INVALID_REQUEST``).
    """
    credential: str | None = None
    dpop = False
    seen = 0
    proofs: list[str] = []
    for name, value in headers:
        if name == b"authorization":
            seen += 1
            if credential is None:
                scheme, _, rest = value.decode("latin-1").partition(" ")
                lowered = scheme.lower()
                if lowered == "bearer" or lowered == "dpop":
                    credential, dpop = rest.strip(" "), lowered == "dpop"
        elif name == b"dpop":
            proofs.append(value.decode("latin-1"))
    if credential is None:
        return None
    if seen > 1 or (
        b"access_token" in query
        and any(k == "access_token" for k, _ in parse_qsl(query.decode("latin-1")))
    ):
        raise TokenError(TokenErrorKind.INVALID_REQUEST)
    return PresentedToken(credential, dpop, tuple(proofs))


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header value (RFC 6750 §2.1).

    Raises :class:`~.errors.TokenError` (``MISSING``) when there is no bearer credential;
    :meth:`TokenVerifier.verify` refuses a credential that is not a b64token.
    """
    token = bearer_credential(authorization)
    if token is None:
        raise TokenError(TokenErrorKind.MISSING)
    return token


_NO_SPAN = contextlib.nullcontext(None)

#: The longest a cached token is trusted when the grant store cannot tell every process
#: of a revocation (SQLite): revocations made in another process reach this one's cache
#: within this bound.
UNANNOUNCED_CACHE_BOUND = timedelta(seconds=1)


class TokenVerifier:
    """Turns a bearer token into a :class:`VerifiedToken` or a precise :class:`TokenError`.

    Parameters:
        grants: Where tokens are stored.
        clients: Where clients are looked up: a token stops working once its client is
            disabled or deleted, may no longer ask for a scope the token carries, or, for
            a live account, is no longer approved for live trading
            (:func:`~starlette_broker_oauth.core.policy.token_refusal`).
        settings: The server's settings (its scopes, and whether live accounts need an
            approved client); ``create_oauth_app`` passes its own. Without them, a client
            registered with every scope limits nothing, and live accounts need approval.
        cache_ttl: How long a verified token may be reused without asking the storage;
            zero turns the cache off. Every revocation and client change the library
            makes is announced to the cache, which drops what it concerns at once in this
            process, and in every process when the grant store reaches them
            (``GrantStore.reaches_every_process``: PostgreSQL). Where it does not (SQLite
            with several processes), the cache keeps nothing longer than
            :data:`UNANNOUNCED_CACHE_BOUND` (1 s). Expiry is checked on every use.
        cache_size: Most entries kept; the oldest go first.
        clock: Where time is read, for expiry and cache ages; the system clock by default.
        resource_origin: The origin (``https://host[:port]``) clients address the
            protected routes at, against which a DPoP proof's ``htu`` is checked
            (:meth:`verify_dpop`); the issuer's origin by default. Never read from the
            request's ``Host`` header.

    Without ``settings``, the verifier accepts bearer tokens only: a DPoP request, or a
    DPoP-bound token, is refused.
    """

    def __init__(
        self,
        *,
        grants: GrantStore,
        clients: ClientRepository,
        settings: OAuthSettings | None = None,
        cache_ttl: timedelta = timedelta(0),
        cache_size: int = 10_000,
        clock: Clock = SYSTEM_CLOCK,
        resource_origin: str | None = None,
    ) -> None:
        self._grants = grants
        # A route's proofs are recorded in this process (SeenInProcess says why).
        self._dpop = (
            None
            if settings is None
            else DPoPChecker(settings=settings, grants=grants, clock=clock, seen=SeenInProcess())
        )
        self._dpop_algs = () if settings is None else settings.dpop_signing_algs
        origin = resource_origin or (settings.issuer if settings is not None else "")
        parts = urlsplit(origin)
        self._origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
        self._time = clock.time
        self._monotonic = clock.monotonic
        # Bumped by every revocation announcement: a check whose storage read began
        # before one does not cache what it read, which may predate the revocation.
        self._generation = 0
        self._clients = clients
        # One storage that holds tokens and clients reads both in one query.
        self._storage = (
            grants if isinstance(grants, Storage) and cast(object, clients) is grants else None
        )
        self._supported = None if settings is None else settings.scopes_supported
        self._live_without_approval = settings is not None and settings.allow_live_without_approval
        if cache_ttl > UNANNOUNCED_CACHE_BOUND and not grants.reaches_every_process:
            cache_ttl = UNANNOUNCED_CACHE_BOUND
        self._ttl = cache_ttl.total_seconds()
        self._size = cache_size
        # Keyed by the presented token, so that a hit costs no hashing (SHA-256 through
        # OpenSSL costs microseconds under load). Entries live in process memory only,
        # for at most cache_ttl: presented token -> (verified, fresh until (monotonic),
        # expires at (epoch) or None, token hash); and token hash -> presented token, so
        # that a revocation, which knows only the hash, can drop the entry.
        self._cache: OrderedDict[str, tuple[VerifiedToken, float, float | None, str]] = (
            OrderedDict()
        )
        self._by_hash: dict[str, str] = {}
        if self._ttl:
            grants.add_revocation_listener(self._revocation)
            watch_token_cache(self)

    @property
    def dpop_algs(self) -> tuple[str, ...]:
        """The algorithms a DPoP proof may use here (``algs`` of RFC 9449 §7.1's
        challenge); empty when the verifier has no settings and takes bearer tokens only."""
        return self._dpop_algs

    @property
    def cache_ttl(self) -> timedelta:
        """The cache bound; zero when caching is off."""
        return timedelta(seconds=self._ttl)

    @property
    def cache_size(self) -> int:
        """How many verified tokens the cache holds now."""
        return len(self._cache)

    def cached(self, token: str) -> VerifiedToken | None:
        """The cached verification of ``token``, if the cache holds a fresh one.

        Synchronous, for the hot path: a miss (``None``) is settled by :meth:`verify`. A
        DPoP-bound token is never returned here: it needs a proof (:meth:`verify_dpop`).
        """
        start = time.perf_counter() if ENABLED else 0.0
        entry = self._cache.get(token)
        if entry is None or entry[1] <= self._monotonic() or entry[0].jkt is not None:
            return None
        expires = entry[2]
        if expires is not None and self._time() >= expires:
            return None
        if ENABLED:
            record_token_check("hit", "valid", time.perf_counter() - start)
        return entry[0]

    async def verify(self, token: str, *, scopes: Iterable[str] = ()) -> VerifiedToken:
        """Verify a bearer ``token``; with ``scopes``, also require each of them
        (RFC 6750 §3.1). A DPoP-bound token is refused (RFC 9449 §7.2)."""
        verified = self.cached(token) if self._ttl else None
        if verified is None:
            verified = await self._lookup(token)
            if verified.jkt is not None:
                raise TokenError(TokenErrorKind.DPOP_BOUND_AS_BEARER, dpop_algs=self._dpop_algs)
        if scopes and not verified.scopes.issuperset(scopes):
            raise TokenError(TokenErrorKind.INSUFFICIENT_SCOPE, scopes=tuple(scopes))
        return verified

    async def _lookup(self, token: str) -> VerifiedToken:
        """The cache's entry for ``token``, bound or not, else the storage's."""
        entry = self._cache.get(token) if self._ttl else None
        if entry is not None and entry[1] > self._monotonic():
            expires = entry[2]
            if expires is None or self._time() < expires:
                if ENABLED:
                    record_token_check("hit", "valid", 0.0)
                return entry[0]
        return await (self._observed(token) if ENABLED else self._check(token))

    async def verify_dpop(
        self,
        token: str,
        proofs: Iterable[str],
        *,
        method: str,
        path: str,
        scopes: Iterable[str] = (),
    ) -> VerifiedToken:
        """Verify a DPoP-bound ``token`` sent with ``Authorization: DPoP`` and its
        ``DPoP`` proofs (RFC 9449 §7.1): the token as :meth:`verify` does (from the
        cache when it holds it), then, on every request, the proof: every check of
        §4.3 against ``method`` and the URL the client addressed (the resource origin
        and ``path``, the full path including any mount's ``root_path``), ``ath`` the
        token's hash, its ``jti`` used once, and its key the token's (``cnf.jkt``).

        Every refusal carries the DPoP challenge's algorithms (``TokenError.dpop_algs``).
        """
        algs = self._dpop_algs
        try:
            if self._dpop is None:
                raise TokenError(TokenErrorKind.NOT_DPOP_BOUND)
            verified = await self._lookup(token)
            if verified.jkt is None:
                raise TokenError(TokenErrorKind.NOT_DPOP_BOUND)
            try:
                proof = await self._dpop.check(
                    tuple(proofs), method=method, url=self._origin + path, access_token=token
                )
            except UseDPoPNonce as exc:
                raise TokenError(
                    TokenErrorKind.DPOP_NONCE_REQUIRED, dpop_algs=algs, nonce=exc.nonce
                ) from None
            except InvalidDPoPProof:
                raise TokenError(TokenErrorKind.DPOP_PROOF_INVALID) from None
            if proof.jkt != verified.jkt:
                raise TokenError(TokenErrorKind.DPOP_PROOF_INVALID)
            if scopes and not verified.scopes.issuperset(scopes):
                raise TokenError(TokenErrorKind.INSUFFICIENT_SCOPE, scopes=tuple(scopes))
        except TokenError as exc:
            if exc.dpop_algs:
                raise
            raise TokenError(exc.kind, scopes=exc.scopes, dpop_algs=algs) from None
        return verified

    async def _check(self, token: str) -> VerifiedToken:
        """The check of a token the cache does not hold: the storage's record and the
        rules, remembered in the cache when it is on."""
        if len(token) > _MAX_TOKEN_LENGTH or _B64TOKEN.fullmatch(token) is None:
            raise TokenError(TokenErrorKind.MALFORMED)
        self._drop(token)
        token_hash = hash_secret(token)
        generation = self._generation
        verified = await self._load(token_hash)
        if self._ttl and generation == self._generation:
            self._remember(token, token_hash, verified)
        return verified

    async def _observed(self, token: str) -> VerifiedToken:
        """:meth:`_check`, timed (``broker_oauth.token_check.duration``) and, when spans
        are recorded, in a ``broker_oauth.token_check`` span."""
        start = time.perf_counter()
        outcome, reason = "valid", ""
        with span("broker_oauth.token_check") if tracing() else _NO_SPAN as current:
            try:
                verified = await self._check(token)
            except TokenError as exc:
                outcome, reason = "refused", exc.kind.value
                raise
            except StorageUnavailable:
                outcome, reason = "unavailable", "storage_unavailable"
                raise
            finally:
                record_token_check("miss", outcome, time.perf_counter() - start)
                if current is not None:
                    current.set_attribute("broker_oauth.outcome", outcome)
                    if reason:
                        current.set_attribute("broker_oauth.reason", reason)
            if current is not None:
                current.set_attribute("oauth.client_id", verified.client_id)
        return verified

    async def verify_header(
        self, authorization: str | None, *, scopes: Iterable[str] = ()
    ) -> VerifiedToken:
        """Verify the token of an ``Authorization`` header value."""
        return await self.verify(bearer_token(authorization), scopes=scopes)

    def forget(self, token_hash: str) -> None:
        """Drop what the cache holds for a token (its SHA-256, as stored)."""
        token = self._by_hash.pop(token_hash, None)
        if token is not None:
            self._cache.pop(token, None)

    def clear(self) -> None:
        """Empty the cache."""
        self._cache.clear()
        self._by_hash.clear()

    def _revocation(self, message: RevocationMessage) -> None:
        self._generation += 1
        if isinstance(message, TokensRevoked):
            for token_hash in message.token_hashes:
                self.forget(token_hash)
        elif isinstance(message, ClientChanged):
            for token in [k for k, v in self._cache.items() if v[0].client_id == message.client_id]:
                self._drop(token)
        else:
            self.clear()

    def _drop(self, token: str) -> None:
        entry = self._cache.pop(token, None)
        if entry is not None:
            self._by_hash.pop(entry[3], None)

    async def _token_then_client(self, token_hash: str) -> tuple[AccessToken, Client | None] | None:
        token = await self._grants.get_token(token_hash)
        if token is None:
            return None
        return token, await self._clients.get_client(token.client_id)

    async def _load(self, token_hash: str) -> VerifiedToken:
        if self._storage is not None:
            found = await self._storage.token_with_client(token_hash)
        else:
            found = await self._token_then_client(token_hash)
        if found is None:
            raise TokenError(TokenErrorKind.UNKNOWN)
        record, client = found
        if record.revoked_at is not None:
            raise TokenError(TokenErrorKind.REVOKED)
        if record.expires_at is not None and self._time() >= record.expires_at.timestamp():
            raise TokenError(TokenErrorKind.EXPIRED)
        refusal = token_refusal(
            record.scope,
            record.account_live,
            client,
            supported=self._supported,
            allow_live_without_approval=self._live_without_approval,
        )
        if refusal is not None:
            raise TokenError(refusal)
        return VerifiedToken(
            account_id=record.account_id,
            client_id=record.client_id,
            scopes=frozenset(record.scope.split()),
            account_live=record.account_live,
            expires_at=record.expires_at,
            jkt=record.dpop_jkt,
        )

    def _remember(self, token: str, token_hash: str, verified: VerifiedToken) -> None:
        cache = self._cache
        now = self._monotonic()
        # Every entry is fresh for cache_ttl from when it was added, so the cache's order
        # is also the order in which entries go stale: the stale ones, and the oldest when
        # the cache is full, are at the front. Each goes in O(1) (an OrderedDict pops its
        # first item without scanning), so an insertion costs the same at any size.
        while cache:
            oldest, entry = next(iter(cache.items()))
            if entry[1] > now and len(cache) < self._size:
                break
            del cache[oldest]
            self._by_hash.pop(entry[3], None)
        expires = None if verified.expires_at is None else verified.expires_at.timestamp()
        cache[token] = (verified, now + self._ttl, expires, token_hash)
        self._by_hash[token_hash] = token
