"""DPoP (RFC 9449): proofs at the token endpoint and on the platform's own routes.

A client holds a key (joserfc generates it), signs a proof per request, and gets tokens
bound to the key's thumbprint; every check of RFC 9449 §4.3 is refused with its status
and error, through HTTP as a client sees it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import warnings
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Security
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import (
    ManagedStorage,
    OAuthSettings,
    SQLAlchemyStorage,
    create_oauth_app,
)
from starlette_broker_oauth.core.verifier import VerifiedToken
from starlette_broker_oauth.integrations.fastapi import BrokerTokenBearer, exception_handlers
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    TokenUser,
    bearer_error_response,
    requires_token,
)
from starlette_broker_oauth.web.hosted import HostedConsent

from .conftest import (
    CONSENT_SECRET,
    ISSUER,
    POSTGRES_URL,
    CookieSession,
    Platform,
    drop_tables,
    new_storage,
    open_storage,
    pkce_pair,
    seed_platform,
)
from .test_consent import Form, location

pytestmark = pytest.mark.anyio

TOKEN_URL = f"{ISSUER}/oauth/token"
ACCOUNT_URL = f"{ISSUER}/v2/account"  # behind the Starlette backend
ORDERS_URL = f"{ISSUER}/v2/orders"  # behind requires_token(verifier=...)
POSITIONS_URL = f"{ISSUER}/api/positions"  # a mounted FastAPI app's dependency
NONCE_SECRET = "dpop-nonce-secret-" + "n" * 32


def dpop_settings(**overrides: Any) -> OAuthSettings:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "access_token_lifetime": timedelta(minutes=15),
        "refresh_token_lifetime": timedelta(days=30),
        "token_cache_ttl": timedelta(seconds=30),
    }
    values.update(overrides)
    return OAuthSettings(**values)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Holder:
    """A client's DPoP key, signing proofs with the platform's clock."""

    def __init__(self, platform: Platform, key: Any = None, alg: str = "ES256") -> None:
        self.platform = platform
        self.key = key if key is not None else ECKey.generate_key("P-256")
        self.alg = alg

    @property
    def jkt(self) -> str:
        return str(self.key.thumbprint())

    def header(self) -> dict[str, Any]:
        return {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False)}

    def claims(self, method: str, url: str, *, token: str | None = None) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(self.platform.clock.time()),
        }
        if token is not None:
            claims["ath"] = _b64(hashlib.sha256(token.encode()).digest())
        return claims

    def sign(
        self, header: dict[str, Any], claims: dict[str, Any], *, key: Any = None, alg: str = ""
    ) -> str:
        payload = json.dumps(claims).encode()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # joserfc on "EdDSA"
            # A lax registry, so that the tests can sign any header they want to send.
            registry = JWSRegistry(algorithms=[alg or header["alg"]], strict_check_header=False)
            registry.max_header_length = 8192
            return jws.serialize_compact(header, payload, key or self.key, registry=registry)

    def proof(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        **claims: Any,
    ) -> str:
        body = self.claims(method, url, token=token)
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims)
        return self.sign(self.header(), body)


async def dpop_world(kind: str, storage: ManagedStorage, settings: OAuthSettings) -> Platform:
    """A seeded platform whose own routes sit behind each of the three checks."""
    world = await seed_platform(kind, storage, settings)
    await world.http.aclose()
    oauth = create_oauth_app(
        settings=settings,
        storage=storage,
        consent=HostedConsent(session=CookieSession(), secret_key=CONSENT_SECRET),
        clock=world.clock,
    )
    verifier = oauth.state.token_verifier

    async def account(request: Request) -> Response:
        if not isinstance(request.user, TokenUser):
            return JSONResponse({"error": "anonymous"}, status_code=401)
        return JSONResponse({"account_id": str(request.user.token.account_id)})

    @requires_token("trading", verifier=verifier)
    async def orders(request: Request) -> Response:
        return JSONResponse({"account_id": str(request.user.token.account_id)})

    api = FastAPI(exception_handlers=exception_handlers)
    bearer = BrokerTokenBearer(verifier=verifier, settings=settings)

    @api.get("/positions")
    async def positions(
        token: VerifiedToken = Security(bearer, scopes=["general"]),  # noqa: B008 - FastAPI's
    ) -> Any:
        return {"account_id": str(token.account_id), "jkt": token.jkt}

    world.app = Starlette(
        routes=[
            Route("/v2/account", account),
            Route("/v2/orders", orders),
            Mount("/api", api),
            Mount("/", oauth),
        ],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(verifier),
                on_error=bearer_error_response,
            )
        ],
    )
    world.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=world.app), base_url=ISSUER)
    world.oauth = oauth
    return world


@pytest.fixture
async def world(backend: str, tmp_path: Path) -> AsyncIterator[Platform]:
    async with open_storage(backend, tmp_path) as storage:
        platform = await dpop_world(backend, storage, dpop_settings())
        async with platform.http:
            yield platform


@pytest.fixture
async def mem(tmp_path: Path) -> AsyncIterator[Platform]:
    """The memory backend alone, for the refusals (the rules are the core's)."""
    async with open_storage("memory", tmp_path) as storage:
        platform = await dpop_world("memory", storage, dpop_settings())
        async with platform.http:
            yield platform


async def exchange(
    platform: Platform, code: str, proofs: list[str] | None, **headers: str
) -> httpx.Response:
    sent = httpx.Headers(list(headers.items()) + [("DPoP", proof) for proof in proofs or []])
    return await platform.http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(platform.client_id, platform.client_secret),
        headers=sent,
    )


