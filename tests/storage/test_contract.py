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
