"""Every file in examples/ runs."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

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


def test_third_party_app_against_the_demo(tmp_path: Path) -> None:
    with demo(tmp_path, free_port()) as credentials:
        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "third_party_app.py"),
                str(tmp_path / "credentials.json"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["scope"] == "general trading"
    assert output["account"]["account_id"] == credentials["paper_account_id"]


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
