"""Pages the platform can let the library host for its logged-in users.

* consent, ``GET``/``POST /oauth/authorize`` (:mod:`.consent`): who is asking, for what,
  and for which of the user's accounts;
* connected apps, ``GET``/``POST /oauth/connections`` (:mod:`.connections`): what is
  connected to each account, and disconnecting it;
* an error page for what cannot be completed or redirected.

Turn them on with ``create_oauth_app(consent=HostedConsent(...))``. The platform says who
is logged in through a :class:`SessionHook`; every page is rendered from a frozen value
(:mod:`.pages`) by a Jinja2 template with autoescape (:mod:`.render`), which the platform
overrides from its own template directory (``HostedConsent(template_directory=...)``).
"""

from .config import HostedConsent, Templates, page_headers
from .pages import (
    AccountChoice,
    AccountConnections,
    AppView,
    ConnectedAppView,
    ConnectionsPage,
    ConsentPage,
    ErrorPage,
    Frame,
    ScopeView,
)
from .render import render_connections_page, render_consent_page, render_error_page
from .session import SessionAccount, SessionHook, SessionUser

__all__ = [
    "AccountChoice",
    "AccountConnections",
    "AppView",
    "ConnectedAppView",
    "ConnectionsPage",
    "ConsentPage",
    "ErrorPage",
    "Frame",
    "HostedConsent",
    "ScopeView",
    "SessionAccount",
    "SessionHook",
    "SessionUser",
    "Templates",
    "page_headers",
    "render_connections_page",
    "render_consent_page",
    "render_error_page",
]
