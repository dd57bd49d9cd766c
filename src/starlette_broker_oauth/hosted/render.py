"""The default templates: plain HTML and CSS, no script, readable from 320 px to a desktop
and at 200 % zoom, with labelled controls, visible focus and AA contrast."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

from .pages import (
    AccountChoice,
    AppView,
    ConnectedAppView,
    ConnectionsPage,
    ConsentPage,
    ErrorPage,
    Frame,
    ScopeView,
)

__all__ = ["render_connections_page", "render_consent_page", "render_error_page"]

e = html.escape

_CSS = """
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:#1b1f24;background:#f3f5f8}
a{color:#0b57d0}
a:focus-visible,button:focus-visible,input:focus-visible,summary:focus-visible{
 outline:3px solid #0b57d0;outline-offset:2px}
.bar{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between;
 padding:.75rem 1rem;background:#fff;border-bottom:1px solid #d5dae1}
.brand{display:flex;align-items:center;gap:.5rem;font-weight:700;font-size:1.05rem}
.brand img{height:2rem;width:auto}
.who{font-size:.95rem;color:#3d4550}
main{max-width:36rem;margin:1.5rem auto;padding:0 1rem}
.card{background:#fff;border:1px solid #d5dae1;border-radius:.75rem;padding:1.25rem 1.5rem}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.lead{margin-top:0;color:#3d4550}
ul.scopes{padding-left:1.25rem;margin:.25rem 0 0}
ul.scopes li{margin:.25rem 0}
.scope-name{font-family:ui-monospace,monospace;font-size:.85rem;color:#4a5360}
ul.links{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;padding:0;margin:.5rem 0 0}
fieldset{border:0;margin:1.5rem 0 0;padding:0}
legend{font-weight:700;font-size:1.1rem;padding:0;margin-bottom:.25rem}
.account{display:flex;gap:.75rem;align-items:flex-start;padding:.6rem .75rem;
 border:1px solid #d5dae1;border-radius:.5rem;margin-top:.5rem}
.account input{width:1.25rem;height:1.25rem;margin:.15rem 0 0;flex:none}
.account label{flex:1}
.account.unavailable label{color:#4a5360}
.reason{display:block;font-size:.9rem;color:#8a1c12}
.badge{display:inline-block;font-size:.75rem;font-weight:700;letter-spacing:.02em;
 padding:.05rem .45rem;border-radius:1rem;margin-left:.4rem;vertical-align:.1rem}
.badge.live{background:#fde7e4;color:#8a1c12}
.badge.paper{background:#e3f1e6;color:#1f5b2c}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.5rem}
button{font:inherit;font-weight:600;padding:.65rem 1.4rem;border-radius:.5rem;cursor:pointer;
 border:1px solid #0b57d0;min-height:2.75rem}
button.primary{background:#0b57d0;color:#fff}
button.secondary{background:#fff;color:#0b57d0}
button:disabled{background:#e4e7eb;border-color:#c3c9d1;color:#4a5360;cursor:not-allowed}
.small{font-size:.9rem;color:#3d4550}
.notice{background:#e3f1e6;border:1px solid #9cc9a7;border-radius:.5rem;padding:.6rem 1rem;
 margin-bottom:1rem}
ul.apps{list-style:none;padding:0;margin:0}
.app{border:1px solid #d5dae1;border-radius:.5rem;padding:.75rem 1rem;margin-top:.5rem}
.app h3{margin:0;font-size:1rem}
section{margin-top:1.5rem}
section h2{margin:0;padding-bottom:.25rem;border-bottom:2px solid #1b1f24}
details{margin-top:1.25rem;font-size:.9rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:.5rem 0 0}
dt{font-weight:600}
dd{margin:0;overflow-wrap:anywhere}
code{font-family:ui-monospace,monospace}
"""


def _layout(frame: Frame, title: str, body: str) -> str:
    logo = (
        f'<img src="{e(frame.logo_url)}" alt="" width="32" height="32">' if frame.logo_url else ""
    )
    who = ""
    if frame.user_name is not None:
        who = f'<span class="who" id="signed-in">Signed in as <strong>{e(frame.user_name)}</strong>'
        if frame.switch_user_url:
            who += f' · <a href="{e(frame.switch_user_url)}" id="switch-user">Not you?</a>'
        who += "</span>"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{e(title)} · {e(frame.platform_name)}</title>
<style>{_CSS}</style>
</head>
<body>
<header class="bar"><span class="brand">{logo}<span id="platform-name">{e(frame.platform_name)}</span></span>{who}</header>
<main>
<div class="card">
{body}
</div>
</main>
</body>
</html>
"""


def _scopes(scopes: tuple[ScopeView, ...]) -> str:
    if not scopes:
        return '<ul class="scopes" id="scopes"><li>Only confirm that you have an account</li></ul>'
    items = "".join(f"<li>{e(s.description)}{_scope_name(s)}</li>" for s in scopes)
    return f'<ul class="scopes" id="scopes">{items}</ul>'


def _scope_name(scope: ScopeView) -> str:
    if scope.description == scope.name:
        return ""
    return f' <span class="scope-name">({e(scope.name)})</span>'


def _links(app: AppView, ident: str = "") -> str:
    links = [
        f'<li><a href="{e(url)}" rel="noopener noreferrer">{label}</a></li>'
        for label, url in (
            (f"{e(app.name)} website", app.url),
            ("Terms of use", app.terms_of_use),
            ("Privacy policy", app.privacy_policy),
        )
        if url
    ]
    attribute = f' id="{ident}"' if ident else ""
    return f'<ul class="links"{attribute}>{"".join(links)}</ul>' if links else ""


def _badge(live: bool) -> str:
    return (
        '<span class="badge live">Live</span>'
        if live
        else ('<span class="badge paper">Paper</span>')
    )


def _hidden(fields: tuple[tuple[str, str], ...]) -> str:
    return "".join(
        f'<input type="hidden" name="{e(name)}" value="{e(value)}">' for name, value in fields
    )


def _account(choice: AccountChoice, index: int, chooser: bool) -> str:
    ident = f"account-{index}"
    reason = ""
    described = ""
    if not choice.available:
        reason = f'<span class="reason" id="{ident}-reason">{e(choice.reason)}</span>'
        described = f' aria-describedby="{ident}-reason"'
    attributes = " disabled" if not choice.available else (" checked" if choice.selected else "")
    control = (
        f'<input type="radio" name="account_id" id="{ident}" value="{e(choice.account_id)}"'
        f"{attributes}{described} required>"
        if chooser
        else ""
    )
    cls = "account" if choice.available else "account unavailable"
    return (
        f'<div class="{cls}" data-account-id="{e(choice.account_id)}">{control}'
        f'<label for="{ident}">{e(choice.label)}{_badge(choice.live)}{reason}</label></div>'
    )


def render_consent_page(page: ConsentPage) -> str:
    """The default consent page."""
    app, frame = page.app, page.frame
    usable = [a for a in page.accounts if a.available]
    chooser = len(page.accounts) > 1 or not usable
    accounts = "".join(_account(a, i, chooser) for i, a in enumerate(page.accounts))
    if chooser:
        legend = "Choose the account to connect" if usable else "Your accounts"
        accounts = f'<fieldset id="accounts"><legend>{legend}</legend>{accounts}</fieldset>'
    else:
        single = usable[0]
        accounts = (
            f'<h2>Account</h2><div id="accounts">{accounts}</div>'
            f'<input type="hidden" name="account_id" value="{e(single.account_id)}">'
        )
    if not usable:
        accounts += (
            f'<p class="small" id="no-account">None of your accounts can be connected to '
            f"{e(app.name)}. Choose <strong>Deny</strong> to return to the app.</p>"
        )
    approve = (
        '<button type="submit" class="primary" name="decision" value="approve" id="approve">'
        "Allow</button>"
        if usable
        else ""
    )
    manage = f" {e(app.name)} keeps this access {e(page.access_lasts)}."
    if frame.connections_url:
        manage += (
            f" You can disconnect {e(app.name)} at any time in "
            f'<a href="{e(frame.connections_url)}">Connected apps</a>.'
        )
    description = (
        f'<p class="lead" id="client-description">{e(app.description)}</p>'
        if app.description
        else ""
    )
    body = f"""<h1>Connect <span id="client-name">{e(app.name)}</span> to your {e(frame.platform_name)} account?</h1>
{description}
{_links(app, "client-links")}
<form method="post" action="{e(page.action)}">
{_hidden(page.fields)}
<h2 id="scopes-heading">{e(app.name)} will be able to</h2>
{_scopes(page.scopes)}
{accounts}
<p class="small">After you choose, you will return to <strong id="redirect-host">{e(page.redirect_host)}</strong>.{manage}</p>
<div class="actions">
{approve}
<button type="submit" class="secondary" name="decision" value="deny" id="deny" formnovalidate>Deny</button>
</div>
</form>"""
    return _layout(frame, f"Connect {app.name}", body)


def render_error_page(page: ErrorPage) -> str:
    """The default error page: plain words first, the technical reason after."""
    detail = f'<dt>Detail</dt><dd id="error-detail">{e(page.detail)}</dd>' if page.detail else ""
    body = f"""<h1 id="error-title">{e(page.title)}</h1>
<p id="error-message">{e(page.message)}</p>
<details>
<summary>Technical details</summary>
<dl>
<dt>Error</dt><dd><code id="error-code">{e(page.error)}</code></dd>
{detail}
<dt>Status</dt><dd>{page.status}</dd>
</dl>
</details>"""
    return _layout(page.frame, page.title, body)


def _when(moment: datetime) -> str:
    return (
        f'<time datetime="{e(moment.isoformat())}">{moment.strftime("%d %b %Y, %H:%M")} UTC</time>'
    )


def _since(view: ConnectedAppView) -> str:
    connected = f"Connected {_when(view.connected_at)}"
    if view.last_issued_at - view.connected_at < timedelta(minutes=1):
        return connected
    return f"{connected} · last authorized {_when(view.last_issued_at)}"


def _connected(view: ConnectedAppView, action: str) -> str:
    app = view.app
    scopes = "".join(f"<li>{e(s.description)}{_scope_name(s)}</li>" for s in view.scopes)
    return f"""<li class="app" data-client-id="{e(app.client_id)}">
<h3>{e(app.name)}</h3>
{_links(app)}
<p class="small">It can:</p><ul class="scopes">{scopes}</ul>
<p class="small">{_since(view)}</p>
<form method="post" action="{e(action)}">
{_hidden(view.fields)}
<button type="submit" class="secondary" aria-label="Disconnect {e(app.name)}">Disconnect</button>
</form>
</li>"""


def render_connections_page(page: ConnectionsPage) -> str:
    """The default connected-apps page."""
    notice = (
        f'<p class="notice" role="status" id="notice">{e(page.notice)}</p>' if page.notice else ""
    )
    sections = []
    for account in page.accounts:
        apps = "".join(_connected(view, page.action) for view in account.apps)
        listing = (
            f'<ul class="apps">{apps}</ul>'
            if apps
            else '<p class="small">No apps are connected to this account.</p>'
        )
        sections.append(
            f'<section data-account-id="{e(account.account_id)}">'
            f"<h2>{e(account.label)}{_badge(account.live)}</h2>{listing}</section>"
        )
    body = f"""<h1>Connected apps</h1>
{notice}
<p class="lead">Apps you have allowed to use your {e(page.frame.platform_name)} accounts. Disconnecting an app stops it within a second; it must ask you again to reconnect.</p>
{"".join(sections) or "<p>You have no accounts.</p>"}"""
    return _layout(page.frame, "Connected apps", body)
