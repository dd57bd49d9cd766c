"""The FAPI 2.0 switch: one setting puts the whole platform under the profile, and a client
registered for it is under it alone; the partner endpoints issue such clients no token."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from starlette_broker_oauth import OAuthSettings
from starlette_broker_oauth.errors import ConfigurationError

from .conftest import ISSUER, open_storage, seed_platform
from .test_cli import CLI

pytestmark = pytest.mark.anyio

REFUSED = "client does not exist, you do not have access to it, or the secret is wrong"


def test_one_setting_turns_on_the_profile() -> None:
    settings = OAuthSettings(issuer=ISSUER, fapi=True)
    assert settings.private_key_jwt
    assert settings.require_pushed_authorization_requests
    assert settings.dpop_required
    assert settings.code_lifetime <= timedelta(seconds=60)
    with pytest.raises(ConfigurationError, match="code_lifetime must be at most 60 seconds"):
        OAuthSettings(issuer=ISSUER, fapi=True, code_lifetime=timedelta(minutes=5))
    plain = OAuthSettings(issuer=ISSUER)
    assert not plain.fapi
    assert not plain.private_key_jwt
    assert not plain.dpop_required
    assert not plain.require_pushed_authorization_requests


async def test_the_metadata_under_the_profile(backend: str, tmp_path: Path) -> None:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, OAuthSettings(issuer=ISSUER, fapi=True))
        async with world.http:
            document = (await world.http.get("/.well-known/oauth-authorization-server")).json()
    for endpoint in ("token", "revocation", "introspection"):
        assert document[f"{endpoint}_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert set(document[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]) == {
            "PS256",
            "ES256",
            "EdDSA",
        }
    assert document["require_pushed_authorization_requests"] is True
    assert document["pushed_authorization_request_endpoint"] == f"{ISSUER}/oauth/par"
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "PS256", "EdDSA"]
    assert document["code_challenge_methods_supported"] == ["S256"]


async def test_shared_secrets_are_refused_under_the_profile(backend: str, tmp_path: Path) -> None:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, OAuthSettings(issuer=ISSUER, fapi=True))
        async with world.http:
            auth = (world.client_id, world.client_secret)
            for path, data in [
                ("/oauth/token", {"grant_type": "authorization_code", "code": "c" * 43}),
                ("/oauth/revoke", {"token": "t" * 43}),
                ("/oauth/introspect", {"token": "t" * 43}),
                ("/oauth/par", {"response_type": "code", "redirect_uri": world.redirect_uri}),
            ]:
                answer = await world.http.post(path, data=data, auth=auth)
                assert answer.status_code == 401, (path, answer.text)
                assert answer.json()["error"] == "invalid_client"
            # The partner endpoints issue no token directly to a client under the profile.
            direct = await world.http.post(
                "/v1/oauth/token", json=world.grant_body(), auth=world.partner
            )
            # The client's secret is no credential under the profile: the partner path,
            # which authenticates clients by their secret, refuses it as any wrong secret.
            assert direct.status_code == 401, direct.text
            assert direct.json() == {"code": 40110000, "message": REFUSED}


async def test_one_client_under_the_profile(backend: str, tmp_path: Path) -> None:
    """On a platform without the switch, a client registered for the profile gets no token
    from the partner's direct path; another client still does."""
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, OAuthSettings(issuer=ISSUER))
        key = ECKey.generate_key("P-256")
        fapi = await storage.create_client(
            name="FAPI App",
            redirect_uris=[world.redirect_uri],
            jwks={"keys": [key.as_dict(private=False)]},
            token_endpoint_auth_method="private_key_jwt",
            require_pushed_authorization_requests=True,
            dpop_bound_access_tokens=True,
        )
        await storage.allow_partner_client(world.partner[0], fapi.client_id)
        async with world.http:
            refused = await world.http.post(
                "/v1/oauth/token",
                json=world.grant_body(client_id=fapi.client_id, client_secret=fapi.client_secret),
                auth=world.partner,
            )
            assert refused.status_code == 401, refused.text
            assert refused.json() == {"code": 40110000, "message": REFUSED}
            other = await world.http.post(
                "/v1/oauth/token", json=world.grant_body(), auth=world.partner
            )
            assert other.status_code == 200
            assert other.json()["token_type"] == "Bearer"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    tool = CLI(f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}", capsys)
    tool("db", "upgrade")
    return tool


def test_the_cli_puts_a_client_under_the_profile(cli: CLI, tmp_path: Path) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}))
    created = cli.json(
        "client", "create", "--name", "FAPI App", "--redirect-uri", "https://f.example/cb",
        "--jwks", str(keys), "--fapi",
    )  # fmt: skip
    shown = cli.json("client", "show", created["client_id"])
    assert shown["token_endpoint_auth_method"] == "private_key_jwt"
    assert shown["require_pushed_authorization_requests"] is True
    assert shown["dpop_bound_access_tokens"] is True
    # Without keys, the profile cannot be had.
    assert "needs its public keys" in cli.fails(
        "client", "create", "--name", "X", "--redirect-uri", "https://x.example/cb", "--fapi"
    )
    plain = cli.json(
        "client", "create", "--name", "Plain", "--redirect-uri", "https://p.example/cb"
    )
    assert "dpop_bound_access_tokens" not in cli.json("client", "show", plain["client_id"])
    moved = cli.json(
        "client", "update", plain["client_id"], "--jwks", str(keys), "--fapi",
    )  # fmt: skip
    assert moved["token_endpoint_auth_method"] == "private_key_jwt"
    assert moved["require_pushed_authorization_requests"] is True
    assert moved["dpop_bound_access_tokens"] is True
