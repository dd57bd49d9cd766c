"""The hosted pages as a user meets them: the account chooser, the error page, the
connected-apps page, and the platform's API for connected apps (through HTTP and the
public API, on every backend)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from starlette_broker_oauth.core import ConnectedApps
from starlette_broker_oauth.events import ConnectionRevoked, TokenRevoked
from starlette_broker_oauth.web.hosted import (
    ConnectionsPage,
    ErrorPage,
    HostedConsent,
    Templates,
)
from starlette_broker_oauth.web.hosted.config import form_target

from .conftest import (
    CONSENT_SECRET,
    ISSUER,
    CookieSession,
    Platform,
    full_settings,
    open_storage,
    pkce_pair,
    seed_full_platform,
)
from .test_consent import Form, location, query, request_params

pytestmark = pytest.mark.anyio


def session_of(*accounts: uuid.UUID) -> dict[str, str]:
    return {"Cookie": "session=" + ",".join(str(a) for a in accounts)}


@pytest.fixture
async def cached(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Platform, list[Any]]]:
    """A platform with hosted pages, refresh tokens, events and the token cache on."""
    events: list[Any] = []
    settings = full_settings(token_cache_ttl=timedelta(minutes=10))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, settings, events=events)
        async with world.http:
            yield world, events


def connected_apps(world: Platform) -> ConnectedApps:
    assert world.oauth is not None
    apps: ConnectedApps = world.oauth.state.connected_apps
    return apps


async def connect(
    world: Platform, account: uuid.UUID, *, accounts: tuple[uuid.UUID, ...] = ()
) -> dict[str, Any]:
    """The whole hosted flow for ``account``: consent page, Allow, code exchange."""
    verifier, challenge = pkce_pair()
    cookie = session_of(*(accounts or (account,)))
    params = request_params(world, code_challenge=challenge, code_challenge_method="S256")
    page = await world.http.get(query(params), headers=cookie)
    assert page.status_code == 200, page.text
    form = Form(page.text)
    data = form.submit("approve") | {"account_id": str(account)}
    redirect = location(await world.http.post(form.action, data=data, headers=cookie))
    token = await world.exchange(redirect["code"], code_verifier=verifier)
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return body


# the consent page


async def test_account_chooser_labels_accounts_and_explains_the_unavailable(
    full: Platform,
) -> None:
    cookie = session_of(full.paper_account, full.live_account)
    page = await full.http.get(query(request_params(full)), headers=cookie)
    assert page.status_code == 200
    html = page.text
    assert "<legend>Choose the account to connect</legend>" in html
    radios = re.findall(r'<input type="radio"[^>]*>', html)
    assert len(radios) == 2
    paper, live = radios
    # The one usable account is chosen already; the live one cannot be, and says why.
    assert f'value="{full.paper_account}"' in paper
    assert "checked" in paper
    assert f'value="{full.live_account}"' in live
    assert "disabled" in live
    assert "TradingApp is not approved for live trading." in html
    assert '<span class="badge paper">Paper</span>' in html
    assert '<span class="badge live">Live</span>' in html
    assert "Signed in as <strong>Test Trader</strong>" in html
    assert 'href="/logout?next=' in html  # switch user
    # Scope descriptions come from the settings, once.
    assert "Place, change and cancel orders for you" in html
    assert 'href="http://127.0.0.1:8000/oauth/connections"' not in html
    assert f'href="{ISSUER}/oauth/connections"' in html


async def test_choosing_the_live_account_of_an_approved_app(full: Platform) -> None:
    approved = await full.storage.create_client(
        name="Approved", redirect_uris=[full.redirect_uri], live_trading_approved=True
    )
    world = Platform(
        **{
            **full.__dict__,
            "client_id": approved.client_id,
            "client_secret": approved.client_secret,
        }
    )
    cookie = session_of(full.paper_account, full.live_account)
    page = await world.http.get(query(request_params(world)), headers=cookie)
    radios = re.findall(r'<input type="radio"[^>]*>', page.text)
    # Two usable accounts: nothing is chosen for the user.
    assert [("checked" in r, "disabled" in r) for r in radios] == [(False, False), (False, False)]
    token = await connect(
        world, full.live_account, accounts=(full.paper_account, full.live_account)
    )
    answer = await world.account(token["access_token"])
    assert answer.json()["account_id"] == str(full.live_account)


@pytest.mark.parametrize(
    ("account", "detail"),
    [
        (None, "account_id is not one of the user's"),
        ("other", "account_id is not one of the user's"),
    ],
)
async def test_approval_needs_one_of_the_users_accounts(
    full: Platform, account: str | None, detail: str
) -> None:
    cookie = session_of(full.paper_account, full.live_account)
    form = Form((await full.http.get(query(request_params(full)), headers=cookie)).text)
    data = form.submit("approve")
    data.pop("account_id", None)
    if account == "other":
        data["account_id"] = str(uuid.uuid4())
    answer = await full.http.post(form.action, data=data, headers=cookie)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert f'<dd id="error-detail">{detail.replace(chr(39), "&#x27;")}</dd>' in answer.text


async def test_form_action_admits_the_redirect_uris_origin_only(full: Platform) -> None:
    page = await full.http.get(query(request_params(full)), headers=session_of(full.paper_account))
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["form-action"] == "'self' https://app.example.com"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "'none'"


async def test_form_action_for_a_native_apps_private_use_scheme(full: Platform) -> None:
    native = await full.storage.create_client(
        name="Desk", redirect_uris=["com.example.desk:/callback"]
    )
    params = request_params(
        full, client_id=native.client_id, redirect_uri="com.example.desk:/callback"
    )
    page = await full.http.get(query(params), headers=session_of(full.paper_account))
    assert page.status_code == 200
    assert "form-action 'self' com.example.desk:;" in page.headers["content-security-policy"]


async def test_logo_is_shown_and_allowed(backend: str, tmp_path: Path) -> None:
    consent = HostedConsent(
        session=CookieSession(),
        secret_key=CONSENT_SECRET,
        platform_name="Acme Brokerage",
        logo_url="https://cdn.acme.example/logo.svg",
    )
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings(), consent=consent)
        async with world.http:
            page = await world.http.get(
                query(request_params(world)), headers=session_of(world.paper_account)
            )
    assert '<img src="https://cdn.acme.example/logo.svg" alt=""' in page.text
    assert (
        'Connect <span id="client-name">TradingApp</span> to your Acme Brokerage account?'
        in page.text
    )
    assert "img-src https://cdn.acme.example;" in page.headers["content-security-policy"]


# the error page


async def test_error_page_speaks_plainly_then_technically(full: Platform) -> None:
    page = await full.http.get(
        query(request_params(full, redirect_uri="https://evil.example/cb")),
        headers=session_of(full.paper_account),
    )
    assert page.status_code == 400
    assert "location" not in page.headers
    html = page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<h1 id="error-title">This connection request is not valid</h1>' in html
    assert '<code id="error-code">invalid_request</code>' in html
    assert html.index("error-message") < html.index("Technical details")
    assert page.headers["x-frame-options"] == "DENY"
    assert "form-action 'self';" in page.headers["content-security-policy"]


async def test_error_and_connections_templates_are_replaceable(
    backend: str, tmp_path: Path
) -> None:
    def error(page: ErrorPage) -> str:
        return f"<p>custom {page.status} {page.error}</p>"

    def connections(page: ConnectionsPage) -> str:
        return f"<p>apps of {page.frame.user_name}: {len(page.accounts)}</p>"

    consent = HostedConsent(
        session=CookieSession(),
        secret_key=CONSENT_SECRET,
        templates=Templates(error=error, connections=connections),
    )
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings(), consent=consent)
        async with world.http:
            bad = await world.http.get(query(request_params(world, client_id="nobody")))
            apps = await world.http.get(
                "/oauth/connections", headers=session_of(world.paper_account)
            )
    assert (bad.status_code, bad.text) == (400, "<p>custom 400 invalid_client</p>")
    assert (apps.status_code, apps.text) == (200, "<p>apps of Test Trader: 1</p>")


# the connected-apps page


class AppsPage:
    """The connected-apps page's forms, one per app."""

    def __init__(self, html: str) -> None:
        self.html = html
        self.forms = [Form(chunk) for chunk in html.split('<li class="app"')[1:]]

    def form_for(self, account: uuid.UUID, client_id: str) -> Form:
        for form in self.forms:
            if form.fields["account_id"] == str(account) and form.fields["client_id"] == client_id:
                return form
        raise AssertionError(f"no Disconnect form for {client_id} on {account}")


