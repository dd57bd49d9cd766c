"""Several partners on one platform: each acts only for its own accounts, and a partner's
DELETE cuts the whole grant. Over every backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Platform, full_settings, open_storage, pkce_pair, seed_full_platform

pytestmark = pytest.mark.anyio

UNKNOWN_ACCOUNT = {"code": 42210000, "message": "Unknown 'account_id'."}


@dataclass
class Tenants:
    world: Platform
    a: tuple[str, str]  # partner A's credentials
    b: tuple[str, str]
    account_a: uuid.UUID
    account_b: uuid.UUID


@pytest.fixture
async def tenants(backend: str, tmp_path: Path) -> AsyncIterator[Tenants]:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings())
        second = await storage.create_partner(name="Second broker")
        await storage.allow_partner_client(second.key_id, world.client_id)
        account_a = world.paper_account
        assert await storage.give_account(account_a, world.partner[0])
        account_b = (await storage.create_account(partner=second.key_id)).account_id
        async with world.http:
            yield Tenants(
                world, world.partner, (second.key_id, second.secret), account_a, account_b
            )


async def issue(t: Tenants, path: str, partner: tuple[str, str], account: uuid.UUID) -> object:
    return await t.world.http.post(
        path, json=t.world.grant_body(account_id=str(account)), auth=partner
    )


@pytest.mark.parametrize("path", ["/v1/oauth/token", "/v1/oauth/authorize"])
async def test_a_partner_acts_only_for_its_own_accounts(tenants: Tenants, path: str) -> None:
    t = tenants
    for partner, own, foreign in ((t.a, t.account_a, t.account_b), (t.b, t.account_b, t.account_a)):
        mine = await t.world.http.post(
            path, json=t.world.grant_body(account_id=str(own)), auth=partner
        )
        assert mine.status_code == 200, mine.text
        theirs = await t.world.http.post(
            path, json=t.world.grant_body(account_id=str(foreign)), auth=partner
        )
        unknown = await t.world.http.post(
            path, json=t.world.grant_body(account_id=str(uuid.uuid4())), auth=partner
        )
        # Another partner's account is refused exactly like one that does not exist.
        assert (theirs.status_code, theirs.json()) == (422, UNKNOWN_ACCOUNT)
        assert (unknown.status_code, unknown.json()) == (422, UNKNOWN_ACCOUNT)


async def test_an_unowned_account_is_refused_once_there_are_several_partners(
    tenants: Tenants,
) -> None:
    t = tenants
    nobodys = await t.world.storage.create_account()
    for partner in (t.a, t.b):
        answer = await t.world.http.post(
            "/v1/oauth/token",
            json=t.world.grant_body(account_id=str(nobodys.account_id)),
            auth=partner,
        )
        assert (answer.status_code, answer.json()) == (422, UNKNOWN_ACCOUNT)


async def test_delete_touches_only_the_partners_own_accounts(tenants: Tenants) -> None:
    t = tenants
    token = (
        await t.world.http.post(
            "/v1/oauth/token", json=t.world.grant_body(account_id=str(t.account_a)), auth=t.a
        )
    ).json()["access_token"]
    # B may use the client, but not A's account: the same 204, and nothing revoked.
    other = await t.world.http.delete(f"/v1/oauth/token/{token}", auth=t.b)
    assert other.status_code == 204
    assert (await t.world.account(token)).status_code == 200
    own = await t.world.http.delete(f"/v1/oauth/token/{token}", auth=t.a)
    assert own.status_code == 204
    assert (await t.world.account(token)).status_code == 401


async def test_partner_delete_cuts_the_whole_grant(tenants: Tenants) -> None:
    """The Broker API's DELETE disconnects: the grant's refresh token stops too."""
    t = tenants
    verifier, challenge = pkce_pair()
    code = await t.world.code(
        account_id=str(t.account_a), code_challenge=challenge, code_challenge_method="S256"
    )
    tokens = (await t.world.exchange(code, code_verifier=verifier)).json()
    refreshed = await t.world.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(t.world.client_id, t.world.client_secret),
    )
    assert refreshed.status_code == 200
    current = refreshed.json()
    deleted = await t.world.http.delete(f"/v1/oauth/token/{current['access_token']}", auth=t.a)
    assert deleted.status_code == 204
    assert (await t.world.account(current["access_token"])).status_code == 401
    again = await t.world.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": current["refresh_token"]},
        auth=(t.world.client_id, t.world.client_secret),
    )
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_a_single_partner_platform_needs_no_setup(full: Platform) -> None:
    """The seeded platform has one partner and accounts nobody was given: they work."""
    account = await full.storage.create_account()
    answer = await full.http.post(
        "/v1/oauth/token",
        json=full.grant_body(account_id=str(account.account_id)),
        auth=full.partner,
    )
    assert answer.status_code == 200
