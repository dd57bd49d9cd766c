"""The FAPI 2.0 switch: one setting puts the whole platform under the profile, and a client
registered for it is under it alone; the partner endpoints issue such clients no token."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from starlette_broker_oauth import MemoryStorage, OAuthSettings
from starlette_broker_oauth.clock import SYSTEM_CLOCK
from starlette_broker_oauth.core.records import Minter
from starlette_broker_oauth.errors import ConfigurationError
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    bearer_error_response,
    requires_token,
)
from starlette_broker_oauth.security import hash_secret

from .conftest import ISSUER, open_storage, pkce_pair, seed_platform
from .test_cli import CLI
from .test_consent import Form, location
from .test_dpop import TOKEN_URL, Holder, dpop_settings, dpop_world, exchange

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


# What a review of the profile found, each kept from coming back.


async def test_no_partner_direct_token_for_a_client_whose_tokens_are_bound(
    tmp_path: Path,
) -> None:
    """The partner's direct token carries no proof: a platform that requires DPoP, or a
    client registered for DPoP-bound tokens, gets none that way (it would be a bearer
    token), with the partner endpoints' 422."""
    for settings, bound in [
        (OAuthSettings(issuer=ISSUER, dpop_required=True), False),
        (OAuthSettings(issuer=ISSUER), True),
    ]:
        async with open_storage("memory", tmp_path) as storage:
            world = await seed_platform("memory", storage, settings)
            if bound:
                await storage.update_client(world.client_id, dpop_bound_access_tokens=True)
            async with world.http:
                answer = await world.http.post(
                    "/v1/oauth/token", json=world.grant_body(), auth=world.partner
                )
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == 42210000
        assert "DPoP" in answer.json()["message"]


async def test_a_proof_names_its_path_exactly(tmp_path: Path) -> None:
    """The request's path is compared escaped as sent: a proof for ``/v2/files/report``
    is no good for ``/v2/files/report%3Fx`` (another resource), and a proof for a path
    with an escaped ``?`` is good for it."""
    async with open_storage("memory", tmp_path) as storage:
        world = await dpop_world("memory", storage, dpop_settings())
        assert world.oauth is not None
        verifier = world.oauth.state.token_verifier

        @requires_token("general", verifier=verifier)
        async def files(request: Request) -> Response:
            return JSONResponse({"file": request.path_params["name"]})

        app = Starlette(routes=[Route("/v2/files/{name:path}", files), Mount("/", world.oauth)])
        await world.http.aclose()
        world.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)
        async with world.http:
            holder = Holder(world)
            exchanged = await exchange(world, await world.code(), [holder.proof("POST", TOKEN_URL)])
            token = exchanged.json()["access_token"]
            for htu, path, status in [
                ("/v2/files/report", "/v2/files/report", 200),
                ("/v2/files/report", "/v2/files/report%3Fversion=old", 401),
                ("/v2/files/report", "/v2/files/report%23frag", 401),
                ("/v2/files/A", "/v2/files/%2541", 401),
                ("/v2/files/a%3Fb", "/v2/files/a%3Fb", 200),
                ("/v2/files/%7Euser", "/v2/files/~user", 200),
            ]:
                proof = holder.proof("GET", ISSUER + htu, token=token)
                answer = await world.http.get(
                    path, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
                )
                assert answer.status_code == status, (htu, path, answer.text)
                if status == 401:
                    assert answer.json()["error"] == "invalid_dpop_proof"


def test_a_websocket_handshake_with_dpop_is_refused_not_crashed(tmp_path: Path) -> None:
    async def build() -> Starlette:
        storage = MemoryStorage()
        await storage.__aenter__()
        world = await dpop_world("memory", storage, dpop_settings())
        assert world.oauth is not None

        async def stream(socket: WebSocket) -> None:
            await socket.accept()
            await socket.send_text("quotes")
            await socket.close()

        backend = BearerTokenBackend(world.oauth.state.token_verifier)
        return Starlette(
            routes=[WebSocketRoute("/v2/stream", stream), Mount("/", world.oauth)],
            middleware=[
                Middleware(
                    AuthenticationMiddleware, backend=backend, on_error=bearer_error_response
                )
            ],
        )

    client = TestClient(anyio.run(build), raise_server_exceptions=True)
    for scheme in ("Bearer", "DPoP"):
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect(
                "/v2/stream", headers={"Authorization": f"{scheme} abc", "DPoP": "x.y.z"}
            ),
        ):
            pass


async def test_dpop_jkt_is_text_and_a_thumbprint(tmp_path: Path) -> None:
    """A ``dpop_jkt`` that is not text is refused on the partner path (it was dropped, and
    the code issued unbound); one that is not a thumbprint is refused at PAR."""
    async with open_storage("memory", tmp_path) as storage:
        world = await seed_platform("memory", storage, OAuthSettings(issuer=ISSUER))
        async with world.http:
            for value in (["a"], {"a": 1}):
                answer = await world.http.post(
                    "/v1/oauth/authorize",
                    json=world.grant_body(dpop_jkt=value),
                    auth=world.partner,
                )
                assert answer.status_code == 422, answer.text
            _, challenge = pkce_pair()
            pushed = await world.http.post(
                "/oauth/par",
                data={
                    "response_type": "code",
                    "redirect_uri": world.redirect_uri,
                    "scope": "general",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                    "dpop_jkt": "not-a-thumbprint",
                },
                auth=(world.client_id, world.client_secret),
            )
            assert pushed.status_code == 400
            assert pushed.json()["error"] == "invalid_request"
            assert "dpop_jkt" in pushed.json()["error_description"]


