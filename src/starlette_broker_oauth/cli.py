"""The ``broker-oauth`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import anyio

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``broker-oauth`` command line."""
    parser = argparse.ArgumentParser(
        prog="broker-oauth",
        description="Run the demo brokerage, and administer the OAuth server's database: "
        "clients, partners, accounts, connected apps, migrations.",
    )
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

    client = commands.add_parser("client", help="register and manage third-party apps")
    client_commands = client.add_subparsers(dest="client_command", required=True)
    create_client = client_commands.add_parser(
        "create", help="register a client (prints its secret once)"
    )
    create_client.add_argument("--name", required=True)
    create_client.add_argument(
        "--redirect-uri", action="append", required=True, dest="redirect_uris"
    )
    create_client.add_argument("--description", default="")
    create_client.add_argument("--url", default="")
    create_client.add_argument("--terms-of-use", default="")
    create_client.add_argument("--privacy-policy", default="")
    create_client.add_argument(
        "--scope", action="append", dest="scopes", help="allowed scope (repeat)"
    )
    create_client.add_argument("--live-trading-approved", action="store_true")
    client_subs = [create_client]
    for name, text in (
        ("disable", "stop its codes and tokens"),
        ("enable", "allow it again"),
        ("rotate-secret", "issue a new secret"),
    ):
        sub = client_commands.add_parser(name, help=text)
        sub.add_argument("client_id")
        client_subs.append(sub)

    partner = commands.add_parser("partner", help="register partners and grant them clients")
    partner_commands = partner.add_subparsers(dest="partner_command", required=True)
    create_partner = partner_commands.add_parser("create", help="register a partner")
    create_partner.add_argument("--name", required=True)
    create_partner.add_argument("--key-id")
    allow = partner_commands.add_parser("allow", help="let a partner use a client")
    allow.add_argument("key_id")
    allow.add_argument("client_id")
    rotate = partner_commands.add_parser("rotate-secret", help="issue a new partner secret")
    rotate.add_argument("key_id")

    account = commands.add_parser("account", help="manage accounts (built-in storage only)")
    account_commands = account.add_subparsers(dest="account_command", required=True)
    create_account = account_commands.add_parser("create", help="create an account")
    create_account.add_argument("--account-id", type=uuid.UUID)
    create_account.add_argument("--live", action="store_true")
    create_account.add_argument(
        "--partner", metavar="KEY_ID", help="the partner the account belongs to"
    )
    give = account_commands.add_parser(
        "give", help="make a partner the owner of an account (the only one acting for it)"
    )
    give.add_argument("account_id", type=uuid.UUID)
    give.add_argument("key_id")

    connections = commands.add_parser(
        "connections", help="the apps connected to an account, and disconnecting them"
    )
    connections_commands = connections.add_subparsers(dest="connections_command", required=True)
    list_connections = connections_commands.add_parser(
        "list", help="the apps holding a working token for an account"
    )
    list_connections.add_argument("--account", type=uuid.UUID, required=True)
    list_connections.add_argument("--json", action="store_true", help="print JSON")
    revoke_connections = connections_commands.add_parser(
        "revoke", help="revoke an account's tokens, of every app or of one"
    )
    revoke_connections.add_argument("--account", type=uuid.UUID, required=True)
    revoke_connections.add_argument("--client", help="only this client's (default: every app)")

    for sub in (
        upgrade,
        current,
        purge,
        *client_subs,
        create_partner,
        allow,
        rotate,
        create_account,
        give,
        list_connections,
        revoke_connections,
    ):
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
    if args.command == "db":
        return anyio.run(_db, args)
    if args.command == "connections":
        return anyio.run(_connections, args)
    return anyio.run(_admin, args)


