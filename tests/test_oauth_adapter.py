"""The Authlib adapter carries what a request has already read on the request itself.

The partner endpoints read the client and the account before Authlib runs. Client
authentication compares the secret with that client record (``OAuthRequest.known_client``)
and the grant issues for that account (``OAuthRequest.user``), so neither is read again;
and since nothing of a request is kept anywhere but on its own request object, concurrent
requests never see each other's records.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from starlette_broker_oauth import (
    Account,
    AuthorizationCode,
    Client,
    MemoryStorage,
    OAuthSettings,
    create_oauth_app,
)
from starlette_broker_oauth._oauth.requests import OAuthRequest, ParamsPayload
from starlette_broker_oauth.models import AccessToken

from .conftest import ISSUER, REDIRECT_URI, pkce_pair

pytestmark = pytest.mark.anyio


class SlowStorage(MemoryStorage):
    """Memory storage that logs client and account reads and code and token writes, and
    yields to other tasks before each."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []

    async def get_client(self, client_id: str) -> Client | None:
        self.log.append(("client", client_id))
        await anyio.sleep(0.01)
        return await super().get_client(client_id)

    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        self.log.append(("account", str(account_id)))
        await anyio.sleep(0.01)
        return await super().get_account(account_id)

    async def save_code(self, code: AuthorizationCode) -> None:
        self.log.append(("write", code.client_id))
        await anyio.sleep(0.01)
        await super().save_code(code)

    async def save_token(self, token: AccessToken) -> None:
        self.log.append(("write", token.client_id))
        await anyio.sleep(0.01)
        await super().save_token(token)


@dataclass
class App:
    """A registered client of the partner, and an account the partner may act for."""

    client_id: str
    client_secret: str
    account_id: uuid.UUID


@dataclass
class World:
    storage: SlowStorage
    http: httpx.AsyncClient
    partner: tuple[str, str]
    apps: list[App]

    def body(self, app: App, **extra: str) -> dict[str, Any]:
        return {
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "redirect_uri": REDIRECT_URI,
            "scope": "general",
            "account_id": str(app.account_id),
            **extra,
        }

    async def introspect(self, app: App, token: str) -> dict[str, Any]:
        response = await self.http.post(
            "/oauth/introspect", data={"token": token}, auth=(app.client_id, app.client_secret)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def world() -> AsyncIterator[World]:
    storage = SlowStorage()
    async with storage:
        partner = await storage.create_partner(name="Correspondent")
        apps = []
        for name in ("First", "Second"):
            creds = await storage.create_client(name=name, redirect_uris=[REDIRECT_URI])
            await storage.allow_partner_client(partner.key_id, creds.client_id)
            account = await storage.create_account()
            apps.append(App(creds.client_id, creds.client_secret, account.account_id))
        app = create_oauth_app(settings=OAuthSettings(issuer=ISSUER), storage=storage)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield World(storage, http, (partner.key_id, partner.secret), apps)


@pytest.mark.parametrize("path", ["/v1/oauth/authorize", "/v1/oauth/token"])
async def test_the_partner_endpoints_read_the_client_and_the_account_once(
    world: World, path: str
) -> None:
    app = world.apps[0]
    response = await world.http.post(path, json=world.body(app), auth=world.partner)
    assert response.status_code == 200, response.text
    written = world.storage.log.index(("write", app.client_id))
    # The partner endpoint's reads; Authlib's client authentication and the grant use them.
    assert world.storage.log[:written] == [
        ("client", app.client_id),
        ("account", str(app.account_id)),
    ]


async def test_concurrent_codes_keep_their_own_client_and_account(world: World) -> None:
    verifiers: dict[str, str] = {}
    codes: dict[str, str] = {}

    async def authorize(app: App) -> None:
        verifier, challenge = pkce_pair()
        verifiers[app.client_id] = verifier
        body = world.body(app, code_challenge=challenge, code_challenge_method="S256")
        response = await world.http.post("/v1/oauth/authorize", json=body, auth=world.partner)
        assert response.status_code == 200, response.text
        assert response.json()["client_id"] == app.client_id
        codes[app.client_id] = response.json()["code"]

    async with anyio.create_task_group() as tasks:
        for app in world.apps:
            tasks.start_soon(authorize, app)
    for app in world.apps:
        data = {
            "grant_type": "authorization_code",
            "code": codes[app.client_id],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifiers[app.client_id],
        }
        response = await world.http.post(
            "/oauth/token", data=data, auth=(app.client_id, app.client_secret)
        )
        assert response.status_code == 200, response.text
        about = await world.introspect(app, response.json()["access_token"])
        assert (about["client_id"], about["sub"]) == (app.client_id, str(app.account_id))


async def test_concurrent_tokens_keep_their_own_client_and_account(world: World) -> None:
    tokens: dict[str, str] = {}

    async def issue(app: App) -> None:
        response = await world.http.post(
            "/v1/oauth/token", json=world.body(app), auth=world.partner
        )
        assert response.status_code == 200, response.text
        tokens[app.client_id] = response.json()["access_token"]

    async with anyio.create_task_group() as tasks:
        for app in world.apps:
            tasks.start_soon(issue, app)
    for app in world.apps:
        about = await world.introspect(app, tokens[app.client_id])
        assert (about["client_id"], about["sub"]) == (app.client_id, str(app.account_id))


def test_a_request_carries_every_value_and_the_records_it_was_given() -> None:
    client = Client(client_id="c", secret_hash="h", name="n", redirect_uris=(REDIRECT_URI,))
    account = Account(account_id=uuid.uuid4(), live=False)
    request = OAuthRequest(
        method="POST",
        uri=ISSUER + "/v1/oauth/authorize",
        headers={},
        params={"scope": ["a", "b"], "state": ["s"], "empty": []},
        partner_flow=True,
        known_client=client,
        account=account,
    )
    assert isinstance(request.payload, ParamsPayload)
    assert request.payload.data == request.form == request.args == {"scope": "a", "state": "s"}
    assert request.payload.datalist == {"scope": ["a", "b"], "state": ["s"], "empty": []}
    assert (request.known_client, request.user, request.client) == (client, account, None)
    assert request.endpoint == "authorize"
