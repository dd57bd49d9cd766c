"""``broker-oauth demo``: the README's first command, driven the way a script would."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import requests

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage
from starlette_broker_oauth.cli import main

from .conftest import ISSUER, build_platform, free_port


@contextmanager
def demo(tmp_path: Path, port: int, *options: str) -> Iterator[dict[str, str]]:
    """Run ``broker-oauth demo`` (with ``options``) in ``tmp_path`` until the block ends;
    yield its credentials JSON. What it prints is appended to ``tmp_path / "demo.log"``."""
    creds = tmp_path / "credentials.json"
    creds.unlink(missing_ok=True)
    log = tmp_path / "demo.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "starlette_broker_oauth.cli",
                "demo",
                "--port",
                str(port),
                "--credentials-json",
                str(creds),
                *options,
            ],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "demo did not start"
            if creds.exists():
                try:
                    data: dict[str, str] = json.loads(creds.read_text())
                    requests.get(
                        data["base_url"] + "/.well-known/oauth-authorization-server", timeout=1
                    ).raise_for_status()
                    break
                except (requests.ConnectionError, ValueError):
                    pass
            time.sleep(0.1)
        yield data
    finally:
        process.terminate()
        process.wait(10)


def flow_body(c: dict[str, str], account: str) -> dict[str, str]:
    return {
        "client_id": c["client_id"],
        "client_secret": c["client_secret"],
        "redirect_uri": c["redirect_uri"],
        "scope": "general trading",
        "account_id": account,
    }


def flow(c: dict[str, str], account: str) -> requests.Response:
    partner = (c["partner_key"], c["partner_secret"])
    body = flow_body(c, account)
    return requests.post(f"{c['base_url']}/v1/oauth/authorize", json=body, auth=partner, timeout=5)


def test_demo_runs_twice_on_one_file(tmp_path: Path) -> None:
    port = free_port()
    with demo(tmp_path, port) as c:
        assert set(c) == {
            "base_url",
            "username",
            "password",
            "partner_key",
            "partner_secret",
            "client_id",
            "client_secret",
            "redirect_uri",
            "paper_account_id",
            "live_account_id",
        }
        assert c["base_url"] == f"http://127.0.0.1:{port}"
        assert c["username"] == "trader"
        assert len(c["password"]) >= 12
        metadata = requests.get(
            f"{c['base_url']}/.well-known/oauth-authorization-server", timeout=5
        ).json()
        assert metadata["authorization_endpoint"] == f"{c['base_url']}/oauth/authorize"
        issued = flow(c, c["paper_account_id"])
        assert issued.status_code == 200
        token = requests.post(
            f"{c['base_url']}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": issued.json()["code"],
                "redirect_uri": c["redirect_uri"],
            },
            auth=(c["client_id"], c["client_secret"]),
            timeout=5,
        ).json()["access_token"]
        me = requests.get(
            f"{c['base_url']}/v2/account", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert me.json()["account_id"] == c["paper_account_id"]
        assert me.json()["label"] == "Practice ····7310"
        assert me.json()["cash"] > 0
        assert flow(c, c["live_account_id"]).status_code == 422
        anonymous = requests.get(f"{c['base_url']}/v2/account", timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        # A token in a path or a query string stays out of the access log.
        other = requests.post(
            f"{c['base_url']}/v1/oauth/token",
            json=flow_body(c, c["paper_account_id"]),
            auth=(c["partner_key"], c["partner_secret"]),
            timeout=5,
        ).json()["access_token"]
        query = requests.get(f"{c['base_url']}/v2/account?access_token={other}", timeout=5)
        assert query.status_code == 401
        deleted = requests.delete(
            f"{c['base_url']}/v1/oauth/token/{other}",
            auth=(c["partner_key"], c["partner_secret"]),
            timeout=5,
        )
        assert deleted.status_code == 204
    printed = (tmp_path / "demo.log").read_text()
    assert f"log in as: trader / {c['password']}" in printed
    assert f"examples/third_party_app.py {tmp_path / 'credentials.json'}" in printed
    assert '"DELETE /v1/oauth/token/… HTTP/1.1" 204' in printed
    assert '"GET /v2/account?… HTTP/1.1" 401' in printed
    assert other not in printed
    assert token not in printed
    assert (tmp_path / "broker-oauth-demo.db").exists()
    with demo(tmp_path, port) as again:
        assert again["client_secret"] != c["client_secret"]
        assert flow(again, again["paper_account_id"]).status_code == 200
        me = requests.get(
            f"{again['base_url']}/v2/account",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert me.status_code == 200  # tokens survive a restart


def admin(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starlette_broker_oauth.cli", *args, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_admin_commands_set_up_a_working_platform(cli: CLI) -> None:
    created = admin(
        cli.url, "client", "create", "--name", "App", "--redirect-uri", "https://a.example/cb",
        "--scope", "general", "--scope", "data", "--json",
    )  # fmt: skip
    assert (created.returncode, created.stderr) == (0, "")
    client = json.loads(created.stdout)
    partner = cli.json("partner", "create", "--name", "Broker")
    cli("partner", "allow", partner["key_id"], client["client_id"])
    account = cli.json("account", "create", "--live")
    assert account["live"] is True
    paper = cli.json("account", "create")

    async def use() -> list[int]:
        async with SQLAlchemyStorage(cli.url) as storage:
            app = build_platform(storage, OAuthSettings(issuer=ISSUER))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                body = {
                    "client_id": client["client_id"],
                    "client_secret": client["client_secret"],
                    "redirect_uri": "https://a.example/cb",
                    "scope": "data",
                    "account_id": paper["account_id"],
                }
                auth = (partner["key_id"], partner["secret"])
                ok = await http.post("/v1/oauth/token", json=body, auth=auth)
                too_wide = await http.post(
                    "/v1/oauth/token", json=body | {"scope": "trading"}, auth=auth
                )
                live = await http.post(
                    "/v1/oauth/token", json=body | {"account_id": account["account_id"]}, auth=auth
                )
                return [ok.status_code, too_wide.status_code, live.status_code]

    assert anyio.run(use) == [200, 422, 422]
    rotated = cli.json("client", "rotate-secret", client["client_id"])
    assert rotated["client_secret"] != client["client_secret"]
    assert cli.json("client", "disable", client["client_id"])["status"] == "DISABLED"
    new_partner = cli.json("partner", "rotate-secret", partner["key_id"])
    assert new_partner["secret"] != partner["secret"]


def test_account_ownership_commands(cli: CLI) -> None:
    first = cli.json("partner", "create", "--name", "First")
    owned = cli.json("account", "create", "--partner", first["key_id"])
    assert owned["partner"] == first["key_id"]
    loose = cli.json("account", "create")
    given = cli.json("account", "give", loose["account_id"], first["key_id"])
    assert given == {"account_id": loose["account_id"], "partner": first["key_id"]}
    assert cli.fails("account", "create", "--partner", "nobody") == "unknown partner 'nobody'"
    assert cli.fails("account", "give", loose["account_id"], "nobody") == (
        "unknown partner 'nobody'"
    )
    nobody = "00000000-0000-0000-0000-000000000000"
    assert cli.fails("account", "give", nobody, first["key_id"]) == f"unknown account {nobody}"
    assert cli.fails("connections", "list", "--account", nobody) == f"unknown account {nobody}"


def test_demo_login(tmp_path: Path) -> None:
    from starlette_broker_oauth.web.demo import build_platform, seed

    base = "http://127.0.0.1:8000"

    async def use() -> None:
        async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}") as storage:
            await seed(storage, base_url=base, password="right-password")
            app = build_platform(storage, OAuthSettings(issuer=base), password="right-password")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=base) as http:
                assert 'href="/login?next=%2F"' in (await http.get("/")).text
                assert (await http.get("/healthz/live")).json() == {"status": "alive"}
                ready = await http.get("/healthz/ready")
                assert (ready.status_code, ready.json()["status"]) == (200, "ready")
                form = await http.get("/login", params={"next": "/oauth/connections"})
                assert '<meta name="viewport"' in form.text
                assert '<label for="username">' in form.text
                assert '<label for="password">' in form.text
                assert 'name="next" value="/oauth/connections"' in form.text
                credentials = {"username": "trader", "password": "right-password"}
                for elsewhere in (
                    "//evil.example/x",
                    "https://evil.example/",
                    "/\\evil.example",
                    "javascript:alert(1)",
                    "",
                ):
                    answer = await http.post("/login", data=credentials | {"next": elsewhere})
                    assert (answer.status_code, answer.headers["location"]) == (303, "/")
                http.cookies.clear()
                wrong = await http.post(
                    "/login", data=credentials | {"password": "wrong", "next": "/oauth/connections"}
                )
                assert wrong.status_code == 401
                assert 'role="alert"' in wrong.text
                assert 'name="next" value="/oauth/connections"' in wrong.text
                ok = await http.post("/login", data=credentials | {"next": "/oauth/connections"})
                assert (ok.status_code, ok.headers["location"]) == (303, "/oauth/connections")
                cookie = ok.headers["set-cookie"].lower()
                assert cookie.startswith("broker_demo_session=")
                assert "samesite=lax" in cookie
                assert "httponly" in cookie
                page = await http.get("/oauth/connections")
                assert page.status_code == 200
                assert "Demo Trader" in page.text
                home = (await http.get("/")).text
                assert "Signed in as Demo Trader" in home
                assert 'href="/oauth/connections"' in home
                # Logging out: a GET only asks; a cross-site post or one without the
                # session's token is refused; the POST ends the session on the server, so
                # the cookie the browser held no longer logs anyone in.
                stolen = dict(http.cookies)
                asked = await http.get("/logout", params={"next": "/oauth/connections"})
                assert asked.status_code == 200
                assert "Signed in as" in home
                token = re.search(r'name="csrf_token" value="([^"]+)"', asked.text)
                assert token is not None
                fields = {"csrf_token": token.group(1), "next": "/oauth/connections"}
                forged = await http.post("/logout", data=fields | {"csrf_token": "x"})
                assert forged.status_code == 403
                cross = await http.post(
                    "/logout", data=fields, headers={"Sec-Fetch-Site": "cross-site"}
                )
                assert cross.status_code == 403
                assert (await http.get("/oauth/connections")).status_code == 200  # still in
                out = await http.post("/logout", data=fields)
                assert (out.status_code, out.headers["location"]) == (
                    303,
                    "/login?next=%2Foauth%2Fconnections",
                )
                again = await http.get("/oauth/connections")
                assert again.is_redirect
                assert again.headers["location"] == "/login?next=%2Foauth%2Fconnections"
                http.cookies.clear()
                http.cookies.update(stolen)  # the old cookie, replayed
                replayed = await http.get("/oauth/connections")
                assert replayed.is_redirect
                # A login posted from another site is refused, and logs nobody in.
                http.cookies.clear()
                for header in (
                    {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "https://evil.example"},
                ):
                    refused = await http.post(
                        "/login", data=credentials | {"next": "/"}, headers=header
                    )
                    assert refused.status_code == 403
                    assert "set-cookie" not in refused.headers

    anyio.run(use)


def test_connections_commands(cli: CLI) -> None:
    partner = cli.json("partner", "create", "--name", "Broker")
    clients = []
    for name in ("Charts", "Journal"):
        uri = "https://a.example/cb"
        scopes = ["--scope", "general", "--scope", "data"]
        clients.append(cli.json("client", "create", "--name", name, "--redirect-uri", uri, *scopes))
        cli("partner", "allow", partner["key_id"], clients[-1]["client_id"])
    account = cli.json("account", "create")["account_id"]
    charts, journal = (c["client_id"] for c in clients)

    assert cli("connections", "list", "--account", account) == (
        f"no apps connected to account {account}\n"
    )
    tokens = [
        anyio.run(issue, cli.url, partner, clients[0], account, "general"),
        anyio.run(issue, cli.url, partner, clients[0], account, "data"),
        anyio.run(issue, cli.url, partner, clients[1], account, "general"),
    ]
    listed = cli.json("connections", "list", "--account", account)
    assert sorted((c["client_id"], c["scope"]) for c in listed) == sorted(
        [(charts, "data general"), (journal, "general")]
    )
    assert all(c["account_id"] == account for c in listed)
    assert all(c["connected_at"] <= c["last_issued_at"] for c in listed)
    table = cli("connections", "list", "--account", account).splitlines()
    assert table[0].split() == ["CLIENT", "ID", "SCOPE", "CONNECTED", "LAST", "ISSUED"]
    assert any(line.startswith(f"{charts}  data general") for line in table)
    assert any(line.startswith(f"{journal}  general") for line in table)

    revoked = cli("connections", "revoke", "--account", account, "--client", charts)
    assert revoked.startswith("revoked 2 access tokens")
    assert [anyio.run(works, cli.url, t) for t in tokens] == [False, False, True]
    listed = cli.json("connections", "list", "--account", account)
    assert [c["client_id"] for c in listed] == [journal]
    assert cli("connections", "revoke", "--account", account).startswith("revoked 1 access token ")
    assert cli("connections", "revoke", "--account", account).startswith("revoked 0 access tokens")
    assert cli.json("connections", "list", "--account", account) == []
    assert not anyio.run(works, cli.url, tokens[2])


def test_the_demo_log_holds_no_secret(tmp_path: Path) -> None:
    """After a full flow, everything the demo logged past its start-up banner (which shows
    the credentials on purpose) holds no token, code or secret."""
    with demo(tmp_path, free_port()) as c:
        base, partner = c["base_url"], (c["partner_key"], c["partner_secret"])
        client = (c["client_id"], c["client_secret"])
        code = flow(c, c["paper_account_id"]).json()["code"]
        exchange = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": c["redirect_uri"],
        }
        token = requests.post(f"{base}/oauth/token", data=exchange, auth=client, timeout=5).json()[
            "access_token"
        ]
        replay = requests.post(f"{base}/oauth/token", data=exchange, auth=client, timeout=5)
        assert replay.json()["error"] == "invalid_grant"  # and logged as a replay
        direct = requests.post(
            f"{base}/v1/oauth/token",
            json=flow_body(c, c["paper_account_id"]),
            auth=partner,
            timeout=5,
        ).json()["access_token"]
        assert (
            requests.get(
                f"{base}/v2/account", headers={"Authorization": f"Bearer {direct}"}, timeout=5
            ).status_code
            == 200
        )
        assert (
            requests.get(f"{base}/v2/account?access_token={direct}", timeout=5).status_code == 401
        )
        requests.post(f"{base}/oauth/introspect", data={"token": direct}, auth=client, timeout=5)
        requests.post(
            f"{base}/oauth/token", data=exchange, auth=(c["client_id"], "wrong"), timeout=5
        )
        requests.post(f"{base}/oauth/revoke", data={"token": direct}, auth=client, timeout=5)
        assert (
            requests.delete(f"{base}/v1/oauth/token/{token}", auth=partner, timeout=5).status_code
            == 204
        )
        login = requests.post(
            f"{base}/login",
            data={"username": c["username"], "password": c["password"], "next": "/"},
            timeout=5,
        )
        assert login.status_code == 200
    log = (tmp_path / "demo.log").read_text()
    after_banner = log[log.index("Uvicorn running") :]
    assert '"POST /oauth/token HTTP/1.1" 400' in after_banner  # the requests were logged
    for secret in (
        code,
        token,
        direct,
        c["client_secret"],
        c["partner_secret"],
        c["password"],
    ):
        assert secret not in after_banner


class CLI:
    """``broker-oauth`` run in this process on one SQLite database."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *args: str) -> str:
        """What a command that succeeds prints."""
        code = main([*args, "--database-url", self.url])
        out, err = self.capsys.readouterr()
        assert (code, err) == (0, ""), err
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))

    def fails(self, *args: str, code: int = 1) -> str:
        """The one line a command that fails prints on stderr (nothing on stdout)."""
        exit_code = main([*args, "--database-url", self.url])
        out, err = self.capsys.readouterr()
        assert (exit_code, out) == (code, "")
        [line] = err.splitlines()
        return line


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    """The CLI on a database it created (``db upgrade``), as an operator starts."""
    tool = CLI(f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}", capsys)
    tool("db", "upgrade")
    return tool


