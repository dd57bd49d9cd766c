"""The connected-apps page: ``GET``/``POST /oauth/connections``.

Lists, for each of the logged-in user's accounts, the apps holding a working token, and
disconnects one (every access and refresh token of that app for that account) through a
CSRF-protected form, answering with a 303 back to the page.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ...clock import Clock
from ...core import AuthorizationCore, ConnectedApps
from ..params import query_params
from .base import HostedEndpoints
from .config import FormTokens, HostedConsent, user_key
from .consent import app_view
from .pages import AccountConnections, AppView, ConnectedAppView, ConnectionsPage, ScopeView
from .session import SessionUser

__all__ = ["ConnectionsEndpoints"]

_SALT = "starlette-broker-oauth/connections"
_FLASH_SALT = "starlette-broker-oauth/connections/done"
# A notice is shown on the page the POST redirects to, and only briefly after it.
_FLASH_MAX_AGE = timedelta(minutes=2)


class ConnectionsEndpoints(HostedEndpoints):
    """The two handlers of ``/oauth/connections``."""

    def __init__(
        self,
        *,
        core: AuthorizationCore,
        connected: ConnectedApps,
        config: HostedConsent,
        pages: Jinja2Templates,
        action: str,
        clock: Clock,
    ) -> None:
        super().__init__(core=core, config=config, pages=pages, connections_url=action)
        self.connected = connected
        self.action = action
        self.tokens = FormTokens(
            config.secret_key, salt=_SALT, max_age=config.form_max_age, clock=clock
        )
        # The notice after a disconnection: signed by the POST that made it, for the user
        # who made it, so that no link can put words on the page.
        self.flash = FormTokens(
            config.secret_key, salt=_FLASH_SALT, max_age=_FLASH_MAX_AGE, clock=clock
        )

    async def handle(self, request: Request) -> Response:
        """``GET`` (and ``HEAD``) the page, ``POST`` a disconnection."""
        if request.method == "POST":
            return await self.post(request)
        return await self.get(request)

    async def get(self, request: Request) -> Response:
        user = await self.config.session.current_user(request)
        if user is None:
            return self.login(request)
        page = await self._page(request, user)
        return self.render(request, "connections.html", page, self.templates.connections)

    async def post(self, request: Request) -> Response:
        form = await self.signed_form(request, self.tokens)
        if isinstance(form, Response):
            return form
        fields, user, _ = form
        account_id = self.own_account(user, fields.get("account_id"))
        client_id = fields.get("client_id", "")
        if account_id is None or not client_id:
            return self.error_page(
                request,
                400,
                "invalid_request",
                "account_id or client_id is missing or not the user's",
                user=user,
            )
        listed = {c.connection.client_id for c in await self.connected.list(account_id)}
        query = ""
        if client_id in listed:  # only an app the page showed; nothing else is an event
            await self.connected.disconnect(account_id, client_id, reason="user_disconnected")
            done = {"u": user_key(user), "a": str(account_id), "c": client_id}
            query = "?" + urlencode({"done": self.flash.dumps(done)})
        return RedirectResponse(
            self.action + query, status_code=303, headers={"Cache-Control": "no-store"}
        )

    async def _notice(
        self, request: Request, user: SessionUser, sections: list[AccountConnections]
    ) -> str:
        """What the disconnection this user just made did, from the token its POST signed;
        nothing for a token that is missing, forged, stale, or another user's."""
        given = query_params(request).get("done", [])
        done = self.flash.loads(given[0]) if len(given) == 1 else None
        if done is None or done.get("u") != user_key(user):
            return ""
        client_id = str(done.get("c", ""))
        for section in sections:
            # Said only while true: the app has not been connected again since.
            if section.account_id == done.get("a") and all(
                view.app.client_id != client_id for view in section.apps
            ):
                client = await self.core.clients.get_client(client_id)
                name = client.name if client is not None and client.name else client_id
                return f"{name} was disconnected from {section.label}."
        return ""

    async def _page(self, request: Request, user: SessionUser) -> ConnectionsPage:
        settings = self.core.settings
        token = self.tokens.dumps({"u": user_key(user)})
        sections = []
        for account, record in await self.accounts(user):
            views = []
            for connected in await self.connected.list(account.account_id):
                c = connected.connection
                app = (
                    app_view(connected.client)
                    if connected.client is not None
                    else AppView(client_id=c.client_id, name=c.client_id)
                )
                views.append(
                    ConnectedAppView(
                        app=app,
                        scopes=tuple(
                            ScopeView(name=s, description=settings.describe(s))
                            for s in sorted(c.scopes)
                        ),
                        connected_at=c.connected_at,
                        last_issued_at=c.last_issued_at,
                        fields=(
                            ("csrf_token", token),
                            ("account_id", str(account.account_id)),
                            ("client_id", c.client_id),
                        ),
                    )
                )
            sections.append(
                AccountConnections(
                    account_id=str(account.account_id),
                    label=self.label(account, record),
                    live=record is not None and record.live,
                    apps=tuple(views),
                )
            )
        notice = await self._notice(request, user, sections)
        return ConnectionsPage(
            frame=self.frame(request, user),
            accounts=tuple(sections),
            action=self.action,
            notice=notice,
        )
