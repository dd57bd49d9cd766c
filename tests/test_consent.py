"""Platform-hosted consent at /oauth/authorize, driven as a browser would drive it."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx
import httpx2
import pytest
import requests
from authlib.integrations.httpx_client import AsyncOAuth2Client
from requests_oauthlib import OAuth2Session

from starlette_broker_oauth.web.hosted import ConsentPage, HostedConsent, Templates

from .conftest import (
    BACKENDS,
    CONSENT_SECRET,
    ISSUER,
    CookieSession,
    Platform,
    drop_tables,
    full_settings,
    new_storage,
    open_storage,
    pkce_pair,
    seed_full_platform,
    serve,
)

pytestmark = pytest.mark.anyio


class Form(HTMLParser):
    """The consent page's form, as a browser sees it."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, str] = {}
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a["action"]
        elif tag == "input" and (
            a.get("type") == "hidden" or (a.get("type") == "radio" and "checked" in a)
        ):
            self.fields[a["name"]] = a["value"]
        elif tag == "button":
            self.buttons[a.get("id", "submit")] = a.get("value", "")

    def submit(self, button: str) -> dict[str, str]:
        return self.fields | {"decision": self.buttons[button]}


def query(params: dict[str, str]) -> str:
    return "/oauth/authorize?" + urlencode(params)


def login(world: Platform, account: object = None) -> dict[str, str]:
    """The platform's login cookie, as the browser sends it."""
    return {"Cookie": f"session={account or world.paper_account}"}


def request_params(world: Platform, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": world.client_id,
        "redirect_uri": world.redirect_uri,
        "scope": "general trading",
        "state": "xyz-state",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


async def consent_page(world: Platform, **overrides: str | None) -> httpx.Response:
    return await world.http.get(query(request_params(world, **overrides)), headers=login(world))


def location(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    parts = urlsplit(response.headers["location"])
    return {"base": f"{parts.scheme}://{parts.netloc}{parts.path}"} | {
        k: v[0] for k, v in parse_qs(parts.query).items()
    }


async def test_login_first(full: Platform) -> None:
    response = await full.http.get(query(request_params(full)))
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


async def test_page_shows_the_client_and_is_protected(full: Platform) -> None:
    response = await consent_page(full)
    assert response.status_code == 200
    page = response.text
    assert "TradingApp" in page
    assert "Sample description" in page
    assert "https://app.example.com/tos" in page
    assert "trading" in page
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    form = Form(page)
    assert set(form.buttons) == {"approve", "deny"}
    assert "csrf_token" in form.fields


async def test_approve_redirects_with_code_state_iss(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    answer = await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
    redirect = location(answer)
    assert redirect["base"] == full.redirect_uri
    assert redirect["state"] == "xyz-state"
    assert redirect["iss"] == ISSUER
    token = await full.exchange(redirect["code"])
    assert token.status_code == 200
    assert token.json()["scope"] == "general trading"


async def test_deny_redirects_with_access_denied(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    answer = await full.http.post(form.action, data=form.submit("deny"), headers=login(full))
    redirect = location(answer)
    assert redirect["error"] == "access_denied"
    assert redirect["state"] == "xyz-state"
    assert redirect["iss"] == ISSUER
    assert "code" not in redirect


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "unknown"},
        {"client_id": None},
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": "https://app.example.com/callback/"},
    ],
)
async def test_no_redirect_before_client_and_redirect_uri_are_valid(
    full: Platform, overrides: dict[str, str | None]
) -> None:
    response = await consent_page(full, **overrides)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"scope": "general superuser"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": "a" * 43, "code_challenge_method": "plain"}, "invalid_request"),
    ],
)
async def test_errors_after_validation_go_back_to_the_client(
    full: Platform, overrides: dict[str, str], error: str
) -> None:
    response = await consent_page(full, **overrides)
    redirect = location(response)
    assert redirect["base"] == full.redirect_uri
    assert redirect["error"] == error
    assert redirect["state"] == "xyz-state"


async def test_live_account_without_approval_is_unavailable_before_any_click(
    full: Platform,
) -> None:
    live = login(full, full.live_account)
    page = await full.http.get(query(request_params(full)), headers=live)
    assert page.status_code == 200
    form = Form(page.text)
    # The only account cannot be chosen, and says why; only Deny is offered.
    assert set(form.buttons) == {"deny"}
    assert "TradingApp is not approved for live trading." in page.text
    assert 'disabled aria-describedby="account-0-reason"' in page.text
    # A forged approval for it is still refused by the core, at the client.
    forged = form.fields | {"account_id": str(full.live_account), "decision": "approve"}
    answer = await full.http.post(form.action, data=forged, headers=live)
    assert location(answer)["error"] == "unauthorized_client"
    assert "code" not in location(answer)