async def test_connections_page_needs_a_login(full: Platform) -> None:
    answer = await full.http.get("/oauth/connections")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


async def test_disconnect_on_the_page_cuts_the_app_at_once(
    cached: tuple[Platform, list[Any]],
) -> None:
    world, events = cached
    token = await connect(world, world.paper_account)
    assert (await world.account(token["access_token"])).status_code == 200  # now cached
    cookie = session_of(world.paper_account, world.live_account)
    listing = await world.http.get("/oauth/connections", headers=cookie)
    assert listing.status_code == 200
    page = AppsPage(listing.text)
    assert "TradingApp" in page.html
    assert "See your account: balances, positions, orders and activity" in page.html
    assert "No apps are connected to this account." in page.html  # the live account
    form = page.form_for(world.paper_account, world.client_id)
    answer = await world.http.post(form.action, data=form.fields, headers=cookie)
    assert answer.status_code == 303
    after = answer.headers["location"]
    assert urlsplit(after).path == "/oauth/connections"
    # The token check refuses at once, cache or not, and the refresh token is dead too.
    refused = await world.account(token["access_token"])
    assert refused.status_code == 401
    refresh = await world.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(world.client_id, world.client_secret),
    )
    assert (refresh.status_code, refresh.json()["error"]) == (400, "invalid_grant")
    shown = await world.http.get(after, headers=cookie)
    label = f"Account {world.paper_account.hex[:4]}"
    assert (
        f'<p class="notice" role="status" id="notice">TradingApp was disconnected from {label}.</p>'
        in (shown.text)
    )
    assert AppsPage(shown.text).forms == []
    # The notice is said only when true: not for an app that is still connected.
    await connect(world, world.paper_account)
    spoofed = await world.http.get(after, headers=cookie)
    assert 'id="notice"' not in spoofed.text
    [cut] = [e for e in events if isinstance(e, ConnectionRevoked)]
    assert (cut.account_id, cut.client_id, cut.reason) == (
        world.paper_account,
        world.client_id,
        "user_disconnected",
    )
    assert len(cut.token_ids) == 1


