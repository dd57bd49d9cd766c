"""The public namespace and the settings value."""

from __future__ import annotations

from datetime import timedelta

import pytest

import starlette_broker_oauth as lib
from starlette_broker_oauth import ConfigurationError, OAuthSettings


def test_exports_are_sorted_and_complete() -> None:
    assert lib.__all__ == sorted(lib.__all__)
    assert set(lib.__all__) == {
        "AccessToken",
        "Account",
        "AccountRepository",
        "AuthorizationCode",
        "BadRequest",
        "BrokerOAuthError",
        "Client",
        "ClientCredentials",
        "ClientRepository",
        "ClientStatus",
        "Connection",
        "ConfigurationError",
        "GrantStore",
        "ManagedStorage",
        "MemoryStorage",
        "NotFound",
        "OAuthSettings",
        "Partner",
        "PartnerRepository",
        "PartnerCredentials",
        "RefreshToken",
        "RequestError",
        "SQLAlchemyStorage",
        "Storage",
        "StorageError",
        "StorageUnavailable",
        "TokenError",
        "TokenErrorKind",
        "TokenVerifier",
        "VerifiedToken",
        "bearer_token",
        "create_oauth_app",
        "health_routes",
        "metadata_route",
    }
    for name in lib.__all__:
        assert getattr(lib, name) is not None


@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        ("APIError", "RequestError"),
        ("ServiceUnavailable", "StorageUnavailable"),
        ("Unauthorized", "PartnerUnauthenticated"),
        ("UnprocessableEntity", "InvalidRequest"),
    ],
)
def test_names_of_http_statuses_are_deprecated_aliases(name: str, replacement: str) -> None:
    from starlette_broker_oauth import errors

    for module in (lib, errors):
        with pytest.warns(DeprecationWarning, match=f"{name} .* use {replacement}"):
            cls = getattr(module, name)
        assert cls is getattr(errors, replacement)
    assert name not in lib.__all__
    assert name not in errors.__all__
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        _ = lib.Nothing


def test_settings_defaults() -> None:
    s = OAuthSettings(issuer="https://broker.example")
    assert s.code_lifetime == timedelta(seconds=60)
    assert s.access_token_lifetime is None
    assert s.scopes_supported == {"general", "account:write", "trading", "data"}
    assert s.response_types == {"code", "token"}
    assert s.url("/oauth/token") == "https://broker.example/oauth/token"
    with pytest.raises(AttributeError):
        s.issuer = "https://other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issuer": "http://broker.example"},
        {"issuer": "https://broker.example?x=1"},
        {"issuer": "broker.example"},
        {"issuer": "https://b", "code_lifetime": timedelta(minutes=11)},
        {"issuer": "https://b", "code_lifetime": timedelta(0)},
        {"issuer": "https://b", "access_token_lifetime": timedelta(seconds=-1)},
        {"issuer": "https://b", "scopes_supported": frozenset()},
        {"issuer": "https://b", "scopes_supported": frozenset({'bad"scope'})},
        {"issuer": "https://b", "response_types": frozenset({"id_token"})},
    ],
)
def test_settings_refuse_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        OAuthSettings(**kwargs)  # type: ignore[arg-type]


def test_http_issuer_allowed_on_loopback() -> None:
    assert OAuthSettings(issuer="http://127.0.0.1:8000").issuer == "http://127.0.0.1:8000"


def test_settings_from_env() -> None:
    s = OAuthSettings.from_env(
        {
            "BROKER_OAUTH_ISSUER": "https://broker.example",
            "BROKER_OAUTH_SCOPES": "general trading",
            "BROKER_OAUTH_CODE_LIFETIME_SECONDS": "30",
            "BROKER_OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS": "3600",
            "BROKER_OAUTH_ALLOW_LIVE_WITHOUT_APPROVAL": "true",
        }
    )
    assert s.scopes_supported == {"general", "trading"}
    assert s.code_lifetime == timedelta(seconds=30)
    assert s.access_token_lifetime == timedelta(hours=1)
    assert s.allow_live_without_approval is True
    fapi = OAuthSettings.from_env(
        {
            "BROKER_OAUTH_ISSUER": "https://broker.example",
            "BROKER_OAUTH_FAPI": "on",
            "BROKER_OAUTH_DPOP_NONCE": "1",
            "BROKER_OAUTH_DPOP_NONCE_SECRET": "n" * 40,
            "BROKER_OAUTH_DPOP_SIGNING_ALGS": "ES256 EdDSA",
        }
    )
    assert fapi.fapi
    assert fapi.dpop_required
    assert fapi.private_key_jwt
    assert fapi.require_pushed_authorization_requests
    assert fapi.dpop_nonce
    assert fapi.dpop_nonce_secret == "n" * 40
    assert fapi.dpop_signing_algs == ("ES256", "EdDSA")
    plain = OAuthSettings.from_env(
        {"BROKER_OAUTH_ISSUER": "https://broker.example", "BROKER_OAUTH_DPOP_REQUIRED": "no"}
    )
    assert not plain.dpop_required
    assert not plain.fapi
    with pytest.raises(ConfigurationError):
        OAuthSettings.from_env({})
    with pytest.raises(ConfigurationError):
        OAuthSettings.from_env(
            {"BROKER_OAUTH_ISSUER": "https://b", "BROKER_OAUTH_CODE_LIFETIME_SECONDS": "soon"}
        )


def test_app_factory_needs_every_repository() -> None:
    with pytest.raises(ConfigurationError):
        lib.create_oauth_app(settings=OAuthSettings(issuer="https://b"))  # type: ignore[call-overload]


def test_fastapi_extra_missing_is_actionable(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.setitem(sys.modules, "fastapi.security", None)
    monkeypatch.delitem(sys.modules, "starlette_broker_oauth.integrations.fastapi", raising=False)
    with pytest.raises(ImportError, match=r"starlette-broker-oauth\[fastapi\]"):
        importlib.import_module("starlette_broker_oauth.integrations.fastapi")


@pytest.mark.anyio
async def test_postgres_extra_missing_is_actionable(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "asyncpg", None)
    # Said when the storage is built, not when the first request needs it.
    with pytest.raises(ImportError, match=r"starlette-broker-oauth\[postgres\]"):
        lib.SQLAlchemyStorage("postgresql://localhost/nothing")


def test_core_does_not_import_fastapi() -> None:
    import subprocess
    import sys

    code = "import sys, starlette_broker_oauth; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
