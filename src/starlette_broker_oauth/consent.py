"""Platform-hosted consent: ``GET``/``POST /oauth/authorize`` (RFC 6749 §4.1.1).

For platforms that show the consent page themselves instead of a partner. The platform
says who is logged in through a :class:`SessionHook`; the library validates the request,
renders a plain, accessible page (or the platform's own template), protects the form with
an itsdangerous-signed, time-limited token bound to the account and the request, and
answers with a 303 to the client's redirect URI: ``code``, ``state`` and ``iss``
(RFC 9207) on approval, ``error=access_denied`` on denial. Until the client and its
redirect URI are validated, errors are shown, never redirected (RFC 9700 §4.11).
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol
from urllib.parse import urlsplit
from uuid import UUID

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ._oauth import ConsentRequest, OAuthProtocol
from ._params import query_params, read_params
from ._render import consent_error, redirect_location
from .clock import SYSTEM_CLOCK, Clock
from .errors import BrokerOAuthError, ConfigurationError

__all__ = ["ConsentPage", "HostedConsent", "SessionHook", "render_consent_page"]

_SALT = "starlette-broker-oauth/consent"
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SessionHook(Protocol):
    """How the library learns who is logged in on the platform."""

    async def account_id(self, request: Request) -> UUID | None:
        """The account of the logged-in user, or ``None`` when nobody is logged in."""

    def login_url(self, request: Request) -> str:
        """Where to send a user who must log in first (coming back to ``request.url``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentPage:
    """What a consent page shows; the argument of a template.

    Parameters:
        client_name, client_description, client_url, terms_of_use, privacy_policy: The
            client's registration, to tell the user who is asking.
        scopes: ``(scope, description)`` pairs being requested.
        redirect_host: Where the user will be sent afterwards.
        action: The form's action URL (``POST``).
        fields: Hidden form fields to submit unchanged (request and CSRF token).
    """

    client_name: str
    client_description: str
    client_url: str
    terms_of_use: str
    privacy_policy: str
    scopes: tuple[tuple[str, str], ...]
    redirect_host: str
    action: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedConsent:
    """Turns on ``GET``/``POST /oauth/authorize``.

    Parameters:
        session: Says who is logged in and where to log in.
        secret_key: Signs the form's CSRF token; keep it secret, at least 32 characters.
        form_max_age: How long a rendered page can be submitted.
        template: Renders a :class:`ConsentPage` to HTML; :func:`render_consent_page` by
            default. A template must escape what it inserts and submit ``fields``.
        scope_descriptions: Text shown for each scope.
    """

    session: SessionHook
    secret_key: str
    form_max_age: timedelta = timedelta(minutes=10)
    template: Callable[[ConsentPage], str] | None = None
    scope_descriptions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.secret_key) < 32:
            raise ConfigurationError("HostedConsent.secret_key needs at least 32 characters")


