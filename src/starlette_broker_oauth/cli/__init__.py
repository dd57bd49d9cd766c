"""The ``broker-oauth`` command: the demo brokerage, and the administration of the built-in
SQL storage (clients, partners, accounts, connected apps, migrations).

Every command prints for people by default and JSON with ``--json``; a command that fails
prints one line on stderr saying why and exits non-zero (2 for a usage error).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import anyio

from ..errors import RegistrationError
from .output import Answer, CommandError
from .parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``broker-oauth`` command line; the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error (already printed)
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        if args.database_url is None:
            raise CommandError(
                "broker-oauth: --database-url (or BROKER_OAUTH_DATABASE_URL) is required",
                code=2,
            )
        answer = anyio.run(_run, args)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure nobody foresaw: still one line, never a traceback
        lines = str(exc).strip().splitlines()
        print(f"failed: {type(exc).__name__}: {lines[0] if lines else ''}", file=sys.stderr)
        return 1
    print(json.dumps(answer.data) if args.json else answer.text)
    return 0


async def _run(args: argparse.Namespace) -> Answer:
    from .database import connected

    # The storage's log lines are a server's (a database seen away: "answering 503 until it
    # is back"); a command says what failed in its one line, so logging's last resort does
    # not print them here. A logging configuration of the operator's still receives them.
    library = logging.getLogger("starlette_broker_oauth")
    quiet = logging.NullHandler()
    library.addHandler(quiet)
    try:
        async with connected(args) as storage:
            try:
                answer: Answer = await args.handler(storage, args)
            except (RegistrationError, ValueError) as exc:  # the storage's refusals
                raise CommandError(str(exc)) from None
    finally:
        library.removeHandler(quiet)
    return answer
