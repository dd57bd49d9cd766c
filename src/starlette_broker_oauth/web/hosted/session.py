"""How the hosted pages learn who is logged in on the platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from starlette.requests import Request

__all__ = ["SessionAccount", "SessionHook", "SessionUser"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionAccount:
    """One of the logged-in user's brokerage accounts.

    Parameters:
        account_id: The account's id, as the account repository knows it.
        label: How the user knows the account ("Individual ····4821"); the page adds
            whether it is paper or live.
    """

    account_id: UUID
    label: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUser:
    """The user logged in on the platform.

    Parameters:
        name: Shown as "Signed in as …" on every hosted page.
        accounts: The accounts this user may connect, in the order to show them.
    """

    name: str
    accounts: tuple[SessionAccount, ...]


class SessionHook(Protocol):
    """The platform's login, as the hosted pages see it."""

    async def current_user(self, request: Request) -> SessionUser | None:
        """The logged-in user, or ``None`` when nobody is logged in."""

    def login_url(self, request: Request) -> str:
        """Where a user must log in first, coming back to ``request.url`` afterwards."""

    def switch_user_url(self, request: Request) -> str:
        """Where to log out and log in as someone else, coming back to ``request.url``."""
