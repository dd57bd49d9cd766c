"""The end user's journey in Chromium: connect the app to an account of their choice, deny,
meet an account the app may not use, a bad request, and disconnect the app from the
brokerage's connected-apps page. The app and the brokerage are on different origins."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from playwright.sync_api import Page, Request, expect

from ..conftest import pkce_pair
from .conftest import Journey, log_in, screenshot


def start_connecting(page: Page, journey: Journey) -> None:
    """From the app's home page to the brokerage's consent page, logging in on the way."""
    page.goto(journey.app)
    page.click("#connect")
    page.wait_for_url(f"{journey.platform}/login*")
    log_in(page, journey)
    page.wait_for_url(f"{journey.platform}/oauth/authorize*")


def test_connect_with_account_choice(page: Page, journey: Journey) -> None:
    start_connecting(page, journey)
    expect(page.locator("#signed-in")).to_contain_text("Demo Trader")
    expect(page.locator("#client-name")).to_have_text("Demo Trading App")
    expect(page.locator("#scopes")).to_contain_text("Place, change and cancel orders for you")
    paper = page.get_by_label("Practice ····7310")
    expect(paper).to_be_checked()  # the one account this app may use
    screenshot(page, "consent")
    page.click("#approve")
    # The form's redirect leaves for the app's origin: the consent page's CSP allows it.
    page.wait_for_url(f"{journey.app}/")
    expect(page.locator("#account-id")).to_have_text(journey.paper_account)
    expect(page.locator("#account-type")).to_have_text("paper")


def test_deny(page: Page, journey: Journey) -> None:
    start_connecting(page, journey)
    page.click("#deny")
    page.wait_for_url(f"{journey.app}/")
    expect(page.locator("#message")).to_have_text("You declined to connect your brokerage account.")
    expect(page.locator("#connect")).to_be_visible()


def test_live_account_of_an_unapproved_app_is_unavailable_before_any_click(
    page: Page, journey: Journey
) -> None:
    start_connecting(page, journey)
    live = page.locator(f'input[value="{journey.live_account}"]')
    expect(live).to_be_disabled()
    reason = page.locator("#" + str(live.get_attribute("aria-describedby")))
    expect(reason).to_have_text("Demo Trading App is not approved for live trading.")
    expect(page.locator(".account.unavailable")).to_contain_text("Live")


def test_bad_redirect_uri_shows_an_error_page_and_goes_nowhere(
    page: Page, journey: Journey
) -> None:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": journey.client_id,
            "redirect_uri": "https://evil.example/callback",
            "state": "s",
        }
    )
    response = page.goto(f"{journey.platform}/oauth/authorize?{query}")
    assert response is not None
    assert response.status == 400
    assert page.url.startswith(journey.platform)
    expect(page.locator("h1")).to_have_text("This connection request is not valid")
    page.click("summary")  # the technical details, second
    expect(page.locator("#error-code")).to_have_text("invalid_request")
    screenshot(page, "error")


def test_disconnect_on_the_brokerage_ends_the_apps_access(page: Page, journey: Journey) -> None:
    start_connecting(page, journey)
    page.click("#approve")
    page.wait_for_url(f"{journey.app}/")
    expect(page.locator("#account-id")).to_have_text(journey.paper_account)
    page.goto(f"{journey.platform}/oauth/connections")
    app = page.locator(f'li.app[data-client-id="{journey.client_id}"]')
    expect(app).to_contain_text("Demo Trading App")
    screenshot(page, "connections")
    app.get_by_role("button", name="Disconnect Demo Trading App").click()
    expect(page.locator("#notice")).to_contain_text("Demo Trading App was disconnected from")
    expect(page.locator(f'li.app[data-client-id="{journey.client_id}"]')).to_have_count(0)
    screenshot(page, "connections-empty")
    page.goto(journey.app)
    expect(page.locator("#message")).to_have_text(
        "Your brokerage connection has ended. Connect again to keep trading."
    )
    expect(page.locator("#connect")).to_be_visible()


def test_login_redirect_returns_to_the_request(page: Page, journey: Journey) -> None:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": journey.client_id,
            "redirect_uri": journey.redirect_uri,
            "scope": "general",
            "state": "abc",
        }
    )
    page.goto(f"{journey.platform}/oauth/authorize?{query}")
    page.wait_for_url(f"{journey.platform}/login*")
    screenshot(page, "login")
    log_in(page, journey)
    page.wait_for_url(f"{journey.platform}/oauth/authorize?{query}")
    expect(page.locator("#client-name")).to_have_text("Demo Trading App")
    page.click("#switch-user")  # "Not you?" asks to log out, and comes back after login
    page.wait_for_url(f"{journey.platform}/logout*")
    screenshot(page, "logout")
    page.click("#log-out")
    page.wait_for_url(f"{journey.platform}/login*")
    log_in(page, journey)
    page.wait_for_url(f"{journey.platform}/oauth/authorize?{query}")


def test_connect_through_a_pushed_request(page: Page, journey: Journey) -> None:
    """RFC 9126: a request is pushed, the browser carries only client_id and request_uri;
    the user logs in (the page is asked for twice), approves, and the code is exchanged
    with the PKCE verifier by the test, which pushed the request. The used request_uri
    is then refused on the brokerage's error page."""
    verifier, challenge = pkce_pair()
    pushed = httpx.post(
        f"{journey.platform}/oauth/par",
        auth=(journey.client_id, journey.client_secret),
        data={
            "response_type": "code",
            "redirect_uri": journey.redirect_uri,
            "scope": "general",
            "state": "pushed-state",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert pushed.status_code == 201, pushed.text
    query = urlencode({"client_id": journey.client_id, "request_uri": pushed.json()["request_uri"]})
    callbacks: list[str] = []

    def seen(request: Request) -> None:
        if request.url.startswith(journey.redirect_uri):
            callbacks.append(request.url)

    page.on("request", seen)
    page.goto(f"{journey.platform}/oauth/authorize?{query}")
    page.wait_for_url(f"{journey.platform}/login*")
    log_in(page, journey)
    page.wait_for_url(f"{journey.platform}/oauth/authorize?{query}")
    expect(page.locator("#client-name")).to_have_text("Demo Trading App")
    page.click("#approve")
    # The browser lands on the app's callback. The example app did not start this
    # request (this test pushed it), so it refuses the state and leaves the code unused.
    page.wait_for_url(f"{journey.app}/")
    (callback,) = callbacks
    answer = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    assert answer["state"] == "pushed-state"
    assert answer["iss"] == journey.platform
    token = httpx.post(
        f"{journey.platform}/oauth/token",
        auth=(journey.client_id, journey.client_secret),
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": journey.redirect_uri,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    used = page.goto(f"{journey.platform}/oauth/authorize?{query}")
    assert used is not None
    assert used.status == 400
    expect(page.locator("h1")).to_have_text("This connection request is not valid")
    screenshot(page, "pushed-request-used")
