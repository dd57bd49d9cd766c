"""The library's tables: SQLAlchemy Core, named under a configurable prefix.

Core rather than ORM keeps the token check a single compiled ``SELECT`` with no identity
map, and lets the prefix be chosen at run time. Rows become the frozen records of
:mod:`starlette_broker_oauth.models` here and never leave the backend as rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from ...errors import ConfigurationError
from ...models import (
    AccessToken,
    AuthorizationCode,
    Client,
    ClientAuthMethod,
    ClientStatus,
    RefreshToken,
)

__all__ = ["Tables", "build_metadata", "client_from", "fields"]


class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def build_metadata(prefix: str = "oauth_") -> sa.MetaData:
    """The library's tables, named ``{prefix}clients``, ``{prefix}tokens``, ….

    Parameters:
        prefix: Prepended to every table name; letters, digits and underscores.
    """
    if not prefix.replace("_", "").isalnum() and prefix != "":
        raise ConfigurationError(f"table prefix must be letters, digits, underscores: {prefix!r}")
    md = sa.MetaData()
    hash_col = sa.String(64)
    sa.Table(
        f"{prefix}clients",
        md,
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("secret_hash", hash_col, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, default=""),
        sa.Column("url", sa.Text, nullable=False, default=""),
        sa.Column("terms_of_use", sa.Text, nullable=False, default=""),
        sa.Column("privacy_policy", sa.Text, nullable=False, default=""),
        sa.Column("status", sa.String(16), nullable=False, default="ACTIVE"),
        sa.Column("live_trading_approved", sa.Boolean, nullable=False, default=False),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=True),
        sa.Column("response_types", sa.Text, nullable=False),
        # private_key_jwt (migration 0008): the client's public keys, and whether it may
        # authenticate with its secret too.
        sa.Column("jwks", sa.Text, nullable=True),
        sa.Column(
            "token_endpoint_auth_method",
            sa.String(32),
            nullable=False,
            default="client_secret_basic",
            server_default="client_secret_basic",
        ),
        # RFC 9126 §6 (migration 0009).
        sa.Column(
            "require_pushed_authorization_requests",
            sa.Boolean,
            nullable=False,
            server_default=sa.false(),
        ),
        # DPoP (RFC 9449 §5.2, migration 0007): the client always sends a proof. The
        # database's default only, so that a row written without it names no such column.
        sa.Column(
            "dpop_bound_access_tokens", sa.Boolean, nullable=False, server_default=sa.false()
        ),
    )
    sa.Table(
        f"{prefix}accounts",
        md,
        sa.Column("account_id", sa.Uuid, primary_key=True),
        sa.Column("live", sa.Boolean, nullable=False, default=False),
    )
    sa.Table(
        f"{prefix}partners",
        md,
        sa.Column("partner_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", hash_col, nullable=False),
    )
    sa.Table(
        f"{prefix}partner_clients",
        md,
        sa.Column(
            "partner_id",
            sa.String(128),
            sa.ForeignKey(f"{prefix}partners.partner_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        # A client of the built-in table or of the platform's own (migration 0005).
        sa.Column("client_id", sa.String(128), primary_key=True),
    )
    sa.Table(
        f"{prefix}partner_accounts",
        md,
        # An account of the built-in table or of the platform's own (migration 0005).
        sa.Column("account_id", sa.Uuid, primary_key=True),
        sa.Column(
            "partner_id",
            sa.String(128),
            sa.ForeignKey(f"{prefix}partners.partner_id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
    )
    sa.Table(
        f"{prefix}used_keys",
        md,
        sa.Column("key", hash_col, primary_key=True),
        sa.Column("expires_at", _UTCDateTime, nullable=False, index=True),
        sqlite_with_rowid=False,
    )
    sa.Table(
        f"{prefix}pushed_requests",
        md,
        # RFC 9126 (migration 0009): by the hash of the request_uri's random part.
        sa.Column("request_hash", hash_col, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("expires_at", _UTCDateTime, nullable=False, index=True),
        sqlite_with_rowid=False,
    )
    sa.Table(
        f"{prefix}codes",
        md,
        sa.Column("code_hash", hash_col, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("issued_at", _UTCDateTime, nullable=False),
        sa.Column("expires_at", _UTCDateTime, nullable=False, index=True),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(16), nullable=True),
        sa.Column("used_at", _UTCDateTime, nullable=True),
        # The key the authorization request bound the code to (RFC 9449 §10, 0007).
        sa.Column("dpop_jkt", sa.String(64), nullable=True),
    )
    sa.Table(
        f"{prefix}tokens",
        md,
        sa.Column("token_hash", hash_col, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False, index=True),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("account_live", sa.Boolean, nullable=False),
        sa.Column("issued_at", _UTCDateTime, nullable=False),
        sa.Column("expires_at", _UTCDateTime, nullable=True, index=True),
        # Indexed for purging (migration 0006): each batch walks the index.
        sa.Column("revoked_at", _UTCDateTime, nullable=True, index=True),
        sa.Column("family_id", hash_col, nullable=True, index=True),
        # The key a DPoP-bound token is bound to (RFC 9449 §6, migration 0007).
        sa.Column("dpop_jkt", sa.String(64), nullable=True),
        sa.Index(f"ix_{prefix}tokens_account_id_client_id", "account_id", "client_id"),
        # SQLite: a rowid table (migration 0004), so that a new row and its index entries
        # go to the end of their B-trees, and only the hash's index takes a random page.
    )
    sa.Table(
        f"{prefix}refresh_tokens",
        md,
        sa.Column("token_hash", hash_col, primary_key=True),
        sa.Column("family_id", hash_col, nullable=False, index=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("account_live", sa.Boolean, nullable=False),
        sa.Column("issued_at", _UTCDateTime, nullable=False),
        sa.Column("expires_at", _UTCDateTime, nullable=False, index=True),
        sa.Column("used_at", _UTCDateTime, nullable=True),
        sa.Column("revoked_at", _UTCDateTime, nullable=True, index=True),
        sa.Column("dpop_jkt", sa.String(64), nullable=True),  # RFC 9449 §5 (0007)
        sa.Index(f"ix_{prefix}refresh_tokens_account_id_client_id", "account_id", "client_id"),
    )
    return md


class Tables:
    """The library's tables under one prefix.

    Parameters:
        prefix: Prepended to every table name; letters, digits and underscores.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.metadata = build_metadata(prefix)
        t = self.metadata.tables
        self.clients = t[f"{prefix}clients"]
        self.accounts = t[f"{prefix}accounts"]
        self.partners = t[f"{prefix}partners"]
        self.partner_clients = t[f"{prefix}partner_clients"]
        self.partner_accounts = t[f"{prefix}partner_accounts"]
        self.used_keys = t[f"{prefix}used_keys"]
        self.pushed_requests = t[f"{prefix}pushed_requests"]
        self.codes = t[f"{prefix}codes"]
        self.tokens = t[f"{prefix}tokens"]
        self.refresh_tokens = t[f"{prefix}refresh_tokens"]


