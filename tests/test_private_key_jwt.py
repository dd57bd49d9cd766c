"""``private_key_jwt`` client authentication (RFC 7523 §2.2, OIDC Core §9, FAPI 2.0
§5.3.2.1), through HTTP: Authlib's client completes the flows; every refused assertion is
401 ``invalid_client`` with one sentence, its problem in the audit event."""

from __future__ import annotations

import base64
import json
import secrets
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

from starlette_broker_oauth import SQLAlchemyStorage, create_oauth_app
from starlette_broker_oauth.errors import RegistrationError
from starlette_broker_oauth.events import ClientAuthenticationFailed, OAuthEvent
from starlette_broker_oauth.models import ClientAuthMethod

from .conftest import (
    ISSUER,
    POSTGRES_URL,
    Platform,
    drop_tables,
    full_settings,
    new_storage,
    open_storage,
    seed_full_platform,
)
from .test_cli import CLI

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFUSED = {"error": "invalid_client", "error_description": "Client authentication failed."}
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
ED = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, not registered


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def sign(key: Key, claims: dict[str, Any], *, alg: str = "PS256", **header: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA, HS256
        return jws.serialize_compact(
            {"alg": alg, **header}, json.dumps(claims), key, algorithms=[alg]
        )


def claims_for(client_id: str, now: float, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "iat": int(now),
        "exp": int(now) + 60,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@dataclass
class KeyedPlatform:
    world: Platform
    events: list[OAuthEvent]

    @property
    def client_id(self) -> str:
        return self.world.client_id

    def now(self) -> float:
        return self.world.clock.time()

    def assertion(self, key: Key = RSA, *, alg: str = "PS256", **changes: Any) -> str:
        header = {"kid": key.kid} if key.kid else {}
        return sign(key, claims_for(self.client_id, self.now(), **changes), alg=alg, **header)

    async def code(self) -> str:
        """A code for the client, from the partner while it may still use its secret."""
        method = (await self.world.storage.get_client(self.client_id)).token_endpoint_auth_method  # type: ignore[union-attr]
        await self.world.storage.update_client(
            self.client_id, token_endpoint_auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC
        )
        code = await self.world.code()
        await self.world.storage.update_client(self.client_id, token_endpoint_auth_method=method)
        return code

    async def exchange(self, assertion: str, **extra: str) -> httpx.Response:
        data = {
            "grant_type": "authorization_code",
            "code": await self.code(),
            "redirect_uri": self.world.redirect_uri,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            **extra,
        }
        return await self.world.http.post("/oauth/token", data=data)

    def failures(self) -> list[str]:
        return [e.reason for e in self.events if isinstance(e, ClientAuthenticationFailed)]


async def keyed(backend: str, storage: Any, **overrides: Any) -> KeyedPlatform:
    events: list[OAuthEvent] = []
    values = {"private_key_jwt": True, **overrides}
    world = await seed_full_platform(backend, storage, full_settings(**values), events=events)
    await storage.update_client(
        world.client_id,
        jwks=public_jwks(RSA, EC, ED),
        token_endpoint_auth_method=ClientAuthMethod.PRIVATE_KEY_JWT,
    )
    return KeyedPlatform(world, events)


@pytest.fixture
async def platform_keys(backend: str, tmp_path: Path) -> AsyncIterator[KeyedPlatform]:
    async with open_storage(backend, tmp_path) as storage:
        world = await keyed(backend, storage)
        async with world.world.http:
            yield world


@pytest.fixture
async def memory_keys(tmp_path: Path) -> AsyncIterator[KeyedPlatform]:
    async with open_storage("memory", tmp_path) as storage:
        world = await keyed("memory", storage)
        async with world.world.http:
            yield world


class FreshPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """Authlib's ``private_key_jwt`` with a 60-second ``exp`` and a new ``jti`` each time
    (its default ``exp`` is an hour, past the server's 5-minute limit)."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        self.claims = {"exp": int(time.time()) + 60}
        signed: str = super().sign(auth, token_endpoint)
        return signed


pytestmark = pytest.mark.anyio


async def test_authlib_client_exchanges_a_code_and_refreshes(
    platform_keys: KeyedPlatform,
) -> None:
    world = platform_keys
    code = await world.code()
    # The audience is the issuer identifier (FAPI 2.0 §5.3.2.1), not the token endpoint.
    method = FreshPrivateKeyJWT(ISSUER, alg="PS256", headers={"kid": "rsa-1"})
    async with AsyncOAuth2Client(
        client_id=world.client_id,
        client_secret=RSA,
        token_endpoint_auth_method=method,
        transport=httpx2.ASGITransport(app=world.world.app),
        base_url=ISSUER,
    ) as client:
        token = await client.fetch_token(
            f"{ISSUER}/oauth/token",
            grant_type="authorization_code",
            code=code,
            redirect_uri=world.world.redirect_uri,
        )
        assert token["token_type"] == "Bearer"
        assert (await world.world.account(token["access_token"])).status_code == 200
        refreshed = await client.refresh_token(
            f"{ISSUER}/oauth/token", refresh_token=token["refresh_token"]
        )
    assert refreshed["access_token"] != token["access_token"]
    assert (await world.world.account(refreshed["access_token"])).status_code == 200
    assert world.failures() == []


@pytest.mark.parametrize(("key", "alg"), [(RSA, "PS256"), (EC, "ES256"), (ED, "EdDSA")])
async def test_default_algorithms_at_introspection_and_revocation(
    memory_keys: KeyedPlatform, key: Key, alg: str
) -> None:
    world = memory_keys
    response = await world.exchange(world.assertion(key, alg=alg))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    http = world.world.http
    # Without kid: the only registered key for the algorithm.
    unnamed = sign(key, claims_for(world.client_id, world.now()), alg=alg)
    introspected = await http.post(
        "/oauth/introspect",
        data={"token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": unnamed},
    )
    assert introspected.status_code == 200
    assert introspected.json()["active"] is True
    revoked = await http.post(
        "/oauth/revoke",
        data={
            "token": token,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": world.assertion(key, alg=alg),
        },
    )
    assert revoked.status_code == 200
    assert (await world.world.account(token)).status_code == 401


def _refusals(client_id: str, now: float) -> dict[str, tuple[str, str]]:
    """Each refused assertion, by test id: (assertion, the problem the audit names)."""
    base = claims_for(client_id, now)

    def with_(**changes: Any) -> dict[str, Any]:
        return claims_for(client_id, now, **changes)

    rsa = {"kid": "rsa-1"}
    unsigned = ".".join([_b64({"alg": "none", "kid": "rsa-1"}), _b64(base), ""])
    return {
        "aud-array": (sign(RSA, with_(aud=[ISSUER]), **rsa), "assertion_wrong_audience"),
        "aud-token-endpoint": (
            sign(RSA, with_(aud=f"{ISSUER}/oauth/token"), **rsa),
            "assertion_wrong_audience",
        ),
        "no-aud": (sign(RSA, with_(aud=None), **rsa), "assertion_wrong_audience"),
        "expired": (sign(RSA, with_(exp=int(now) - 1), **rsa), "assertion_expired"),
        "exp-too-far": (
            sign(RSA, with_(exp=int(now) + 301), **rsa),
            "assertion_lifetime_too_long",
        ),
        "no-exp": (sign(RSA, with_(exp=None), **rsa), "assertion_without_exp"),
        "nbf-future": (sign(RSA, with_(nbf=int(now) + 120), **rsa), "assertion_not_yet_valid"),
        "no-jti": (sign(RSA, with_(jti=None), **rsa), "assertion_without_jti"),
        "unknown-kid": (sign(RSA, base, kid="nobody"), "assertion_unknown_key"),
        "unregistered-key": (sign(OTHER, base, **rsa), "assertion_bad_signature"),
        "unregistered-key-no-kid": (
            sign(RSAKey.generate_key(2048), base, alg="PS384"),
            "assertion_algorithm_refused",
        ),
        "kid-of-another-type": (sign(RSA, base, kid="ec-1"), "assertion_unknown_key"),
        "alg-none": (unsigned, "assertion_algorithm_refused"),
        "hs256-with-secret": ("", "assertion_algorithm_refused"),  # signed in the test
        "wrong-iss": (sign(RSA, with_(iss="someone-else"), **rsa), "assertion_wrong_issuer"),
        "wrong-sub": (sign(RSA, with_(sub="someone-else"), **rsa), "assertion_unknown_client"),
        "garbage": ("not.a.jwt", "assertion_malformed"),
    }


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


REFUSAL_IDS = sorted(_refusals("x", 0.0))


@pytest.mark.parametrize("case", REFUSAL_IDS)
async def test_each_refused_assertion_is_invalid_client(
    memory_keys: KeyedPlatform, case: str
) -> None:
    world = memory_keys
    assertion, problem = _refusals(world.client_id, world.now())[case]
    if case == "hs256-with-secret":
        secret = OctKey.import_key(world.world.client_secret)
        claims = claims_for(world.client_id, world.now())
        assertion = sign(secret, claims, alg="HS256")
    response = await world.exchange(assertion)
    assert response.status_code == 401, response.text
    assert response.json() == REFUSED
    assert "access_token" not in response.text
    assert world.failures() == [problem]


async def test_a_jti_is_used_once(platform_keys: KeyedPlatform) -> None:
    world = platform_keys
    assertion = world.assertion()
    assert (await world.exchange(assertion)).status_code == 200
    again = await world.exchange(assertion)
    assert (again.status_code, again.json()) == (401, REFUSED)
    assert world.failures() == ["assertion_replayed"]


SQL = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


@pytest.mark.parametrize("kind", SQL)
async def test_a_jti_is_used_once_across_workers(kind: str, tmp_path: Path) -> None:
    """Two storages on one database, as two workers: an assertion spent at one is
    refused at the other."""
    first = new_storage(kind, tmp_path)
    url = first.url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
    prefix = first.table_prefix  # type: ignore[attr-defined]
    try:
        async with first:
            world = await keyed(kind, first)
            second = SQLAlchemyStorage(url, table_prefix=prefix)
            async with world.world.http, second:
                other = create_oauth_app(
                    settings=world.world.settings, storage=second, clock=world.world.clock
                )
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=other), base_url=ISSUER
                ) as http:
                    assertion = world.assertion(EC, alg="ES256")
                    assert (await world.exchange(assertion)).status_code == 200
                    replayed = await http.post(
                        "/oauth/introspect",
                        data={
                            "token": "x",
                            "client_assertion_type": ASSERTION_TYPE,
                            "client_assertion": assertion,
                        },
                    )
                    assert (replayed.status_code, replayed.json()) == (401, REFUSED)
    finally:
        await drop_tables(first)


async def test_a_keys_only_client_is_refused_its_secret(memory_keys: KeyedPlatform) -> None:
    world = memory_keys
    platform = world.world
    code = await world.code()
    basic = await platform.exchange(code)
    assert (basic.status_code, basic.json()) == (401, REFUSED)
    post = await platform.exchange(code, method="client_secret_post")
    assert (post.status_code, post.json()) == (401, REFUSED)
    # The partner endpoints carry the client's secret: refused too, in their shape.
    direct = await platform.http.post(
        "/v1/oauth/token", json=platform.grant_body(response_type="token"), auth=platform.partner
    )
    assert direct.status_code == 401
    assert direct.json()["code"] == 40110000
    assert "access_token" not in direct.text
    assert (await platform.authorize()).status_code == 401
    assert world.failures() == ["secret_not_allowed"] * 4


async def test_a_client_with_keys_and_a_secret_may_use_either(
    memory_keys: KeyedPlatform,
) -> None:
    world = memory_keys
    await world.world.storage.update_client(
        world.client_id, token_endpoint_auth_method="client_secret_basic"
    )
    assert (await world.world.exchange(await world.world.code())).status_code == 200
    assert (await world.exchange(world.assertion())).status_code == 200


async def test_one_method_per_request(memory_keys: KeyedPlatform) -> None:
    world = memory_keys
    both = await world.exchange(world.assertion(), client_secret=world.world.client_secret)
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"


async def test_a_client_id_parameter_must_name_the_signer(memory_keys: KeyedPlatform) -> None:
    world = memory_keys
    other = await world.world.storage.create_client(
        name="Other", redirect_uris=["https://other.example/cb"], jwks=public_jwks(EC)
    )
    response = await world.exchange(world.assertion(), client_id=other.client_id)
    assert (response.status_code, response.json()) == (401, REFUSED)


async def test_off_by_default(tmp_path: Path) -> None:
    async with open_storage("memory", tmp_path) as storage:
        world = KeyedPlatform(
            await seed_full_platform("memory", storage, full_settings(), events=[]), []
        )
        await storage.update_client(world.client_id, jwks=public_jwks(RSA))
        async with world.world.http:
            metadata = (
                await world.world.http.get("/.well-known/oauth-authorization-server")
            ).json()
            assert "private_key_jwt" not in metadata["token_endpoint_auth_methods_supported"]
            assert "token_endpoint_auth_signing_alg_values_supported" not in metadata
            response = await world.exchange(world.assertion())
            assert response.status_code == 401


async def test_metadata(memory_keys: KeyedPlatform) -> None:
    metadata = (await memory_keys.world.http.get("/.well-known/oauth-authorization-server")).json()
    for endpoint in ("token", "revocation", "introspection"):
        assert "private_key_jwt" in metadata[f"{endpoint}_endpoint_auth_methods_supported"]
        algorithms = metadata[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert algorithms == ["ES256", "EdDSA", "PS256"]


# registration

PRIVATE = {"keys": [RSA.as_dict(private=True)]}
SYMMETRIC = {"keys": [OctKey.generate_key(256).as_dict(private=True)]}
X25519 = {"keys": [OKPKey.generate_key("X25519").as_dict(private=False)]}
BAD_KEYS: dict[str, tuple[Any, str]] = {
    "private": (PRIVATE, "private key"),
    "symmetric": (SYMMETRIC, "symmetric key"),
    "bad-json": ('{"keys": [', "not valid JSON"),
    "unsupported-crv": (X25519, "crv must be one of"),
    "unsupported-kty": ({"keys": [{"kty": "XYZ"}]}, "kty must be RSA, EC or OKP"),
}


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
async def test_registration_refuses_keys(backend: str, tmp_path: Path, case: str) -> None:
    jwks, words = BAD_KEYS[case]
    async with open_storage(backend, tmp_path) as storage:
        with pytest.raises(RegistrationError, match=words):
            await storage.create_client(name="A", redirect_uris=["https://a.example/cb"], jwks=jwks)
        created = await storage.create_client(name="B", redirect_uris=["https://b.example/cb"])
        with pytest.raises(RegistrationError, match=words):
            await storage.update_client(created.client_id, jwks=jwks)
        assert (await storage.get_client(created.client_id)).jwks is None  # type: ignore[union-attr]
        assert await storage.list_clients() == [await storage.get_client(created.client_id)]


async def test_registration_refuses_keys_only_without_keys(backend: str, tmp_path: Path) -> None:
    async with open_storage(backend, tmp_path) as storage:
        with pytest.raises(RegistrationError, match="needs its public keys"):
            await storage.create_client(
                name="A",
                redirect_uris=["https://a.example/cb"],
                token_endpoint_auth_method="private_key_jwt",
            )
        created = await storage.create_client(name="B", redirect_uris=["https://b.example/cb"])
        with pytest.raises(RegistrationError, match="needs its public keys"):
            await storage.update_client(
                created.client_id, token_endpoint_auth_method="private_key_jwt"
            )
        client = await storage.get_client(created.client_id)
        assert client is not None
        assert client.token_endpoint_auth_method is ClientAuthMethod.CLIENT_SECRET_BASIC
        keyed_client = await storage.update_client(
            created.client_id,
            jwks=json.dumps(public_jwks(EC)),
            token_endpoint_auth_method="private_key_jwt",
        )
        assert keyed_client is not None
        assert keyed_client.token_endpoint_auth_method is ClientAuthMethod.PRIVATE_KEY_JWT
        assert json.loads(keyed_client.jwks or "") == public_jwks(EC)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    tool = CLI(f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}", capsys)
    tool("db", "upgrade")
    return tool


def test_cli_registers_keys(cli: CLI, tmp_path: Path) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(public_jwks(EC)))
    created = cli.json(
        "client", "create", "--name", "Keys", "--redirect-uri", "https://k.example/cb",
        "--jwks", str(keys), "--auth-method", "private_key_jwt",
    )  # fmt: skip
    shown = cli.json("client", "show", created["client_id"])
    assert shown["token_endpoint_auth_method"] == "private_key_jwt"
    assert shown["jwks"] == public_jwks(EC)
    keys.write_text(json.dumps(public_jwks(ED)))
    updated = cli.json("client", "update", created["client_id"], "--jwks", str(keys))
    assert updated["jwks"] == public_jwks(ED)
    assert "OKP ed-1" in cli("client", "show", created["client_id"])
    for case, (jwks, words) in BAD_KEYS.items():
        keys.write_text(jwks if isinstance(jwks, str) else json.dumps(jwks))
        line = cli.fails("client", "update", created["client_id"], "--jwks", str(keys))
        assert words in line, case
        line = cli.fails(
            "client", "create", "--name", "X", "--redirect-uri", "https://x.example/cb",
            "--jwks", str(keys),
        )  # fmt: skip
        assert words in line, case
    assert "needs its public keys" in cli.fails(
        "client", "create", "--name", "X", "--redirect-uri", "https://x.example/cb",
        "--auth-method", "private_key_jwt",
    )  # fmt: skip
    assert "cannot read the JWKS file" in cli.fails(
        "client", "update", created["client_id"], "--jwks", str(tmp_path / "missing.json")
    )


# Hypothesis: mutated assertions never get a token, nor a 5xx.

_CLAIM_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_CLAIMS = st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti"])


MUTATIONS = st.fixed_dictionaries(
    {
        "claims": st.dictionaries(_CLAIMS, _CLAIM_VALUES, min_size=1, max_size=3),
        "kid": st.sampled_from(["rsa-1", "ec-1", "nobody", None]),
        "alg": st.sampled_from(["PS256", "ES256", "EdDSA", "RS256", "PS384"]),
        "cut": st.sampled_from(["none", "flip", "truncate", "append"]),
        "at": st.integers(min_value=0, max_value=4096),
        "text": st.text(min_size=1, max_size=5),
    }
)
_KEYS: dict[str, Key] = {"PS256": RSA, "RS256": RSA, "PS384": RSA, "ES256": EC, "EdDSA": ED}


def mutated(mutation: dict[str, Any], client_id: str, now: float) -> str:
    claims = claims_for(client_id, now) | mutation["claims"]
    header = {} if mutation["kid"] is None else {"kid": mutation["kid"]}
    signed = sign(_KEYS[mutation["alg"]], claims, alg=mutation["alg"], **header)
    at = mutation["at"] % len(signed)
    if mutation["cut"] == "flip":
        signed = signed[:at] + mutation["text"] + signed[at + 1 :]
    elif mutation["cut"] == "truncate":
        signed = signed[:at]
    elif mutation["cut"] == "append":
        signed += mutation["text"]
    return signed


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=MUTATIONS)
async def test_mutated_assertions_never_get_a_token(
    memory_keys: KeyedPlatform, mutation: dict[str, Any]
) -> None:
    world = memory_keys
    assertion = mutated(mutation, world.client_id, world.now())
    response = await world.world.http.post(
        "/oauth/introspect",
        data={"token": "x", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion},
    )
    assert response.status_code in (200, 400, 401), response.text
    if response.status_code == 401:
        assert response.json() == REFUSED
    assert "access_token" not in response.text
