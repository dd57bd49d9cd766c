"""What a client may register: its redirect URIs (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700
§2.1) and an imported secret; checked by every storage's ``create_client``, and so by the
CLI."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from .errors import RegistrationError
from .settings import is_loopback

__all__ = ["MIN_SECRET_LENGTH", "check_client_secret", "check_redirect_uri", "check_redirect_uris"]

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
