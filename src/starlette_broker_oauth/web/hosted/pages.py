"""What each hosted page shows: the value its template receives as ``page``.

Every page the library renders is a function of one frozen value, so a platform can
replace any template (``HostedConsent.template_directory``, :mod:`.render`) and keep the
library's validation, CSRF protection and headers. A template must submit each form's
``fields`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AccountChoice",
    "AccountConnections",
    "AppView",
    "ConnectedAppView",
    "ConnectionsPage",
    "ConsentPage",
    "ErrorPage",
    "Frame",
    "ScopeView",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """What every page shows around its content.

    Parameters:
        platform_name: The brokerage's name.
        logo_url: Its logo, or ``None``.
        user_name: Who is logged in; ``None`` on a page shown before that is known.
        switch_user_url: Where to log in as someone else (with ``user_name``).
        connections_url: The connected-apps page, when it is on.
    """

    platform_name: str
    logo_url: str | None = None
    user_name: str | None = None
    switch_user_url: str | None = None
    connections_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeView:
    """A scope, with what it lets an app do (``OAuthSettings.scope_descriptions``)."""

    name: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppView:
    """A client as the user sees it; links are only ``http(s)`` URLs, others are ``""``."""

    client_id: str
    name: str
    description: str = ""
    url: str = ""
    terms_of_use: str = ""
    privacy_policy: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountChoice:
    """One of the user's accounts on the consent page.

    Parameters:
        account_id: The value the form submits as ``account_id``.
        label: The platform's label for it.
        live: Live (real money) rather than paper.
        available: Whether this app may be connected to it.
        reason: Why not, in plain words, when it is unavailable.
        selected: Chosen when the page opens.
    """

    account_id: str
    label: str
    live: bool
    available: bool
    reason: str = ""
    selected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentPage:
    """The consent page (``GET /oauth/authorize``).

    Parameters:
        frame: Platform and user.
        app: Who is asking.
        scopes: What it asks for.
        accounts: The user's accounts; at least one.
        redirect_host: Where the user goes afterwards.
        action: The form's action URL (``POST``); the form submits ``fields``, the chosen
            ``account_id`` and ``decision`` (``approve`` or ``deny``).
        fields: Hidden fields (the signed request and its CSRF token).
        access_lasts: How long the app keeps access ("until you disconnect it").
    """

    frame: Frame
    app: AppView
    scopes: tuple[ScopeView, ...]
    accounts: tuple[AccountChoice, ...]
    redirect_host: str
    action: str
    fields: tuple[tuple[str, str], ...]
    access_lasts: str = "until you disconnect it"

    @property
    def can_approve(self) -> bool:
        """Whether any account may be connected."""
        return any(a.available for a in self.accounts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorPage:
    """A request the hosted pages cannot complete, and will not redirect.

    Parameters:
        frame: Platform (and user, when known).
        status: The HTTP status of the answer.
        title: What happened, in plain words.
        message: What to do, in plain words.
        error: The technical reason: an RFC 6749 error code.
        detail: The error's description.
    """

    frame: Frame
    status: int
    title: str
    message: str
    error: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectedAppView:
    """One connected app on the connected-apps page; its form submits ``fields``."""

    app: AppView
    scopes: tuple[ScopeView, ...]
    connected_at: datetime
    last_issued_at: datetime
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountConnections:
    """An account and the apps connected to it."""

    account_id: str
    label: str
    live: bool
    apps: tuple[ConnectedAppView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionsPage:
    """The connected-apps page (``GET /oauth/connections``).

    Parameters:
        frame: Platform and user.
        accounts: Each of the user's accounts with its connected apps.
        action: Where each app's *Disconnect* form posts.
        notice: The outcome of the last action ("… was disconnected"), or ``""``.
    """

    frame: Frame
    accounts: tuple[AccountConnections, ...]
    action: str
    notice: str = ""