async def issue(
    url: str,
    partner: dict[str, str],
    client: dict[str, str],
    account: str,
    scope: str = "general",
) -> str:
    """A token from the partner API of a platform on the database."""
    async with SQLAlchemyStorage(url) as storage:
        app = build_platform(storage, OAuthSettings(issuer=ISSUER))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            answer = await http.post(
                "/v1/oauth/token",
                auth=(partner["key_id"], partner["secret"]),
                json={
                    "client_id": client["client_id"],
                    "client_secret": client["client_secret"],
                    "redirect_uri": "https://a.example/cb",
                    "scope": scope,
                    "account_id": account,
                },
            )
            assert answer.status_code == 200, answer.text
            token: str = answer.json()["access_token"]
            return token


async def works(url: str, token: str) -> bool:
    """Whether the platform's API on the database accepts the token."""
    async with SQLAlchemyStorage(url) as storage:
        app = build_platform(storage, OAuthSettings(issuer=ISSUER))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            answer = await http.get("/v2/account", headers={"Authorization": f"Bearer {token}"})
            return answer.status_code == 200


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"broker-oauth {version('starlette-broker-oauth')}\n"


def test_client_commands(cli: CLI) -> None:
    assert cli("client", "list") == "no clients\n"
    assert cli.json("client", "list") == []
    created = cli(
        "client", "create", "--name", "Charts", "--redirect-uri", "https://a.example/cb",
        "--scope", "general", "--scope", "data",
    )  # fmt: skip
    assert created.startswith("registered client Charts\n")
    assert "shown only this once" in created
    charts = created.split("client_id:")[1].split()[0]
    journal = cli.json(
        "client", "create", "--name", "Journal", "--redirect-uri", "https://j.example/cb",
        "--response-type", "code", "--live-trading-approved",
    )  # fmt: skip
    assert set(journal) == {"client_id", "client_secret"}
    listed = cli.json("client", "list")
    assert [c["client_id"] for c in listed] == sorted([charts, journal["client_id"]])
    shown = cli.json("client", "show", charts)
    assert shown == {
        "client_id": charts,
        "name": "Charts",
        "status": "ACTIVE",
        "live_trading_approved": False,
        "redirect_uris": ["https://a.example/cb"],
        "scopes": ["data", "general"],
        "response_types": ["code", "token"],
        "description": "",
        "url": "",
        "terms_of_use": "",
        "privacy_policy": "",
    }
    assert shown in listed
    table = cli("client", "list").splitlines()
    assert table[0].split() == [
        "CLIENT",
        "ID",
        "NAME",
        "STATUS",
        "LIVE",
        "SCOPES",
        "REDIRECT",
        "URIS",
    ]
    assert any(line.startswith(charts) and "data general" in line for line in table)
    assert "live trading approved: no" in cli("client", "show", charts)

    updated = cli.json(
        "client", "update", charts, "--name", "Charts Pro", "--redirect-uri",
        "https://a.example/new", "--redirect-uri", "com.example.charts:/cb", "--scope", "trading",
        "--live-trading-approved", "--description", "Better charts",
    )  # fmt: skip
    assert updated == shown | {
        "name": "Charts Pro",
        "redirect_uris": ["https://a.example/new", "com.example.charts:/cb"],
        "scopes": ["trading"],
        "live_trading_approved": True,
        "description": "Better charts",
    }
    assert cli.json("client", "show", charts) == updated
    text = cli("client", "update", charts, "--all-scopes", "--no-live-trading-approved")
    assert "scopes:                every supported scope" in text
    assert "redirect URIs:         https://a.example/new\n" in text
    again = cli.json("client", "show", charts)
    assert (again["scopes"], again["live_trading_approved"]) == (None, False)

    assert cli.json("client", "disable", charts) == {"client_id": charts, "status": "DISABLED"}
    assert cli("client", "enable", charts) == f"client {charts} is ACTIVE\n"
    rotated = cli.json("client", "rotate-secret", charts)
    assert rotated["client_id"] == charts
    assert rotated["client_secret"]
    assert cli("client", "delete", charts).startswith(f"deleted client {charts}")
    assert [c["client_id"] for c in cli.json("client", "list")] == [journal["client_id"]]
    assert cli.json("client", "delete", journal["client_id"]) == {
        "client_id": journal["client_id"],
        "deleted": True,
    }