async def _admin(args: argparse.Namespace) -> int:
    """Client, partner and account commands; answers are JSON on stdout, errors on stderr."""
    from .errors import RegistrationError
    from .models import ClientStatus
    from .storage.sqlalchemy import SQLAlchemyStorage

    async with SQLAlchemyStorage(args.database_url, table_prefix=args.table_prefix) as storage:
        result: object = None
        if args.command == "client":
            if args.client_command == "create":
                try:
                    creds = await storage.create_client(
                        name=args.name,
                        redirect_uris=args.redirect_uris,
                        description=args.description,
                        url=args.url,
                        terms_of_use=args.terms_of_use,
                        privacy_policy=args.privacy_policy,
                        scopes=args.scopes,
                        live_trading_approved=args.live_trading_approved,
                    )
                except RegistrationError as exc:
                    print(exc, file=sys.stderr)
                    return 1
                result = {"client_id": creds.client_id, "client_secret": creds.client_secret}
            elif args.client_command == "rotate-secret":
                rotated = await storage.reset_client_secret(args.client_id)
                if rotated is not None:
                    result = {
                        "client_id": rotated.client_id,
                        "client_secret": rotated.client_secret,
                    }
            else:
                status = (
                    ClientStatus.DISABLED
                    if args.client_command == "disable"
                    else ClientStatus.ACTIVE
                )
                if await storage.set_client_status(args.client_id, status):
                    result = {"client_id": args.client_id, "status": status.value}
        elif args.command == "partner":
            if args.partner_command == "create":
                partner = await storage.create_partner(name=args.name, key_id=args.key_id)
                result = {"key_id": partner.key_id, "secret": partner.secret}
            elif args.partner_command == "allow":
                if await storage.allow_partner_client(args.key_id, args.client_id):
                    result = {"key_id": args.key_id, "client_id": args.client_id}
            else:
                renewed = await storage.reset_partner_secret(args.key_id)
                if renewed is not None:
                    result = {"key_id": renewed.key_id, "secret": renewed.secret}
        elif args.account_command == "give":
            if await storage.give_account(args.account_id, args.key_id):
                result = {"account_id": str(args.account_id), "partner": args.key_id}
        else:
            try:
                created = await storage.create_account(
                    account_id=args.account_id, live=args.live, partner=args.partner
                )
            except ValueError as exc:
                print(exc, file=sys.stderr)
                return 1
            result = {"account_id": str(created.account_id), "live": created.live}
            if args.partner:
                result["partner"] = args.partner
    if result is None:
        print("not found", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


async def _connections(args: argparse.Namespace) -> int:
    """List an account's connected apps, or revoke their tokens."""
    from .security import utcnow
    from .storage.sqlalchemy import SQLAlchemyStorage

    async with SQLAlchemyStorage(args.database_url, table_prefix=args.table_prefix) as storage:
        if await storage.get_account(args.account) is None:
            print(f"unknown account {args.account}", file=sys.stderr)
            return 1
        if args.connections_command == "revoke":
            revoked = await storage.revoke_tokens(
                account_id=args.account, client_id=args.client, now=utcnow()
            )
            apps = f"app {args.client}" if args.client else "every app"
            count = f"{len(revoked)} access token{'' if len(revoked) == 1 else 's'}"
            print(f"revoked {count} of account {args.account} ({apps})")
            return 0
        found = await storage.list_connections(args.account, now=utcnow())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "account_id": str(c.account_id),
                        "client_id": c.client_id,
                        "scope": " ".join(sorted(c.scopes)),
                        "connected_at": c.connected_at.isoformat(),
                        "last_issued_at": c.last_issued_at.isoformat(),
                    }
                    for c in found
                ]
            )
        )
    elif not found:
        print(f"no apps connected to account {args.account}")
    else:
        for c in found:
            print(
                f"{c.client_id}  scope: {' '.join(sorted(c.scopes)) or '-'}  "
                f"connected: {c.connected_at:%Y-%m-%d %H:%M} UTC  "
                f"last issued: {c.last_issued_at:%Y-%m-%d %H:%M} UTC"
            )
    return 0


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
    import copy
    import secrets
    import shlex

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from ._demo import build_platform, seed
    from .settings import OAuthSettings
    from .storage.sqlalchemy import SQLAlchemyStorage

    base_url = f"http://{args.host}:{args.port}"
    settings = OAuthSettings(issuer=base_url)
    database_url = f"sqlite+aiosqlite:///{os.path.abspath(args.database)}"
    password = secrets.token_urlsafe(9)

    async def prepare() -> dict[str, str]:
        async with SQLAlchemyStorage(database_url) as storage:
            return (await seed(storage, base_url=base_url, password=password)).as_dict()

    credentials = anyio.run(prepare)
    path: Path | None = args.credentials_json
    if path is not None:
        path.write_text(json.dumps(credentials, indent=2) + "\n")
        path.chmod(0o600)
    print("Demo Brokerage, an OAuth 2.0 authorization server made with starlette-broker-oauth")
    print(f"  open:      {base_url}")
    print(f"  log in as: {credentials['username']} / {credentials['password']}")
    print(f"  database:  {args.database}")
    print(
        "  admin:     export BROKER_OAUTH_DATABASE_URL="
        f"{shlex.quote('sqlite+aiosqlite:///' + str(Path(args.database).resolve()))}"
    )
    print("Credentials:")
    for key, value in credentials.items():
        print(f"  {key}: {value}")
    print(f"  metadata: {base_url}/.well-known/oauth-authorization-server")
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    if path is None:
        print("Next: restart with --credentials-json demo.json to run the example trading app.")
    else:
        print("Next, in a second terminal, run the third-party trading app:")
        print(f"  {shlex.quote(python)} examples/third_party_app.py {shlex.quote(str(path))}")
        print(f"then open {credentials['redirect_uri'].removesuffix('/callback')} and connect.")
        print("(Restarting the demo re-keys its client: restart the app too.)")
    sys.stdout.flush()
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["filters"] = {"hide_tokens": {"()": "starlette_broker_oauth._demo.HideTokens"}}
    log_config["loggers"]["uvicorn.access"]["filters"] = ["hide_tokens"]
    app = build_platform(SQLAlchemyStorage(database_url), settings, password=password)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", log_config=log_config)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
