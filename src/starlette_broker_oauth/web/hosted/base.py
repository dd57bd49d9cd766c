"""What the hosted endpoints share: the frame, the error page, the user's accounts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ...core import AuthorizationCore
from ...errors import ConfigurationError
from ...models import Account
from ..params import read_params
from .config import FormTokens, HostedConsent, page_headers, plain_words, user_key
from .pages import ErrorPage, Frame
from .session import SessionAccount, SessionUser

__all__ = ["HostedEndpoints"]

P = TypeVar("P")


class HostedEndpoints:
    """Base of the hosted pages' handlers.

    Parameters:
        core: The domain core.
        config: The hosted pages' settings.
        pages: The pages' Jinja2 templates (:func:`.render.page_templates`).
        connections_url: The connected-apps page's URL, when it is served.
    """

    def __init__(
        self,
        *,
        core: AuthorizationCore,
        config: HostedConsent,
        pages: Jinja2Templates,
        connections_url: str | None,
    ) -> None:
        self.core = core
        self.config = config
        self.pages = pages
        self.connections_url = connections_url
        self.templates = config.templates

    def frame(self, request: Request, user: SessionUser | None) -> Frame:
        return Frame(
            platform_name=self.config.platform_name,
            logo_url=self.config.logo_url,
            user_name=None if user is None else user.name,
            switch_user_url=None if user is None else self.config.session.switch_user_url(request),
            connections_url=self.connections_url,
        )

    def render(
        self,
        request: Request,
        name: str,
        page: P,
        function: Callable[[P], str] | None,
        *,
        status: int = 200,
        redirect_uri: str | None = None,
    ) -> Response:
        """The page, from the platform's ``function`` for it or else the template ``name``,
        with the headers of every hosted page."""
        headers = page_headers(redirect_uri=redirect_uri, logo_url=self.config.logo_url)
        if function is not None:
            return HTMLResponse(function(page), status_code=status, headers=headers)
        try:
            return self.pages.TemplateResponse(
                request, name, {"page": page}, status_code=status, headers=headers
            )
        except jinja2.TemplateError as exc:
            raise ConfigurationError(f"hosted page template {name} failed: {exc}") from exc

    def error_page(
        self,
        request: Request,
        status: int,
        error: str,
        detail: str = "",
        *,
        kind: str | None = None,
        user: SessionUser | None = None,
    ) -> Response:
        """A styled error page: plain words for ``kind`` (the error code by default)."""
        title, message = plain_words(kind or error, self.config.platform_name)
        page = ErrorPage(
            frame=self.frame(request, user),
            status=status,
            title=title,
            message=message,
            error=error,
            detail=detail,
        )
        return self.render(request, "error.html", page, self.templates.error, status=status)

    def login(self, request: Request) -> Response:
        """Send a user nobody has signed in to the platform's login, coming back here."""
        login = self.config.session.login_url(request)
        return RedirectResponse(login, status_code=303, headers={"Cache-Control": "no-store"})

    async def signed_form(
        self, request: Request, tokens: FormTokens
    ) -> tuple[dict[str, str], SessionUser, dict[str, Any]] | Response:
        """A posted form's single-valued fields, its user and its signed token; or the
        error page for a cross-site post, a signed-out user, or a forged or expired form."""
        if request.headers.get("sec-fetch-site") == "cross-site":
            return self.error_page(
                request, 403, "access_denied", "the form was sent from another site", kind="expired"
            )
        params = await read_params(request, json_allowed=False)
        fields = {k: v[0] for k, v in params.items() if len(v) == 1}
        user = await self.config.session.current_user(request)
        if user is None:
            return self.error_page(
                request, 401, "access_denied", "not signed in", kind="signed_out"
            )
        signed = tokens.loads(fields.get("csrf_token", ""))
        if signed is None or signed.get("u") != user_key(user):
            return self.error_page(
                request, 400, "invalid_request", "the form has expired", kind="expired", user=user
            )
        return fields, user, signed

    async def accounts(self, user: SessionUser) -> list[tuple[SessionAccount, Account | None]]:
        """The user's accounts with the repository's record of each (``None`` if unknown)."""
        return [(a, await self.core.accounts.get_account(a.account_id)) for a in user.accounts]

    @staticmethod
    def own_account(user: SessionUser, value: str | None) -> UUID | None:
        """The user's account whose id is ``value``, or ``None``."""
        for account in user.accounts:
            if value is not None and str(account.account_id) == value:
                return account.account_id
        return None

    @staticmethod
    def label(account: SessionAccount, record: Account | None) -> str:
        live = record is not None and record.live
        return account.label or ("Live account" if live else "Paper account")