async def refresh(platform: Platform, refresh_token: str, proof: str | None) -> httpx.Response:
    return await platform.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(platform.client_id, platform.client_secret),
        headers={"DPoP": proof} if proof else {},
    )


REDIRECT = "https://app.example.com/callback"


async def bound_tokens(platform: Platform, holder: Holder) -> dict[str, Any]:
    response = await exchange(platform, await platform.code(), [holder.proof("POST", TOKEN_URL)])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def call(
    platform: Platform,
    url: str,
    token: str,
    proof: str | None,
    *,
    scheme: str = "DPoP",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Authorization": f"{scheme} {token}", **(headers or {})}
    if proof is not None:
        sent["DPoP"] = proof
    return await platform.http.request(method, url.removeprefix(ISSUER), headers=sent)


def challenge(response: httpx.Response) -> str:
    return str(response.headers.get("www-authenticate", ""))


# the whole journey


async def test_dpop_journey_on_every_storage(world: Platform) -> None:
    """Code exchange with a proof → a DPoP token bound to the key; the three guarded
    routes take it with a proof; refresh with a proof; revocation ends it everywhere."""
    holder = Holder(world)
    body = await bound_tokens(world, holder)
    assert body["token_type"] == "DPoP"
    access, refresh_token = body["access_token"], body["refresh_token"]

    for url in (ACCOUNT_URL, ORDERS_URL, POSITIONS_URL):
        for _ in range(2):  # the second from the cache: the proof is still checked
            response = await call(world, url, access, holder.proof("GET", url, token=access))
            assert response.status_code == 200, (url, response.text)
            assert response.json()["account_id"] == str(world.paper_account)
    positions = await call(
        world, POSITIONS_URL, access, holder.proof("GET", POSITIONS_URL, token=access)
    )
    assert positions.json()["jkt"] == holder.jkt

    introspected = await world.http.post(
        "/oauth/introspect",
        data={"token": access},
        auth=(world.client_id, world.client_secret),
    )
    assert introspected.json()["token_type"] == "DPoP"
    assert introspected.json()["cnf"] == {"jkt": holder.jkt}

    refreshed = await refresh(world, refresh_token, holder.proof("POST", TOKEN_URL))
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["token_type"] == "DPoP"
    access = refreshed.json()["access_token"]
    response = await call(world, ORDERS_URL, access, holder.proof("GET", ORDERS_URL, token=access))
    assert response.status_code == 200

    revoked = await world.http.post(
        "/oauth/revoke", data={"token": access}, auth=(world.client_id, world.client_secret)
    )
    assert revoked.status_code == 200
    for url in (ACCOUNT_URL, ORDERS_URL, POSITIONS_URL):
        response = await call(world, url, access, holder.proof("GET", url, token=access))
        assert response.status_code == 401, url
        assert challenge(response).startswith(
            'DPoP algs="ES256 PS256 EdDSA", error="invalid_token"'
        )


@pytest.mark.parametrize(
    "make", [lambda: RSAKey.generate_key(2048), lambda: OKPKey.generate_key("Ed25519")]
)
async def test_ps256_and_eddsa_keys_work(mem: Platform, make: Any) -> None:
    key = make()
    holder = Holder(mem, key, "PS256" if isinstance(key, RSAKey) else "EdDSA")
    body = await bound_tokens(mem, holder)
    access = body["access_token"]
    proof = holder.proof("GET", ORDERS_URL, token=access)
    assert (await call(mem, ORDERS_URL, access, proof)).status_code == 200


async def test_a_request_without_a_proof_still_gets_a_bearer_token(mem: Platform) -> None:
    response = await exchange(mem, await mem.code(), None)
    assert response.json()["token_type"] == "Bearer"
    access = response.json()["access_token"]
    assert (await call(mem, ORDERS_URL, access, None, scheme="Bearer")).status_code == 200
    # ... which the DPoP scheme does not take.
    proof = Holder(mem).proof("GET", ORDERS_URL, token=access)
    response = await call(mem, ORDERS_URL, access, proof)
    assert response.status_code == 401
    assert 'error="invalid_token"' in challenge(response)


async def test_metadata_lists_the_proof_algorithms(mem: Platform) -> None:
    doc = (await mem.http.get("/.well-known/oauth-authorization-server")).json()
    assert doc["dpop_signing_alg_values_supported"] == ["ES256", "PS256", "EdDSA"]


# refusals at the token endpoint (400 invalid_dpop_proof)


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _bad_proofs(holder: Holder, url: str, method: str) -> dict[str, str]:
    """One proof per check of RFC 9449 §4.3 that it fails."""
    claims = holder.claims(method, url)
    other = ECKey.generate_key("P-256")
    now = int(holder.platform.clock.time())
    private_header = holder.header() | {"jwk": holder.key.as_dict(private=True)}
    secret = OctKey.generate_key(256)
    return {
        "alg none": _unsigned(holder.header() | {"alg": "none"}, claims),
        "HS256": holder.sign(
            holder.header() | {"alg": "HS256", "jwk": secret.as_dict(private=False)},
            claims,
            key=secret,
        ),
        "typ JWT": holder.sign(holder.header() | {"typ": "JWT"}, claims),
        "private jwk": holder.sign(private_header, claims),
        "another key's signature": holder.sign(holder.header(), claims, key=other),
        "htm": holder.proof("PUT" if method != "PUT" else "GET", url),
        "htu": holder.proof(method, url + "/other"),
        "htu of another host": holder.proof(method, url.replace("broker.test", "evil.test")),
        "stale iat": holder.proof(method, url, iat=now - 120),
        "future iat": holder.proof(method, url, iat=now + 60),
        "no jti": holder.sign(holder.header(), {k: v for k, v in claims.items() if k != "jti"}),
        "not a JWS": "not.a.proof",
    }


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "HS256",
        "typ JWT",
        "private jwk",
        "another key's signature",
        "htm",
        "htu",
        "htu of another host",
        "stale iat",
        "future iat",
        "no jti",
        "not a JWS",
    ],
)
async def test_token_endpoint_refuses_each_bad_proof(mem: Platform, case: str) -> None:
    proof = _bad_proofs(Holder(mem), TOKEN_URL, "POST")[case]
    response = await exchange(mem, await mem.code(), [proof])
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_dpop_proof"
    assert "access_token" not in response.json()


