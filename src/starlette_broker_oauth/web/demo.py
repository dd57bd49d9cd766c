"""The demo platform behind ``broker-oauth demo``.

A small brokerage: a login for one demo user with a paper and a live account, the hosted
consent and connected-apps pages, one protected API route, ``GET /v2/account``, and the
health routes ``/healthz/live`` and ``/healthz/ready``.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from ..integrations.starlette import (
    BearerTokenBackend,
    TokenUser,
    bearer_error_response,
    requires_token,
)
from ..models import ClientAuthMethod
from ..routes import CONNECTIONS, PARTNER_REVOKE
from ..settings import OAuthSettings
from ..storage.sqlalchemy import SQLAlchemyStorage
from .app import create_oauth_app
from .health import health_routes
from .hosted import HostedConsent, SessionAccount, SessionUser
from .render import routing_error

DEMO_PARTNER = "demo-partner"
DEMO_CLIENT = "demo-trading-app"
DEMO_USERNAME = "trader"
DEMO_USER_NAME = "Demo Trader"
PLATFORM_NAME = "Demo Brokerage"
SESSION_COOKIE = "broker_demo_session"
PAPER_ACCOUNT = uuid.uuid5(uuid.NAMESPACE_URL, "broker-oauth-demo/paper")
LIVE_ACCOUNT = uuid.uuid5(uuid.NAMESPACE_URL, "broker-oauth-demo/live")

DEMO_USER = SessionUser(
    name=DEMO_USER_NAME,
    accounts=(
        SessionAccount(account_id=PAPER_ACCOUNT, label="Practice ····7310"),
        SessionAccount(account_id=LIVE_ACCOUNT, label="Individual ····4821"),
    ),
)
# Made-up balances for GET /v2/account: (cash, equity).
BALANCES = {PAPER_ACCOUNT: (100_000.00, 100_000.00), LIVE_ACCOUNT: (2_481.37, 12_906.52)}
LABELS = {account.account_id: account.label for account in DEMO_USER.accounts}

_MAX_FORM = 8 * 1024
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# A relative path on this site: one leading slash, no backslash, no whitespace or controls.
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoCredentials:
    """What a person or a script needs to use the demo platform."""

    base_url: str
    username: str
    password: str
    partner_key: str
    partner_secret: str
    client_id: str
    client_secret: str
    redirect_uri: str
    paper_account_id: str
    live_account_id: str
    #: Under ``--fapi``: the demo app's private signing key (a JWK), whose public half the
    #: platform holds for ``private_key_jwt``. A demo's, handed out for trying the flow.
    client_private_jwk: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if values["client_private_jwk"] is None:
            del values["client_private_jwk"]
        return values


async def seed(
    storage: SQLAlchemyStorage, *, base_url: str, password: str, fapi: bool = False
) -> DemoCredentials:
    """Create (or, on a re-run, re-key) the demo partner, client and accounts. With
    ``fapi``, the client gets a new signing key and is registered for ``private_key_jwt``
    only (FAPI 2.0); without, it authenticates with its secret again."""
    redirect_uri = "http://127.0.0.1:8001/callback"
    client = await storage.reset_client_secret(DEMO_CLIENT)
    if client is None:
        client = await storage.create_client(
            client_id=DEMO_CLIENT,
            name="Demo Trading App",
            description="A third-party trading app for trying the OAuth flow.",
            url="http://127.0.0.1:8001",
            redirect_uris=[redirect_uri, "http://localhost:8001/callback"],
        )
    private_jwk: dict[str, str] | None = None
    if fapi:
        key = ECKey.generate_key("P-256", parameters={"kid": "demo-app", "alg": "ES256"})
        private_jwk = {k: str(v) for k, v in key.as_dict(private=True).items()}
        await storage.update_client(
            DEMO_CLIENT,
            jwks={"keys": [key.as_dict(private=False)]},
            token_endpoint_auth_method=ClientAuthMethod.PRIVATE_KEY_JWT,
        )
    else:
        await storage.update_client(
            DEMO_CLIENT, token_endpoint_auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC
        )
    partner = await storage.reset_partner_secret(DEMO_PARTNER)
    if partner is None:
        partner = await storage.create_partner(key_id=DEMO_PARTNER, name="Demo Broker")
    await storage.allow_partner_client(DEMO_PARTNER, DEMO_CLIENT)
    await storage.create_account(account_id=PAPER_ACCOUNT, live=False, partner=DEMO_PARTNER)
    await storage.create_account(account_id=LIVE_ACCOUNT, live=True, partner=DEMO_PARTNER)
    return DemoCredentials(
        base_url=base_url,
        username=DEMO_USERNAME,
        password=password,
        partner_key=partner.key_id,
        partner_secret=partner.secret,
        client_id=client.client_id,
        client_secret=client.client_secret,
        redirect_uri=redirect_uri,
        paper_account_id=str(PAPER_ACCOUNT),
        live_account_id=str(LIVE_ACCOUNT),
        client_private_jwk=private_jwk,
    )


def _here(request: Request) -> str:
    """The request's path and query, to come back to after logging in."""
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: never an open redirect."""
    return value if value and _LOCAL_PATH.fullmatch(value) else "/"


class DemoSession:
    """The demo login, as the hosted consent and connected-apps pages see it. Sessions are
    kept here, on the server; the signed cookie only names one."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}

    def of(self, request: Request) -> _Session | None:
        """The request's session, while it lasts."""
        sid = request.session.get("sid")
        return self.sessions.get(sid) if isinstance(sid, str) else None

    async def current_user(self, request: Request) -> SessionUser | None:
        return DEMO_USER if self.of(request) is not None else None

    def login_url(self, request: Request) -> str:
        return "/login?next=" + quote(_here(request), safe="")

    def switch_user_url(self, request: Request) -> str:
        return "/logout?next=" + quote(_here(request), safe="")