def test_client_refusals(cli: CLI) -> None:
    client = cli.json("client", "create", "--name", "A", "--redirect-uri", "https://a.example/cb")
    client_id = client["client_id"]
    for args in (
        ("show", "nobody"),
        ("update", "nobody", "--name", "X"),
        ("delete", "nobody"),
        ("disable", "nobody"),
        ("enable", "nobody"),
        ("rotate-secret", "nobody"),
    ):
        assert cli.fails("client", *args) == "unknown client 'nobody'"
    assert cli.fails("client", "update", client_id, "--redirect-uri", "http://a.example/cb") == (
        "redirect URI 'http://a.example/cb' must use https (http only on a loopback host)"
    )
    assert cli.fails(
        "client", "create", "--name", "B", "--redirect-uri", "https://b.example/cb#frag"
    ) == ("redirect URI 'https://b.example/cb#frag' must not have a fragment")
    assert cli.fails("client", "update", client_id, code=2) == (
        "broker-oauth client update: nothing to change (see 'broker-oauth client update --help')"
    )
    assert cli.fails("client", "update", client_id, "--scope", "a", "--all-scopes", code=2)
    assert "at most 200 characters" in cli.fails(
        "client", "update", client_id, "--name", "x" * 201, code=2
    )
    assert cli.json("client", "show", client_id)["redirect_uris"] == ["https://a.example/cb"]


