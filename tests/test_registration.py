"""Redirect URI registration (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §2.1): through every
storage's create_client and the CLI, with a clear error naming the rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from starlette_broker_oauth.errors import RegistrationError
from starlette_broker_oauth.storage.base import ManagedStorage

from .conftest import open_storage
from .test_cli import admin

pytestmark = pytest.mark.anyio

ACCEPTED = [
    "https://app.example.com/callback",
    "https://app.example.com:8443/cb?tenant=1",
    "https://xn--bcher-kva.example/cb",
    "http://127.0.0.1:8001/callback",
    "http://localhost/cb",
    "http://[::1]:9000/cb",
    "com.example.app:/oauth2redirect",
    "com.example.app://callback",
]

REFUSED = [
    ("", "characters a URI cannot have"),
    ("javascript:alert(1)", "reverse-domain form"),
    ("data:text/html,hi", "reverse-domain form"),
    ("myapp:/callback", "reverse-domain form"),
    ("/relative/callback", "must be absolute"),
    ("app.example.com/callback", "must be absolute"),
    ("https://app.example.com/cb#frag", "must not have a fragment"),
    ("https://user:pw@app.example.com/cb", "must not have user-info"),
    ("http://app.example.com/cb", "must use https (http only on a loopback host)"),
    ("https:///cb", "has no host"),
    ("https://app.example.com/c b", "characters a URI cannot have"),
    ('https://app.example.com/"', "characters a URI cannot have"),
    ("https://bücher.example/cb", "characters a URI cannot have"),
    ("https://[::1/cb", "is not a valid URI"),
]


@pytest.fixture
async def storage(backend: str, tmp_path: Path) -> AsyncIterator[ManagedStorage]:
    async with open_storage(backend, tmp_path) as storage:
        yield storage


@pytest.mark.parametrize("uri", ACCEPTED)
async def test_acceptable_redirect_uris_are_registered(storage: ManagedStorage, uri: str) -> None:
    creds = await storage.create_client(name="App", redirect_uris=[uri])
    client = await storage.get_client(creds.client_id)
    assert client is not None
    assert client.redirect_uris == (uri,)


@pytest.mark.parametrize(("uri", "reason"), REFUSED)
async def test_unacceptable_redirect_uris_are_refused(
    storage: ManagedStorage, uri: str, reason: str
) -> None:
    with pytest.raises(RegistrationError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        await storage.create_client(
            name="App", redirect_uris=["https://app.example.com/ok", uri], client_id="refused"
        )
    assert await storage.get_client("refused") is None  # nothing half-written


async def test_a_client_needs_a_redirect_uri(storage: ManagedStorage) -> None:
    with pytest.raises(RegistrationError, match="at least one redirect URI"):
        await storage.create_client(name="App", redirect_uris=[])


@pytest.mark.parametrize(("uri", "reason"), REFUSED[1:4])
def test_the_cli_says_why_in_one_line(tmp_path: Path, uri: str, reason: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    answer = admin(url, "client", "create", "--name", "App", "--redirect-uri", uri)
    assert answer.returncode == 1
    assert answer.stdout == ""
    [line] = answer.stderr.strip().splitlines()
    assert reason in line
    assert repr(uri) in line