class HideTokens(logging.Filter):
    """Keeps tokens out of uvicorn's access log: drops query strings (``access_token=``,
    ``code=``) and the token in ``DELETE /v1/oauth/token/{token}``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            path, sep, _ = str(args[2]).partition("?")
            if path.startswith(PARTNER_REVOKE.prefix):
                path = PARTNER_REVOKE.prefix + "…"
            record.args = (args[0], args[1], path + ("?…" if sep else ""), *args[3:])
        return True


_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1b1f24;background:#f3f5f8}
main{max-width:26rem;margin:2.5rem auto;padding:1.5rem;background:#fff;border-radius:12px;
box-shadow:0 1px 4px rgba(0,0,0,.12)}
@media (max-width:30rem){main{margin:0;min-height:100vh;border-radius:0;box-shadow:none}}
h1{font-size:1.4rem;margin:0 0 1rem}
h2{font-size:1.1rem;margin:1.25rem 0 .25rem}
.brand{color:#0b5cad;font-weight:700;margin:0 0 .75rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input{width:100%;padding:.65rem .75rem;font:inherit;border:1px solid #8a94a3;border-radius:8px}
button,.button{display:block;width:100%;margin-top:1.25rem;padding:.75rem;font:inherit;
font-weight:600;text-align:center;text-decoration:none;color:#fff;background:#0b5cad;
border:0;border-radius:8px;cursor:pointer}
.secondary{color:#0b5cad;background:#fff;border:1px solid #0b5cad}
:focus-visible{outline:3px solid #f0a500;outline-offset:2px}
.error{color:#a3191e;background:#fdecec;padding:.5rem .75rem;border-radius:8px}
ul{padding-left:1.2rem}.muted{color:#57606a;font-size:.9rem}
"""


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · {PLATFORM_NAME}</title><style>{_STYLE}</style></head>"
        f'<body><main><p class="brand">{PLATFORM_NAME}</p>{body}</main></body></html>'
    )
    return HTMLResponse(document, status_code=status_code, headers=_PAGE_HEADERS)


def _login_page(next_path: str, *, error: str = "", status_code: int = 200) -> HTMLResponse:
    e = html.escape
    alert = f'<p class="error" id="error" role="alert">{e(error)}</p>' if error else ""
    return _page(
        "Log in",
        f"<h1>Log in</h1>{alert}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        '<label for="username">Username</label>'
        '<input id="username" name="username" autocomplete="username" '
        'autocapitalize="none" spellcheck="false" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button type="submit" id="log-in">Log in</button></form>'
        '<p class="muted">The demo prints the username and password when it starts.</p>',
        status_code,
    )


@dataclass(frozen=True, slots=True)
class _Session:
    """A logged-in session, kept on the server: logging out ends it, whatever cookie a
    browser still holds."""

    user: str
    csrf: str


def _session_of(request: Request) -> _Session | None:
    demo: DemoSession = request.app.state.demo_session
    return demo.of(request)