def test_partner_commands(cli: CLI) -> None:
    assert cli("partner", "list") == "no partners\n"
    created = cli("partner", "create", "--name", "Correspondent", "--key-id", "corr")
    assert created.startswith("registered partner Correspondent\nkey_id:  corr\nsecret:  ")
    other = cli.json("partner", "create", "--name", "Other")
    client = cli.json("client", "create", "--name", "A", "--redirect-uri", "https://a.example/cb")
    client_id = client["client_id"]
    assert cli.json("partner", "allow", "corr", client_id) == {
        "key_id": "corr",
        "client_id": client_id,
        "allowed": True,
    }
    account = cli.json("account", "create", "--partner", "corr")["account_id"]
    shown = cli.json("partner", "show", "corr")
    assert shown == {
        "key_id": "corr",
        "name": "Correspondent",
        "clients": [client_id],
        "accounts": 1,
    }
    assert cli.json("partner", "list") == sorted(
        [shown, {"key_id": other["key_id"], "name": "Other", "clients": [], "accounts": 0}],
        key=lambda p: p["key_id"],
    )
    assert "corr" in cli("partner", "list")
    assert cli("partner", "show", "corr").splitlines()[2] == f"clients:  {client_id}"
    assert cli.json("partner", "update", "corr", "--name", "Renamed")["name"] == "Renamed"
    assert cli("partner", "disallow", "corr", client_id) == (
        f"partner corr may no longer use client {client_id}\n"
    )
    assert cli.json("partner", "show", "corr")["clients"] == []
    rotated = cli.json("partner", "rotate-secret", "corr")
    assert rotated["key_id"] == "corr"
    assert rotated["secret"]

    assert cli.fails("partner", "create", "--name", "Again", "--key-id", "corr") == (
        "partner 'corr' already exists"
    )
    assert cli.fails("partner", "delete", "corr") == (
        "partner 'corr' owns an account: give it to another partner or delete it first"
    )
    for args in (
        ("show", "nobody"),
        ("update", "nobody", "--name", "X"),
        ("delete", "nobody"),
        ("rotate-secret", "nobody"),
        ("allow", "nobody", client_id),
        ("disallow", "nobody", client_id),
    ):
        assert cli.fails("partner", *args) == "unknown partner 'nobody'"
    assert cli.fails("partner", "allow", "corr", "nobody") == "unknown client 'nobody'"
    assert cli.fails("partner", "disallow", "corr", "nobody") == "unknown client 'nobody'"

    cli("account", "give", account, other["key_id"])
    assert cli("partner", "delete", "corr") == "deleted partner corr\n"
    assert cli.fails("partner", "delete", other["key_id"]).endswith(
        "owns an account: give it to another partner or delete it first"
    )
    cli("account", "delete", account)
    assert cli.json("partner", "delete", other["key_id"]) == {
        "key_id": other["key_id"],
        "deleted": True,
    }
    assert cli.json("partner", "list") == []


