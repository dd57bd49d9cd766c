"""``broker-oauth client …``: register, list, show, change, disable and delete apps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models import ClientAuthMethod, ClientStatus
from ..registration import MIN_SECRET_LENGTH
from ..storage.sqlalchemy import SQLAlchemyStorage
from .audit import administrator
from .output import (
    Answer,
    CommandError,
    client_json,
    client_text,
    scopes_text,
    table,
    unknown_client,
    yes_no,
)
from .parser import LEAST_SCOPE, Parents, display_name, identifier, known_scope

if TYPE_CHECKING:
    from .parser import Commands

__all__ = ["register"]

_SHOWN_ONCE = "The secret is shown only this once: keep it now."


def register(commands: Commands, parents: Parents) -> None:
    client = commands.add_parser("client", help="register and manage third-party apps")
    sub = client.add_subparsers(dest="client_command", required=True, metavar="COMMAND")
    db = [parents.database]

    sub.add_parser("list", help="every client", parents=db).set_defaults(
        handler=list_clients, reads_only=True, migrate=False
    )
    show = sub.add_parser("show", help="a client's registration", parents=db)
    show.add_argument("client_id")
    show.set_defaults(handler=show_client, reads_only=True, migrate=False)

    create = sub.add_parser("create", help="register a client (prints its secret once)", parents=db)
    create.add_argument("--name", required=True, type=display_name)
    create.add_argument(
        "--redirect-uri", action="append", required=True, dest="redirect_uris", help="(repeat)"
    )
    create.add_argument("--description", default="")
    create.add_argument("--url", default="")
    create.add_argument("--terms-of-use", default="")
    create.add_argument("--privacy-policy", default="")
    create_scopes = create.add_mutually_exclusive_group()
    create_scopes.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        type=known_scope,
        help="a scope it may ask for (repeat; default: general, the least)",
    )
    create_scopes.add_argument(
        "--all-scopes", action="store_true", help="let it ask for every supported scope"
    )
    create.add_argument(
        "--response-type",
        action="append",
        dest="response_types",
        choices=("code", "token"),
        help="(repeat; default: code and token)",
    )
    create.add_argument("--live-trading-approved", action="store_true")
    create.add_argument(
        "--client-id", type=identifier, help="keep this id (an app moved from another server)"
    )
    create.add_argument(
        "--secret-stdin",
        action="store_true",
        help="keep the secret read from standard input (one line, at least "
        f"{MIN_SECRET_LENGTH} characters) instead of generating one",
    )
    _key_options(create)
    create.set_defaults(handler=create_client)

    update = sub.add_parser(
        "update", help="change a client's registration (what is given)", parents=db
    )
    update.add_argument("client_id")
    update.add_argument("--name", type=display_name)
    update.add_argument(
        "--redirect-uri", action="append", dest="redirect_uris", help="(repeat; replaces them)"
    )
    update.add_argument("--description")
    update.add_argument("--url")
    update.add_argument("--terms-of-use")
    update.add_argument("--privacy-policy")
    scopes = update.add_mutually_exclusive_group()
    scopes.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        type=known_scope,
        help="(repeat; replaces them)",
    )
    scopes.add_argument(
        "--all-scopes", action="store_true", help="let it ask for every supported scope"
    )
    update.add_argument(
        "--response-type",
        action="append",
        dest="response_types",
        choices=("code", "token"),
        help="(repeat; replaces them)",
    )
    update.add_argument(
        "--live-trading-approved", action=argparse.BooleanOptionalAction, default=None
    )
    _key_options(update)
    update.set_defaults(handler=update_client)

    delete = sub.add_parser(
        "delete", help="delete a client: its codes go, its tokens are revoked", parents=db
    )
    delete.add_argument("client_id")
    delete.set_defaults(handler=delete_client)

    for name, text, handler in (
        ("disable", "revoke its codes and tokens, and refuse it new ones", disable_client),
        ("enable", "let it get new codes and tokens (its old ones stay revoked)", enable_client),
        ("rotate-secret", "issue a new secret (the old one stops working)", rotate_secret),
    ):
        action = sub.add_parser(name, help=text, parents=db)
        action.add_argument("client_id")
        action.set_defaults(handler=handler)


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jwks",
        metavar="FILE",
        type=Path,
        help="the client's public keys for private_key_jwt: a JWK Set file (public keys "
        "only; replaces those registered)",
    )
    parser.add_argument(
        "--auth-method",
        dest="token_endpoint_auth_method",
        choices=[m.value for m in ClientAuthMethod],
        help="how it authenticates: client_secret_basic (its secret, or its keys if it "
        "has any; the default) or private_key_jwt (its keys only)",
    )
    parser.add_argument(
        "--fapi",
        action="store_true",
        help="put the client under the FAPI 2.0 profile: private_key_jwt only (it needs "
        "keys), pushed authorization requests and DPoP-bound tokens required",
    )


def _profile(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--fapi`` registers: the profile's three client settings."""
    if not args.fapi:
        return {}
    return {
        "token_endpoint_auth_method": ClientAuthMethod.PRIVATE_KEY_JWT,
        "require_pushed_authorization_requests": True,
        "dpop_bound_access_tokens": True,
    }