async def test_a_wrong_secret_does_not_use_up_a_pushed_request(tmp_path: Path) -> None:
    async with open_storage("memory", tmp_path) as storage:
        world = await seed_platform("memory", storage, OAuthSettings(issuer=ISSUER))
        async with world.http:
            _, challenge = pkce_pair()
            pushed = await world.http.post(
                "/oauth/par",
                data={
                    "response_type": "code",
                    "redirect_uri": world.redirect_uri,
                    "scope": "general",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                },
                auth=(world.client_id, world.client_secret),
            )
            request_uri = pushed.json()["request_uri"]
            body = {
                "client_id": world.client_id,
                "account_id": str(world.paper_account),
                "request_uri": request_uri,
            }
            wrong = await world.http.post(
                "/v1/oauth/authorize", json=body | {"client_secret": "w" * 43}, auth=world.partner
            )
            assert wrong.status_code == 401
            right = await world.http.post(
                "/v1/oauth/authorize",
                json=body | {"client_secret": world.client_secret},
                auth=world.partner,
            )
            assert right.status_code == 200, right.text
            assert right.json()["code"]


async def test_a_client_under_the_profile_gets_codes_of_at_most_a_minute(tmp_path: Path) -> None:
    settings = OAuthSettings(issuer=ISSUER, code_lifetime=timedelta(minutes=10))
    async with open_storage("memory", tmp_path) as storage:
        key = ECKey.generate_key("P-256")
        fapi = await storage.create_client(
            name="FAPI App",
            redirect_uris=["https://f.example/cb"],
            jwks={"keys": [key.as_dict(private=False)]},
            token_endpoint_auth_method="private_key_jwt",
            require_pushed_authorization_requests=True,
            dpop_bound_access_tokens=True,
        )
        plain = await storage.create_client(name="Plain", redirect_uris=["https://p.example/cb"])
        account = await storage.create_account()
        minter = Minter(settings, SYSTEM_CLOCK)
        for client_id, lifetime in [(fapi.client_id, 60), (plain.client_id, 600)]:
            client = await storage.get_client(client_id)
            assert client is not None
            issued = minter.code(
                client,
                account.account_id,
                redirect_uri=client.redirect_uris[0],
                scope="general",
                code_challenge=None,
                code_challenge_method=None,
            )
            assert (issued.record.expires_at - issued.record.issued_at).total_seconds() == lifetime


async def test_a_proof_at_par_binds_the_code_to_its_key(tmp_path: Path) -> None:
    """RFC 9449 §10.1: a DPoP proof sent with the pushed request binds the code as
    ``dpop_jkt`` does; a bad proof is refused, and so is a ``dpop_jkt`` of another key."""
    async with open_storage("memory", tmp_path) as storage:
        world = await dpop_world("memory", storage, dpop_settings())
        async with world.http:
            holder, other = Holder(world), Holder(world)
            verifier, challenge = pkce_pair()
            body = {
                "response_type": "code",
                "redirect_uri": world.redirect_uri,
                "scope": "general",
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            auth = (world.client_id, world.client_secret)
            par = f"{ISSUER}/oauth/par"
            garbage = await world.http.post(
                "/oauth/par", data=body, auth=auth, headers={"DPoP": "garbage"}
            )
            assert garbage.status_code == 400
            assert garbage.json()["error"] == "invalid_dpop_proof"
            mismatch = await world.http.post(
                "/oauth/par",
                data=body | {"dpop_jkt": other.jkt},
                auth=auth,
                headers={"DPoP": holder.proof("POST", par)},
            )
            assert mismatch.status_code == 400
            assert mismatch.json()["error"] == "invalid_dpop_proof"
            pushed = await world.http.post(
                "/oauth/par", data=body, auth=auth, headers={"DPoP": holder.proof("POST", par)}
            )
            assert pushed.status_code == 201, pushed.text
            query = urlencode(
                {"client_id": world.client_id, "request_uri": pushed.json()["request_uri"]}
            )
            cookie = {"Cookie": f"session={world.paper_account}"}
            page = await world.http.get(f"/oauth/authorize?{query}", headers=cookie)
            form = Form(page.text)
            answer = await world.http.post(form.action, data=form.submit("approve"), headers=cookie)
            code = location(answer)["code"]
            grant = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": world.redirect_uri,
                "code_verifier": verifier,
            }
            stolen = await world.http.post(
                "/oauth/token",
                data=grant,
                auth=auth,
                headers={"DPoP": other.proof("POST", TOKEN_URL)},
            )
            assert stolen.status_code == 400
            assert stolen.json()["error"] == "invalid_grant"
            record = await storage.get_code(hash_secret(code))
            assert record is not None
            assert record.dpop_jkt == holder.jkt
