"""The hosted pages' Jinja2 templates, through HTTP: what a client or a platform puts on a
page is escaped, a platform's template directory overrides any page (the package's
templates are the fallback), and a broken one is reported where it can be fixed."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from starlette_broker_oauth import ConfigurationError, MemoryStorage, create_oauth_app
from starlette_broker_oauth.web.hosted import (
    ConsentPage,
    HostedConsent,
    SessionAccount,
    SessionUser,
    Templates,
)

from .conftest import CONSENT_SECRET, CookieSession, Platform, full_settings, seed_full_platform
from .test_consent import Form, location, request_params
from .test_consent import query as authorize_query
from .test_hosted_pages import AppsPage, session_of

pytestmark = pytest.mark.anyio

HOSTILE = "<script>alert(\"x\")</script> & 'Co'"
HOSTILE_URL = "https://app.example.com/?a=1&b=\"<script>\"&c='x'"


class Texts(HTMLParser):
    """A page's text and attribute values, as a browser reads them (entities decoded)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.values: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.values += [v for _, v in attrs if v is not None]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_escaped(page: str, *, shown: Sequence[str], linked: Sequence[str] = ()) -> None:
    """No markup came from the data; each text reads back as it was given, once escaped."""
    parsed = Texts(page)
    assert "script" not in parsed.tags
    assert "img" not in parsed.tags
    assert "&amp;amp;" not in page  # not escaped twice
    assert "&amp;lt;" not in page
    text = "".join(parsed.text)
    for value in shown:
        assert value in text
    for value in linked:
        assert value in parsed.values


class HostileSession:
    """A platform whose user and account labels carry markup too."""

    accounts: tuple[uuid.UUID, ...] = ()

    async def current_user(self, request: Request) -> SessionUser | None:
        if "session" not in request.cookies:
            return None
        return SessionUser(
            name=HOSTILE,
            accounts=tuple(SessionAccount(account_id=a, label=HOSTILE) for a in self.accounts),
        )

    def login_url(self, request: Request) -> str:
        return "/login"

    def switch_user_url(self, request: Request) -> str:
        return '/logout?next=/a&b="c"'


@asynccontextmanager
async def hosted(**options: Any) -> AsyncIterator[Platform]:
    """A platform on the memory storage with hosted pages configured by ``options``."""
    options.setdefault("session", CookieSession())
    consent = HostedConsent(secret_key=CONSENT_SECRET, **options)
    async with MemoryStorage() as storage:
        world = await seed_full_platform("memory", storage, full_settings(), consent=consent)
        async with world.http:
            yield world


# autoescape


async def test_client_and_platform_text_is_escaped_on_every_page() -> None:
    session = HostileSession()
    async with hosted(session=session, platform_name=HOSTILE + " Brokerage") as world:
        session.accounts = (world.paper_account, world.live_account)
        hostile = await world.storage.create_client(
            name=HOSTILE,
            description=HOSTILE + " description",
            url=HOSTILE_URL,
            terms_of_use=HOSTILE_URL + "&terms",
            privacy_policy=HOSTILE_URL + "&privacy",
            redirect_uris=[world.redirect_uri],
        )
        world.client_id, world.client_secret = hostile.client_id, hostile.client_secret
        cookie = {"Cookie": "session=1"}
        # consent: the app's name, description and links; the user, the platform, the
        # accounts, and the reason the live account cannot be chosen
        page = await world.http.get(authorize_query(request_params(world)), headers=cookie)
        assert page.status_code == 200
        assert_escaped(
            page.text,
            shown=[
                HOSTILE,
                HOSTILE + " description",
                HOSTILE + " website",
                HOSTILE + " Brokerage",
                HOSTILE + " is not approved for live trading.",
            ],
            linked=[HOSTILE_URL, HOSTILE_URL + "&terms", HOSTILE_URL + "&privacy"],
        )
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;Co&#x27;" in (
            page.text
        )
        # connected apps: the app's name and links, then the notice naming it
        form = Form(page.text)
        data = form.submit("approve") | {"account_id": str(world.paper_account)}
        code = location(await world.http.post(form.action, data=data, headers=cookie))
        assert (await world.exchange(code["code"])).status_code == 200
        listing = await world.http.get("/oauth/connections", headers=cookie)
        assert_escaped(
            listing.text,
            shown=[HOSTILE, HOSTILE + " website", HOSTILE + " Brokerage"],
            linked=[HOSTILE_URL, f"Disconnect {HOSTILE}", '/logout?next=/a&b="c"'],
        )
        disconnect = AppsPage(listing.text).form_for(world.paper_account, world.client_id)
        done = await world.http.post(disconnect.action, data=disconnect.fields, headers=cookie)
        notice = await world.http.get(done.headers["location"], headers=cookie)
        assert_escaped(notice.text, shown=[f"{HOSTILE} was disconnected from {HOSTILE}."])
        # error: the user and the platform in its frame, signed in or not
        expired = await world.http.post(
            form.action, data=data | {"csrf_token": HOSTILE}, headers=cookie
        )
        assert expired.status_code == 400
        assert_escaped(expired.text, shown=[HOSTILE, HOSTILE + " Brokerage"])
        unknown = await world.http.get(
            authorize_query(request_params(world, client_id=HOSTILE)), headers=cookie
        )
        assert unknown.status_code == 400
        assert_escaped(unknown.text, shown=[HOSTILE + " Brokerage"])


