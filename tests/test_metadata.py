"""Authorization server metadata (RFC 8414)."""

from __future__ import annotations

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from .conftest import ISSUER, Platform

pytestmark = pytest.mark.anyio


async def test_metadata_document(platform: Platform) -> None:
    response = await platform.http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == ISSUER
    assert doc["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert doc["authorization_endpoint"] == "https://partner.example/consent"
    assert doc["scopes_supported"] == ["account:write", "data", "general", "trading"]
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    AuthorizationServerMetadata(doc).validate()


async def test_metadata_token_endpoint_is_live(platform: Platform) -> None:
    doc = (await platform.http.get("/.well-known/oauth-authorization-server")).json()
    code = await platform.code()
    response = await platform.http.post(
        doc["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": platform.redirect_uri,
        },
        auth=(platform.client_id, platform.client_secret),
    )
    assert response.status_code == 200
