"""An automated accessibility audit (axe-core) of every page the library renders, in the
states a user meets them; no serious or critical violation is allowed. The counts by
impact are written next to the screenshots (``axe.json``)."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import urlencode

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, ViewportSize

from .conftest import SCREENSHOTS, Journey, log_in

AXE = Axe()
RESULTS: dict[str, dict[str, int]] = {}


def audit(page: Page, name: str) -> None:
    violations = AXE.run(page).response["violations"]
    RESULTS[name] = dict(Counter(v["impact"] for v in violations))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "axe.json").write_text(json.dumps(RESULTS, indent=2, sort_keys=True))
    grave = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in violations
        if v["impact"] in {"serious", "critical"}
    ]
    assert grave == [], f"{name}: {grave}"
    # 200 % zoom of a 1280 px window is a 640 px layout; it must reflow, not scroll.
    for width in (640, 320):
        page.set_viewport_size(ViewportSize(width=width, height=800))
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways at {width}px"


def authorize_url(journey: Journey, **overrides: str) -> str:
    params = {
        "response_type": "code",
        "client_id": journey.client_id,
        "redirect_uri": journey.redirect_uri,
        "scope": "general trading data",
        "state": "a11y",
    } | overrides
    return f"{journey.platform}/oauth/authorize?{urlencode(params)}"


@pytest.fixture
def signed_in(page: Page, journey: Journey) -> Page:
    page.goto(f"{journey.platform}/login?next=/")
    log_in(page, journey)
    page.wait_for_url(f"{journey.platform}/")
    return page


def test_consent_page(signed_in: Page, journey: Journey) -> None:
    signed_in.goto(authorize_url(journey))
    signed_in.focus("#approve")
    audit(signed_in, "consent")


def test_error_page(page: Page, journey: Journey) -> None:
    page.goto(authorize_url(journey, redirect_uri="https://evil.example/cb"))
    audit(page, "error")


def test_connections_page(signed_in: Page, journey: Journey) -> None:
    signed_in.goto(journey.app)
    signed_in.click("#connect")
    signed_in.click("#approve")
    signed_in.wait_for_url(f"{journey.app}/")
    signed_in.goto(f"{journey.platform}/oauth/connections")
    signed_in.wait_for_selector("li.app")
    audit(signed_in, "connections")
    signed_in.click(f'li.app[data-client-id="{journey.client_id}"] button')
    signed_in.wait_for_selector("#notice")
    audit(signed_in, "connections-after-disconnect")
