"""Mounting under a prefix: the published URLs work, the metadata is where RFC 8414 §3.1
puts it, and a mount the issuer does not name is refused with a clear message."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_broker_oauth import (
    ConfigurationError,
    MemoryStorage,
    OAuthSettings,
    create_oauth_app,
    metadata_route,
)

pytestmark = pytest.mark.anyio


async def test_an_app_mounted_under_its_issuers_path() -> None:
    storage = MemoryStorage()
    settings = OAuthSettings(issuer="https://broker.test/auth")
    oauth = create_oauth_app(settings=settings, storage=storage)
    host = Starlette(routes=[metadata_route(oauth), Mount("/auth", oauth)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="https://broker.test"
    ) as http:
        rfc = await http.get("/.well-known/oauth-authorization-server/auth")
        mounted = await http.get("/auth/.well-known/oauth-authorization-server")
        assert rfc.status_code == mounted.status_code == 200
        assert rfc.json() == mounted.json()
        metadata = rfc.json()
        assert metadata["issuer"] == "https://broker.test/auth"
        assert metadata["token_endpoint"] == "https://broker.test/auth/oauth/token"
        # Every published endpoint answers where it says it is.
        for key in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
            path = metadata[key].removeprefix("https://broker.test")
            answer = await http.post(path, data={})
            assert answer.status_code in {400, 401}, (key, answer.text)
            assert "error" in answer.json()


async def test_a_mount_the_issuer_does_not_name_is_refused() -> None:
    oauth = create_oauth_app(
        settings=OAuthSettings(issuer="https://broker.test"), storage=MemoryStorage()
    )
    host = Starlette(routes=[Mount("/auth", oauth)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="https://broker.test"
    ) as http:
        with pytest.raises(ConfigurationError) as refused:
            await http.get("/auth/.well-known/oauth-authorization-server")
    assert str(refused.value) == (
        "the OAuth app is mounted at '/auth' but OAuthSettings.issuer 'https://broker.test' "
        "does not end with it: set the issuer to the public URL of the mount point "
        "(e.g. 'https://broker.test/auth')"
    )


async def test_a_proxy_prefix_before_the_mount_is_fine() -> None:
    """The proxy serves the platform under /api; the app sees only /auth."""
    oauth = create_oauth_app(
        settings=OAuthSettings(issuer="https://broker.test/api/auth"), storage=MemoryStorage()
    )
    host = Starlette(routes=[Mount("/auth", oauth)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="https://broker.test"
    ) as http:
        answer = await http.get("/auth/.well-known/oauth-authorization-server")
    assert answer.json()["token_endpoint"] == "https://broker.test/api/auth/oauth/token"


def test_metadata_route_needs_an_issuer_with_a_path() -> None:
    oauth = create_oauth_app(
        settings=OAuthSettings(issuer="https://broker.test"), storage=MemoryStorage()
    )
    with pytest.raises(ConfigurationError, match="the issuer has no path"):
        metadata_route(oauth)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scopes_supported", "general trading"),
        ("scopes_supported", ["general", 3]),
        ("response_types", "code"),
    ],
)
def test_settings_refuse_a_string_where_a_set_belongs(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"{field} must be a set of strings"):
        OAuthSettings(issuer="https://broker.test", **{field: value})  # type: ignore[arg-type]


def test_settings_take_any_collection_of_scopes() -> None:
    settings = OAuthSettings(
        issuer="https://broker.test",
        scopes_supported=("general", "trading"),  # type: ignore[arg-type]
        response_types=["code"],  # type: ignore[arg-type]
    )
    assert settings.scopes_supported == frozenset({"general", "trading"})
    assert settings.response_types == frozenset({"code"})
    assert hash(settings.scopes_supported)


async def test_a_storage_nobody_entered_says_so() -> None:
    from starlette_broker_oauth import SQLAlchemyStorage

    storage = SQLAlchemyStorage("sqlite+aiosqlite:///:memory:")
    oauth = create_oauth_app(settings=OAuthSettings(issuer="https://broker.test"), storage=storage)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=oauth, raise_app_exceptions=False),
        base_url="https://broker.test",
    ) as http:
        answer = await http.get("/v1/oauth/clients/x", auth=("partner", "secret"))
    assert answer.status_code == 500
    with pytest.raises(ConfigurationError, match=r"the storage is not open: enter it"):
        _ = storage.engine