def test_account_commands(cli: CLI) -> None:
    assert cli("account", "list") == "no accounts\n"
    partner = cli.json("partner", "create", "--name", "P")["key_id"]
    owned = cli.json("account", "create", "--partner", partner)
    assert owned == {"account_id": owned["account_id"], "live": False, "partner": partner}
    fixed = "7c1e5a3e-2b0f-4d8e-9a51-0d3f6c2b8a10"
    assert cli("account", "create", "--account-id", fixed, "--live") == (
        f"account_id: {fixed}\nkind:       live\npartner:    none\n"
    )
    listed = cli.json("account", "list")
    assert listed == sorted(
        [owned, {"account_id": fixed, "live": True, "partner": None}],
        key=lambda a: a["account_id"],
    )
    assert cli.json("account", "list", "--partner", partner) == [owned]
    table = cli("account", "list").splitlines()
    assert table[0].split() == ["ACCOUNT", "ID", "KIND", "PARTNER"]
    assert f"{fixed}  live   -" in table
    assert cli.json("account", "show", fixed) == {
        "account_id": fixed,
        "live": True,
        "partner": None,
    }
    assert cli.json("account", "give", fixed, partner) == {"account_id": fixed, "partner": partner}
    assert cli.json("account", "update", fixed, "--paper") == {
        "account_id": fixed,
        "live": False,
        "partner": partner,
    }
    assert "kind:       live" in cli("account", "update", fixed, "--live")
    assert cli("account", "delete", fixed).startswith(f"deleted account {fixed}")
    assert cli.json("account", "delete", owned["account_id"]) == {
        "account_id": owned["account_id"],
        "deleted": True,
    }
    assert cli.json("account", "list") == []

    nobody = "00000000-0000-0000-0000-000000000000"
    for args in (
        ("show", nobody),
        ("update", nobody, "--live"),
        ("delete", nobody),
        ("give", nobody, partner),
    ):
        assert cli.fails("account", *args) == f"unknown account {nobody}"
    assert cli.fails("account", "list", "--partner", "nobody") == "unknown partner 'nobody'"
    assert cli.fails("account", "create", "--partner", "nobody") == "unknown partner 'nobody'"
    assert cli.fails("account", "show", "not-a-uuid", code=2) == (
        "broker-oauth account show: argument account_id: invalid UUID value: 'not-a-uuid' "
        "(see 'broker-oauth account show --help')"
    )
    assert "one of the arguments --live --paper is required" in cli.fails(
        "account", "update", nobody, code=2
    )


