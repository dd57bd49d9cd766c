"""``broker-oauth account …``: accounts in the built-in tables, and the partner each
belongs to."""

from __future__ import annotations

import argparse
import uuid
from typing import TYPE_CHECKING
from uuid import UUID

from ..storage.sqlalchemy import SQLAlchemyStorage
from .audit import administrator
from .output import (
    Answer,
    account_json,
    account_text,
    kind,
    table,
    unknown_account,
    unknown_partner,
)
from .parser import Parents

if TYPE_CHECKING:
    from .parser import Commands

__all__ = ["register"]


def register(commands: Commands, parents: Parents) -> None:
    account = commands.add_parser("account", help="manage accounts (built-in storage only)")
    sub = account.add_subparsers(dest="account_command", required=True, metavar="COMMAND")
    db = [parents.database]

    listing = sub.add_parser("list", help="every account, with its partner", parents=db)
    listing.add_argument("--partner", metavar="KEY_ID", help="only the accounts it owns")
    listing.set_defaults(handler=list_accounts, reads_only=True, migrate=False)
    show = sub.add_parser("show", help="an account and its partner", parents=db)
    show.add_argument("account_id", type=uuid.UUID)
    show.set_defaults(handler=show_account, reads_only=True, migrate=False)

    create = sub.add_parser("create", help="create an account", parents=db)
    create.add_argument("--account-id", type=uuid.UUID, help="(default: a new random one)")
    create.add_argument("--live", action="store_true", help="a live account (default: paper)")
    create.add_argument("--partner", metavar="KEY_ID", help="the partner the account belongs to")
    create.set_defaults(handler=create_account)

    update = sub.add_parser(
        "update",
        help="make an account live or paper (revokes its tokens, which say which it was)",
        parents=db,
    )
    update.add_argument("account_id", type=uuid.UUID)
    live = update.add_mutually_exclusive_group(required=True)
    live.add_argument("--live", dest="live", action="store_true", default=None)
    live.add_argument("--paper", dest="live", action="store_false")
    update.set_defaults(handler=update_account)

    delete = sub.add_parser(
        "delete", help="delete an account: its codes go, its tokens are revoked", parents=db
    )
    delete.add_argument("account_id", type=uuid.UUID)
    delete.set_defaults(handler=delete_account)

    give = sub.add_parser(
        "give",
        help="make a partner the owner of an account (the only one acting for it)",
        parents=db,
    )
    give.add_argument("account_id", type=uuid.UUID)
    give.add_argument("key_id")
    give.set_defaults(handler=give_account)


async def list_accounts(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    accounts = await storage.list_accounts(partner=args.partner)
    rows = [[str(a.account_id), kind(a.live), a.partner or "-"] for a in accounts]
    return Answer(
        [account_json(a) for a in accounts],
        table(["ACCOUNT ID", "KIND", "PARTNER"], rows, empty="no accounts"),
    )


async def show_account(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    account = await storage.get_account_details(args.account_id)
    if account is None:
        raise unknown_account(args.account_id)
    return Answer(account_json(account), account_text(account))


async def create_account(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    created = await administrator(storage).create_account(
        account_id=args.account_id, live=args.live, partner=args.partner
    )
    account = await storage.get_account_details(created.account_id)
    assert account is not None
    return Answer(account_json(account), account_text(account))


async def update_account(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    account = await administrator(storage).update_account(args.account_id, live=args.live)
    if account is None:
        raise unknown_account(args.account_id)
    return Answer(account_json(account), account_text(account))


async def delete_account(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    if not await administrator(storage).delete_account(args.account_id):
        raise unknown_account(args.account_id)
    return Answer(
        {"account_id": str(args.account_id), "deleted": True},
        f"deleted account {args.account_id}: its codes are gone and its tokens revoked",
    )


async def give_account(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    account_id: UUID = args.account_id
    if not await administrator(storage).give_account(account_id, args.key_id):
        if await storage.get_account(account_id) is None:
            raise unknown_account(account_id)
        raise unknown_partner(args.key_id)
    return Answer(
        {"account_id": str(account_id), "partner": args.key_id},
        f"account {account_id} belongs to partner {args.key_id}",
    )
