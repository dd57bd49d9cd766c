"""The sub-app's spans: one per request to an endpoint, with the decision it took.

Each request the sub-app serves is a span, ``broker_oauth {method} {route}`` (the path
template, never the path, which may carry a token), a child of the platform's ASGI span
when it has one. What decided the answer adds to it as it goes: the partner, the client,
the grant type, and a refusal's reason; the span ends with the status and the outcome
(``ok``, ``refused``, ``unavailable`` or ``error``). A path that carries a secret (the
partner ``DELETE``'s token) is replaced by its template in the platform's enclosing span,
whose instrumentation recorded it as sent. Nothing is done when no OpenTelemetry SDK
records spans.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..routes import route_at
from ..telemetry import conceal_path, span, tracing
from .render import REASON_KEY, route_path

__all__ = ["Observed", "outcome"]


def outcome(status: int, reason: str | None) -> str:
    """The outcome of an answer: ``unavailable`` (503), ``error`` (another 5xx, or none
    sent), ``refused`` (a refusal, including one redirected to the client), else ``ok``."""
    if status == 503:
        return "unavailable"
    if status >= 500 or status == 0:
        return "error"
    if reason is not None or status >= 400:
        return "refused"
    return "ok"


class Observed:
    """ASGI middleware: each HTTP request is a span of the endpoint it reached.

    Parameters:
        app: The sub-app's inner stack.
        pages: Whether the hosted pages are served (they decide which endpoint a path is).
    """

    def __init__(self, app: ASGIApp, *, pages: bool) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing():
            await self.app(scope, receive, send)
            return
        route = route_at(route_path(scope), pages=self.pages)
        if route is not None and route.secret_path:
            path = scope.get("root_path", "") + route.path
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            url = f"{scope.get('scheme', 'http')}://{host}{path}"
            conceal_path(f"{scope['method']} {path}", path, url)
        status = 0

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method, template = scope["method"], "unrouted" if route is None else route.path
        attributes = {"http.request.method": method, "http.route": template}
        with span(f"broker_oauth {method} {template}", attributes) as current:
            try:
                await self.app(scope, receive, observed)
            finally:
                current.set_attribute("http.response.status_code", status)
                current.set_attribute(
                    "broker_oauth.outcome", outcome(status, scope.get(REASON_KEY))
                )
