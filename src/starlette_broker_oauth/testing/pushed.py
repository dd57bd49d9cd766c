"""The contract of a grant store's pushed authorization requests (RFC 9126)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio

from ..models import PushedRequest
from ..security import hash_secret, new_secret
from ..storage.base import GrantStore
from ._base import CONCURRENCY, Contract, utc_now

__all__ = ["PushedRequestContract"]


class PushedRequestContract(Contract):
    """What a :class:`~.storage.base.GrantStore` that keeps pushed authorization requests
    must do (``save_pushed_request``, ``get_pushed_request``, ``use_pushed_request``):
    store them by hash with their parameters, and let each be used once, atomically, by
    its client while it is unexpired. The built-in storages run it with
    :class:`~.storage.StorageContract`.

    Fixtures to provide:
        grants: The store under test, empty, ready to use.
    """

    @staticmethod
    def pushed(**overrides: Any) -> PushedRequest:
        values: dict[str, Any] = {
            "request_hash": hash_secret(new_secret()),
            "client_id": "client-a",
            "params": (
                ("response_type", "code"),
                ("client_id", "client-a"),
                ("redirect_uri", "https://app.example/callback?x=1&y=é"),
                ("scope", "general trading"),
                ("state", 'a "state" with, commas'),
                ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
                ("code_challenge_method", "S256"),
            ),
            "expires_at": utc_now() + timedelta(seconds=60),
        }
        values.update(overrides)
        return PushedRequest(**values)

    async def test_a_pushed_request_is_stored_as_given(self, grants: GrantStore) -> None:
        record = self.pushed()
        await grants.save_pushed_request(record)
        assert await grants.get_pushed_request(record.request_hash) == record
        assert await grants.get_pushed_request(hash_secret(new_secret())) is None

    async def test_a_pushed_request_is_used_once(self, grants: GrantStore) -> None:
        record = self.pushed()
        await grants.save_pushed_request(record)
        now = utc_now()
        results: list[bool] = []

        async def use() -> None:
            results.append(
                await grants.use_pushed_request(
                    record.request_hash, client_id=record.client_id, now=now
                )
            )

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(use)
        assert sorted(results) == [False] * (CONCURRENCY - 1) + [True]
        assert await grants.get_pushed_request(record.request_hash) is None, "still there"

    async def test_only_its_client_and_only_in_time(self, grants: GrantStore) -> None:
        record = self.pushed()
        await grants.save_pushed_request(record)
        key, client = record.request_hash, record.client_id
        now = utc_now()
        assert not await grants.use_pushed_request(key, client_id="client-b", now=now)
        assert not await grants.use_pushed_request(key, client_id=client, now=record.expires_at)
        assert not await grants.use_pushed_request(hash_secret("x"), client_id=client, now=now)
        assert await grants.get_pushed_request(key) == record, "a refused use changed it"
        assert await grants.use_pushed_request(key, client_id=client, now=now)
