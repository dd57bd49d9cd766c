"""Revision scripts; each names its tables under the configured prefix."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

__all__ = ["UTCDateTime", "prefix"]


def prefix() -> str:
    """The table prefix the migration runs with."""
    value: str = context.config.attributes.get("table_prefix", "oauth_")
    return value


UTCDateTime = sa.DateTime(timezone=True)