# a platform's template directory


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


async def test_platform_templates_override_pages_and_the_package_is_the_fallback(
    tmp_path: Path,
) -> None:
    directory = write(
        tmp_path / "templates",
        {
            # a page replaced whole
            "error.html": '<p id="ours">{{ page.status }} {{ page.error }}: {{ page.title }}</p>',
            # a page extending the package's layout
            "connections.html": (
                '{% extends "base.html" %}'
                "{% block title %}Your apps{% endblock %}"
                '{% block content %}<h1 id="ours">Your apps</h1>'
                '{% for account in page.accounts %}<p class="account">{{ account.label }}</p>'
                "{% endfor %}{% endblock %}"
            ),
        },
    )
    async with hosted(template_directory=directory, platform_name="Acme") as world:
        unknown = await world.http.get(authorize_query(request_params(world, client_id="nobody")))
        assert unknown.status_code == 400
        assert unknown.text == (
            '<p id="ours">400 invalid_client: This connection request is not valid</p>'
        )
        # The library's headers, whatever the template.
        assert "frame-ancestors 'none'" in unknown.headers["content-security-policy"]
        assert unknown.headers["cache-control"] == "no-store"

        cookie = session_of(world.paper_account)
        apps = await world.http.get("/oauth/connections", headers=cookie)
        assert apps.status_code == 200
        assert '<h1 id="ours">Your apps</h1>' in apps.text
        assert f'<p class="account">Account {world.paper_account.hex[:4]}</p>' in apps.text
        assert "<title>Your apps · Acme</title>" in apps.text  # the package's base.html
        assert '<span id="platform-name">Acme</span>' in apps.text
        assert "Signed in as <strong>Test Trader</strong>" in apps.text

        consent = await world.http.get(authorize_query(request_params(world)), headers=cookie)
        assert consent.status_code == 200  # the package's consent.html
        assert '<span id="client-name">TradingApp</span>' in consent.text
        assert 'id="ours"' not in consent.text


async def test_platform_base_extends_the_packages_and_every_page_uses_it(
    tmp_path: Path,
) -> None:
    directory = write(
        tmp_path / "templates",
        {
            "base.html": (
                '{% extends "starlette_broker_oauth/base.html" %}'
                "{% block style %}{{ super() }}.bar{background:#102a43}{% endblock %}"
                '{% block footer %}<footer id="ours">Acme · {{ request.url.path }}</footer>'
                "{% endblock %}"
            )
        },
    )
    async with hosted(template_directory=str(directory)) as world:
        cookie = session_of(world.paper_account)
        for path in (authorize_query(request_params(world)), "/oauth/connections"):
            page = await world.http.get(path, headers=cookie)
            assert page.status_code == 200
            assert '<footer id="ours">Acme · /oauth/' in page.text
            assert ".bar{background:#102a43}</style>" in page.text
            assert "button.primary{background:#0b57d0" in page.text  # super()
        error = await world.http.get(authorize_query(request_params(world, client_id="x")))
        assert '<footer id="ours">' in error.text


