"""A third-party trading app that connects to a brokerage with OAuth 2.0.

It is what a trading app's developer writes: Authlib's Starlette client finds the
brokerage's endpoints in its metadata, sends the user to the brokerage's consent page
(authorization code with PKCE S256), exchanges the code for a token, shows the connected
account and revokes the token when the user disconnects.

Start the demo brokerage first (``broker-oauth demo --credentials-json demo.json``), then::

    python examples/third_party_app.py demo.json

and open http://127.0.0.1:8001. It needs ``pip install -e ".[demo]"``.
"""

from __future__ import annotations

import argparse
import html
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import uvicorn
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#14213d;background:#eef1f6}
main{max-width:28rem;margin:2.5rem auto;padding:1.5rem;background:#fff;border-radius:14px;
box-shadow:0 1px 4px rgba(0,0,0,.12)}
@media (max-width:30rem){main{margin:0;min-height:100vh;border-radius:0;box-shadow:none}}
h1{font-size:1.4rem;margin:0 0 1rem}
dl{display:grid;grid-template-columns:auto 1fr;gap:.35rem 1rem}dt{color:#5c677d}dd{margin:0}
button{width:100%;margin-top:1rem;padding:.75rem;font:inherit;font-weight:600;color:#fff;
background:#6a00f4;border:0;border-radius:8px;cursor:pointer}
button.secondary{color:#6a00f4;background:#fff;border:1px solid #6a00f4}
:focus-visible{outline:3px solid #f0a500;outline-offset:2px}
#message{background:#fff6db;padding:.5rem .75rem;border-radius:8px}
"""
ENDED = "Your brokerage connection has ended. Connect again to keep trading."


def page(body: str, message: str | None = None) -> HTMLResponse:
    notice = (
        f'<p id="message" role="status">{html.escape(message)}</p>' if message is not None else ""
    )
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Demo Trading App</title><style>{STYLE}</style></head>"
        f"<body><main><h1>Demo Trading App</h1>{notice}{body}</main></body></html>",
        headers={"Cache-Control": "no-store"},
    )


CONNECT = (
    "<p>Connect your brokerage account to trade from this app.</p>"
    '<form method="post" action="/connect">'
    '<button type="submit" id="connect">Connect your brokerage</button></form>'
)
DISCONNECT = (
    '<form method="post" action="/disconnect">'
    '<button type="submit" id="disconnect" class="secondary">Disconnect</button></form>'
)


def account_view(account: dict[str, Any]) -> str:
    e = html.escape
    rows = [
        ("Account", "account-id", str(account.get("account_id", ""))),
        ("Name", "account-label", str(account.get("label", ""))),
        ("Type", "account-type", "live" if account.get("live") else "paper"),
        ("Cash", "cash", f"{account.get('cash', 0):,.2f} {account.get('currency', '')}"),
        ("Equity", "equity", f"{account.get('equity', 0):,.2f} {account.get('currency', '')}"),
        ("Access", "scope", str(account.get("scope", ""))),
    ]
    items = "".join(f'<dt>{label}</dt><dd id="{id_}">{e(value)}</dd>' for label, id_, value in rows)
    return f"<p>Connected to your brokerage.</p><dl>{items}</dl>{DISCONNECT}"


def create_app(credentials: dict[str, str]) -> Starlette:
    """The app, for the brokerage described by ``credentials`` (the demo's JSON file)."""
    base_url = credentials["base_url"].rstrip("/")
    redirect_uri = credentials["redirect_uri"]
    home_url = redirect_uri.removesuffix(urlsplit(redirect_uri).path) + "/"
    oauth = OAuth()
    broker = oauth.register(
        "broker",
        client_id=credentials["client_id"],
        client_secret=credentials["client_secret"],
        server_metadata_url=f"{base_url}/.well-known/oauth-authorization-server",
        api_base_url=f"{base_url}/",
        client_kwargs={"scope": "general trading", "code_challenge_method": "S256"},
    )
    # Tokens stay on the server; the session cookie only holds a random key to them.
    tokens: dict[str, dict[str, Any]] = {}

    def forget(request: Request) -> dict[str, Any] | None:
        token = tokens.pop(request.session.get("connection", ""), None)
        request.session.clear()
        return token

    async def home(request: Request) -> Response:
        if str(request.base_url) != home_url:  # the session cookie must match the callback's
            return RedirectResponse(home_url, status_code=303)
        message = request.session.pop("message", None)
        token = tokens.get(request.session.get("connection", ""))
        if token is None:
            return page(CONNECT, message)
        try:
            answer = await broker.get("v2/account", token=token)
        except httpx2.HTTPError:
            return page(DISCONNECT, "Your brokerage cannot be reached right now.")
        if answer.status_code == 401:  # revoked at the brokerage, or expired
            forget(request)
            return page(CONNECT, ENDED)
        if answer.status_code != 200:
            return page(DISCONNECT, f"Your brokerage answered {answer.status_code}.")
        return page(account_view(answer.json()), message)

    async def connect(request: Request) -> Response:
        try:
            redirect: Response = await broker.authorize_redirect(request, redirect_uri)
        except httpx2.HTTPError:
            request.session["message"] = "Your brokerage cannot be reached right now."
            return RedirectResponse("/", status_code=303)
        return redirect

    async def callback(request: Request) -> Response:
        try:
            token = await broker.authorize_access_token(request)
        except OAuthError as error:
            if error.error == "access_denied":
                message = "You declined to connect your brokerage account."
            elif error.error == "mismatching_state":
                message = "That connection attempt expired. Please connect again."
            else:
                message = f"Your brokerage did not connect the app ({error.error})."
        except (httpx2.HTTPError, ValueError):
            message = "Your brokerage cannot be reached right now."
        else:
            forget(request)
            key = secrets.token_urlsafe(24)
            tokens[key] = dict(token)
            request.session["connection"] = key
            return RedirectResponse("/", status_code=303)
        request.session["message"] = message
        return RedirectResponse("/", status_code=303)

    async def disconnect(request: Request) -> Response:
        token = forget(request)
        message = "Disconnected from your brokerage."
        if token is not None:
            try:
                metadata = await broker.load_server_metadata()
                async with AsyncOAuth2Client(
                    client_id=credentials["client_id"],
                    client_secret=credentials["client_secret"],
                    revocation_endpoint_auth_method="client_secret_basic",
                ) as client:
                    for hint in ("refresh_token", "access_token"):
                        if token.get(hint):
                            answer = await client.revoke_token(
                                metadata["revocation_endpoint"],
                                token=token[hint],
                                token_type_hint=hint,
                            )
                            answer.raise_for_status()
            except (httpx2.HTTPError, KeyError):
                message = (
                    "Disconnected here, but your brokerage could not be told: remove the app "
                    "from your brokerage's connected apps too."
                )
        request.session["message"] = message
        return RedirectResponse("/", status_code=303)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/connect", connect, methods=["GET", "POST"]),
            Route(urlsplit(redirect_uri).path, callback),
            Route("/disconnect", disconnect, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secrets.token_urlsafe(32),
                session_cookie="trading_app_session",  # the brokerage's own is on this host too
                same_site="lax",
            )
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("credentials", type=Path, help="the JSON file the demo wrote")
    args = parser.parse_args(argv)
    credentials = json.loads(args.credentials.read_text())
    where = urlsplit(credentials["redirect_uri"])
    print(f"Demo Trading App: open {where.scheme}://{where.netloc}/", flush=True)
    uvicorn.run(create_app(credentials), host=where.hostname or "127.0.0.1", port=where.port or 80)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
