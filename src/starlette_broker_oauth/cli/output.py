"""What the commands print: an answer both as JSON and as text for people, and the one-line
refusal of a command that fails."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ..models import Client
from ..storage.admin import AccountDetails, PartnerDetails

__all__ = [
    "Answer",
    "CommandError",
    "account_json",
    "account_text",
    "client_json",
    "client_text",
    "fields",
    "kind",
    "partner_json",
    "partner_text",
    "scopes_text",
    "shown",
    "table",
    "unknown_account",
    "unknown_client",
    "unknown_partner",
    "yes_no",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """A command's answer: ``data`` for ``--json``, ``text`` otherwise."""

    data: Any
    text: str


class CommandError(Exception):
    """A command that cannot be done: its one-line reason, and the exit code."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def shown(value: str) -> str:
    """Stored text as a terminal may show it: control characters (an escape sequence, a
    carriage return, a newline) written as Python escapes, never sent raw."""
    if not _CONTROL.search(value):
        return value
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> str:
    """Rows under their headers in aligned columns, or ``empty`` when there are none."""
    if not rows:
        return empty
    rows = [[shown(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def fields(pairs: Sequence[tuple[str, str | Sequence[str]]]) -> str:
    """``label: value`` lines with the values aligned; a list of values takes a line each."""
    width = max(len(label) for label, _ in pairs) + 2
    lines = []
    for label, value in pairs:
        values = [shown(v) for v in ([value] if isinstance(value, str) else value)] or ["-"]
        lines.append(f"{label + ':':<{width}}{values[0] or '-'}")
        lines.extend(" " * width + more for more in values[1:])
    return "\n".join(lines)


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def client_json(client: Client) -> dict[str, Any]:
    """A client's fields, without its secret's hash; with its authentication method and
    public keys when it registered keys."""
    shown: dict[str, Any] = {
        "client_id": client.client_id,
        "name": client.name,
        "status": client.status.value,
        "live_trading_approved": client.live_trading_approved,
        "redirect_uris": list(client.redirect_uris),
        "scopes": None if client.scopes is None else sorted(client.scopes),
        "response_types": sorted(client.response_types),
        "description": client.description,
        "url": client.url,
        "terms_of_use": client.terms_of_use,
        "privacy_policy": client.privacy_policy,
    }
    if client.jwks is not None:
        shown["token_endpoint_auth_method"] = client.token_endpoint_auth_method.value
        shown["jwks"] = json.loads(client.jwks)
    # Shown when set (the FAPI 2.0 profile's client settings).
    if client.require_pushed_authorization_requests:
        shown["require_pushed_authorization_requests"] = True
    if client.dpop_bound_access_tokens:
        shown["dpop_bound_access_tokens"] = True
    return shown


def client_text(client: Client) -> str:
    return fields(
        [
            ("client_id", client.client_id),
            ("name", client.name),
            ("status", client.status.value),
            ("live trading approved", yes_no(client.live_trading_approved)),
            ("scopes", scopes_text(client)),
            ("response types", " ".join(sorted(client.response_types))),
            ("redirect URIs", client.redirect_uris),
            ("description", client.description),
            ("url", client.url),
            ("terms of use", client.terms_of_use),
            ("privacy policy", client.privacy_policy),
            *(
                [
                    ("authentication", client.token_endpoint_auth_method.value),
                    ("keys", _key_ids(client.jwks)),
                ]
                if client.jwks is not None
                else []
            ),
        ]
    )


def _key_ids(jwks: str) -> str:
    keys = json.loads(jwks)["keys"]
    return ", ".join(f"{k['kty']} {k.get('kid', '(no kid)')}" for k in keys)


def scopes_text(client: Client) -> str:
    if client.scopes is None:
        return "every supported scope"
    return " ".join(sorted(client.scopes)) or "none"


def partner_json(partner: PartnerDetails) -> dict[str, Any]:
    return {
        "key_id": partner.key_id,
        "name": partner.name,
        "clients": list(partner.clients),
        "accounts": partner.accounts,
    }


def partner_text(partner: PartnerDetails) -> str:
    return fields(
        [
            ("key_id", partner.key_id),
            ("name", partner.name),
            ("clients", partner.clients),
            ("accounts", str(partner.accounts)),
        ]
    )


def account_json(account: AccountDetails) -> dict[str, Any]:
    return {
        "account_id": str(account.account_id),
        "live": account.live,
        "partner": account.partner,
    }


def account_text(account: AccountDetails) -> str:
    return fields(
        [
            ("account_id", str(account.account_id)),
            ("kind", kind(account.live)),
            ("partner", account.partner or "none"),
        ]
    )


def kind(live: bool) -> str:
    return "live" if live else "paper"


def unknown_client(client_id: str) -> CommandError:
    return CommandError(f"unknown client {client_id!r}")


def unknown_partner(key_id: str) -> CommandError:
    return CommandError(f"unknown partner {key_id!r}")


def unknown_account(account_id: UUID) -> CommandError:
    return CommandError(f"unknown account {account_id}")