def _cross_site(request: Request) -> bool:
    """Whether a form was posted from another site: ``Sec-Fetch-Site`` where the browser
    sends it, else an ``Origin`` that is not this one (a page with ``no-referrer`` makes
    Chromium send ``Origin: null`` for its own forms)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin is not None and origin not in ("null", own)


async def _form(request: Request) -> dict[str, str] | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            return None
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def login(request: Request) -> Response:
    if request.method == "GET":
        return _login_page(local_path(request.query_params.get("next")))
    if _cross_site(request):
        return _page(
            "Log in",
            '<h1>Log in</h1><p class="error" role="alert">Log in from this site\'s own page.</p>',
            403,
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            return Response("form too large", status_code=413)
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    next_path = local_path(form.get("next"))
    password: str = request.app.state.demo_password
    if not (
        secrets.compare_digest(form.get("username", "").encode(), DEMO_USERNAME.encode())
        and secrets.compare_digest(form.get("password", "").encode(), password.encode())
    ):
        return _login_page(next_path, error="Wrong username or password.", status_code=401)
    sid = secrets.token_urlsafe(32)
    request.app.state.demo_session.sessions[sid] = _Session(
        user=DEMO_USERNAME, csrf=secrets.token_urlsafe(32)
    )
    request.session.clear()
    request.session["sid"] = sid
    return RedirectResponse(next_path, status_code=303)


def _logout_form(session: _Session, next_path: str, label: str = "Log out") -> str:
    e = html.escape
    return (
        '<form method="post" action="/logout" class="inline">'
        f'<input type="hidden" name="csrf_token" value="{e(session.csrf)}">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        f'<button type="submit" class="secondary" id="log-out">{e(label)}</button></form>'
    )


async def logout(request: Request) -> Response:
    """``GET`` asks (the consent page's "Not you?" links here); a ``POST`` from this site
    with the session's token ends the session on the server."""
    session = _session_of(request)
    if request.method == "GET":
        next_path = local_path(request.query_params.get("next"))
        if session is None:
            return RedirectResponse("/login?next=" + quote(next_path, safe=""), status_code=303)
        return _page(
            "Log out",
            f"<h1>Log out?</h1><p>You are signed in as {html.escape(DEMO_USER_NAME)}.</p>"
            + _logout_form(session, next_path),
        )
    form = await _form(request)
    if form is None:
        return Response("form too large", status_code=413)
    next_path = local_path(form.get("next"))
    if (
        _cross_site(request)
        or session is None
        or not secrets.compare_digest(form.get("csrf_token", "").encode(), session.csrf.encode())
    ):
        return _page(
            "Log out",
            '<h1>Log out</h1><p class="error" role="alert">Not logged out: '
            "use the button on this site's own page.</p>",
            403,
        )
    request.app.state.demo_session.sessions.pop(request.session.get("sid"), None)
    request.session.clear()
    return RedirectResponse("/login?next=" + quote(next_path, safe=""), status_code=303)


async def home(request: Request) -> Response:
    session = _session_of(request)
    user = DEMO_USER
    if session is None:
        return _page(
            "Welcome",
            "<h1>Welcome</h1><p>Log in to see your accounts and the apps connected to them.</p>"
            '<a class="button" id="login" href="/login?next=%2F">Log in</a>',
        )
    e = html.escape
    kinds = {PAPER_ACCOUNT: "paper", LIVE_ACCOUNT: "live"}
    accounts = "".join(
        f"<li>{e(account.label)} ({kinds.get(account.account_id, '')})</li>"
        for account in user.accounts
    )
    return _page(
        "Your accounts",
        f'<h1>Hello, {e(user.name)}</h1><p id="signed-in">Signed in as {e(user.name)}.</p>'
        f"<h2>Your accounts</h2><ul>{accounts}</ul>"
        f'<a class="button" id="connected-apps" href="{CONNECTIONS.path}">Connected apps</a>'
        + _logout_form(session, "/"),
    )


@requires_token("general")
async def account(request: Request) -> Response:
    user = request.user
    assert isinstance(user, TokenUser)
    token = user.token
    cash, equity = BALANCES.get(token.account_id, (0.0, 0.0))
    return JSONResponse(
        {
            "account_id": str(token.account_id),
            "label": LABELS.get(token.account_id, ""),
            "client_id": token.client_id,
            "scope": " ".join(sorted(token.scopes)),
            "live": token.account_live,
            "currency": "USD",
            "cash": cash,
            "equity": equity,
        }
    )


def build_platform(
    storage: SQLAlchemyStorage, settings: OAuthSettings, *, password: str
) -> Starlette:
    """The demo brokerage: its login and pages, the OAuth sub-app, one API route and the
    health routes.

    ``password`` is the demo user's; the session and consent keys are new on every call.
    """
    demo_session = DemoSession()
    consent = HostedConsent(
        session=demo_session,
        secret_key=secrets.token_urlsafe(36),
        platform_name=PLATFORM_NAME,
    )
    oauth = create_oauth_app(settings=settings, storage=storage, consent=consent)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with storage:
            yield

    app = Starlette(
        # The host's own 404 and 405 (a path no route matches, such as one with a newline)
        # in the partner shape, like the sub-app's.
        exception_handlers={404: routing_error, 405: routing_error},
        routes=[
            Route("/", home),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["GET", "POST"]),
            Route("/v2/account", account),
            *health_routes(oauth),
            Mount("/", oauth),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secrets.token_urlsafe(32),
                session_cookie=SESSION_COOKIE,
                same_site="lax",
                https_only=settings.issuer.startswith("https://"),
            ),
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(oauth.state.token_verifier),
                on_error=bearer_error_response,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.demo_password = password
    app.state.demo_session = demo_session
    return app
