"""Platform-hosted consent: ``GET``/``POST /oauth/authorize`` (RFC 6749 §4.1.1).

The library validates the request, shows who is asking, for what, and which of the
user's accounts it may have (before any click, with the reason for each that it may
not), protects the form with a signed, time-limited token bound to the user and the
request, and answers with a 303 to the client's redirect URI: ``code``, ``state`` and
``iss`` (RFC 9207) on approval, ``error=access_denied`` on denial. Until the client and
its redirect URI are validated, errors are shown, never redirected (RFC 9700 §4.11).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..._oauth import ConsentRequest, OAuthProtocol
from ...clock import Clock
from ...core import AUTHORIZATION_PARAMS
from ...errors import LiveTradingNotApproved, Refusal
from ...models import Client
from ...security import hash_secret, new_secret
from ...settings import OAuthSettings
from ..params import optional, query_params
from ..render import redirect_location
from .base import HostedEndpoints
from .config import FormTokens, HostedConsent, user_key
from .pages import AccountChoice, AppView, ConsentPage, ScopeView
from .session import SessionUser

__all__ = ["ConsentEndpoints", "app_view"]

_SALT = "starlette-broker-oauth/consent"


def app_view(client: Client) -> AppView:
    """A client as a page shows it; only ``http(s)`` links survive."""

    def link(url: str) -> str:
        return url if url.startswith(("https://", "http://")) else ""

    return AppView(
        client_id=client.client_id,
        name=client.name or client.client_id,
        description=client.description,
        url=link(client.url),
        terms_of_use=link(client.terms_of_use),
        privacy_policy=link(client.privacy_policy),
    )


class ConsentEndpoints(HostedEndpoints):
    """The two handlers of ``/oauth/authorize``."""

    def __init__(
        self,
        *,
        protocol: OAuthProtocol,
        config: HostedConsent,
        pages: Jinja2Templates,
        action: str,
        connections_url: str | None,
        clock: Clock,
    ) -> None:
        super().__init__(
            core=protocol.core, config=config, pages=pages, connections_url=connections_url
        )
        self.protocol = protocol
        self.action = action
        self.issuer = protocol.settings.issuer
        self.tokens = FormTokens(
            config.secret_key, salt=_SALT, max_age=config.form_max_age, clock=clock
        )

    async def get(self, request: Request) -> Response:
        params = query_params(request)
        if "request_uri" in params:
            # RFC 9126 §4: the pushed request; every other parameter but client_id is
            # ignored. It stays usable until the user's decision uses it up.
            consent = await self.protocol.pushed_consent_request(
                optional(params, "client_id"), optional(params, "request_uri")
            )
        else:
            consent = await self.protocol.consent_request(params)
        user = await self.config.session.current_user(request)
        if user is None:
            return self.login(request)
        page = await self._page(request, consent, user)
        return self.render(
            request,
            "consent.html",
            page,
            self.templates.consent,
            redirect_uri=consent.redirect_uri,
        )

    async def post(self, request: Request) -> Response:
        form = await self.signed_form(request, self.tokens)
        if isinstance(form, Response):
            return form
        fields, user, signed = form
        decision = fields.get("decision")
        if decision not in {"approve", "deny"}:
            return self.error_page(
                request, 400, "invalid_request", "decision must be approve or deny", user=user
            )
        account_id: UUID | None = None
        if decision == "approve":
            account_id = self.own_account(user, fields.get("account_id"))
            if account_id is None:
                return self.error_page(
                    request,
                    400,
                    "invalid_request",
                    "account_id is not one of the user's",
                    user=user,
                )
        # One decision per rendered form: a replayed approval gets no second code.
        now = self.core.clock.now()
        if not await self.core.grants.use_once(
            hash_secret(_SALT + str(signed.get("n"))),
            now=now,
            expires_at=now + self.config.form_max_age,
        ):
            return self.error_page(
                request, 400, "invalid_request", "the form was already used", kind="used", user=user
            )
        # The request is the one signed into the form, not what the form's fields say.
        canonical = [(k, v) for k, v in signed.get("p", []) if k in AUTHORIZATION_PARAMS]
        pushed, shown = signed.get("r"), signed.get("t")
        authorized = await self.protocol.consent_decision(
            {k: [v] for k, v in canonical},
            account_id,
            approve=decision == "approve",
            pushed=pushed if isinstance(pushed, str) else None,
            presented_at=_when(shown),
        )
        location = redirect_location(
            authorized.redirect_uri,
            [("code", authorized.code)],
            state=authorized.state,
            issuer=self.issuer,
        )
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})

    async def _page(
        self, request: Request, consent: ConsentRequest, user: SessionUser
    ) -> ConsentPage:
        client = consent.client
        choices = []
        for account, record in await self.accounts(user):
            reason = ""
            try:
                self.core.check_account(client, record)
            except LiveTradingNotApproved:
                reason = f"{client.name or client.client_id} is not approved for live trading."
            except Refusal:
                reason = "This account cannot be connected to apps."
            choices.append(
                AccountChoice(
                    account_id=str(account.account_id),
                    label=self.label(account, record),
                    live=record is not None and record.live,
                    available=not reason,
                    reason=reason,
                )
            )
        usable = [c for c in choices if c.available]
        if len(usable) == 1:
            choices = [replace(c, selected=c is usable[0]) for c in choices]
        signed: dict[str, Any] = {
            "u": user_key(user),
            "p": [list(p) for p in consent.params],
            "n": new_secret(),
        }
        if consent.pushed is not None:
            # The pushed request this form decides, and when its request_uri was shown
            # (RFC 9126): the decision uses it up, as it stood then.
            signed["r"] = consent.pushed
            signed["t"] = self.core.clock.now().timestamp()
        token = self.tokens.dumps(signed)
        settings = self.core.settings
        return ConsentPage(
            frame=self.frame(request, user),
            app=app_view(client),
            scopes=tuple(
                ScopeView(name=s, description=settings.describe(s)) for s in consent.scopes
            ),
            accounts=tuple(choices),
            redirect_host=_host(consent.redirect_uri),
            action=self.action,
            fields=(("csrf_token", token),),
            access_lasts=_lasting(settings),
        )


def _when(timestamp: object) -> datetime | None:
    """A signed form's time, as a datetime."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        return datetime.fromtimestamp(timestamp, UTC)
    return None


def _host(redirect_uri: str) -> str:
    """Where the user returns, as a page names it: the host, or the whole URI."""
    try:
        return urlsplit(redirect_uri).netloc or redirect_uri
    except ValueError:
        return redirect_uri


def _lasting(settings: OAuthSettings) -> str:
    lifetime = settings.access_token_lifetime
    if lifetime is None or settings.refresh_token_lifetime is not None:
        return "until you disconnect it"
    minutes = int(lifetime.total_seconds() // 60)
    if minutes >= 120:
        return f"for {minutes // 60} hours, or until you disconnect it"
    return f"for {max(minutes, 1)} minutes, or until you disconnect it"
