"""``broker-oauth partner …``: register, list, show, rename and delete partners, their
secrets, and the clients they may use."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..storage.sqlalchemy import SQLAlchemyStorage
from .audit import administrator
from .output import (
    Answer,
    CommandError,
    partner_json,
    partner_text,
    table,
    unknown_client,
    unknown_partner,
)
from .parser import Parents, display_name, identifier

if TYPE_CHECKING:
    from .parser import Commands

__all__ = ["register"]


def register(commands: Commands, parents: Parents) -> None:
    partner = commands.add_parser("partner", help="register partners and grant them clients")
    sub = partner.add_subparsers(dest="partner_command", required=True, metavar="COMMAND")
    db = [parents.database]

    sub.add_parser("list", help="every partner", parents=db).set_defaults(
        handler=list_partners, reads_only=True, migrate=False
    )
    show = sub.add_parser(
        "show", help="a partner, the clients it may use and its accounts", parents=db
    )
    show.add_argument("key_id")
    show.set_defaults(handler=show_partner, reads_only=True, migrate=False)

    create = sub.add_parser(
        "create", help="register a partner (prints its secret once)", parents=db
    )
    create.add_argument("--name", required=True, type=display_name)
    create.add_argument(
        "--key-id", type=identifier, help="its HTTP Basic user name (default: a new random one)"
    )
    create.set_defaults(handler=create_partner)

    update = sub.add_parser("update", help="rename a partner", parents=db)
    update.add_argument("key_id")
    update.add_argument("--name", required=True, type=display_name)
    update.set_defaults(handler=update_partner)

    delete = sub.add_parser(
        "delete", help="delete a partner (one that owns no accounts)", parents=db
    )
    delete.add_argument("key_id")
    delete.set_defaults(handler=delete_partner)

    for name, text, handler in (
        ("allow", "let a partner use a client", allow),
        ("disallow", "stop a partner using a client (its tokens stay)", disallow),
    ):
        action = sub.add_parser(name, help=text, parents=db)
        action.add_argument("key_id")
        action.add_argument("client_id")
        action.set_defaults(handler=handler)

    rotate = sub.add_parser(
        "rotate-secret", help="issue a new partner secret (the old one stops working)", parents=db
    )
    rotate.add_argument("key_id")
    rotate.set_defaults(handler=rotate_secret)


async def list_partners(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    partners = await storage.list_partners()
    rows = [[p.key_id, p.name, str(len(p.clients)), str(p.accounts)] for p in partners]
    return Answer(
        [partner_json(p) for p in partners],
        table(["KEY ID", "NAME", "CLIENTS", "ACCOUNTS"], rows, empty="no partners"),
    )


async def show_partner(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    partner = await storage.get_partner_details(args.key_id)
    if partner is None:
        raise unknown_partner(args.key_id)
    return Answer(partner_json(partner), partner_text(partner))


async def create_partner(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    creds = await administrator(storage).create_partner(name=args.name, key_id=args.key_id)
    return Answer(
        {"key_id": creds.key_id, "secret": creds.secret},
        f"registered partner {args.name}\n"
        f"key_id:  {creds.key_id}\n"
        f"secret:  {creds.secret}\n"
        "The secret is shown only this once: keep it now.",
    )


async def update_partner(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    partner = await administrator(storage).update_partner(args.key_id, name=args.name)
    if partner is None:
        raise unknown_partner(args.key_id)
    return Answer(partner_json(partner), partner_text(partner))


async def delete_partner(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    if not await administrator(storage).delete_partner(args.key_id):
        raise unknown_partner(args.key_id)
    return Answer({"key_id": args.key_id, "deleted": True}, f"deleted partner {args.key_id}")


async def allow(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    if not await administrator(storage).allow_partner_client(args.key_id, args.client_id):
        raise await _which_is_unknown(storage, args)
    return Answer(
        {"key_id": args.key_id, "client_id": args.client_id, "allowed": True},
        f"partner {args.key_id} may use client {args.client_id}",
    )


async def disallow(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    if not await administrator(storage).disallow_partner_client(args.key_id, args.client_id):
        raise await _which_is_unknown(storage, args)
    return Answer(
        {"key_id": args.key_id, "client_id": args.client_id, "allowed": False},
        f"partner {args.key_id} may no longer use client {args.client_id}",
    )


async def _which_is_unknown(storage: SQLAlchemyStorage, args: argparse.Namespace) -> CommandError:
    if await storage.get_partner_details(args.key_id) is None:
        return unknown_partner(args.key_id)
    return unknown_client(args.client_id)


async def rotate_secret(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    renewed = await administrator(storage).rotate_partner_secret(args.key_id)
    if renewed is None:
        raise unknown_partner(args.key_id)
    return Answer(
        {"key_id": renewed.key_id, "secret": renewed.secret},
        f"new secret of partner {renewed.key_id} (the old one no longer works)\n"
        f"secret:  {renewed.secret}\n"
        "The secret is shown only this once: keep it now.",
    )
