"""The public repository contract (``starlette_broker_oauth.testing``) against the
built-in backends: memory (on asyncio and trio), SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from starlette_broker_oauth import MemoryStorage, Storage
from starlette_broker_oauth.testing import StorageContract
from tests.conftest import POSTGRES_URL, open_storage


class TestMemoryStorage(StorageContract):
    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        backend: str = request.param
        return backend

    @pytest.fixture
    async def storage(self) -> AsyncIterator[Storage]:
        async with MemoryStorage() as storage:
            yield storage


class TestSQLiteStorage(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        async with open_storage("sqlite", tmp_path) as storage:
            yield storage


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs the PostgreSQL of scripts/with-postgres")
class TestPostgreSQLStorage(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        async with open_storage("postgres", tmp_path) as storage:
            yield storage


BROKEN = """
import dataclasses

import pytest

from starlette_broker_oauth import Client, ClientRepository
from starlette_broker_oauth.testing import ClientRepositoryContract

CLIENT = Client(
    client_id="app-1", secret_hash="a" * 64, name="Charts", redirect_uris=("https://a/cb",)
)


class Misspelling(ClientRepository):
    async def get_client(self, client_id):
        if client_id == CLIENT.client_id:
            return dataclasses.replace(CLIENT, name="Chrats")
        return None


class TestMisspelling(ClientRepositoryContract):
    @pytest.fixture
    async def clients(self):
        return Misspelling()

    @pytest.fixture
    async def known_client(self):
        return CLIENT
"""


def test_a_failing_contract_says_what_differed(pytester: pytest.Pytester) -> None:
    """Installed, the contract suite's assertions are rewritten like a test's own: a
    broken repository is told which field came back wrong."""
    pytester.makepyfile(test_platform=BROKEN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=3, failed=1)
    output = result.stdout.str()
    assert "test_known_client_is_returned_whole" in output
    assert "Chrats" in output
    assert "Charts" in output
    assert "Differing attributes" in output
