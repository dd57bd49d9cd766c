"""Pushed authorization requests (RFC 9126): the PAR endpoint, the request_uri at the
hosted consent page and the partner's authorize, single use, expiry, binding to the
client, and "PAR required" per client and for the platform."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import httpx2
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starlette_broker_oauth.core.pushed import REQUEST_URI_PREFIX, request_hash

from .conftest import (
    ISSUER,
    REDIRECT_URI,
    Platform,
    full_settings,
    open_storage,
    pkce_pair,
    seed_full_platform,
)
from .test_consent import Form, location, login
from .test_hostile_input import Target, target

__all__ = ["target"]  # the Hypothesis harness's platform, shared with test_hostile_input

pytestmark = pytest.mark.anyio

PAR = "/oauth/par"


def par_body(world: Platform, challenge: str, **overrides: str | None) -> dict[str, str]:
    body: dict[str, str | None] = {
        "response_type": "code",
        "client_id": world.client_id,
        "redirect_uri": world.redirect_uri,
        "scope": "general trading",
        "state": "par-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def push(
    world: Platform, challenge: str | None = None, *, secret: str | None = None, **overrides: Any
) -> httpx.Response:
    """PAR with client_secret_basic."""
    challenge = challenge or pkce_pair()[1]
    return await world.http.post(
        PAR,
        data=par_body(world, challenge, **overrides),
        auth=(world.client_id, secret or world.client_secret),
    )


async def request_uri(world: Platform, challenge: str | None = None, **overrides: Any) -> str:
    response = await push(world, challenge, **overrides)
    assert response.status_code == 201, response.text
    value: str = response.json()["request_uri"]
    return value


def authorize_url(client_id: str, uri: str, **extra: str) -> str:
    return "/oauth/authorize?" + urlencode({"client_id": client_id, "request_uri": uri} | extra)


def refused(response: httpx.Response, status: int, error: str) -> None:
    """An RFC 6749 §5.2 refusal of the PAR endpoint."""
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def shown(response: httpx.Response, error: str = "invalid_request") -> None:
    """A refusal shown on the hosted error page: never redirected."""
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert error in response.text


@pytest.fixture
async def par_required(backend: str, tmp_path: Path) -> AsyncIterator[Platform]:
    """A platform that requires pushed requests of every client."""
    settings = full_settings(require_pushed_authorization_requests=True)
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, settings)
        async with world.http:
            yield world


# the happy path


async def test_push_consent_and_exchange(full: Platform) -> None:
    verifier, challenge = pkce_pair()
    response = await push(full, challenge)
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["request_uri"].startswith(REQUEST_URI_PREFIX)
    assert body["expires_in"] == 60
    page = await full.http.get(
        authorize_url(full.client_id, body["request_uri"]), headers=login(full)
    )
    assert page.status_code == 200, page.text
    assert "TradingApp" in page.text
    form = Form(page.text)
    answer = await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
    redirect = location(answer)
    assert redirect["base"] == full.redirect_uri
    assert redirect["state"] == "par-state"
    assert redirect["iss"] == ISSUER
    token = await full.exchange(redirect["code"], code_verifier=verifier)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "general trading"
    assert (await full.account(token.json()["access_token"])).status_code == 200


async def test_client_secret_post(full: Platform) -> None:
    _, challenge = pkce_pair()
    data = par_body(full, challenge) | {"client_secret": full.client_secret}
    response = await full.http.post(PAR, data=data)
    assert response.status_code == 201, response.text


async def test_authlib_client(full: Platform) -> None:
    """Authlib's client makes the authorization parameters with PKCE, which are pushed,
    and exchanges the code with its verifier."""
    client = AsyncOAuth2Client(
        client_id=full.client_id,
        client_secret=full.client_secret,
        token_endpoint_auth_method="client_secret_basic",
        redirect_uri=full.redirect_uri,
        scope="general trading",
        code_challenge_method="S256",
        transport=httpx2.ASGITransport(app=full.app),
    )
    verifier, _ = pkce_pair()
    async with client:
        url, state = client.create_authorization_url(
            f"{ISSUER}/oauth/authorize", code_verifier=verifier
        )
        params = dict(httpx.URL(url).params)
        # Authlib's client has no PAR call: its parameters are pushed as they are.
        pushed = await full.http.post(PAR, data=params, auth=(full.client_id, full.client_secret))
        assert pushed.status_code == 201, pushed.text
        page = await full.http.get(
            authorize_url(full.client_id, pushed.json()["request_uri"]), headers=login(full)
        )
        form = Form(page.text)
        answer = await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
        callback = answer.headers["location"]
        assert f"state={state}" in callback
        token = await client.fetch_token(
            f"{ISSUER}/oauth/token", authorization_response=callback, code_verifier=verifier
        )
        assert token["token_type"] == "Bearer"
        assert (await client.get(f"{ISSUER}/v2/account")).status_code == 200


async def test_front_channel_parameters_beside_request_uri_are_ignored(full: Platform) -> None:
    uri = await request_uri(full)
    extra = {"redirect_uri": "https://app.example.com/other", "scope": "data", "state": "evil"}
    page = await full.http.get(authorize_url(full.client_id, uri, **extra), headers=login(full))
    form = Form(page.text)
    answer = await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
    redirect = location(answer)
    assert redirect["base"] == REDIRECT_URI
    assert redirect["state"] == "par-state"


async def test_reload_before_the_decision_then_used_once(full: Platform) -> None:
    """RFC 9126 §4: a reload of the page may show it again; the decision uses it up."""
    uri = await request_uri(full)
    url = authorize_url(full.client_id, uri)
    first = Form((await full.http.get(url, headers=login(full))).text)
    second = Form((await full.http.get(url, headers=login(full))).text)
    answer = await full.http.post(first.action, data=first.submit("approve"), headers=login(full))
    assert "code" in location(answer)
    shown(await full.http.get(url, headers=login(full)))
    again = await full.http.post(second.action, data=second.submit("approve"), headers=login(full))
    shown(again)


async def test_denial_uses_it_up(full: Platform) -> None:
    uri = await request_uri(full)
    url = authorize_url(full.client_id, uri)
    form = Form((await full.http.get(url, headers=login(full))).text)
    answer = await full.http.post(form.action, data=form.submit("deny"), headers=login(full))
    assert location(answer)["error"] == "access_denied"
    shown(await full.http.get(url, headers=login(full)))


async def test_the_decision_may_come_after_expiry_if_the_page_came_before(full: Platform) -> None:
    uri = await request_uri(full)
    form = Form((await full.http.get(authorize_url(full.client_id, uri), headers=login(full))).text)
    full.clock.advance(timedelta(seconds=90))  # the user reads the page
    answer = await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
    assert "code" in location(answer)


# refusals at the authorization endpoint


async def test_expired_request_uri(full: Platform) -> None:
    uri = await request_uri(full)
    full.clock.advance(timedelta(seconds=60))
    shown(await full.http.get(authorize_url(full.client_id, uri), headers=login(full)))


async def test_another_clients_request_uri(full: Platform) -> None:
    other = await full.storage.create_client(name="Other", redirect_uris=[REDIRECT_URI])
    uri = await request_uri(full)
    shown(await full.http.get(authorize_url(other.client_id, uri), headers=login(full)))
    # Nor without a client_id, nor as a value that is not ours.
    shown(await full.http.get("/oauth/authorize?" + urlencode({"request_uri": uri})))
    forged = authorize_url(full.client_id, REQUEST_URI_PREFIX + "made-up")
    shown(await full.http.get(forged, headers=login(full)))
    # And the rightful client still can.
    page = await full.http.get(authorize_url(full.client_id, uri), headers=login(full))
    assert page.status_code == 200


# refusals at the PAR endpoint


async def test_request_uri_inside_a_pushed_request(full: Platform) -> None:
    refused(await push(full, request_uri=REQUEST_URI_PREFIX + "x"), 400, "invalid_request")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"redirect_uri": "https://evil.example/callback"}, "invalid_request"),
        ({"redirect_uri": REDIRECT_URI + "/"}, "invalid_request"),
        ({"scope": "general superuser"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"client_id": "someone-else"}, "invalid_request"),
    ],
)
async def test_invalid_requests_are_refused_at_push_time(
    full: Platform, overrides: dict[str, str | None], error: str
) -> None:
    refused(await push(full, **overrides), 400, error)


async def test_a_repeated_parameter(full: Platform) -> None:
    _, challenge = pkce_pair()
    data = [*par_body(full, challenge).items(), ("scope", "data")]
    response = await full.http.post(
        PAR,
        content=urlencode(data),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(full.client_id, full.client_secret),
    )
    refused(response, 400, "invalid_request")


@pytest.mark.parametrize("who", ["wrong secret", "unknown client", "no authentication"])
async def test_client_authentication_is_required(full: Platform, who: str) -> None:
    _, challenge = pkce_pair()
    data = par_body(full, challenge)
    auth = {
        "wrong secret": (full.client_id, "wrong"),
        "unknown client": ("nobody", full.client_secret),
    }.get(who)
    if auth is None:
        response = await full.http.post(PAR, data=data)
    else:
        response = await full.http.post(PAR, data=data, auth=auth)
    refused(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_a_disabled_client(full: Platform) -> None:
    assert full.oauth is not None
    await full.oauth.state.admin.disable_client(full.client_id)
    refused(await push(full), 400, "unauthorized_client")


# PAR required


async def test_a_client_that_requires_par(full: Platform) -> None:
    assert full.oauth is not None
    await full.oauth.state.admin.update_client(
        full.client_id, require_pushed_authorization_requests=True
    )
    params = {
        "response_type": "code",
        "client_id": full.client_id,
        "redirect_uri": full.redirect_uri,
        "state": "s",
    }
    front = await full.http.get("/oauth/authorize?" + urlencode(params), headers=login(full))
    shown(front)
    assert "pushed" in front.text
    partner = await full.authorize()
    assert partner.status_code == 422, partner.text
    # Other clients are not concerned; this one's pushed requests work.
    other = await full.storage.create_client(name="Other", redirect_uris=[REDIRECT_URI])
    params["client_id"] = other.client_id
    assert (
        await full.http.get("/oauth/authorize?" + urlencode(params), headers=login(full))
    ).status_code == 200
    uri = await request_uri(full)
    page = await full.http.get(authorize_url(full.client_id, uri), headers=login(full))
    form = Form(page.text)
    answer = await full.http.post(form.action, data=form.submit("approve"), headers=login(full))
    assert "code" in location(answer)


async def test_the_platform_requires_par(par_required: Platform) -> None:
    world = par_required
    params = {"response_type": "code", "client_id": world.client_id, "state": "s"}
    shown(await world.http.get("/oauth/authorize?" + urlencode(params), headers=login(world)))
    # An unknown client too: nothing of the request is looked at.
    params["client_id"] = "nobody"
    shown(await world.http.get("/oauth/authorize?" + urlencode(params)))
    assert (await world.authorize()).status_code == 422
    metadata = (await world.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["require_pushed_authorization_requests"] is True
    verifier, challenge = pkce_pair()
    uri = await request_uri(world, challenge)
    page = await world.http.get(authorize_url(world.client_id, uri), headers=login(world))
    form = Form(page.text)
    answer = await world.http.post(form.action, data=form.submit("approve"), headers=login(world))
    token = await world.exchange(location(answer)["code"], code_verifier=verifier)
    assert token.status_code == 200, token.text


async def test_metadata(full: Platform) -> None:
    doc = (await full.http.get("/.well-known/oauth-authorization-server")).json()
    assert doc["pushed_authorization_request_endpoint"] == f"{ISSUER}{PAR}"
    assert doc["require_pushed_authorization_requests"] is False


# the partner path


async def test_partner_path(full: Platform) -> None:
    verifier, challenge = pkce_pair()
    uri = await request_uri(full, challenge)
    shown_to_partner = await full.http.get(
        f"/v1/oauth/clients/{full.client_id}", params={"request_uri": uri}, auth=full.partner
    )
    assert shown_to_partner.status_code == 200, shown_to_partner.text
    request = shown_to_partner.json()["request"]
    assert request["redirect_uri"] == REDIRECT_URI
    assert request["scope"] == "general trading"
    assert request["state"] == "par-state"
    # The body's own redirect URI and scope are ignored: the pushed request's are used.
    issued = await full.authorize(request_uri=uri, redirect_uri=None, scope="data")
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["scope"] == "general trading"
    assert body["state"] == "par-state"
    assert body["redirect_uri"] == REDIRECT_URI
    token = await full.exchange(body["code"], code_verifier=verifier)
    assert token.status_code == 200, token.text
    # Used once; and not another client's.
    assert (await full.authorize(request_uri=uri)).status_code == 422
    gone = await full.http.get(
        f"/v1/oauth/clients/{full.client_id}", params={"request_uri": uri}, auth=full.partner
    )
    assert gone.status_code == 422


async def test_partner_path_refuses_an_expired_request_uri(full: Platform) -> None:
    uri = await request_uri(full)
    full.clock.advance(timedelta(seconds=61))
    response = await full.authorize(request_uri=uri)
    assert response.status_code == 422
    assert "request_uri" in response.json()["message"]


# storage


async def test_the_stored_request(full: Platform) -> None:
    """Stored by the hash of the random part, with the validated parameters; used once
    atomically; purged once expired (every backend: memory, SQLite, PostgreSQL)."""
    _, challenge = pkce_pair()
    uri = await request_uri(full, challenge)
    key = request_hash(uri)
    assert key is not None
    assert uri.removeprefix(REQUEST_URI_PREFIX) not in key
    record = await full.storage.get_pushed_request(key)
    assert record is not None
    assert record.client_id == full.client_id
    assert dict(record.params) == {
        "response_type": "code",
        "client_id": full.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "general trading",
        "state": "par-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    assert record.expires_at == full.clock.now() + timedelta(seconds=60)
    now = full.clock.now()
    assert not await full.storage.use_pushed_request(key, client_id="other", now=now)
    assert not await full.storage.use_pushed_request(
        key, client_id=full.client_id, now=record.expires_at
    )
    assert await full.storage.use_pushed_request(key, client_id=full.client_id, now=now)
    assert not await full.storage.use_pushed_request(key, client_id=full.client_id, now=now)
    assert await full.storage.get_pushed_request(key) is None
    # An expired one is purged with expired codes, after the same retention.
    other = await request_uri(full)
    other_key = request_hash(other)
    assert other_key is not None
    await full.storage.purge_expired(now=now + timedelta(seconds=61), retention=timedelta(0))
    assert await full.storage.get_pushed_request(other_key) is None


async def test_par_lifetime_setting(backend: str, tmp_path: Path) -> None:
    settings = full_settings(par_lifetime=timedelta(seconds=10))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, settings)
        async with world.http:
            response = await push(world)
            assert response.json()["expires_in"] == 10
            world.clock.advance(10)
            url = authorize_url(world.client_id, response.json()["request_uri"])
            shown(await world.http.get(url, headers=login(world)))


def test_settings_validate_par_lifetime() -> None:
    from starlette_broker_oauth import OAuthSettings
    from starlette_broker_oauth.errors import ConfigurationError

    for bad in (timedelta(0), timedelta(minutes=11)):
        with pytest.raises(ConfigurationError):
            OAuthSettings(issuer=ISSUER, par_lifetime=bad)
    env = OAuthSettings.from_env(
        {
            "BROKER_OAUTH_ISSUER": ISSUER,
            "BROKER_OAUTH_PAR_LIFETIME_SECONDS": "30",
            "BROKER_OAUTH_REQUIRE_PUSHED_AUTHORIZATION_REQUESTS": "yes",
        }
    )
    assert env.par_lifetime == timedelta(seconds=30)
    assert env.require_pushed_authorization_requests


# Hypothesis: generated PAR bodies


VALID_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "request_uri",
    "client_secret",
)
odd_text = st.text(st.characters(codec="utf-8"), max_size=60)


def bodies(world: Platform) -> st.SearchStrategy[list[tuple[str, str]]]:
    """A valid body, mutated: fields dropped, replaced by other values (valid ones of
    other fields, or any text), repeated, or added."""
    valid = {
        "response_type": "code",
        "client_id": world.client_id,
        "redirect_uri": world.redirect_uri,
        "scope": "general trading",
        "state": "s",
        "code_challenge": VALID_CHALLENGE,
        "code_challenge_method": "S256",
    }
    values = st.one_of(
        st.sampled_from(
            [
                "code",
                "token",
                "plain",
                "S256",
                "",
                world.client_id,
                world.redirect_uri,
                "https://app.example.com/other",
                "https://evil.example/cb",
                "general",
                "superuser",
                VALID_CHALLENGE,
                "short",
                REQUEST_URI_PREFIX + "x",
            ]
        ),
        odd_text,
    )

    @st.composite
    def mutated(draw: st.DrawFn) -> list[tuple[str, str]]:
        pairs = list(valid.items())
        for _ in range(draw(st.integers(0, 4))):
            action = draw(st.sampled_from(["drop", "replace", "repeat", "add"]))
            if action == "drop" and pairs:
                pairs.pop(draw(st.integers(0, len(pairs) - 1)))
            elif action == "replace" and pairs:
                index = draw(st.integers(0, len(pairs) - 1))
                pairs[index] = (pairs[index][0], draw(values))
            elif action == "repeat" and pairs:
                pairs.append(pairs[draw(st.integers(0, len(pairs) - 1))])
            else:
                pairs.append((draw(st.sampled_from(FIELDS)), draw(values)))
        return pairs

    return mutated()


def acceptable(world: Platform, pairs: list[tuple[str, str]]) -> bool:
    """What any request the endpoint accepts must be (necessary, not sufficient)."""
    names = [name for name, _ in pairs]
    got = dict(pairs)
    return (
        len(names) == len(set(names))
        and "request_uri" not in got
        and "client_secret" not in got
        and got.get("response_type") == "code"
        and got.get("client_id", world.client_id) == world.client_id
        and got.get("redirect_uri") in (world.redirect_uri, "https://app.example.com/other", None)
        and bool(got.get("code_challenge"))
        and got.get("code_challenge_method") == "S256"
        and set(got.get("scope", "").split()) <= {"general", "trading", "data", "account:write"}
    )


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_par_bodies(target: Target, data: st.DataObject) -> None:
    world = target.world
    pairs = data.draw(bodies(world))
    basic = base64.b64encode(f"{world.client_id}:{world.client_secret}".encode())
    target.errors.records.clear()
    answer = target.call(
        "POST",
        PAR,
        headers=[
            (b"authorization", b"Basic " + basic),
            (b"content-type", b"application/x-www-form-urlencoded"),
        ],
        body=urlencode(pairs).encode(),
    )
    assert answer.status in (201, 400, 401), (pairs, answer.body)
    body = answer.json()
    if answer.status == 201:
        assert acceptable(world, pairs), pairs
        assert body["request_uri"].startswith(REQUEST_URI_PREFIX)
    else:
        assert "request_uri" not in body
        assert isinstance(body["error"], str)
    assert target.errors.records == [], [r.getMessage() for r in target.errors.records]