async def test_host_header_does_not_make_the_htu(mem: Platform) -> None:
    """The htu is checked against the issuer's URL: a proof for another host is refused
    even when the request's Host header names that host, and a proof for the issuer's
    URL is accepted whatever the Host header says."""
    holder = Holder(mem)
    evil = TOKEN_URL.replace("broker.test", "evil.test")
    refused = await exchange(mem, await mem.code(), [holder.proof("POST", evil)], host="evil.test")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_dpop_proof"
    accepted = await exchange(
        mem, await mem.code(), [holder.proof("POST", TOKEN_URL)], host="evil.test"
    )
    assert accepted.status_code == 200


async def test_exactly_one_proof(mem: Platform) -> None:
    holder = Holder(mem)
    proofs = [holder.proof("POST", TOKEN_URL), holder.proof("POST", TOKEN_URL)]
    response = await exchange(mem, await mem.code(), proofs)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"


async def test_a_replayed_proof_is_refused(mem: Platform) -> None:
    holder = Holder(mem)
    proof = holder.proof("POST", TOKEN_URL)
    assert (await exchange(mem, await mem.code(), [proof])).status_code == 200
    replayed = await exchange(mem, await mem.code(), [proof])
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_dpop_proof"


async def test_the_query_and_fragment_of_htu_do_not_count(mem: Platform) -> None:
    holder = Holder(mem)
    proof = holder.proof("POST", "HTTPS://Broker.test:443/oauth/token?x=1#f")
    assert (await exchange(mem, await mem.code(), [proof])).status_code == 200


