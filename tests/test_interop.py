"""Full round trips with OAuth client libraries written elsewhere: Authlib's httpx client
and requests-oauthlib over the partner consent flow of the seed, and panva's certified
openid-client (on Node) over the demo platform's hosted consent."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
import requests
from authlib.integrations.httpx_client import AsyncOAuth2Client
from requests_oauthlib import OAuth2Session

from starlette_broker_oauth import OAuthSettings

from .conftest import (
    BACKENDS,
    ISSUER,
    Platform,
    build_platform,
    drop_tables,
    free_port,
    new_storage,
    seed_platform,
    serve,
)
from .test_cli import demo

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


@pytest.mark.anyio
@pytest.mark.parametrize("method", AUTH_METHODS)
@pytest.mark.parametrize("pkce", [True, False], ids=["pkce", "no-pkce"])
async def test_authlib_httpx_client_round_trip(platform: Platform, method: str, pkce: bool) -> None:
    app_client = AsyncOAuth2Client(
        client_id=platform.client_id,
        client_secret=platform.client_secret,
        token_endpoint_auth_method=method,
        redirect_uri=platform.redirect_uri,
        scope="general trading",
        code_challenge_method="S256" if pkce else None,
        transport=httpx2.ASGITransport(app=platform.app),
    )
    async with app_client:
        extra = {"code_verifier": "v" * 20 + "-" * 30} if pkce else {}
        url, state = app_client.create_authorization_url(
            platform.settings.authorization_endpoint, **extra
        )
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert ("code_challenge" in query) is pkce
        body = {
            "client_id": query["client_id"],
            "client_secret": platform.client_secret,
            "redirect_uri": query["redirect_uri"],
            "scope": query["scope"],
            "account_id": str(platform.paper_account),
        } | {k: query[k] for k in ("code_challenge", "code_challenge_method") if k in query}
        issued = await platform.http.post("/v1/oauth/authorize", json=body, auth=platform.partner)
        assert issued.status_code == 200, issued.text
        callback = f"{platform.redirect_uri}?code={issued.json()['code']}&state={state}"
        token = await app_client.fetch_token(
            f"{ISSUER}/oauth/token", authorization_response=callback, **extra
        )
        assert token["token_type"] == "Bearer"
        me = await app_client.get(f"{ISSUER}/v2/account")
        assert me.status_code == 200
        assert me.json()["account_id"] == str(platform.paper_account)
        revoked = await platform.http.delete(
            f"/v1/oauth/token/{token['access_token']}", auth=platform.partner
        )
        assert revoked.status_code == 204
        after = await app_client.get(f"{ISSUER}/v2/account")
        assert after.status_code == 401
        assert after.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", AUTH_METHODS)
@pytest.mark.parametrize("pkce", [True, False], ids=["pkce", "no-pkce"])
def test_requests_oauthlib_round_trip(
    backend: str, method: str, pkce: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oauthlib insists on https unless told otherwise; the server here is on loopback.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    storage = new_storage(backend, tmp_path)
    settings = OAuthSettings(issuer="http://127.0.0.1", authorization_endpoint="https://p/c")

    async def seed() -> Platform:
        async with storage:
            world = await seed_platform(backend, storage, settings)
            await world.http.aclose()
            return world

    world = anyio.run(seed)
    try:
        run_round_trip(world, method, pkce)
    finally:
        anyio.run(drop_tables, storage)


def run_round_trip(world: Platform, method: str, pkce: bool) -> None:
    with serve(build_platform(world.storage, world.settings)) as base:
        session = OAuth2Session(
            world.client_id,
            redirect_uri=world.redirect_uri,
            scope=["general", "trading"],
            pkce="S256" if pkce else None,
        )
        url, state = session.authorization_url("https://partner.example/consent")
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        body = {
            "client_id": query["client_id"],
            "client_secret": world.client_secret,
            "redirect_uri": query["redirect_uri"],
            "scope": query["scope"],
            "account_id": str(world.paper_account),
        } | {k: query[k] for k in ("code_challenge", "code_challenge_method") if k in query}
        issued = requests.post(
            f"{base}/v1/oauth/authorize", data=body, auth=world.partner, timeout=10
        )
        assert issued.status_code == 200, issued.text
        callback = f"{world.redirect_uri}?code={issued.json()['code']}&state={state}"
        token = session.fetch_token(
            f"{base}/oauth/token",
            authorization_response=callback,
            client_secret=world.client_secret,
            include_client_id=method == "client_secret_post",
            timeout=10,
        )
        assert token["token_type"] == "Bearer"
        me = session.get(f"{base}/v2/account", timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["scope"] == "general trading"
        gone = requests.delete(
            f"{base}/v1/oauth/token/{token['access_token']}", auth=world.partner, timeout=10
        )
        assert gone.status_code == 204
        assert session.get(f"{base}/v2/account", timeout=10).status_code == 401


# --- a certified client on Node: openid-client (panva), on oauth4webapi ---------------------

NODE_DIR = Path(__file__).parent / "node"
NODE_STEPS = [
    "discovery",
    "authorization",
    "code exchange",
    "protected route",
    "refresh",
    "introspection (active)",
    "revocation",
    "introspection (revoked)",
    "protected route refuses a revoked token",
    "old refresh token refused",
    "replayed code refused",
    "wrong secret refused",
]


@pytest.fixture(scope="session")
def node_client() -> Path:
    """openid-client and oauth4webapi at the versions the lock file pins, installed by npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js 20+ and npm are needed for the interop suite (apt-get install nodejs)")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        check=True,
        timeout=300,
    )
    return Path(node)


@pytest.mark.parametrize("method", AUTH_METHODS)
def test_openid_client_standard_flow(node_client: Path, method: str, tmp_path: Path) -> None:
    """The demo platform, driven by openid-client from discovery to a replayed code: PKCE,
    state and ``iss`` checked, consent given through the demo's forms, the code exchanged
    with ``method``, the guarded route called, the refresh token rotated and the old one
    refused, introspection before and after revocation, a wrong secret refused."""
    with demo(tmp_path, free_port()):
        run = subprocess.run(
            [str(node_client), str(NODE_DIR / "standard_flow.mjs"), "credentials.json", method],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr + run.stdout
    report = json.loads(run.stdout.splitlines()[-1])
    assert report == {"method": method, "steps": NODE_STEPS}


FAPI_STEPS = [
    "discovery",
    "pushed authorization request and consent",
    "front channel without PAR refused",
    "code exchange (private_key_jwt, DPoP)",
    "protected route with DPoP",
    "bound token refused as Bearer",
    "refresh with DPoP",
    "revocation",
]


def test_openid_client_fapi_flow(node_client: Path, tmp_path: Path) -> None:
    """The demo platform under the FAPI 2.0 profile (``broker-oauth demo --fapi``), driven
    by openid-client: discovery (the profile's metadata), a pushed authorization request
    authenticated with ``private_key_jwt`` carrying PKCE and ``dpop_jkt``, consent given in
    headless Chromium (playwright-core on Debian's chromium), the code exchanged with a
    DPoP proof, DPoP-bound calls to the guarded route (the same token
    as Bearer refused), refresh with DPoP, revocation after which the route refuses with a
    DPoP challenge; a front-channel request without PAR refused."""
    with demo(tmp_path, free_port(), "--fapi") as creds:
        assert "client_private_jwk" in creds
        run = subprocess.run(
            [str(node_client), str(NODE_DIR / "fapi_flow.mjs"), "credentials.json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr + run.stdout
    report = json.loads(run.stdout.splitlines()[-1])
    assert report == {"steps": FAPI_STEPS}
