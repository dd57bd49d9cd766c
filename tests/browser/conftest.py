"""A real browser (Playwright driving Chromium) against the demo brokerage and the example
third-party app, each served by uvicorn on its own loopback port, so that every redirect
between them is cross-origin, as in production.

Chromium is Debian's (``/usr/bin/chromium``, or ``BROKER_OAUTH_CHROMIUM``); ``.ci/run``
installs it. Screenshots go to ``build/screenshots`` (or ``BROKER_OAUTH_SCREENSHOTS``).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage
from starlette_broker_oauth.web.demo import DEMO_USERNAME, build_platform, seed

from ..conftest import free_port, serve

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BROKER_OAUTH_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("BROKER_OAUTH_SCREENSHOTS", ROOT / "build" / "screenshots"))
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Journey:
    """The running brokerage and app, and what a user needs to use them."""

    platform: str
    app: str
    username: str
    password: str
    client_id: str
    client_secret: str
    redirect_uri: str
    paper_account: str
    live_account: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: apt-get install chromium, or set "
            "BROKER_OAUTH_CHROMIUM (.ci/run installs it)"
        )
    # Module-scoped: Playwright's loop must be gone before other modules' async tests run.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    """The demo brokerage on SQLite, and the example app registered on its own port."""
    platform_port, app_port = free_port(), free_port()
    platform_url = f"http://127.0.0.1:{platform_port}"
    app_url = f"http://127.0.0.1:{app_port}"
    redirect_uri = f"{app_url}/callback"
    database = tmp_path_factory.mktemp("journey") / "demo.db"
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{database}")
    password = secrets.token_urlsafe(12)

    async def prepare() -> dict[str, str]:
        async with storage:
            demo = await seed(storage, base_url=platform_url, password=password)
            app = await storage.create_client(
                client_id="browser-trading-app",
                name="Demo Trading App",
                description="A third-party trading app for trying the OAuth flow.",
                url=app_url,
                terms_of_use=f"{app_url}/terms",
                privacy_policy=f"{app_url}/privacy",
                redirect_uris=[redirect_uri],
            )
            return demo.as_dict() | {
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "redirect_uri": redirect_uri,
            }

    # Playwright's sync API runs an event loop on this thread; seed on another.
    with ThreadPoolExecutor(1) as executor:
        credentials = executor.submit(anyio.run, prepare).result()
    settings = OAuthSettings(issuer=platform_url)
    platform = build_platform(storage, settings, password=password)
    app = load_example("third_party_app").create_app(credentials)
    with serve(platform, port=platform_port), serve(app, port=app_port):
        yield Journey(
            platform=platform_url,
            app=app_url,
            username=DEMO_USERNAME,
            password=password,
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
            redirect_uri=redirect_uri,
            paper_account=credentials["paper_account_id"],
            live_account=credentials["live_account_id"],
        )


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile: no cookies, CSP enforced."""
    context = browser.new_context(viewport=DESKTOP)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def log_in(page: Page, journey: Journey) -> None:
    """Fill in the brokerage's login form the page is on, and submit it."""
    page.fill("#username", journey.username)
    page.fill("#password", journey.password)
    page.click("#log-in")


def screenshot(page: Page, name: str) -> list[Path]:
    """The page at desktop and phone width, full length; also checks that it reflows
    (no horizontal scrolling at 390 px, WCAG 1.4.10)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {size['width']}px"
    page.set_viewport_size(DESKTOP)
    return paths


def unique() -> str:
    return uuid.uuid4().hex[:8]