# bound grants


async def test_refresh_needs_a_proof_by_the_same_key(mem: Platform) -> None:
    holder = Holder(mem)
    body = await bound_tokens(mem, holder)
    other = Holder(mem).proof("POST", TOKEN_URL)
    response = await refresh(mem, body["refresh_token"], other)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    response = await refresh(mem, body["refresh_token"], None)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_dpop_proof")
    # The refusals spent nothing: the holder still refreshes.
    response = await refresh(mem, body["refresh_token"], holder.proof("POST", TOKEN_URL))
    assert response.status_code == 200


async def test_dpop_jkt_binds_the_partners_code(mem: Platform) -> None:
    holder = Holder(mem)
    code = await mem.code(dpop_jkt=holder.jkt)
    response = await exchange(mem, code, [Holder(mem).proof("POST", TOKEN_URL)])
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    response = await exchange(mem, code, None)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_dpop_proof")
    response = await exchange(mem, code, [holder.proof("POST", TOKEN_URL)])
    assert response.status_code == 200
    assert response.json()["token_type"] == "DPoP"


async def test_a_malformed_dpop_jkt_is_refused(mem: Platform) -> None:
    response = await mem.authorize(dpop_jkt="not-a-thumbprint")
    assert response.status_code == 422


async def test_dpop_jkt_binds_the_hosted_consents_code(mem: Platform) -> None:
    holder = Holder(mem)
    verifier, challenge_ = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": mem.client_id,
        "redirect_uri": REDIRECT,
        "scope": "general",
        "state": "s",
        "code_challenge": challenge_,
        "code_challenge_method": "S256",
        "dpop_jkt": holder.jkt,
    }
    cookies = {"Cookie": f"session={mem.paper_account}"}
    page = await mem.http.get("/oauth/authorize", params=params, headers=cookies)
    assert page.status_code == 200, page.text
    form = Form(page.text)
    approved = await mem.http.post(form.action, data=form.submit("approve"), headers=cookies)
    code = location(approved)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    data["code_verifier"] = verifier
    auth = (mem.client_id, mem.client_secret)
    other = Holder(mem).proof("POST", TOKEN_URL)
    refused = await mem.http.post("/oauth/token", data=data, auth=auth, headers={"DPoP": other})
    assert refused.json()["error"] == "invalid_grant"
    mine = holder.proof("POST", TOKEN_URL)
    issued = await mem.http.post("/oauth/token", data=data, auth=auth, headers={"DPoP": mine})
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "DPoP"


async def test_a_client_that_requires_dpop(tmp_path: Path) -> None:
    async with open_storage("memory", tmp_path) as storage:
        platform = await dpop_world("memory", storage, dpop_settings())
        async with platform.http:
            creds = await storage.create_client(
                name="FAPI", redirect_uris=[REDIRECT], dpop_bound_access_tokens=True
            )
            await storage.allow_partner_client(platform.partner[0], creds.client_id)
            platform.client_id, platform.client_secret = creds.client_id, creds.client_secret
            response = await exchange(platform, await platform.code(), None)
            assert (response.status_code, response.json()["error"]) == (400, "invalid_dpop_proof")
            proof = Holder(platform).proof("POST", TOKEN_URL)
            response = await exchange(platform, await platform.code(), [proof])
            assert response.json()["token_type"] == "DPoP"


async def test_a_platform_that_requires_dpop(tmp_path: Path) -> None:
    async with open_storage("memory", tmp_path) as storage:
        platform = await dpop_world("memory", storage, dpop_settings(dpop_required=True))
        async with platform.http:
            response = await exchange(platform, await platform.code(), None)
            assert (response.status_code, response.json()["error"]) == (400, "invalid_dpop_proof")


# nonces


