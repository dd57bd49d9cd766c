"""The argument parser of ``broker-oauth``: its commands, their options, and usage errors
in one line."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ..settings import DEFAULT_SCOPES

__all__ = [
    "LEAST_SCOPE",
    "Commands",
    "Parents",
    "Parser",
    "build_parser",
    "display_name",
    "identifier",
    "known_scope",
]


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True, slots=True)
class Parents:
    """The options commands share: ``--json`` alone, or with the database's."""

    output: Parser
    database: Parser


def display_name(value: str) -> str:
    """A client's or partner's name: what the tables hold (200 characters)."""
    if len(value) > 200:
        raise argparse.ArgumentTypeError(f"at most 200 characters, not {len(value)}")
    return value


#: The scope ``client create`` gives when none is asked for: reading, nothing more.
LEAST_SCOPE = "general"


def known_scope(value: str) -> str:
    """A scope the platform supports: the default scopes, or ``BROKER_OAUTH_SCOPES``
    (space-separated) where the platform has its own, as its settings read them."""
    supported = os.environ.get("BROKER_OAUTH_SCOPES", "").split() or sorted(DEFAULT_SCOPES)
    if value not in supported:
        raise argparse.ArgumentTypeError(
            f"unknown scope {value!r} (supported: {' '.join(sorted(supported))}; a platform "
            "with scopes of its own sets BROKER_OAUTH_SCOPES)"
        )
    return value


def identifier(value: str) -> str:
    """A client id or partner key id chosen by hand: 1 to 128 characters."""
    if not 0 < len(value) <= 128:
        raise argparse.ArgumentTypeError("from 1 to 128 characters")
    return value


def build_parser() -> Parser:
    from . import accounts, clients, operations, partners

    parser = Parser(
        prog="broker-oauth",
        description="Run the demo brokerage, and administer the OAuth server's database: "
        "clients, partners, accounts, connected apps, migrations.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    output = Parser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON (machine output)")
    database = Parser(add_help=False, parents=[output])
    database.add_argument(
        "--database-url",
        default=os.environ.get("BROKER_OAUTH_DATABASE_URL"),
        help="sqlite+aiosqlite:///PATH or postgresql+asyncpg://… "
        "(default: $BROKER_OAUTH_DATABASE_URL)",
    )
    database.add_argument(
        "--table-prefix", default="oauth_", help="of the tables (default: %(default)s)"
    )
    database.set_defaults(migrate=True, reads_only=False, existing_only=False)
    parents = Parents(output=output, database=database)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run the demo brokerage platform on SQLite", parents=[output]
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--database", default="broker-oauth-demo.db", help="SQLite file (default: %(default)s)"
    )
    demo.add_argument("--credentials-json", type=Path, help="write the demo credentials here")
    demo.add_argument(
        "--fapi",
        action="store_true",
        help="the FAPI 2.0 profile: pushed requests, private_key_jwt and DPoP-bound tokens",
    )
    demo.epilog = "With --json, the credentials are printed as one JSON line before serving."

    clients.register(commands, parents)
    partners.register(commands, parents)
    accounts.register(commands, parents)
    operations.register(commands, parents)
    return parser


def _version() -> str:
    try:
        return version("starlette-broker-oauth")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[Parser]
