"""The hosted pages' settings, their templates, and what every page shares: the response
headers, the signed form tokens and the plain words for each error."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from ...clock import Clock
from ...errors import ConfigurationError
from .pages import ConnectionsPage, ConsentPage, ErrorPage
from .render import TemplateDirectory
from .session import SessionHook, SessionUser

__all__ = ["FormTokens", "HostedConsent", "Templates", "form_target", "page_headers", "plain_words"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Templates:
    """Functions that turn a page's value into HTML, for a platform whose pages are not
    Jinja2 templates; a page left ``None`` is rendered from its Jinja2 template
    (``HostedConsent.template_directory``, then the package's).

    Parameters:
        consent: Renders the consent page, instead of ``consent.html``.
        error: Renders the error page, instead of ``error.html``.
        connections: Renders the connected-apps page, instead of ``connections.html``.
    """

    consent: Callable[[ConsentPage], str] | None = None
    error: Callable[[ErrorPage], str] | None = None
    connections: Callable[[ConnectionsPage], str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedConsent:
    """Turns on the platform-hosted pages: consent at ``/oauth/authorize`` and the
    connected-apps page at ``/oauth/connections``.

    Parameters:
        session: Says who is logged in, with which accounts, and where to log in.
        secret_key: Signs the forms' CSRF tokens; keep it secret, at least 32 characters.
        platform_name: The brokerage's name, shown on every page.
        logo_url: The brokerage's logo: an ``https`` URL or a path on this site.
        form_max_age: How long a rendered form can be submitted.
        template_directory: The platform's Jinja2 template directory, or several searched
            in order: a page template found there (``consent.html``, ``connections.html``,
            ``error.html``, ``base.html``, ``macros.html``) is used instead of the
            package's. Checked when the app is created.
        templates: Functions that render a page instead of its template (:class:`Templates`).
        connections_page: Serve ``/oauth/connections`` (on by default).
    """

    session: SessionHook
    secret_key: str
    platform_name: str = "Your brokerage"
    logo_url: str | None = None
    form_max_age: timedelta = timedelta(minutes=10)
    template_directory: TemplateDirectory | None = None
    templates: Templates = field(default_factory=Templates)
    connections_page: bool = True

    def __post_init__(self) -> None:
        if len(self.secret_key) < 32:
            raise ConfigurationError("HostedConsent.secret_key needs at least 32 characters")
        if self.logo_url is not None and _image_source(self.logo_url) is None:
            raise ConfigurationError("logo_url must be an https URL or a path starting with /")


_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def _image_source(url: str) -> str | None:
    if url.startswith("/") and not url.startswith("//"):
        return "'self'"
    parts = urlsplit(url)
    if parts.scheme == "https" and _HOST.match(parts.netloc):
        return f"https://{parts.netloc}"
    return None


# Schemes a browser navigates to on its own: a bare scheme source would admit any site.
_SPECIAL = frozenset({"http", "https", "ws", "wss", "ftp", "file", "data", "javascript", "blob"})


def form_target(redirect_uri: str) -> str | None:
    """The CSP source that lets a form's redirect reach ``redirect_uri``: its origin, or
    for a native app's private-use scheme (RFC 8252 §7.1) the scheme; ``None`` when the URI
    cannot be expressed as a source without widening the policy."""
    try:
        parts = urlsplit(redirect_uri)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME.match(scheme) or scheme in {"filesystem"}:
        return None
    if scheme not in _SPECIAL:
        return None if parts.netloc else f"{scheme}:"
    if scheme not in {"http", "https"} or not host or parts.username is not None:
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    netloc = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}" if _HOST.match(netloc) else None


def page_headers(*, redirect_uri: str | None = None, logo_url: str | None = None) -> dict[str, str]:
    """The headers of every hosted page.

    ``form-action`` admits this site and, on the consent page, the origin of the
    validated redirect URI: browsers apply the directive to the redirect that answers a
    form, so ``'self'`` alone would stop the user on the consent page.
    """
    targets = ["'self'"]
    if redirect_uri is not None and (target := form_target(redirect_uri)) is not None:
        targets.append(target)
    image = (_image_source(logo_url) if logo_url else None) or "'none'"
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"img-src {image}; form-action {' '.join(targets)}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def user_key(user: SessionUser) -> str:
    """A digest naming the user and their accounts, to bind a form to them."""
    accounts = sorted(str(a.account_id) for a in user.accounts)
    return hashlib.sha256(json.dumps([user.name, accounts]).encode()).hexdigest()


class FormTokens:
    """Signed, time-limited form tokens (itsdangerous), timed by the server's clock."""

    def __init__(self, secret_key: str, *, salt: str, max_age: timedelta, clock: Clock) -> None:
        class ClockSigner(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock.time())

        self.serializer = URLSafeTimedSerializer(secret_key, salt=salt, signer=ClockSigner)
        self.max_age = int(max_age.total_seconds())

    def dumps(self, value: dict[str, Any]) -> str:
        return self.serializer.dumps(value)

    def loads(self, token: str) -> dict[str, Any] | None:
        """The signed value, or ``None`` when the token is forged, foreign or expired."""
        try:
            value = self.serializer.loads(token, max_age=self.max_age)
        except BadSignature:
            return None
        return value if isinstance(value, dict) else None


_WORDS = {
    "invalid_request": (
        "This connection request is not valid",
        "The app that sent you here asked in a way {platform} cannot accept, so nothing "
        "was shared. Go back to the app and try connecting again; if this keeps "
        "happening, contact the app's support.",
    ),
    "unauthorized_client": (
        "This app cannot be connected right now",
        "{platform} is not accepting connections from this app at the moment. Nothing was shared.",
    ),
    "expired": (
        "This page has expired",
        "For your security, a connection page can be used only for a few minutes. Go "
        "back to the app and start connecting again.",
    ),
    "used": (
        "This page was already used",
        "Your answer was already sent to the app. To connect it again, start from the app.",
    ),
    "signed_out": (
        "You are signed out",
        "Sign in to {platform} again, then start connecting from the app once more.",
    ),
    "temporarily_unavailable": (
        "{platform} is temporarily unavailable",
        "Nothing was changed. Please try again in a few minutes.",
    ),
    "server_error": (
        "Something went wrong",
        "Nothing was changed. Please try again; if this keeps happening, contact "
        "{platform} support.",
    ),
}


def plain_words(kind: str, platform: str) -> tuple[str, str]:
    """The title and message a user reads for an error of this kind."""
    title, message = _WORDS.get(kind, _WORDS["invalid_request"])
    return title.format(platform=platform), message.format(platform=platform)