def render_consent_page(page: ConsentPage) -> str:
    """The default consent page: plain HTML, labelled, keyboard-usable, no script."""
    e = html.escape
    scopes = (
        "".join(
            f"<li><strong>{e(name)}</strong>{': ' + e(text) if text and text != name else ''}</li>"
            for name, text in page.scopes
        )
        or "<li>No access to your account data.</li>"
    )
    links = "".join(
        f'<li><a href="{e(url)}" rel="noopener noreferrer">{label}</a></li>'
        for label, url in (
            ("Website", page.client_url),
            ("Terms of use", page.terms_of_use),
            ("Privacy policy", page.privacy_policy),
        )
        if url.startswith(("https://", "http://"))
    )
    hidden = "".join(
        f'<input type="hidden" name="{e(name)}" value="{e(value)}">' for name, value in page.fields
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect {e(page.client_name)} to your account</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #111; }}
button {{ font-size: 1rem; padding: .6rem 1.2rem; margin-right: .8rem; }}
button:focus {{ outline: 3px solid #1a5fb4; outline-offset: 2px; }}
</style>
</head>
<body>
<main>
<h1>Connect <span id="client-name">{e(page.client_name)}</span> to your account?</h1>
<p id="client-description">{e(page.client_description)}</p>
<h2 id="scopes-heading">It asks to</h2>
<ul aria-labelledby="scopes-heading" id="scopes">{scopes}</ul>
<ul id="client-links">{links}</ul>
<p>You will be sent back to <strong>{e(page.redirect_host)}</strong>.</p>
<form method="post" action="{e(page.action)}">
{hidden}
<button type="submit" name="decision" value="approve" id="approve">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
</main>
</body>
</html>
"""


def _error_page(status: int, description: str) -> Response:
    e = html.escape
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorization request refused</title></head>
<body><main><h1>This authorization request cannot be completed</h1>
<p id="error">{e(description)}</p></main></body></html>
"""
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


def _fingerprint(params: Sequence[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(params)).encode()).hexdigest()


def _signer(clock: Clock) -> type[TimestampSigner]:
    class ClockSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock.time())

    return ClockSigner


class ConsentEndpoints:
    """The two handlers of ``/oauth/authorize``."""

    def __init__(
        self,
        *,
        protocol: OAuthProtocol,
        config: HostedConsent,
        action: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.protocol = protocol
        self.config = config
        self.action = action
        self.issuer = protocol.settings.issuer
        self.signer = URLSafeTimedSerializer(config.secret_key, salt=_SALT, signer=_signer(clock))
        self.template = config.template or render_consent_page

    async def get(self, request: Request) -> Response:
        try:
            consent = await self.protocol.consent_request(query_params(request))
            account_id = await self.config.session.account_id(request)
        except BrokerOAuthError as exc:
            return self._error(exc)
        if account_id is None:
            return RedirectResponse(self.config.session.login_url(request), status_code=303)
        token = self.signer.dumps({"a": str(account_id), "p": _fingerprint(consent.params)})
        return HTMLResponse(self.template(self._page(consent, token)), headers=_PAGE_HEADERS)

    async def post(self, request: Request) -> Response:
        try:
            return await self._decide(request)
        except BrokerOAuthError as exc:
            return self._error(exc)

    async def _decide(self, request: Request) -> Response:
        params = await read_params(request, json_allowed=False)
        fields = {k: v[0] for k, v in params.items() if len(v) == 1}
        account_id = await self.config.session.account_id(request)
        if account_id is None:
            return _error_page(400, "You are not logged in.")
        try:
            signed = self.signer.loads(
                fields.get("csrf_token", ""), max_age=int(self.config.form_max_age.total_seconds())
            )
        except BadSignature:
            return _error_page(400, "This form has expired or was not issued here; start again.")
        request_params = {k: [v] for k, v in fields.items() if k not in {"csrf_token", "decision"}}
        canonical = [(k, v[0]) for k, v in request_params.items() if v[0]]
        if signed.get("a") != str(account_id) or signed.get("p") != _fingerprint(canonical):
            return _error_page(400, "This form was issued for another request; start again.")
        decision = fields.get("decision")
        if decision not in {"approve", "deny"}:
            return _error_page(400, "Choose Allow or Deny.")
        authorized = await self.protocol.consent_decision(
            request_params, account_id, approve=decision == "approve"
        )
        location = redirect_location(
            authorized.redirect_uri,
            [("code", authorized.code)],
            state=authorized.state,
            issuer=self.issuer,
        )
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})

    def _error(self, exc: BrokerOAuthError) -> Response:
        return consent_error(exc, issuer=self.issuer, page=_error_page)

    def _page(self, consent: ConsentRequest, token: str) -> ConsentPage:
        client = consent.client
        descriptions = self.config.scope_descriptions
        return ConsentPage(
            client_name=client.name,
            client_description=client.description,
            client_url=client.url,
            terms_of_use=client.terms_of_use,
            privacy_policy=client.privacy_policy,
            scopes=tuple((s, descriptions.get(s, "")) for s in consent.scopes),
            redirect_host=urlsplit(consent.redirect_uri).netloc,
            action=self.action,
            fields=(*consent.params, ("csrf_token", token)),
        )