def test_deleting_and_changing_revokes_tokens(cli: CLI) -> None:
    """A deleted client's tokens, and the tokens of an account made live or deleted, stop
    working at once."""
    partner = cli.json("partner", "create", "--name", "Broker")
    clients = [
        cli.json("client", "create", "--name", name, "--redirect-uri", "https://a.example/cb")
        for name in ("Charts", "Journal")
    ]
    for client in clients:
        cli("partner", "allow", partner["key_id"], client["client_id"])
    accounts = [cli.json("account", "create")["account_id"] for _ in range(2)]
    charts, journal = (
        anyio.run(issue, cli.url, partner, client, accounts[0]) for client in clients
    )
    cli("client", "delete", clients[0]["client_id"])
    assert [anyio.run(works, cli.url, t) for t in (charts, journal)] == [False, True]
    cli("account", "update", accounts[0], "--paper")  # no change: nothing revoked
    assert anyio.run(works, cli.url, journal)
    cli("account", "update", accounts[0], "--live")
    assert not anyio.run(works, cli.url, journal)
    other = anyio.run(issue, cli.url, partner, clients[1], accounts[1])
    cli("account", "delete", accounts[1])
    assert not anyio.run(works, cli.url, other)


def test_every_command_answers_json(cli: CLI) -> None:
    account = cli.json("account", "create")["account_id"]
    assert cli.json("connections", "list", "--account", account) == []
    assert cli.json("connections", "revoke", "--account", account) == {
        "account_id": account,
        "client_id": None,
        "revoked": 0,
    }
    assert cli.json("db", "current") == {"revision": "0009"}
    assert cli.json("db", "upgrade") == {"revision": "0009"}
    assert cli.json("db", "purge") == {"codes": 0, "tokens": 0, "refresh_tokens": 0}
    assert cli("db", "current") == "0009\n"


