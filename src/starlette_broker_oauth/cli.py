"""The ``broker-oauth`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``broker-oauth`` command line."""
    parser = argparse.ArgumentParser(prog="broker-oauth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo brokerage platform on SQLite")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--database", default="broker-oauth-demo.db", help="SQLite file (default: %(default)s)"
    )
    demo.add_argument("--credentials-json", type=Path, help="write the demo credentials here")

    db = commands.add_parser("db", help="manage the SQL database (SQLite or PostgreSQL)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the tables to the newest revision")
    upgrade.add_argument("--revision", default="head")
    current = db_commands.add_parser("current", help="print the tables' revision")
    purge = db_commands.add_parser("purge", help="delete expired and revoked codes and tokens")
    purge.add_argument("--batch-size", type=int, default=1000)
    purge.add_argument(
        "--retention-hours",
        type=float,
        default=24.0,
        help="keep expired or revoked rows this long (default: %(default)s)",
    )
    for sub in (upgrade, current, purge):
        sub.add_argument(
            "--database-url",
            default=os.environ.get("BROKER_OAUTH_DATABASE_URL"),
            help="default: $BROKER_OAUTH_DATABASE_URL",
        )
        sub.add_argument("--table-prefix", default="oauth_")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.database_url is None:
        parser.error("--database-url (or BROKER_OAUTH_DATABASE_URL) is required")
    return anyio.run(_db, args)


async def _db(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from .security import utcnow
    from .storage.sqlalchemy import SQLAlchemyStorage

    storage = SQLAlchemyStorage(args.database_url, table_prefix=args.table_prefix, migrate=False)
    async with storage:
        if args.db_command == "upgrade":
            await storage.upgrade(args.revision)
            print(f"tables at revision {await storage.current_revision()}")
        elif args.db_command == "current":
            print(await storage.current_revision() or "none")
        else:
            result = await storage.purge_expired(
                now=utcnow(),
                retention=timedelta(hours=args.retention_hours),
                batch_size=args.batch_size,
            )
            print(
                f"purged {result.codes} codes, {result.tokens} access tokens, "
                f"{result.refresh_tokens} refresh tokens"
            )
    return 0


def _demo(args: argparse.Namespace) -> int:
    import uvicorn

    from ._demo import build_platform, seed
    from .settings import OAuthSettings
    from .storage.sqlalchemy import SQLAlchemyStorage

    base_url = f"http://{args.host}:{args.port}"
    settings = OAuthSettings(issuer=base_url)
    database_url = f"sqlite+aiosqlite:///{os.path.abspath(args.database)}"

    async def prepare() -> dict[str, str]:
        async with SQLAlchemyStorage(database_url) as storage:
            return (await seed(storage, base_url=base_url)).as_dict()

    credentials = anyio.run(prepare)
    if args.credentials_json is not None:
        path: Path = args.credentials_json
        path.write_text(json.dumps(credentials, indent=2) + "\n")
        path.chmod(0o600)
    print("Demo brokerage platform with starlette-broker-oauth")
    print(f"  database: {args.database}")
    for key, value in credentials.items():
        print(f"  {key}: {value}")
    print(f"  metadata: {base_url}/.well-known/oauth-authorization-server")
    sys.stdout.flush()
    app = build_platform(SQLAlchemyStorage(database_url), settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