def client_from(values: Mapping[str, Any] | sa.RowMapping) -> Client:
    """The :class:`~starlette_broker_oauth.models.Client` of a row's values, by column name."""
    scopes: Sequence[str] | None = (
        None if values["scopes"] is None else json.loads(values["scopes"])
    )
    return Client(
        client_id=values["client_id"],
        secret_hash=values["secret_hash"],
        name=values["name"],
        description=values["description"],
        url=values["url"],
        terms_of_use=values["terms_of_use"],
        privacy_policy=values["privacy_policy"],
        status=ClientStatus(values["status"]),
        live_trading_approved=values["live_trading_approved"],
        redirect_uris=tuple(json.loads(values["redirect_uris"])),
        scopes=None if scopes is None else frozenset(scopes),
        response_types=frozenset(json.loads(values["response_types"])),
        jwks=values["jwks"],
        token_endpoint_auth_method=ClientAuthMethod(values["token_endpoint_auth_method"]),
        require_pushed_authorization_requests=bool(
            values.get("require_pushed_authorization_requests", False)
        ),
        dpop_bound_access_tokens=bool(values.get("dpop_bound_access_tokens", False)),
    )


def fields(record: AuthorizationCode | AccessToken | RefreshToken) -> dict[str, Any]:
    """A record's values by column name, for an ``INSERT``."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}
