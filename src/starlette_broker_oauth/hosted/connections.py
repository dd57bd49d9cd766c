"""The connected-apps page: ``GET``/``POST /oauth/connections``.

Lists, for each of the logged-in user's accounts, the apps holding a working token, and
disconnects one (every access and refresh token of that app for that account) through a
CSRF-protected form, answering with a 303 back to the page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._params import query_params
from ..clock import Clock
from ..core import AuthorizationCore, ConnectedApps
from .base import HostedEndpoints
from .config import FormTokens, HostedConsent, user_key
from .consent import app_view
from .pages import AccountConnections, AppView, ConnectedAppView, ConnectionsPage, ScopeView
from .session import SessionUser

__all__ = ["ConnectionsEndpoints"]

_SALT = "starlette-broker-oauth/connections"


class ConnectionsEndpoints(HostedEndpoints):
    """The two handlers of ``/oauth/connections``."""

    def __init__(
        self,
        *,
        core: AuthorizationCore,
        connected: ConnectedApps,
        config: HostedConsent,
        action: str,
        clock: Clock,
    ) -> None:
        super().__init__(core=core, config=config, connections_url=action)
        self.connected = connected
        self.action = action
        self.tokens = FormTokens(
            config.secret_key, salt=_SALT, max_age=config.form_max_age, clock=clock
        )

    async def handle(self, request: Request) -> Response:
        """``GET`` (and ``HEAD``) the page, ``POST`` a disconnection."""
        if request.method == "POST":
            return await self.post(request)
        return await self.get(request)

    async def get(self, request: Request) -> Response:
        try:
            user = await self.config.session.current_user(request)
            if user is None:
                return self.login(request)
            page = await self._page(request, user)
        except Exception as exc:
            return self.failure(request, exc)
        return self.html(self.templates.connections(page))

    async def post(self, request: Request) -> Response:
        try:
            return await self._disconnect(request)
        except Exception as exc:
            return self.failure(request, exc)

    async def _disconnect(self, request: Request) -> Response:
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
            query = "?" + urlencode({"disconnected": client_id, "account": str(account_id)})
        return RedirectResponse(
            self.action + query, status_code=303, headers={"Cache-Control": "no-store"}
        )

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
        notice = ""
        query = query_params(request)
        gone, where = query.get("disconnected", []), query.get("account", [])
        if len(gone) == 1 and len(where) == 1:
            # Said only when it is true: that account of this user no longer has the app.
            for section in sections:
                if section.account_id == where[0] and all(
                    view.app.client_id != gone[0] for view in section.apps
                ):
                    client = await self.core.clients.get_client(gone[0])
                    name = client.name if client is not None and client.name else gone[0]
                    notice = f"{name} was disconnected from {section.label}."
        return ConnectionsPage(
            frame=self.frame(request, user),
            accounts=tuple(sections),
            action=self.action,
            notice=notice,
        )