async def test_nonces_when_the_platform_asks(tmp_path: Path) -> None:
    settings = dpop_settings(dpop_nonce=True, dpop_nonce_secret=NONCE_SECRET)
    async with open_storage("memory", tmp_path) as storage:
        platform = await dpop_world("memory", storage, settings)
        async with platform.http:
            holder = Holder(platform)
            refused = await exchange(
                platform, await platform.code(), [holder.proof("POST", TOKEN_URL)]
            )
            assert (refused.status_code, refused.json()["error"]) == (400, "use_dpop_nonce")
            nonce = refused.headers["DPoP-Nonce"]
            code = await platform.code()
            wrong = await exchange(platform, code, [holder.proof("POST", TOKEN_URL, nonce="1.x")])
            assert wrong.json()["error"] == "use_dpop_nonce"
            issued = await exchange(platform, code, [holder.proof("POST", TOKEN_URL, nonce=nonce)])
            assert issued.status_code == 200, issued.text
            access = issued.json()["access_token"]
            # A route without a nonce: 401 use_dpop_nonce, with one.
            response = await call(
                platform, ORDERS_URL, access, holder.proof("GET", ORDERS_URL, token=access)
            )
            assert response.status_code == 401
            assert 'error="use_dpop_nonce"' in challenge(response)
            route_nonce = response.headers["DPoP-Nonce"]
            # The token endpoint's nonce is good on the route (same origin) ...
            ok = await call(
                platform,
                ORDERS_URL,
                access,
                holder.proof("GET", ORDERS_URL, token=access, nonce=nonce),
            )
            assert ok.status_code == 200, ok.text
            # ... and the route's at the token endpoint.
            refreshed = await refresh(
                platform,
                issued.json()["refresh_token"],
                holder.proof("POST", TOKEN_URL, nonce=route_nonce),
            )
            assert refreshed.status_code == 200, refreshed.text
            # Nonces rotate: two windows later, a nonce is refused.
            platform.clock.advance(timedelta(minutes=11))
            access = refreshed.json()["access_token"]
            stale = await call(
                platform,
                ORDERS_URL,
                access,
                holder.proof("GET", ORDERS_URL, token=access, nonce=nonce),
            )
            assert 'error="use_dpop_nonce"' in challenge(stale)
            assert stale.headers["DPoP-Nonce"] != nonce


# refusals on the platform's routes (401 with a DPoP challenge)


@pytest.mark.parametrize("url", [ACCOUNT_URL, ORDERS_URL, POSITIONS_URL])
async def test_routes_refuse_each_bad_proof(mem: Platform, url: str) -> None:
    holder = Holder(mem)
    access = (await bound_tokens(mem, holder))["access_token"]
    bad = _bad_proofs(holder, url, "GET")
    bad["no ath"] = holder.proof("GET", url)
    bad["wrong ath"] = holder.proof("GET", url, token=access + "x")
    bad["another key"] = Holder(mem).proof("GET", url, token=access)
    replayed = holder.proof("GET", url, token=access)
    assert (await call(mem, url, access, replayed)).status_code == 200
    bad["replayed jti"] = replayed
    for case, proof in bad.items():
        response = await call(mem, url, access, proof)
        assert response.status_code == 401, (case, response.text)
        assert challenge(response).startswith(
            'DPoP algs="ES256 PS256 EdDSA", error="invalid_dpop_proof", error_description='
        ), (case, challenge(response))
    response = await call(mem, url, access, None)
    assert 'error="invalid_dpop_proof"' in challenge(response)


@pytest.mark.parametrize("url", [ACCOUNT_URL, ORDERS_URL, POSITIONS_URL])
async def test_a_bound_token_sent_as_bearer_is_refused(mem: Platform, url: str) -> None:
    holder = Holder(mem)
    access = (await bound_tokens(mem, holder))["access_token"]
    # Once in the cache (a DPoP call), and not: both refused.
    assert (await call(mem, url, access, holder.proof("GET", url, token=access))).status_code == 200
    response = await call(mem, url, access, None, scheme="Bearer")
    assert response.status_code == 401
    assert challenge(response).startswith('DPoP algs="ES256 PS256 EdDSA", error="invalid_token"')


async def test_bearer_challenges_are_unchanged(mem: Platform) -> None:
    response = await mem.http.get("/v2/orders", headers={"Authorization": "Bearer nope"})
    assert challenge(response) == 'Bearer error="invalid_token"'
    assert (await mem.http.get("/v2/orders")).headers["www-authenticate"] == "Bearer"