def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["client", "lst"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("broker-oauth client: argument COMMAND: invalid choice: 'lst'")
    assert len(err.splitlines()) == 1
    monkeypatch.delenv("BROKER_OAUTH_DATABASE_URL", raising=False)
    assert main(["client", "list"]) == 2
    assert capsys.readouterr() == (
        "",
        "broker-oauth: --database-url (or BROKER_OAUTH_DATABASE_URL) is required\n",
    )
    for url, said in (
        ("mysql://u:p@db/x", "unsupported database URL scheme 'mysql'"),
        ("postgresql+asyncpg://u:hunter2@db:port/x", "cannot parse the database URL"),
    ):
        assert main(["client", "list", "--database-url", url]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(said)
        assert len(err.splitlines()) == 1
        assert "hunter2" not in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "postgresql+asyncpg://admin:hunter2@127.0.0.1:1/db",
            "cannot reach the database at 127.0.0.1:1 (connection refused)",
        ),
        (
            "sqlite+aiosqlite:////nonexistent/dir/x.db",
            "cannot open the SQLite database /nonexistent/dir/x.db: the directory does not exist",
        ),
    ],
    ids=["postgres-port-closed", "sqlite-directory-missing"],
)
def test_a_database_that_cannot_be_used_is_one_line(url: str, said: str) -> None:
    answer = admin(url, "client", "list")
    assert (answer.returncode, answer.stdout, answer.stderr) == (1, "", said + "\n")


def test_postgres_without_its_driver(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    assert main(["client", "list", "--database-url", "postgresql://u:p@127.0.0.1:1/db"]) == 1
    assert capsys.readouterr() == (
        "",
        "PostgreSQL needs asyncpg: pip install 'starlette-broker-oauth[postgres]'\n",
    )


def test_a_file_that_is_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100)
    for url, said in (
        (f"sqlite+aiosqlite:///{path}", "the file is not a SQLite database"),
        (f"sqlite+aiosqlite:///{tmp_path}", "it is a directory"),
    ):
        assert main(["partner", "list", "--database-url", url]) == 1
        database = url.removeprefix("sqlite+aiosqlite:///")
        assert capsys.readouterr() == ("", f"cannot open the SQLite database {database}: {said}\n")


