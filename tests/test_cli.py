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

import requests

from .conftest import free_port


@contextmanager
def demo(tmp_path: Path, port: int) -> Iterator[dict[str, str]]:
    creds = tmp_path / "credentials.json"
    creds.unlink(missing_ok=True)
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
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
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
        if process.stdout:
            process.stdout.close()


def flow(c: dict[str, str], account: str) -> requests.Response:
    partner = (c["partner_key"], c["partner_secret"])
    body = {
        "client_id": c["client_id"],
        "client_secret": c["client_secret"],
        "redirect_uri": c["redirect_uri"],
        "scope": "general trading",
        "account_id": account,
    }
    return requests.post(f"{c['base_url']}/v1/oauth/authorize", json=body, auth=partner, timeout=5)


def test_demo_runs_twice_on_one_file(tmp_path: Path) -> None:
    port = free_port()
    with demo(tmp_path, port) as c:
        assert set(c) == {
            "base_url",
            "partner_key",
            "partner_secret",
            "client_id",
            "client_secret",
            "redirect_uri",
            "paper_account_id",
            "live_account_id",
        }
        assert c["base_url"] == f"http://127.0.0.1:{port}"
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
        assert flow(c, c["live_account_id"]).status_code == 422
        anonymous = requests.get(f"{c['base_url']}/v2/account", timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
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