@pytest.mark.parametrize("tamper", ["no_token", "foreign_user", "foreign_account", "no_client"])
async def test_disconnect_form_is_protected(full: Platform, tamper: str) -> None:
    token = await connect(full, full.paper_account)
    cookie = session_of(full.paper_account)
    form = AppsPage((await full.http.get("/oauth/connections", headers=cookie)).text).form_for(
        full.paper_account, full.client_id
    )
    data = dict(form.fields)
    if tamper == "no_token":
        data.pop("csrf_token")
    elif tamper == "foreign_user":
        cookie = session_of(full.paper_account, full.live_account)
    elif tamper == "foreign_account":
        data["account_id"] = str(full.live_account)
    else:
        data["client_id"] = ""
    answer = await full.http.post(form.action, data=data, headers=cookie)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert (await full.account(token["access_token"])).status_code == 200


# the platform's API


async def test_api_lists_and_disconnects(cached: tuple[Platform, list[Any]]) -> None:
    world, events = cached
    apps = connected_apps(world)
    assert await apps.list(world.paper_account) == []
    first = await connect(world, world.paper_account)
    second = await connect(world, world.paper_account)
    [app] = await apps.list(world.paper_account)
    assert app.name == "TradingApp"
    assert app.connection.client_id == world.client_id
    assert app.connection.scopes == {"general", "trading"}
    assert app.connection.connected_at <= app.connection.last_issued_at
    for token in (first, second):
        assert (await world.account(token["access_token"])).status_code == 200
    assert await apps.disconnect(world.paper_account, world.client_id) == 2
    for token in (first, second):
        assert (await world.account(token["access_token"])).status_code == 401
    assert await apps.list(world.paper_account) == []
    revoked = [e for e in events if isinstance(e, TokenRevoked)]
    assert [e.reason for e in revoked] == ["user_disconnected"]


async def test_api_closes_an_account(cached: tuple[Platform, list[Any]]) -> None:
    world, events = cached
    other = await world.storage.create_client(name="Other", redirect_uris=[world.redirect_uri])
    mine = await connect(world, world.paper_account)
    theirs = await connect(
        Platform(
            **{**world.__dict__, "client_id": other.client_id, "client_secret": other.client_secret}
        ),
        world.paper_account,
    )
    elsewhere = await world.storage.create_account()
    kept = (await world.exchange(await world.code(account_id=str(elsewhere.account_id)))).json()
    apps = connected_apps(world)
    assert len(await apps.list(world.paper_account)) == 2
    assert await apps.disconnect_all(world.paper_account) == 2
    for token in (mine, theirs):
        assert (await world.account(token["access_token"])).status_code == 401
    assert await apps.list(world.paper_account) == []
    assert (await world.account(kept["access_token"])).status_code == 200
    [closed] = [e for e in events if isinstance(e, ConnectionRevoked)]
    assert (closed.client_id, closed.reason) == (None, "account_closed")