async def test_csrf_token_is_required(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    data = form.submit("approve")
    data.pop("csrf_token")
    answer = await full.http.post(form.action, data=data, headers=login(full))
    assert answer.status_code == 400
    assert "location" not in answer.headers


async def test_csrf_token_is_bound_to_the_account(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    other = login(full, full.live_account)
    answer = await full.http.post(form.action, data=form.submit("approve"), headers=other)
    assert answer.status_code == 400


async def test_the_signed_request_is_what_is_approved(full: Platform) -> None:
    """The request travels signed inside the form's token: fields changed on the way
    (a wider scope, another redirect URI) change nothing."""
    form = Form((await consent_page(full)).text)
    data = form.submit("approve") | {
        "scope": "general trading data",
        "redirect_uri": "https://app.example.com/other",
    }
    redirect = location(await full.http.post(form.action, data=data, headers=login(full)))
    assert redirect["base"] == full.redirect_uri
    token = await full.exchange(redirect["code"])
    assert token.json()["scope"] == "general trading"


@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_one_form_one_decision(full: Platform, decision: str) -> None:
    form = Form((await consent_page(full)).text)
    first = await full.http.post(form.action, data=form.submit(decision), headers=login(full))
    assert first.status_code == 303
    again = await full.http.post(form.action, data=form.submit(decision), headers=login(full))
    assert again.status_code == 400
    assert "location" not in again.headers
    assert '<h1 id="error-title">This page was already used</h1>' in again.text


async def test_a_state_browsers_rewrite_still_comes_back_unchanged(full: Platform) -> None:
    """A browser normalises hidden fields (newlines become CRLF); the state goes back
    exactly as the app sent it, because it travels inside the signed token."""
    state = "line one\nline two\x00end"
    page = await full.http.get(query(request_params(full, state=state)), headers=login(full))
    form = Form(page.text)
    redirect = location(
        await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
    )
    assert redirect["state"] == state


async def test_head_never_decides(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    answer = await full.http.request(
        "HEAD", form.action, data=form.submit("approve"), headers=login(full)
    )
    assert "location" not in answer.headers
    assert answer.status_code == 400  # a HEAD of the page: validation fails, no code
    follow = await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
    assert follow.status_code == 303  # the form was not used up


async def test_a_cross_site_post_is_refused(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    headers = login(full) | {"Sec-Fetch-Site": "cross-site"}
    answer = await full.http.post(form.action, data=form.submit("approve"), headers=headers)
    assert answer.status_code == 403
    assert "location" not in answer.headers


async def test_csrf_token_is_signed(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    data = form.submit("approve") | {"csrf_token": form.fields["csrf_token"][:-2] + "xx"}
    assert (await full.http.post(form.action, data=data, headers=login(full))).status_code == 400


async def test_csrf_token_expires(backend: str, tmp_path: Path) -> None:
    consent = HostedConsent(
        session=CookieSession(), secret_key=CONSENT_SECRET, form_max_age=timedelta(seconds=1)
    )
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings(), consent=consent)
        async with world.http:
            form = Form((await consent_page(world)).text)
            world.clock.advance(timedelta(seconds=1))
            answer = await world.http.post(
                form.action, data=form.submit("approve"), headers=login(world)
            )
            assert answer.status_code == 303  # still within form_max_age
            form = Form((await consent_page(world)).text)
            world.clock.advance(timedelta(seconds=2))
            answer = await world.http.post(
                form.action, data=form.submit("approve"), headers=login(world)
            )
            assert answer.status_code == 400


async def test_logged_out_post_is_refused(full: Platform) -> None:
    form = Form((await consent_page(full)).text)
    answer = await full.http.post(form.action, data=form.submit("approve"))
    assert answer.status_code == 401
    assert "location" not in answer.headers
    assert "You are signed out" in answer.text


async def test_page_escapes_client_text(full: Platform) -> None:
    creds = await full.storage.create_client(
        name="<script>alert(1)</script>",
        description='"><img src=x onerror=alert(1)>',
        redirect_uris=[full.redirect_uri],
        url="javascript:alert(1)",
    )
    page = (await consent_page(full, client_id=creds.client_id)).text
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "javascript:" not in page


async def test_custom_template(backend: str, tmp_path: Path) -> None:
    def template(page: ConsentPage) -> str:
        hidden = "".join(f'<input type="hidden" name="{n}" value="{v}">' for n, v in page.fields)
        account = page.accounts[0].account_id
        return (
            f'<form action="{page.action}">{hidden}'
            f'<input type="hidden" name="account_id" value="{account}">'
            f'<button id="approve" value="approve">{page.app.name}</button></form>'
        )

    consent = HostedConsent(
        session=CookieSession(), secret_key=CONSENT_SECRET, templates=Templates(consent=template)
    )
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings(), consent=consent)
        async with world.http:
            page = await consent_page(world)
            assert page.text.startswith("<form")
            form = Form(page.text)
            answer = await world.http.post(
                form.action, data=form.submit("approve"), headers=login(world)
            )
            assert "code" in location(answer)


# Interop: real client libraries through the hosted page


async def browser_approves(world: Platform, authorization_url: str) -> str:
    """What the user's browser does: open the page, press Allow, land on the callback."""
    page = await world.http.get(authorization_url, headers=login(world))
    assert page.status_code == 200, page.text
    form = Form(page.text)
    answer = await world.http.post(form.action, data=form.submit("approve"), headers=login(world))
    assert answer.status_code == 303
    callback: str = answer.headers["location"]
    return callback


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_authlib_client_through_hosted_consent(full: Platform, method: str) -> None:
    client = AsyncOAuth2Client(
        client_id=full.client_id,
        client_secret=full.client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        redirect_uri=full.redirect_uri,
        scope="general trading",
        code_challenge_method="S256",
        transport=httpx2.ASGITransport(app=full.app),
    )
    verifier, _ = pkce_pair()
    async with client:
        url, _ = client.create_authorization_url(
            f"{ISSUER}/oauth/authorize", code_verifier=verifier
        )
        assert "code_challenge=" in url
        callback = await browser_approves(full, url)
        token = await client.fetch_token(
            f"{ISSUER}/oauth/token", authorization_response=callback, code_verifier=verifier
        )
        assert (await client.get(f"{ISSUER}/v2/account")).status_code == 200
        refreshed = await client.refresh_token(f"{ISSUER}/oauth/token")
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert (await client.get(f"{ISSUER}/v2/account")).status_code == 200
        introspected = await client.post(
            f"{ISSUER}/oauth/introspect",
            data={"token": refreshed["access_token"]},
            auth=(full.client_id, full.client_secret),
        )
        assert introspected.json()["active"] is True
        revoked = await client.revoke_token(
            f"{ISSUER}/oauth/revoke",
            token=refreshed["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert revoked.status_code == 200
        assert (await client.get(f"{ISSUER}/v2/account")).status_code == 401


@pytest.mark.parametrize("backend", BACKENDS)
def test_requests_oauthlib_through_hosted_consent(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    storage = new_storage(backend, tmp_path)
    settings = full_settings(issuer="http://127.0.0.1")

    async def seed() -> Platform:
        async with storage:
            world = await seed_full_platform(backend, storage, settings)
            await world.http.aclose()
            return world

    world = anyio.run(seed)
    try:
        with serve(_with_lifespan(world)) as base:
            session = OAuth2Session(
                world.client_id, redirect_uri=world.redirect_uri, scope=["general"], pkce="S256"
            )
            url, _ = session.authorization_url(f"{base}/oauth/authorize")
            browser = requests.Session()
            browser.cookies.set("session", str(world.paper_account))
            page = browser.get(url, timeout=10)
            assert page.status_code == 200, page.text
            form = Form(page.text)
            action = base + urlsplit(form.action).path
            answer = browser.post(
                action, data=form.submit("approve"), allow_redirects=False, timeout=10
            )
            assert answer.status_code == 303
            token = session.fetch_token(
                f"{base}/oauth/token",
                authorization_response=answer.headers["location"],
                client_secret=world.client_secret,
                timeout=10,
            )
            assert session.get(f"{base}/v2/account", timeout=10).status_code == 200
            new = session.refresh_token(
                f"{base}/oauth/token", auth=(world.client_id, world.client_secret), timeout=10
            )
            assert new["access_token"] != token["access_token"]
            gone = requests.post(
                f"{base}/oauth/revoke",
                data={"token": new["access_token"]},
                auth=(world.client_id, world.client_secret),
                timeout=10,
            )
            assert gone.status_code == 200
            assert session.get(f"{base}/v2/account", timeout=10).status_code == 401
    finally:
        anyio.run(drop_tables, storage)


def _with_lifespan(world: Platform) -> Any:
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import Mount

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with world.storage:
            yield

    return Starlette(lifespan=lifespan, routes=[Mount("/", world.app)])