async def test_route_htu_is_the_issuers_origin_not_the_host_header(mem: Platform) -> None:
    holder = Holder(mem)
    access = (await bound_tokens(mem, holder))["access_token"]
    evil = ORDERS_URL.replace("broker.test", "evil.test")
    response = await call(
        mem,
        ORDERS_URL,
        access,
        holder.proof("GET", evil, token=access),
        headers={"Host": "evil.test"},
    )
    assert 'error="invalid_dpop_proof"' in challenge(response)
    # The mounted FastAPI app's htu is its full path, mount prefix included.
    no_prefix = f"{ISSUER}/positions"
    response = await call(mem, POSITIONS_URL, access, holder.proof("GET", no_prefix, token=access))
    assert 'error="invalid_dpop_proof"' in challenge(response)


async def test_insufficient_scope_on_a_dpop_request(mem: Platform) -> None:
    holder = Holder(mem)
    code = await mem.code(scope="general")
    access = (await exchange(mem, code, [holder.proof("POST", TOKEN_URL)])).json()["access_token"]
    response = await call(mem, ORDERS_URL, access, holder.proof("GET", ORDERS_URL, token=access))
    assert response.status_code == 403
    assert challenge(response).startswith(
        'DPoP algs="ES256 PS256 EdDSA", error="insufficient_scope", scope="trading"'
    )


# across workers: two storages on one database


@pytest.mark.parametrize("kind", ["sqlite"] + (["postgres"] if POSTGRES_URL else []))
async def test_a_proof_replayed_on_another_worker_is_refused(kind: str, tmp_path: Path) -> None:
    first = new_storage(kind, tmp_path)
    try:
        async with first:
            platform = await dpop_world(kind, first, dpop_settings())
            # A second worker: its own storage (engine, connections) on the same database.
            second: ManagedStorage = new_storage("sqlite", tmp_path)
            if kind == "postgres":
                assert isinstance(first, SQLAlchemyStorage)
                assert POSTGRES_URL is not None
                second = SQLAlchemyStorage(POSTGRES_URL, table_prefix=first.table_prefix)
            async with second:
                other = create_oauth_app(
                    settings=platform.settings, storage=second, clock=platform.clock
                )
                async with (
                    platform.http,
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=other), base_url=ISSUER
                    ) as worker2,
                ):
                    holder = Holder(platform)
                    proof = holder.proof("POST", TOKEN_URL)
                    assert (
                        await exchange(platform, await platform.code(), [proof])
                    ).status_code == 200
                    replayed = await worker2.post(
                        "/oauth/token",
                        data={
                            "grant_type": "authorization_code",
                            "code": await platform.code(),
                            "redirect_uri": REDIRECT,
                        },
                        auth=(platform.client_id, platform.client_secret),
                        headers={"DPoP": proof},
                    )
                    assert replayed.status_code == 400
                    assert replayed.json()["error"] == "invalid_dpop_proof"
    finally:
        await drop_tables(first)


# no mutation of a proof gets a token or a 5xx

# Each breaks the proof: a required member removed or given a value it may not have.
_BREAKING = st.one_of(
    st.tuples(
        st.just("header"),
        st.sampled_from(["typ", "alg", "jwk"]),
        st.none()
        | st.text(max_size=8)
        | st.integers()
        | st.sampled_from(["none", "HS256", "RS256", "JWT"]),
    ),
    st.tuples(st.just("claims"), st.sampled_from(["jti", "iat", "htm", "htu"]), st.none()),
    st.tuples(
        st.just("claims"),
        st.sampled_from(["htm", "htu"]),
        st.none()
        | st.text(max_size=12).filter(lambda v: v != "POST")
        | st.sampled_from(
            ["GET", "post", f"{ISSUER}/oauth/token/", "https://evil.test/oauth/token"]
        ),
    ),
    st.tuples(
        st.just("claims"),
        st.just("iat"),
        st.integers(min_value=-(2**40), max_value=2**40).filter(lambda v: abs(v) > 10**6)
        | st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not abs(v) < 10**6)
        | st.sampled_from([True, "now", [1]]),
    ),
    st.tuples(st.just("bytes"), st.integers(min_value=0, max_value=10**6), st.characters()),
)
# Each leaves the proof as valid (or not) as it was.
_HARMLESS = st.tuples(
    st.sampled_from(["header", "claims"]),
    st.sampled_from(["kid", "crit", "exp", "nonce", "ath", "extra"]),
    st.none() | st.text(max_size=8) | st.integers(),
)


