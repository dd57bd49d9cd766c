"""``broker-oauth connections …`` (the apps connected to an account, and disconnecting
them) and ``broker-oauth db …`` (migrations and housekeeping)."""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from ..security import utcnow
from ..storage.sqlalchemy import SQLAlchemyStorage
from .audit import connected_apps
from .output import Answer, table, unknown_account
from .parser import Parents

if TYPE_CHECKING:
    from .parser import Commands

__all__ = ["register"]


def register(commands: Commands, parents: Parents) -> None:
    db = [parents.database]
    connections = commands.add_parser(
        "connections", help="the apps connected to an account, and disconnecting them"
    )
    sub = connections.add_subparsers(dest="connections_command", required=True, metavar="COMMAND")
    listing = sub.add_parser(
        "list", help="the apps holding a working token for an account", parents=db
    )
    listing.add_argument("--account", type=uuid.UUID, required=True)
    listing.set_defaults(handler=list_connections, reads_only=True, migrate=False)
    revoke = sub.add_parser(
        "revoke", help="revoke an account's tokens, of every app or of one", parents=db
    )
    revoke.add_argument("--account", type=uuid.UUID, required=True)
    revoke.add_argument("--client", help="only this client's (default: every app)")
    revoke.set_defaults(handler=revoke_connections)

    database = commands.add_parser("db", help="manage the SQL database (SQLite or PostgreSQL)")
    sub = database.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = sub.add_parser(
        "upgrade", help="migrate the tables to the newest revision", parents=db
    )
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=upgrade_tables, migrate=False)
    current = sub.add_parser("current", help="print the tables' revision", parents=db)
    current.set_defaults(handler=current_revision, migrate=False, existing_only=True)
    purge = sub.add_parser("purge", help="delete expired and revoked codes and tokens", parents=db)
    purge.add_argument("--batch-size", type=int, default=1000)
    purge.add_argument(
        "--retention-hours",
        type=float,
        default=24.0,
        help="keep expired or revoked rows this long (default: %(default)s)",
    )
    purge.set_defaults(handler=purge_expired, migrate=False)


async def list_connections(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    if await storage.get_account(args.account) is None:
        raise unknown_account(args.account)
    found = await storage.list_connections(args.account, now=utcnow())
    rows = [
        [
            c.client_id,
            " ".join(sorted(c.scopes)) or "-",
            f"{c.connected_at:%Y-%m-%d %H:%M} UTC",
            f"{c.last_issued_at:%Y-%m-%d %H:%M} UTC",
        ]
        for c in found
    ]
    return Answer(
        [
            {
                "account_id": str(c.account_id),
                "client_id": c.client_id,
                "scope": " ".join(sorted(c.scopes)),
                "connected_at": c.connected_at.isoformat(),
                "last_issued_at": c.last_issued_at.isoformat(),
            }
            for c in found
        ],
        table(
            ["CLIENT ID", "SCOPE", "CONNECTED", "LAST ISSUED"],
            rows,
            empty=f"no apps connected to account {args.account}",
        ),
    )


async def revoke_connections(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    if await storage.get_account(args.account) is None:
        raise unknown_account(args.account)
    connected = connected_apps(storage)
    if args.client is None:
        revoked = await connected.disconnect_all(args.account, reason="operator_disconnected")
    else:
        revoked = await connected.disconnect(
            args.account, args.client, reason="operator_disconnected"
        )
    apps = f"app {args.client}" if args.client else "every app"
    count = f"{revoked} access token{'' if revoked == 1 else 's'}"
    return Answer(
        {"account_id": str(args.account), "client_id": args.client, "revoked": revoked},
        f"revoked {count} of account {args.account} ({apps})",
    )


async def upgrade_tables(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    await storage.upgrade(args.revision)
    revision = await storage.current_revision()
    return Answer({"revision": revision}, f"tables at revision {revision}")


async def current_revision(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    revision = await storage.current_revision()
    return Answer({"revision": revision}, revision or "none")


async def purge_expired(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    result = await storage.purge_expired(
        now=utcnow(),
        retention=timedelta(hours=args.retention_hours),
        batch_size=args.batch_size,
    )
    return Answer(
        {"codes": result.codes, "tokens": result.tokens, "refresh_tokens": result.refresh_tokens},
        f"purged {result.codes} codes, {result.tokens} access tokens, "
        f"{result.refresh_tokens} refresh tokens",
    )