async def test_disconnecting_nothing_is_harmless(full: Platform) -> None:
    apps = connected_apps(full)
    assert await apps.disconnect(full.paper_account, "no-such-client") == 0
    assert await apps.disconnect_all(uuid.uuid4()) == 0


async def test_page_answers_503_when_storage_is_down(full: Platform) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        from starlette_broker_oauth import StorageUnavailable

        raise StorageUnavailable("down")

    full.storage.list_connections = broken  # type: ignore[method-assign]
    answer = await full.http.get("/oauth/connections", headers=session_of(full.paper_account))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "temporarily unavailable" in answer.text


@pytest.mark.parametrize(
    ("redirect_uri", "source"),
    [
        ("https://app.example.com/cb", "https://app.example.com"),
        ("http://127.0.0.1:8001/callback", "http://127.0.0.1:8001"),
        ("https://[::1]:8443/cb", "https://[::1]:8443"),
        ("https://bücher.example/cb", "https://xn--bcher-kva.example"),
        ("com.example.app:/oauth", "com.example.app:"),
        # Never a bare special scheme, which would admit every site.
        ("https:evil.example/cb", None),
        ("http:x", None),
        ("javascript:alert(1)//", None),
        ("data:text/html,hi", None),
        ("filesystem:https://a/b", None),
        ("blob:https://a/b", None),
        # Never anything that could smuggle a directive, or that does not parse.
        ("https://app.example.com@evil.com/cb", None),
        ("https://a.example;script-src *", None),
        ("https://[::1;x]/cb", None),
        ("https://[::1/cb", None),
        ("*:/x", None),
    ],
)
def test_form_action_source_of_a_redirect_uri(redirect_uri: str, source: str | None) -> None:
    assert form_target(redirect_uri) == source


async def test_disconnecting_an_app_that_is_not_connected_does_nothing(
    cached: tuple[Platform, list[Any]],
) -> None:
    world, events = cached
    await connect(world, world.paper_account)
    cookie = session_of(world.paper_account)
    form = AppsPage((await world.http.get("/oauth/connections", headers=cookie)).text).form_for(
        world.paper_account, world.client_id
    )
    data = form.fields | {"client_id": "never-connected"}
    answer = await world.http.post(form.action, data=data, headers=cookie)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{ISSUER}/oauth/connections"
    assert [e for e in events if isinstance(e, ConnectionRevoked)] == []


async def test_the_notice_cannot_be_forged(full: Platform) -> None:
    """Text in the query string never reaches the page; the signed notice of one user's
    disconnection is shown to that user only."""
    await connect(full, full.paper_account)
    cookie = session_of(full.paper_account)
    for forged in (
        "?disconnected=Your+account+is+locked.+Call+%2B1-555-0100&account="
        + str(full.paper_account),
        f"?disconnected={full.client_id}&account={full.paper_account}",
        "?done=Your+account+is+locked",
        "?done=eyJ1Ijoie30.forged.signature",
    ):
        page = await full.http.get("/oauth/connections" + forged, headers=cookie)
        assert page.status_code == 200
        assert 'id="notice"' not in page.text
        assert "Your account is locked" not in page.text
    form = AppsPage((await full.http.get("/oauth/connections", headers=cookie)).text).form_for(
        full.paper_account, full.client_id
    )
    answer = await full.http.post(form.action, data=form.fields, headers=cookie)
    after = answer.headers["location"]
    assert set(parse_qs(urlsplit(after).query)) == {"done"}
    shown = await full.http.get(after, headers=cookie)
    assert 'id="notice"' in shown.text
    assert "TradingApp was disconnected from" in shown.text
    # Another user following the same link sees no notice.
    other = await full.http.get(after, headers=session_of(full.live_account))
    assert other.status_code == 200
    assert 'id="notice"' not in other.text
    # Nor does anyone once it is stale.
    full.clock.advance(timedelta(minutes=3))
    stale = await full.http.get(after, headers=cookie)
    assert 'id="notice"' not in stale.text
