"""Every file in examples/ runs."""

from __future__ import annotations

import html
import re
import runpy
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlsplit

import anyio
import httpx
import pytest

from .conftest import free_port
from .test_cli import demo

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == {
        "fastapi_platform.py",
        "starlette_platform.py",
        "third_party_app.py",
    }


class Forms(HTMLParser):
    """Each form of a page: its action and its hidden fields."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and values.get("type") == "hidden" and self.forms:
            self.forms[-1][1][values["name"]] = values.get("value", "")


def element(page: str, element_id: str) -> str:
    """The text of the element with this id."""
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert found is not None, f"no #{element_id} in {page}"
    return html.unescape(found.group(1))


async def journey(credentials: dict[str, str]) -> None:
    """A user connects the third-party app to the demo brokerage, declines, approves,
    disconnects at the brokerage, reconnects and disconnects in the app."""
    create_app = runpy.run_path(str(EXAMPLES / "third_party_app.py"))["create_app"]
    app = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(credentials)),
        base_url="http://127.0.0.1:8001",
    )
    brokerage = httpx.AsyncClient(base_url=credentials["base_url"])
    paper, live = credentials["paper_account_id"], credentials["live_account_id"]

    async def consent(decision: str) -> str:
        """Connect in the app, answer the brokerage's consent page; the app's next page."""
        start = await app.post("/connect")
        assert start.status_code == 302
        authorize = start.headers["location"]
        assert authorize.startswith(credentials["base_url"] + "/oauth/authorize?")
        page = await brokerage.get(authorize)
        assert page.status_code == 200, page.text
        assert f'value="{live}" disabled' in page.text  # the demo app is not live-approved
        [(action, fields)] = Forms(page.text).forms
        answer = await brokerage.post(
            action, data=fields | {"account_id": paper, "decision": decision}
        )
        assert answer.status_code == 303
        callback = answer.headers["location"]
        assert callback.startswith(credentials["redirect_uri"] + "?")
        back = await app.get(callback)
        assert (back.status_code, back.headers["location"]) == (303, "/")
        return (await app.get("/")).text

    async with app, brokerage:
        home = (await app.get("/")).text
        assert 'id="connect"' in home
        assert 'id="account-id"' not in home

        # Not logged in at the brokerage: its login page, and back to the consent page.
        start = await app.post("/connect")
        authorize = urlsplit(start.headers["location"])
        here = f"{authorize.path}?{authorize.query}"
        to_login = await brokerage.get(start.headers["location"])
        assert to_login.is_redirect
        assert to_login.headers["location"] == "/login?next=" + quote(here, safe="")
        login = await brokerage.get(to_login.headers["location"])
        assert 'name="password"' in login.text
        logged_in = await brokerage.post(
            "/login",
            data={
                "username": credentials["username"],
                "password": credentials["password"],
                "next": here,
            },
        )
        assert (logged_in.status_code, logged_in.headers["location"]) == (303, here)

        home = await consent("deny")
        assert element(home, "message").startswith("You declined")
        assert 'id="connect"' in home

        home = await consent("approve")
        assert element(home, "account-id") == paper
        assert element(home, "account-label") == "Practice ····7310"
        assert element(home, "account-type") == "paper"
        assert element(home, "cash").startswith("100,000.00")
        assert 'id="disconnect"' in home

        # The user disconnects the app at the brokerage: the app notices.
        listing = (await brokerage.get("/oauth/connections")).text
        [(action, fields)] = [
            form for form in Forms(listing).forms if credentials["client_id"] in form[1].values()
        ]
        assert (await brokerage.post(action, data=fields)).status_code == 303
        home = (await app.get("/")).text
        assert element(home, "message").startswith("Your brokerage connection has ended")
        assert 'id="connect"' in home

        # Reconnect, then disconnect in the app: it revokes its token at the brokerage.
        home = await consent("approve")
        assert element(home, "account-id") == paper
        assert (
            f'data-client-id="{credentials["client_id"]}"'
            in (await brokerage.get("/oauth/connections")).text
        )
        gone = await app.post("/disconnect")
        assert (gone.status_code, gone.headers["location"]) == (303, "/")
        home = (await app.get("/")).text
        assert element(home, "message") == "Disconnected from your brokerage."
        assert 'id="connect"' in home
        assert (
            f'data-client-id="{credentials["client_id"]}"'
            not in (await brokerage.get("/oauth/connections")).text
        )


def test_third_party_app_against_the_demo(tmp_path: Path) -> None:
    with demo(tmp_path, free_port()) as credentials:
        anyio.run(journey, credentials)
    printed = (tmp_path / "demo.log").read_text()
    assert '"GET /oauth/authorize?… HTTP/1.1" 200' in printed
    assert "code_challenge" not in printed


def test_third_party_app_errors() -> None:
    """Refusals, stale callbacks and an unreachable brokerage are messages, not 500s."""
    create_app = runpy.run_path(str(EXAMPLES / "third_party_app.py"))["create_app"]
    credentials = {
        "base_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "client_id": "app",
        "client_secret": "secret",
        "redirect_uri": "http://127.0.0.1:8001/callback",
    }

    async def use() -> None:
        transport = httpx.ASGITransport(app=create_app(credentials))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8001") as app:

            async def after(answer: httpx.Response) -> str:
                assert (answer.status_code, answer.headers["location"]) == (303, "/")
                return element((await app.get("/")).text, "message")

            assert "cannot be reached" in await after(await app.post("/connect"))
            assert "(server_error)" in await after(
                await app.get("/callback", params={"error": "server_error", "state": "s"})
            )
            assert "expired" in await after(
                await app.get("/callback", params={"code": "c", "state": "s"})
            )
            assert await after(await app.post("/disconnect")) == (
                "Disconnected from your brokerage."
            )
            other_host = await app.get("http://localhost:8001/")
            assert other_host.headers["location"] == "http://127.0.0.1:8001/"

    anyio.run(use)


@pytest.mark.anyio
@pytest.mark.parametrize("example", ["starlette_platform.py", "fastapi_platform.py"])
async def test_platform_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}")
    module = runpy.run_path(str(EXAMPLES / example))
    storage = module["storage"]
    async with storage:
        creds = await storage.create_client(name="App", redirect_uris=["https://a.example/cb"])
        partner = await storage.create_partner(name="P")
        await storage.allow_partner_client(partner.key_id, creds.client_id)
        account = await storage.create_account()
        transport = httpx.ASGITransport(app=module["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            assert (await c.get("/v2/account")).status_code == 401
            issued = await c.post(
                "/v1/oauth/token",
                auth=(partner.key_id, partner.secret),
                json={
                    "client_id": creds.client_id,
                    "client_secret": creds.client_secret,
                    "redirect_uri": "https://a.example/cb",
                    "scope": "general",
                    "account_id": str(account.account_id),
                },
            )
            token = issued.json()["access_token"]
            me = await c.get("/v2/account", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["account_id"] == str(account.account_id)
            refused = await c.get("/v2/account", headers={"Authorization": "Bearer nope"})
            assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            if example == "fastapi_platform.py":
                order = await c.post("/v2/orders", headers={"Authorization": f"Bearer {token}"})
                assert order.status_code == 403  # the token has "general" only
                doc = (await c.get("/openapi.json")).json()
                assert "BrokerOAuth" in doc["components"]["securitySchemes"]