def test_demo_json(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "starlette_broker_oauth.cli", "demo", "--json"]
    with subprocess.Popen(
        [*command, "--port", str(free_port())],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            credentials = json.loads(process.stdout.readline())
        finally:
            process.terminate()
    assert {"base_url", "client_id", "client_secret", "partner_key"} <= set(credentials)


def test_demo_without_uvicorn_says_what_to_install(tmp_path: Path) -> None:
    """uvicorn comes with the demo extra: without it, ``broker-oauth demo`` says how to get
    it, in one line, before it writes anything."""
    blocked = (
        "import sys; sys.modules['uvicorn'] = None; "  # import uvicorn raises ImportError
        "from starlette_broker_oauth.cli import main; sys.exit(main(['demo']))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", blocked], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (answer.returncode, answer.stdout, answer.stderr) == (
        1,
        "",
        "broker-oauth demo needs uvicorn: pip install 'starlette-broker-oauth[demo]'\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_every_admin_command_is_an_audit_event(cli: CLI, caplog: pytest.LogCaptureFixture) -> None:
    """The CLI makes its changes through the core's admin service: each is logged to the
    ``starlette_broker_oauth.audit`` logger as its event, and what it ends is revoked."""
    caplog.set_level(logging.INFO, logger="starlette_broker_oauth.audit")
    client = cli.json("client", "create", "--name", "App", "--redirect-uri", "https://a.example/cb")
    partner = cli.json("partner", "create", "--name", "Broker")
    cli("partner", "allow", partner["key_id"], client["client_id"])
    account = cli.json("account", "create", "--partner", partner["key_id"])["account_id"]
    token = anyio.run(issue, cli.url, partner, client, account)
    cli("client", "disable", client["client_id"])
    cli("client", "rotate-secret", client["client_id"])
    cli("client", "enable", client["client_id"])
    assert not anyio.run(works, cli.url, token)  # enabling it again revives nothing
    cli("client", "update", client["client_id"], "--name", "Renamed")
    cli("connections", "revoke", "--account", account)
    cli("account", "update", account, "--live")
    cli("partner", "disallow", partner["key_id"], client["client_id"])
    cli("account", "delete", account)
    cli("partner", "delete", partner["key_id"])
    cli("client", "delete", client["client_id"])
    lines = [r.getMessage() for r in caplog.records if r.name == "starlette_broker_oauth.audit"]
    audit = [json.loads(line) for line in lines]
    assert {record["schema"] for record in audit} == {"starlette_broker_oauth.audit/1"}
    assert [
        (record["subject"], record["action"])
        for record in audit
        if record["event"] == "AdminChange"
    ] == [
        ("client", "created"),
        ("partner", "created"),
        ("partner", "client_allowed"),
        ("account", "created"),
        ("client", "disabled"),
        ("client", "secret_rotated"),
        ("client", "enabled"),
        ("client", "updated"),
        ("account", "updated"),
        ("partner", "client_disallowed"),
        ("account", "deleted"),
        ("partner", "deleted"),
        ("client", "deleted"),
    ]
    revoked = [record for record in audit if record["event"] == "TokenRevoked"]
    assert len(revoked) == 1
    assert revoked[0]["reason"] == "client_disabled"
    assert revoked[0]["client_id"] == client["client_id"]
    assert any(record["event"] == "ConnectionRevoked" for record in audit)
    assert all(client["client_secret"] not in line for line in lines)


def test_a_read_command_creates_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --database-url is said as such: a read command neither creates the file
    nor answers "no clients" as if every client were gone."""
    typo = tmp_path / "amdin.db"
    url = f"sqlite+aiosqlite:///{typo}"
    for command in (
        ["client", "list"],
        ["partner", "show", "p"],
        ["account", "list"],
        ["connections", "list", "--account", str(uuid.uuid4())],
        ["db", "current"],
    ):
        assert main([*command, "--database-url", url]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            f"there is no SQLite database at {typo}: check --database-url, or create it "
            "with 'broker-oauth db upgrade'\n"
        )
        assert not typo.exists()
    # A file without the tables (another program's, or a wrong --table-prefix).
    sqlite3.connect(typo).close()
    assert main(["client", "list", "--database-url", url, "--table-prefix", "x_"]) == 1
    assert capsys.readouterr().err == (
        f"the database at {typo} has no tables: check --database-url and --table-prefix, "
        "or create them with 'broker-oauth db upgrade'\n"
    )
    assert main(["db", "current", "--database-url", url]) == 0
    assert capsys.readouterr().out == "none\n"


def test_client_create_asks_for_the_least(cli: CLI) -> None:
    """A client gets the least scope unless more is asked for; an unknown scope and a
    wildcard-looking redirect URI are refused in one line; stored control characters are
    shown escaped, never sent to the terminal."""
    least = cli.json("client", "create", "--name", "A", "--redirect-uri", "https://a.example/cb")
    assert cli.json("client", "show", least["client_id"])["scopes"] == ["general"]
    every = cli.json(
        "client", "create", "--name", "B", "--redirect-uri", "https://b.example/cb", "--all-scopes"
    )
    assert cli.json("client", "show", every["client_id"])["scopes"] is None
    assert cli.fails(
        "client",
        "create",
        "--name",
        "C",
        "--redirect-uri",
        "https://c.example/cb",
        "--scope",
        "tradng",
        code=2,
    ) == (
        "broker-oauth client create: argument --scope: unknown scope 'tradng' (supported: "
        "account:write data general trading; a platform with scopes of its own sets "
        "BROKER_OAUTH_SCOPES) (see 'broker-oauth client create --help')"
    )
    assert cli.fails(
        "client", "create", "--name", "D", "--redirect-uri", "https://*.example.com/cb"
    ) == (
        "redirect URI 'https://*.example.com/cb' looks like a wildcard: redirect URIs are "
        "matched exactly, so register each one"
    )
    sneaky = cli.json(
        "client", "create", "--name", "E\x1b[2J\rOK", "--redirect-uri", "https://e.example/cb"
    )
    shown = cli("client", "show", sneaky["client_id"])
    assert "E\\x1b[2J\\rOK" in shown
    assert "\x1b" not in shown
    assert "\r" not in shown
    assert "\x1b" not in cli("client", "list")


def test_an_unknown_revision_is_one_plain_line(cli: CLI) -> None:
    assert cli.fails("db", "upgrade", "--revision", "nonsense") == (
        "unknown revision 'nonsense': give head or one of "
        "0001, 0002, 0003, 0004, 0005, 0006, 0007, 0008, 0009"
    )
    assert cli("db", "current") == "0009\n"  # nothing changed
