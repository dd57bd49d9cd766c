"""What every contract shares: the AnyIO marker and backend, and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

__all__ = ["CONCURRENCY", "Contract", "utc_now"]

CONCURRENCY = 20


def utc_now() -> datetime:
    # Whole milliseconds: every database keeps them exactly.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Contract:
    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The async library the tests run on; override to add ``"trio"``."""
        return "asyncio"
