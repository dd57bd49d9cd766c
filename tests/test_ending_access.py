"""What ends access, through HTTP and the public API, on every backend: a revocation also
ends the codes issued before it; an admin change that withdraws what a token relied on
stops it on the next token check, introspection and refresh; re-enabling a client revives
nothing; every admin change is an audit event."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from starlette_broker_oauth import ClientStatus, ManagedStorage, MemoryStorage
from starlette_broker_oauth.core import Administrator, ConnectedApps
from starlette_broker_oauth.errors import StorageUnavailable
from starlette_broker_oauth.events import AdminChange, TokenRevoked
from starlette_broker_oauth.models import AccessToken, Client
from starlette_broker_oauth.security import hash_secret

from .conftest import Platform, full_settings, open_storage, pkce_pair, seed_full_platform

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class World:
    platform: Platform
    events: list[Any]

    @property
    def admin(self) -> Administrator:
        assert self.platform.oauth is not None
        admin: Administrator = self.platform.oauth.state.admin
        return admin

    @property
    def apps(self) -> ConnectedApps:
        assert self.platform.oauth is not None
        apps: ConnectedApps = self.platform.oauth.state.connected_apps
        return apps

    @property
    def storage(self) -> ManagedStorage:
        storage = self.platform.storage
        assert isinstance(storage, ManagedStorage)
        return storage

    async def code(self, account: uuid.UUID | None = None, scope: str = "general trading") -> str:
        """A code from the partner endpoint; its PKCE verifier is kept for the exchange."""
        verifier, challenge = pkce_pair()
        code = await self.platform.code(
            account_id=str(account or self.platform.paper_account),
            scope=scope,
            code_challenge=challenge,
            code_challenge_method="S256",
        )
        self.verifiers[code] = verifier
        return code

    verifiers: dict[str, str] = dataclasses.field(default_factory=dict)

    async def exchange(self, code: str, secret: str | None = None) -> httpx.Response:
        p = self.platform
        return await p.http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": p.redirect_uri,
                "code_verifier": self.verifiers[code],
            },
            auth=(p.client_id, secret or p.client_secret),
        )

    async def tokens(self, account: uuid.UUID | None = None) -> dict[str, str]:
        answer = await self.exchange(await self.code(account))
        assert answer.status_code == 200, answer.text
        body: dict[str, str] = answer.json()
        return body

    async def refresh(self, refresh_token: str, secret: str | None = None) -> httpx.Response:
        p = self.platform
        return await p.http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(p.client_id, secret or p.client_secret),
        )

    async def introspect(self, token: str, secret: str | None = None) -> dict[str, Any]:
        p = self.platform
        answer = await p.http.post(
            "/oauth/introspect",
            data={"token": token},
            auth=(p.client_id, secret or p.client_secret),
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def works(self, token: str) -> bool:
        answer = await self.platform.account(token)
        assert answer.status_code in (200, 401), answer.text
        if answer.status_code == 401:
            assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        return answer.status_code == 200


@pytest.fixture(params=["uncached", "cached"])
async def world(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> AsyncIterator[World]:
    """A platform with refresh tokens, hosted pages and audit events; with the token
    cache off, and on (every revocation must reach it)."""
    events: list[Any] = []
    ttl = timedelta(minutes=10) if request.param == "cached" else timedelta(0)
    async with open_storage(backend, tmp_path) as storage:
        platform = await seed_full_platform(
            backend, storage, full_settings(token_cache_ttl=ttl), events=events
        )
        async with platform.http:
            yield World(platform, events)


def refused_grant(answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"
    assert answer.headers["cache-control"] == "no-store"


# A code issued just before a revocation is refused after it.

REVOCATIONS = [
    "disconnect",
    "disconnect_all",
    "partner_delete",
    "revoke_refresh_token",
    "refresh_reuse",
    "code_replay",
    "client_disabled",
    "account_made_live",
]


@pytest.mark.parametrize("revocation", REVOCATIONS)
async def test_a_code_issued_before_a_revocation_is_refused_after_it(
    world: World, revocation: str
) -> None:
    p = world.platform
    first_code = await world.code()
    first = (await world.exchange(first_code)).json()
    assert await world.works(first["access_token"])
    pending = await world.code()  # issued, not yet exchanged
    if revocation == "disconnect":
        assert await world.apps.disconnect(p.paper_account, p.client_id) == 1
    elif revocation == "disconnect_all":
        assert await world.apps.disconnect_all(p.paper_account) == 1
    elif revocation == "partner_delete":
        gone = await p.http.delete(f"/v1/oauth/token/{first['access_token']}", auth=p.partner)
        assert gone.status_code == 204
    elif revocation == "revoke_refresh_token":
        revoked = await p.http.post(
            "/oauth/revoke",
            data={"token": first["refresh_token"]},
            auth=(p.client_id, p.client_secret),
        )
        assert revoked.status_code == 200
    elif revocation == "refresh_reuse":
        assert (await world.refresh(first["refresh_token"])).status_code == 200
        refused_grant(await world.refresh(first["refresh_token"]))
    elif revocation == "code_replay":
        refused_grant(await world.exchange(first_code))
    elif revocation == "client_disabled":
        assert await world.admin.disable_client(p.client_id)
        assert await world.admin.enable_client(p.client_id)
    else:
        assert await world.admin.update_account(p.paper_account, live=True) is not None
    refused_grant(await world.exchange(pending))
    assert not await world.works(first["access_token"])
    assert await world.apps.list(p.paper_account) == []
    if revocation != "account_made_live":  # (the account is live now: the app may not)
        # The app connects again only through a new consent.
        fresh = await world.tokens()
        assert await world.works(fresh["access_token"])


async def test_a_revocation_leaves_other_apps_and_accounts_alone(world: World) -> None:
    p = world.platform
    other_account = await world.storage.create_account(partner=p.partner[0])
    elsewhere = await world.code(other_account.account_id)
    await world.tokens()
    assert await world.apps.disconnect(p.paper_account, p.client_id) == 1
    answer = await world.exchange(elsewhere)
    assert answer.status_code == 200, answer.text


# Admin changes that withdraw what a token relied on.


async def test_disable_rotate_enable_revives_nothing(world: World) -> None:
    p = world.platform
    tokens = await world.tokens()
    pending = await world.code()
    assert await world.admin.disable_client(p.client_id)
    rotated = await world.admin.rotate_client_secret(p.client_id)
    assert rotated is not None
    assert await world.admin.enable_client(p.client_id)
    secret = p.client_secret = rotated.client_secret
    assert not await world.works(tokens["access_token"])
    assert await world.introspect(tokens["access_token"], secret) == {"active": False}
    assert await world.introspect(tokens["refresh_token"], secret) == {"active": False}
    refused_grant(await world.refresh(tokens["refresh_token"], secret))
    refused_grant(await world.exchange(pending, secret))
    # New consent works again.
    again = await world.exchange(await world.code(), secret)
    assert again.status_code == 200
    assert await world.works(again.json()["access_token"])
    changes = [(e.subject, e.action) for e in world.events if isinstance(e, AdminChange)]
    assert changes == [
        ("client", "disabled"),
        ("client", "secret_rotated"),
        ("client", "enabled"),
    ]
    [disabled] = [e for e in world.events if isinstance(e, AdminChange) and e.revoked]
    assert (disabled.action, disabled.revoked) == ("disabled", 1)
    [revoked] = [e for e in world.events if isinstance(e, TokenRevoked)]
    assert (revoked.reason, revoked.client_id) == ("client_disabled", p.client_id)


@pytest.mark.parametrize("through", ["admin", "storage"])
async def test_withdrawn_live_approval_stops_tokens_on_live_accounts(
    world: World, through: str
) -> None:
    """Through the admin service the live tokens are revoked; changed in the storage
    behind its back (a platform's own client registry), every check still refuses them."""
    p = world.platform
    await world.admin.update_client(p.client_id, live_trading_approved=True)
    live = await world.tokens(p.live_account)
    paper = await world.tokens(p.paper_account)
    assert await world.works(live["access_token"])
    if through == "admin":
        await world.admin.update_client(p.client_id, live_trading_approved=False)
    else:
        await world.storage.update_client(p.client_id, live_trading_approved=False)
        if world_cached(world):
            # No announcement reached the cache: the bound is its TTL. Drop it here to
            # show the per-use check itself.
            verifier = p.oauth.state.token_verifier if p.oauth is not None else None
            assert verifier is not None
            verifier.clear()
    assert not await world.works(live["access_token"])
    assert (await world.introspect(live["access_token"]))["active"] is False
    refused_grant(await world.refresh(live["refresh_token"]))
    assert await world.works(paper["access_token"])
    assert (await world.introspect(paper["access_token"]))["active"] is True
    if through == "admin":
        # Approval given again revives none of them: they were revoked.
        await world.admin.update_client(p.client_id, live_trading_approved=True)
        assert not await world.works(live["access_token"])
        [change] = [e for e in world.events if isinstance(e, AdminChange) and e.revoked]
        assert (change.action, change.changes, change.revoked) == (
            "updated",
            ("live_trading_approved",),
            1,
        )


def world_cached(world: World) -> bool:
    return world.platform.settings.token_cache_ttl > timedelta(0)


async def test_narrowed_scopes_end_the_clients_grants(world: World) -> None:
    """Narrowing ends every grant of the client, pending codes included; widening the
    scopes again revives none; apps connect again for what they may still have."""
    p = world.platform
    both = await world.tokens()  # general trading
    narrow = (await world.exchange(await world.code(scope="general"))).json()
    pending = await world.code()  # general trading, not yet exchanged
    await world.admin.update_client(p.client_id, scopes=["general"])
    for token in (both, narrow):
        assert not await world.works(token["access_token"])
        assert (await world.introspect(token["access_token"]))["active"] is False
        refused_grant(await world.refresh(token["refresh_token"]))
    refused_grant(await world.exchange(pending))
    again = await world.exchange(await world.code(scope="general"))
    assert again.status_code == 200
    assert await world.works(again.json()["access_token"])
    await world.admin.update_client(p.client_id, scopes=None)  # every scope again
    for token in (both, narrow):
        assert not await world.works(token["access_token"])
        refused_grant(await world.refresh(token["refresh_token"]))
    [change] = [e for e in world.events if isinstance(e, AdminChange) and e.revoked]
    assert (change.changes, change.revoked) == (("scopes",), 2)


async def test_a_code_narrowed_in_a_registry_of_its_own_is_refused(world: World) -> None:
    """Scopes changed behind the admin service's back: a pending code that holds a scope
    the client may no longer have is not exchanged."""
    p = world.platform
    pending = await world.code()  # general trading
    await world.storage.update_client(p.client_id, scopes=["general"])
    refused = await world.exchange(pending)
    refused_grant(refused)
    assert refused.json()["error_description"] == (
        "The code holds a scope the client may no longer have."
    )


async def test_a_pending_code_for_a_live_account_dies_with_the_approval(world: World) -> None:
    p = world.platform
    await world.admin.update_client(p.client_id, live_trading_approved=True)
    pending = await world.code(p.live_account)
    await world.admin.update_client(p.client_id, live_trading_approved=False)
    refused_grant(await world.exchange(pending))
    await world.admin.update_client(p.client_id, live_trading_approved=True)
    refused_grant(await world.exchange(pending))  # approval given again revives it not


@pytest.mark.parametrize(
    "change", ["disable", "delete_client", "withdraw_live", "narrow", "make_live", "delete_account"]
)
async def test_an_issuance_racing_an_admin_change_does_not_survive_it(
    world: World, change: str
) -> None:
    """The change lands between an issuance's check and its write: the issuance, checking
    again after its write, revokes what it stored and refuses."""
    p = world.platform
    await world.admin.update_client(p.client_id, live_trading_approved=True)
    account = p.live_account if change == "withdraw_live" else p.paper_account
    admin = world.admin
    original = world.storage.save_token
    raced: list[str] = []

    async def save_after_the_change(token: Any) -> None:
        # The change commits while this issuance is between its check and its write.
        if not raced:
            raced.append(change)
            if change == "disable":
                await admin.disable_client(p.client_id)
            elif change == "delete_client":
                await admin.delete_client(p.client_id)
            elif change == "withdraw_live":
                await admin.update_client(p.client_id, live_trading_approved=False)
            elif change == "narrow":
                await admin.update_client(p.client_id, scopes=["data"])
            elif change == "make_live":
                await admin.update_account(account, live=True)
            else:
                await admin.delete_account(account)
        await original(token)

    world.storage.save_token = save_after_the_change  # type: ignore[method-assign]
    try:
        answer = await p.http.post(
            "/v1/oauth/token",
            json=p.grant_body(account_id=str(account), scope="general"),
            auth=p.partner,
        )
    finally:
        world.storage.save_token = original  # type: ignore[method-assign]
    assert raced == [change]
    assert answer.status_code in (401, 422), answer.text
    tokens = await world.storage.list_connections(account, now=p.clock.now())
    assert tokens == [], "the raced token survived"


async def test_deleting_the_client_or_the_account_stops_everything(world: World) -> None:
    p = world.platform
    tokens = await world.tokens()
    assert await world.admin.delete_account(p.paper_account)
    assert not await world.works(tokens["access_token"])
    live = await world.admin.update_client(p.client_id, live_trading_approved=True)
    assert live is not None
    other = await world.tokens(p.live_account)
    assert await world.admin.delete_client(p.client_id)
    assert not await world.works(other["access_token"])


async def test_every_admin_change_is_an_audit_event(world: World) -> None:
    admin, p = world.admin, world.platform
    created = await admin.create_client(name="New", redirect_uris=["https://n.example/cb"])
    await admin.update_client(created.client_id, name="Renamed", scopes=["general"])
    await admin.rotate_client_secret(created.client_id)
    await admin.disable_client(created.client_id)
    await admin.enable_client(created.client_id)
    partner = await admin.create_partner(name="Second")
    await admin.update_partner(partner.key_id, name="Second partner")
    await admin.allow_partner_client(partner.key_id, created.client_id)
    await admin.disallow_partner_client(partner.key_id, created.client_id)
    await admin.rotate_partner_secret(partner.key_id)
    account = await admin.create_account(partner=partner.key_id)
    await admin.update_account(account.account_id, live=True)
    await admin.give_account(account.account_id, p.partner[0])
    await admin.delete_account(account.account_id)
    await admin.delete_partner(partner.key_id)
    await admin.delete_client(created.client_id)
    changes = [(e.subject, e.action, e.changes) for e in world.events if isinstance(e, AdminChange)]
    aid = str(account.account_id)
    assert [(s, a, c) for s, a, c in changes] == [
        ("client", "created", ()),
        ("client", "updated", ("name", "scopes")),
        ("client", "secret_rotated", ()),
        ("client", "disabled", ()),
        ("client", "enabled", ()),
        ("partner", "created", ()),
        ("partner", "updated", ("name",)),
        ("partner", "client_allowed", (created.client_id,)),
        ("partner", "client_disallowed", (created.client_id,)),
        ("partner", "secret_rotated", ()),
        ("account", "created", ()),
        ("account", "updated", ("live",)),
        ("account", "given", (p.partner[0],)),
        ("account", "deleted", ()),
        ("partner", "deleted", ()),
        ("client", "deleted", ()),
    ]
    ids = [e.subject_id for e in world.events if isinstance(e, AdminChange)]
    assert ids[10:14] == [aid] * 4
    # No event carries a secret.
    for event in world.events:
        assert created.client_secret not in repr(event)
        assert partner.secret not in repr(event)


async def test_status_is_checked_on_every_use(world: World) -> None:
    """A client disabled in the storage behind the admin service's back (a platform's own
    registry) stops its tokens on the next uncached check."""
    p = world.platform
    tokens = await world.tokens()
    await world.storage.set_client_status(p.client_id, ClientStatus.DISABLED)
    if world_cached(world):
        assert p.oauth is not None
        p.oauth.state.token_verifier.clear()
    assert not await world.works(tokens["access_token"])


@pytest.mark.parametrize("ending", ["disconnect", "refresh_reuse", "disable"])
async def test_no_grant_rotates_its_way_past_a_revocation(world: World, ending: str) -> None:
    """Grants refreshed in a tight loop while their revocation runs: every one of them
    ends (on PostgreSQL, a rotation committing while the revocation waited on its old
    row must not leave a successor behind)."""
    p = world.platform
    grants = [await world.tokens() for _ in range(6)]
    latest = {i: g["refresh_token"] for i, g in enumerate(grants)}
    stop = anyio.Event()

    async def rotate(i: int) -> None:
        for _ in range(500):
            if stop.is_set():
                return
            answer = await world.refresh(latest[i])
            if answer.status_code != 200:
                return
            latest[i] = answer.json()["refresh_token"]
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tasks:
        for i in latest:
            tasks.start_soon(rotate, i)
        await anyio.sleep(0.05)
        if ending == "disconnect":
            await world.apps.disconnect(p.paper_account, p.client_id)
        elif ending == "refresh_reuse":
            refused_grant(await world.refresh(grants[0]["refresh_token"]))
        else:
            await world.admin.disable_client(p.client_id)
            await world.admin.enable_client(p.client_id)
        await anyio.sleep(0.05)
        stop.set()
    survivors = [i for i in latest if (await world.refresh(latest[i])).status_code == 200]
    if ending == "refresh_reuse":
        assert 0 not in survivors  # only the reused grant ends
    else:
        assert survivors == []
        assert await world.apps.list(p.paper_account) == []


class _AwayAfterIssuing(MemoryStorage):
    """A storage whose database goes away right after a token is written: the next read
    fails as an unreachable database does."""

    away = False

    async def save_token(self, token: AccessToken) -> None:
        await super().save_token(token)
        self.away = True

    async def redeem_code(self, *args: Any, **kwargs: Any) -> bool:
        redeemed: bool = await super().redeem_code(*args, **kwargs)
        self.away = True
        return redeemed

    async def get_client(self, client_id: str) -> Client | None:
        if self.away:
            raise StorageUnavailable("the database is away")
        return await super().get_client(client_id)


async def test_a_token_written_before_the_database_went_away_is_answered() -> None:
    """The issuance committed; the check against racing admin changes that follows cannot
    read. The client gets what was stored (not a 503 with a token it never receives, nor
    a used code whose retry would read as a replay)."""
    storage = _AwayAfterIssuing()
    async with storage:
        world = await seed_full_platform("memory", storage, full_settings())
        async with world.http:
            direct = await world.http.post(
                "/v1/oauth/token", json=world.grant_body(), auth=world.partner
            )
            assert direct.status_code == 200, direct.text
            stored = await storage.get_token(hash_secret(direct.json()["access_token"]))
            assert stored is not None
            storage.away = False
            code = await world.code()
            exchanged = await world.exchange(code)
            assert exchanged.status_code == 200, exchanged.text
            storage.away = False
            assert await storage.get_token(hash_secret(exchanged.json()["access_token"]))