async def test_directories_are_searched_in_order_and_functions_come_first(
    tmp_path: Path,
) -> None:
    first = write(tmp_path / "first", {"error.html": "first {{ page.error }}"})
    second = write(
        tmp_path / "second",
        {"error.html": "second", "consent.html": "second consent {{ page.app.name }}"},
    )

    def consent(page: ConsentPage) -> str:
        return f"function for {page.app.name}"

    async with hosted(template_directory=[first, second]) as world:
        error = await world.http.get(authorize_query(request_params(world, client_id="x")))
        assert error.text == "first invalid_client"
        page = await world.http.get(
            authorize_query(request_params(world)), headers=session_of(world.paper_account)
        )
        assert page.text == "second consent TradingApp"
    async with hosted(
        template_directory=[first, second], templates=Templates(consent=consent)
    ) as world:
        page = await world.http.get(
            authorize_query(request_params(world)), headers=session_of(world.paper_account)
        )
        assert page.text == "function for TradingApp"


# broken templates


def app_with(directory: Path | str) -> None:
    create_oauth_app(
        settings=full_settings(),
        storage=MemoryStorage(),
        consent=HostedConsent(
            session=CookieSession(), secret_key=CONSENT_SECRET, template_directory=directory
        ),
    )


def test_a_missing_directory_stops_the_app_from_being_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nowhere' is not a directory"):
        app_with(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"consent.html": "<p>\n{% if page.app %}never closed</p>"},
            r"consent\.html, line 2: Unexpected end of template",
        ),
        (
            {"error.html": '{% extends "layout.html" %}'},
            r"'layout\.html' \(named by .*error\.html\) not found",
        ),
        (
            {"base.html": '{% extends "base.html" %}{% import "missing.html" as m %}'},
            r"'missing\.html' \(named by .*base\.html\) not found",
        ),
    ],
    ids=["syntax", "missing parent", "missing import"],
)
def test_a_broken_template_stops_the_app_from_being_created(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app_with(write(tmp_path / "templates", files))


async def test_a_template_failing_at_render_shows_the_error_page_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write(tmp_path / "templates", {"consent.html": "{{ page.no_such_field }}"})
    async with hosted(template_directory=directory) as world:
        # The error is answered, then raised on to the platform's error middleware.
        answering = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=answering, base_url=str(world.http.base_url)
        ) as http:
            with caplog.at_level(logging.ERROR, logger="starlette_broker_oauth"):
                page = await http.get(
                    authorize_query(request_params(world)),
                    headers=session_of(world.paper_account),
                )
    assert page.status_code == 500
    assert '<code id="error-code">server_error</code>' in page.text
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None
    error = record.exc_info[1]
    assert isinstance(error, ConfigurationError)
    assert "consent.html" in str(error)
    assert "no_such_field" in str(error)


async def test_the_documented_templates_work(tmp_path: Path) -> None:
    """The templates of docs/hosted-pages.md, as a platform's directory."""
    docs = (Path(__file__).parents[1] / "docs" / "hosted-pages.md").read_text()
    blocks = re.findall(r'```html\+jinja title="templates/oauth/(\w+\.html)"\n(.*?)```', docs, re.S)
    assert [name for name, _ in blocks] == ["base.html", "error.html"]
    directory = write(tmp_path / "oauth", dict(blocks))
    async with hosted(template_directory=directory) as world:
        cookie = session_of(world.paper_account)
        for path in (authorize_query(request_params(world)), "/oauth/connections"):
            page = await world.http.get(path, headers=cookie)
            assert page.status_code == 200
            assert "<footer>Acme Brokerage LLC" in page.text
        error = await world.http.get(authorize_query(request_params(world, client_id="x")))
        assert error.status_code == 400
        assert "<footer>Acme Brokerage LLC" in error.text
        assert 'quote\n<code id="error-code">invalid_client</code> (status 400)' in error.text