def _mutated(
    holder: Holder,
    breaking: Any,
    harmless: list[Any],
    *,
    method: str = "POST",
    url: str = TOKEN_URL,
    token: str | None = None,
) -> str | None:
    """The proof (for ``method`` and ``url``, with ``ath`` of ``token``) with the
    mutations applied; ``None`` when the breaking one changed nothing."""
    header, claims = holder.header(), holder.claims(method, url, token=token)
    for part, name, value in harmless:
        (header if part == "header" else claims)[name] = value
    part, name, value = breaking
    if part == "bytes":
        try:
            raw = holder.sign(header, claims)
        except Exception:
            raw = _unsigned(header, claims)
        # The signature's last two characters carry padding bits: a change there may
        # decode to the same bytes, so the mutations stay before them.
        index = name % (len(raw) - 2)
        if raw[index] == value:
            return None
        return str(raw[:index] + value + raw[index + 1 :])
    target = header if part == "header" else claims
    if value is None:
        target.pop(name, None)
    elif target.get(name) == value:
        return None
    else:
        target[name] = value
    try:
        return holder.sign(header, claims, alg="ES256")
    except Exception:
        return _unsigned(header, claims)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(breaking=_BREAKING, harmless=st.lists(_HARMLESS, max_size=2))
def test_mutated_proofs_never_get_a_token(breaking: Any, harmless: list[Any]) -> None:
    async def run() -> None:
        async with open_storage("memory", Path("/nonexistent")) as storage:
            platform = await dpop_world("memory", storage, dpop_settings())
            async with platform.http:
                proof = _mutated(Holder(platform), breaking, harmless)
                if proof is None:
                    return
                code = await platform.code()
                try:
                    response = await exchange(platform, code, [proof])
                except (UnicodeEncodeError, httpx.LocalProtocolError):
                    return  # not sendable as a header value
                assert 400 <= response.status_code < 500, response.text
                assert "access_token" not in response.json()

    anyio.run(run)


# The same on the platform's routes: a proof for GET /v2/account, broken.
_BREAKING_ON_ROUTES = st.one_of(
    st.tuples(
        st.just("header"),
        st.sampled_from(["typ", "alg", "jwk"]),
        st.none()
        | st.text(max_size=8)
        | st.integers()
        | st.sampled_from(["none", "HS256", "RS256", "JWT"]),
    ),
    st.tuples(st.just("claims"), st.sampled_from(["jti", "iat", "htm", "htu", "ath"]), st.none()),
    st.tuples(
        st.just("claims"),
        st.sampled_from(["htm", "htu", "ath"]),
        st.text(max_size=12).filter(lambda v: v != "GET")
        | st.sampled_from(
            ["POST", "get", f"{ACCOUNT_URL}/", "https://evil.test/v2/account", "x" * 43]
        ),
    ),
    st.tuples(st.just("bytes"), st.integers(min_value=0, max_value=10**6), st.characters()),
)
_HARMLESS_ON_ROUTES = st.tuples(
    st.sampled_from(["header", "claims"]),
    st.sampled_from(["kid", "crit", "exp", "nonce", "extra"]),
    st.none() | st.text(max_size=8) | st.integers(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(breaking=_BREAKING_ON_ROUTES, harmless=st.lists(_HARMLESS_ON_ROUTES, max_size=2))
def test_mutated_proofs_never_pass_a_route(breaking: Any, harmless: list[Any]) -> None:
    """A broken proof for a DPoP-bound token on the platform's route: never a 2xx, never
    a 5xx, and always the DPoP challenge."""

    async def run() -> None:
        async with open_storage("memory", Path("/nonexistent")) as storage:
            platform = await dpop_world("memory", storage, dpop_settings())
            async with platform.http:
                holder = Holder(platform)
                exchanged = await exchange(
                    platform, await platform.code(), [holder.proof("POST", TOKEN_URL)]
                )
                token = exchanged.json()["access_token"]
                proof = _mutated(
                    holder, breaking, harmless, method="GET", url=ACCOUNT_URL, token=token
                )
                if proof is None:
                    return
                try:
                    response = await platform.http.get(
                        ACCOUNT_URL, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
                    )
                except (UnicodeEncodeError, httpx.LocalProtocolError):
                    return  # not sendable as a header value
                assert 400 <= response.status_code < 500, response.text
                assert response.headers["www-authenticate"].startswith("DPoP "), response.headers

    anyio.run(run)
