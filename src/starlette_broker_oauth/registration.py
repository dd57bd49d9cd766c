"""What a client may register: its redirect URIs (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700
§2.1), an imported secret, and its public keys with how it authenticates (RFC 7523 §2.2);
checked by every storage's ``create_client``, and so by the CLI."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry, RSAKey

from .errors import RegistrationError
from .models import ClientAuthMethod
from .settings import is_loopback

__all__ = [
    "MAX_JWKS_KEYS",
    "MIN_RSA_BITS",
    "MIN_SECRET_LENGTH",
    "check_auth_method",
    "check_client_jwks",
    "check_client_keys",
    "check_client_secret",
    "check_redirect_uri",
    "check_redirect_uris",
]

#: The shortest secret a client may be registered with (a generated one has 43 characters).
MIN_SECRET_LENGTH = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# RFC 3986 characters, printable ASCII without space, quotes, angle brackets and the like.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
# Schemes a browser handles itself: never a native app's private-use scheme.
_NOT_PRIVATE = frozenset(
    {
        "http",
        "https",
        "javascript",
        "data",
        "file",
        "blob",
        "filesystem",
        "ftp",
        "ws",
        "wss",
        "about",
        "vbscript",
        "mailto",
        "tel",
    }
)


def check_redirect_uri(uri: str) -> str:
    """``uri`` if a client may register it; raises :class:`RegistrationError` saying why.

    Accepted: an absolute ``https`` URI with a host; ``http`` only on a loopback host
    (RFC 8252 §7.3); a native app's private-use scheme in reverse-domain form such as
    ``com.example.app:/callback`` (RFC 8252 §7.1). Never a fragment (RFC 6749 §3.1.2) or
    user-info, and only URI characters (a non-ASCII host goes in its punycode form).
    """
    if not uri or not _URI_CHARACTERS.fullmatch(uri):
        raise RegistrationError(f"redirect URI {uri!r} has characters a URI cannot have")
    try:
        parts = urlsplit(uri)
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise RegistrationError(f"redirect URI {uri!r} is not a valid URI") from None
    scheme = parts.scheme
    if not scheme or not _SCHEME.fullmatch(scheme):
        raise RegistrationError(f"redirect URI {uri!r} must be absolute")
    if "#" in uri:
        raise RegistrationError(f"redirect URI {uri!r} must not have a fragment")
    if "@" in parts.netloc:
        raise RegistrationError(f"redirect URI {uri!r} must not have user-info")
    if "*" in parts.netloc:
        raise RegistrationError(
            f"redirect URI {uri!r} looks like a wildcard: redirect URIs are matched "
            "exactly, so register each one"
        )
    if scheme == "https":
        if not host:
            raise RegistrationError(f"redirect URI {uri!r} has no host")
        return uri
    if scheme == "http":
        if not host or not is_loopback(host):
            raise RegistrationError(
                f"redirect URI {uri!r} must use https (http only on a loopback host)"
            )
        return uri
    if scheme in _NOT_PRIVATE or "." not in scheme:
        raise RegistrationError(
            f"redirect URI {uri!r}: a native app's scheme must be in reverse-domain form, "
            "such as com.example.app:/callback"
        )
    return uri


def check_redirect_uris(uris: Iterable[str]) -> tuple[str, ...]:
    """Every URI checked (:func:`check_redirect_uri`); at least one."""
    checked = tuple(check_redirect_uri(uri) for uri in uris)
    if not checked:
        raise RegistrationError("a client needs at least one redirect URI")
    return checked


def check_client_secret(secret: str) -> str:
    """``secret`` if a client may be registered with it (an app moved from another
    server keeps its secret); raises :class:`RegistrationError` saying why.

    Secrets are stored as one SHA-256, which is only safe for high-entropy values: at least
    :data:`MIN_SECRET_LENGTH` characters, and no control characters. Any other character
    is allowed; clients send it form-encoded (RFC 6749 §2.3.1).
    """
    if len(secret) < MIN_SECRET_LENGTH:
        raise RegistrationError(
            f"a client secret needs at least {MIN_SECRET_LENGTH} characters, not {len(secret)}"
        )
    if _CONTROL.search(secret):
        raise RegistrationError("a client secret cannot have control characters")
    return secret


#: The most keys a client's JWKS may hold (a current key and the next, with room to spare).
MAX_JWKS_KEYS = 10
#: The smallest RSA modulus a client may register (FAPI 2.0 Security Profile §5.4.1).
MIN_RSA_BITS = 2048
# Members of a JWK that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# The curves a signing key may be on, by key type (RFC 7518 §6.2.1.1, RFC 8037 §2).
_CURVES = {"EC": frozenset({"P-256", "P-384", "P-521"}), "OKP": frozenset({"Ed25519", "Ed448"})}


def check_client_jwks(jwks: Mapping[str, Any] | str) -> str:
    """A client's public keys as the storage keeps them: the JWK Set (RFC 7517 §5) as
    compact JSON text; raises :class:`RegistrationError` saying why it cannot be registered.

    Accepted: a JSON object (or its text) with ``keys``, 1 to :data:`MAX_JWKS_KEYS` public
    signing keys, each RSA (at least :data:`MIN_RSA_BITS` bits), EC (P-256, P-384, P-521)
    or OKP (Ed25519, Ed448), with distinct ``kid`` values when given. Refused: text that is
    not JSON, a private key (any of ``d``, ``p``, ``q``, ``dp``, ``dq``, ``qi``, ``oth``),
    a symmetric key (``kty`` ``oct``, or a ``k``), a key for encryption only.
    """
    if isinstance(jwks, str):
        try:
            jwks = json.loads(jwks)
        except (ValueError, RecursionError):
            raise RegistrationError("the JWKS is not valid JSON") from None
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise RegistrationError('a JWKS is a JSON object with a "keys" array (RFC 7517 §5)')
    keys: list[Any] = jwks["keys"]
    if not 1 <= len(keys) <= MAX_JWKS_KEYS:
        raise RegistrationError(f"a JWKS holds 1 to {MAX_JWKS_KEYS} keys, not {len(keys)}")
    kids: set[str] = set()
    for number, key in enumerate(keys, start=1):
        _check_public_key(number, key)
        kid = key.get("kid")
        if kid is not None:
            if not isinstance(kid, str) or not kid or kid in kids:
                raise RegistrationError(f"key {number}: each kid must be a distinct string")
            kids.add(kid)
    return json.dumps({"keys": keys}, sort_keys=True, separators=(",", ":"))


def _check_public_key(number: int, key: Any) -> None:
    if not isinstance(key, Mapping):
        raise RegistrationError(f"key {number} is not a JSON object")
    kty = key.get("kty")
    if kty == "oct" or "k" in key:
        raise RegistrationError(
            f"key {number} is a symmetric key: register public keys only (RSA, EC or OKP)"
        )
    if private := sorted(_PRIVATE_MEMBERS & set(key)):
        raise RegistrationError(
            f"key {number} is a private key (it has {', '.join(private)}): register its "
            "public key only, and keep the private key with the client"
        )
    if kty not in ("RSA", "EC", "OKP"):
        raise RegistrationError(f"key {number}: kty must be RSA, EC or OKP, not {kty!r}")
    if kty in _CURVES and key.get("crv") not in _CURVES[kty]:
        raise RegistrationError(
            f"key {number}: an {kty} key's crv must be one of {sorted(_CURVES[kty])}, "
            f"not {key.get('crv')!r}"
        )
    if key.get("use", "sig") != "sig":
        raise RegistrationError(f"key {number}: use must be sig")
    try:
        with warnings.catch_warnings():  # a short RSA key is refused below, not warned of
            warnings.simplefilter("ignore", SecurityWarning)
            imported = JWKRegistry.import_key(dict(key))
    except (JoseError, ValueError, TypeError, KeyError):
        raise RegistrationError(f"key {number} is not a valid {kty} public key") from None
    if isinstance(imported, RSAKey) and imported.public_key.key_size < MIN_RSA_BITS:
        raise RegistrationError(f"key {number}: an RSA key needs at least {MIN_RSA_BITS} bits")


def check_auth_method(method: ClientAuthMethod | str) -> ClientAuthMethod:
    """The client authentication method named ``method``; raises
    :class:`RegistrationError` for an unknown one."""
    try:
        return ClientAuthMethod(method)
    except ValueError:
        names = ", ".join(m.value for m in ClientAuthMethod)
        raise RegistrationError(
            f"token_endpoint_auth_method must be one of {names}, not {method!r}"
        ) from None


def check_client_keys(method: ClientAuthMethod, jwks: str | None) -> None:
    """Refuse a ``private_key_jwt`` client without keys (:class:`RegistrationError`)."""
    if method is ClientAuthMethod.PRIVATE_KEY_JWT and jwks is None:
        raise RegistrationError("a private_key_jwt client needs its public keys (a JWKS)")