def _read_jwks(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read the JWKS file {str(path)!r}: {exc}") from None


async def list_clients(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    clients = await storage.list_clients()
    rows = [
        [
            c.client_id,
            c.name,
            c.status.value,
            yes_no(c.live_trading_approved),
            scopes_text(c),
            " ".join(c.redirect_uris),
        ]
        for c in clients
    ]
    headers = ["CLIENT ID", "NAME", "STATUS", "LIVE", "SCOPES", "REDIRECT URIS"]
    return Answer([client_json(c) for c in clients], table(headers, rows, empty="no clients"))


async def show_client(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    client = await storage.get_client(args.client_id)
    if client is None:
        raise unknown_client(args.client_id)
    return Answer(client_json(client), client_text(client))


async def create_client(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    creds = await administrator(storage).create_client(
        name=args.name,
        redirect_uris=args.redirect_uris,
        description=args.description,
        url=args.url,
        terms_of_use=args.terms_of_use,
        privacy_policy=args.privacy_policy,
        scopes=None if args.all_scopes else (args.scopes or [LEAST_SCOPE]),
        live_trading_approved=args.live_trading_approved,
        response_types=args.response_types or ("code", "token"),
        client_id=args.client_id,
        client_secret=_read_secret() if args.secret_stdin else None,
        jwks=_read_jwks(args.jwks),
        **(
            _profile(args)
            or {
                "token_endpoint_auth_method": (
                    args.token_endpoint_auth_method or ClientAuthMethod.CLIENT_SECRET_BASIC
                )
            }
        ),
    )
    if args.secret_stdin:
        return Answer(
            {"client_id": creds.client_id},
            f"registered client {args.name}\nclient_id:      {creds.client_id}\n"
            "client_secret:  the one given on standard input",
        )
    return Answer(
        {"client_id": creds.client_id, "client_secret": creds.client_secret},
        f"registered client {args.name}\n"
        f"client_id:      {creds.client_id}\n"
        f"client_secret:  {creds.client_secret}\n{_SHOWN_ONCE}",
    )


def _read_secret() -> str:
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


async def update_client(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    changes = {
        name: getattr(args, name)
        for name in (
            "name",
            "description",
            "url",
            "terms_of_use",
            "privacy_policy",
            "redirect_uris",
            "live_trading_approved",
            "response_types",
            "token_endpoint_auth_method",
        )
        if getattr(args, name) is not None
    }
    if args.jwks is not None:
        changes["jwks"] = _read_jwks(args.jwks)
    changes.update(_profile(args))
    if args.scopes is not None or args.all_scopes:
        changes["scopes"] = args.scopes
    if not changes:
        raise CommandError(
            "broker-oauth client update: nothing to change (see "
            "'broker-oauth client update --help')",
            code=2,
        )
    client = await administrator(storage).update_client(args.client_id, **changes)
    if client is None:
        raise unknown_client(args.client_id)
    return Answer(client_json(client), client_text(client))


async def delete_client(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    if not await administrator(storage).delete_client(args.client_id):
        raise unknown_client(args.client_id)
    return Answer(
        {"client_id": args.client_id, "deleted": True},
        f"deleted client {args.client_id}: its codes are gone and its tokens revoked",
    )


async def disable_client(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    return await _set_status(storage, args.client_id, ClientStatus.DISABLED)


async def enable_client(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    return await _set_status(storage, args.client_id, ClientStatus.ACTIVE)


async def _set_status(storage: SQLAlchemyStorage, client_id: str, status: ClientStatus) -> Answer:
    admin = administrator(storage)
    if status is ClientStatus.DISABLED:
        changed = await admin.disable_client(client_id)
    else:
        changed = await admin.enable_client(client_id)
    if not changed:
        raise unknown_client(client_id)
    return Answer(
        {"client_id": client_id, "status": status.value}, f"client {client_id} is {status.value}"
    )


async def rotate_secret(storage: SQLAlchemyStorage, args: argparse.Namespace) -> Answer:
    rotated = await administrator(storage).rotate_client_secret(args.client_id)
    if rotated is None:
        raise unknown_client(args.client_id)
    return Answer(
        {"client_id": rotated.client_id, "client_secret": rotated.client_secret},
        f"new secret of client {rotated.client_id} (the old one no longer works)\n"
        f"client_secret:  {rotated.client_secret}\n{_SHOWN_ONCE}",
    )
