"""``broker-oauth demo``: the README's first command, driven the way a script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from .conftest import free_port


@contextmanager
def demo(tmp_path: Path, port: int) -> Iterator[dict[str, str]]:
    """Run ``broker-oauth demo`` in ``tmp_path`` until the block ends; yield its credentials
    JSON. What it prints is appended to ``tmp_path / "demo.log"``."""
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


def test_admin_commands_set_up_a_working_platform(tmp_path: Path) -> None:
    import anyio
    import httpx

    from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage

    from .conftest import ISSUER, build_platform

    url = f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}"
    client = json.loads(
        admin(
            url,
            "client",
            "create",
            "--name",
            "App",
            "--redirect-uri",
            "https://a/cb",
            "--scope",
            "general",
            "--scope",
            "data",
        ).stdout
    )
    partner = json.loads(admin(url, "partner", "create", "--name", "Broker").stdout)
    assert admin(url, "partner", "allow", partner["key_id"], client["client_id"]).returncode == 0
    account = json.loads(admin(url, "account", "create", "--live").stdout)
    assert account["live"] is True
    paper = json.loads(admin(url, "account", "create").stdout)
    missing = admin(url, "partner", "allow", "nobody", client["client_id"])
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert admin(url, "client", "disable", "nobody").returncode == 1

    async def use() -> list[int]:
        async with SQLAlchemyStorage(url) as storage:
            app = build_platform(storage, OAuthSettings(issuer=ISSUER))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                body = {
                    "client_id": client["client_id"],
                    "client_secret": client["client_secret"],
                    "redirect_uri": "https://a/cb",
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
    rotated = json.loads(admin(url, "client", "rotate-secret", client["client_id"]).stdout)
    assert rotated["client_secret"] != client["client_secret"]
    assert (
        json.loads(admin(url, "client", "disable", client["client_id"]).stdout)["status"]
        == "DISABLED"
    )
    new_partner = json.loads(admin(url, "partner", "rotate-secret", partner["key_id"]).stdout)
    assert new_partner["secret"] != partner["secret"]


def test_account_ownership_commands(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'owners.db'}"
    first = json.loads(admin(url, "partner", "create", "--name", "First").stdout)
    owned = json.loads(admin(url, "account", "create", "--partner", first["key_id"]).stdout)
    assert owned["partner"] == first["key_id"]
    loose = json.loads(admin(url, "account", "create").stdout)
    given = admin(url, "account", "give", loose["account_id"], first["key_id"])
    assert json.loads(given.stdout) == {
        "account_id": loose["account_id"],
        "partner": first["key_id"],
    }
    unknown_partner = admin(url, "account", "create", "--partner", "nobody")
    assert (unknown_partner.returncode, unknown_partner.stderr.strip()) == (
        1,
        "unknown partner 'nobody'",
    )
    assert admin(url, "account", "give", loose["account_id"], "nobody").returncode == 1
    missing = admin(url, "account", "give", "00000000-0000-0000-0000-000000000000", first["key_id"])
    assert (missing.returncode, missing.stderr.strip()) == (1, "not found")
    gone = admin(url, "connections", "list", "--account", "00000000-0000-0000-0000-000000000000")
    assert (gone.returncode, gone.stderr.strip()) == (
        1,
        "unknown account 00000000-0000-0000-0000-000000000000",
    )


def test_demo_login(tmp_path: Path) -> None:
    import anyio
    import httpx

    from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage
    from starlette_broker_oauth._demo import build_platform, seed

    base = "http://127.0.0.1:8000"

    async def use() -> None:
        async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}") as storage:
            await seed(storage, base_url=base, password="right-password")
            app = build_platform(storage, OAuthSettings(issuer=base), password="right-password")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=base) as http:
                assert 'href="/login?next=%2F"' in (await http.get("/")).text
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
                out = await http.get("/logout", params={"next": "/oauth/connections"})
                assert (out.status_code, out.headers["location"]) == (
                    303,
                    "/login?next=%2Foauth%2Fconnections",
                )
                again = await http.get("/oauth/connections")
                assert again.is_redirect
                assert again.headers["location"] == "/login?next=%2Foauth%2Fconnections"

    anyio.run(use)


def test_connections_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import anyio
    import httpx

    from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage
    from starlette_broker_oauth.cli import main

    from .conftest import ISSUER, build_platform

    url = f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}"

    def run(*args: str) -> str:
        assert main([*args, "--database-url", url]) == 0
        return capsys.readouterr().out

    partner = json.loads(run("partner", "create", "--name", "Broker"))
    clients = []
    for name in ("Charts", "Journal"):
        clients.append(
            json.loads(
                run(
                    "client",
                    "create",
                    "--name",
                    name,
                    "--redirect-uri",
                    "https://a/cb",
                    "--scope",
                    "general",
                    "--scope",
                    "data",
                )
            )
        )
        run("partner", "allow", partner["key_id"], clients[-1]["client_id"])
    account = json.loads(run("account", "create"))["account_id"]
    charts, journal = (c["client_id"] for c in clients)

    async def issue(client: dict[str, str], scope: str) -> str:
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
                        "redirect_uri": "https://a/cb",
                        "scope": scope,
                        "account_id": account,
                    },
                )
                token: str = answer.json()["access_token"]
                return token

    async def works(token: str) -> bool:
        async with SQLAlchemyStorage(url) as storage:
            app = build_platform(storage, OAuthSettings(issuer=ISSUER))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                answer = await http.get("/v2/account", headers={"Authorization": f"Bearer {token}"})
                return answer.status_code == 200

    assert run("connections", "list", "--account", account) == (
        f"no apps connected to account {account}\n"
    )
    tokens = [
        anyio.run(issue, clients[0], "general"),
        anyio.run(issue, clients[0], "data"),
        anyio.run(issue, clients[1], "general"),
    ]
    listed = json.loads(run("connections", "list", "--account", account, "--json"))
    assert sorted((c["client_id"], c["scope"]) for c in listed) == sorted(
        [(charts, "data general"), (journal, "general")]
    )
    assert all(c["account_id"] == account for c in listed)
    assert all(c["connected_at"] <= c["last_issued_at"] for c in listed)
    table = run("connections", "list", "--account", account)
    assert charts in table
    assert journal in table

    revoked = run("connections", "revoke", "--account", account, "--client", charts)
    assert revoked.startswith("revoked 2 access tokens")
    assert [anyio.run(works, t) for t in tokens] == [False, False, True]
    listed = json.loads(run("connections", "list", "--account", account, "--json"))
    assert [c["client_id"] for c in listed] == [journal]
    assert run("connections", "revoke", "--account", account).startswith("revoked 1 access token ")
    assert run("connections", "revoke", "--account", account).startswith("revoked 0 access tokens")
    assert json.loads(run("connections", "list", "--account", account, "--json")) == []
    assert not anyio.run(works, tokens[2])


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
