"""Random values, hashing and comparisons for codes, tokens and secrets.

Every credential the library issues is 256 bits from ``secrets``. Because they are
high-entropy generated values, a single SHA-256 is enough to store them: a slow password
hash would add nothing but latency on the token endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from urllib.parse import unquote_plus

__all__ = [
    "basic_credentials",
    "client_basic_credentials",
    "hash_secret",
    "new_client_id",
    "new_secret",
    "secrets_equal",
    "utcnow",
]

TOKEN_BYTES = 32

# Copying a prepared hash object skips OpenSSL 3's per-call digest lookup, which costs
# several microseconds under a loaded server - on the path of every token check.
_SHA256 = hashlib.sha256()


def new_secret() -> str:
    """A new 256-bit URL-safe random value (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_client_id() -> str:
    """A new client or partner identifier: 128 random bits as 32 hex digits."""
    return secrets.token_hex(16)


def hash_secret(value: str) -> str:
    """The storage form of a generated secret, code or token: SHA-256, hex."""
    digest = _SHA256.copy()
    digest.update(value.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def secrets_equal(a: str, b: str) -> bool:
    """Compare two strings in constant time."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """The user name and password of an HTTP Basic ``Authorization`` value (RFC 7617),
    or ``(None, None)`` when it is absent or not valid Basic credentials."""
    if not header:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: not ASCII, or not UTF-8
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def client_basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """An OAuth client's id and secret from an HTTP Basic ``Authorization`` value.

    RFC 6749 §2.3.1 has the client encode both with ``application/x-www-form-urlencoded``
    before Basic encodes them, so they are decoded here (``%2D`` is ``-``, ``+`` a space).
    A client that does not encode sends the same values whenever encoding would not change
    them, which holds for every generated id and secret (no ``%`` or ``+``). A value whose
    percent-escapes are not UTF-8 is not a credential: ``(None, None)``.
    """
    user, password = basic_credentials(header)
    if user is None or password is None:
        return None, None
    try:
        return unquote_plus(user, errors="strict"), unquote_plus(password, errors="strict")
    except UnicodeDecodeError:
        return None, None
