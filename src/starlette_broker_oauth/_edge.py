"""The sub-app's edge: requests whose bytes no endpoint can read are refused here, in the
shape of the endpoint they were sent to, before any handler, hook or Authlib sees them.

What is refused: a query string that is not UTF-8, a path that is not Unicode text, and
control characters (C0, DEL) in the path or the query. Every handler can then read
``request.url`` and the parameters without meeting an exception type nobody expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ._render import broker_error, oauth_error
from .errors import BadRequest, ConfigurationError, InvalidRequest, NotFound
from .routes import Face, route_at

__all__ = ["EdgeGuard", "route_path"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

HostedError = Callable[[Request, int, str], Response]


def route_path(scope: Scope) -> str:
    """The path below where the sub-app is mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


class EdgeGuard:
    """ASGI middleware of the sub-app (see the module's docstring).

    Parameters:
        app: The sub-app's router.
        hosted_error: Renders the hosted pages' error page, when they are on.
    """

    def __init__(
        self, app: ASGIApp, issuer: str = "", hosted_error: HostedError | None = None
    ) -> None:
        self.app = app
        self.hosted_error = hosted_error
        self.issuer = issuer
        self.issuer_path = urlsplit(issuer).path.rstrip("/")
        self.mounts_checked: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root: str = scope.get("root_path", "").rstrip("/")
            if root not in self.mounts_checked:
                self.check_mount(root)
            if (problem := self.problem(scope)) is not None:
                await self.refusal(scope, *problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def check_mount(self, root: str) -> None:
        """Refuse to serve under a mount point the issuer does not end with: every URL the
        app publishes (metadata, the consent form, the FastAPI scheme) is built from the
        issuer, and would point where nothing is served."""
        if root and not self.issuer_path.endswith(root):
            raise ConfigurationError(
                f"the OAuth app is mounted at {root!r} but OAuthSettings.issuer "
                f"{self.issuer!r} does not end with it: set the issuer to the public URL "
                f"of the mount point (e.g. '{self.issuer.rstrip('/')}{root}')"
            )
        self.mounts_checked.add(root)

    @staticmethod
    def problem(scope: Scope) -> tuple[int, str] | None:
        path: str = scope["path"]
        if _CONTROL.search(path) or (not path.isascii() and not _encodable(path)):
            return 404, "not found"
        try:
            query = scope.get("query_string", b"").decode("utf-8")
        except UnicodeDecodeError:
            return 400, "the query string is not valid UTF-8"
        if _CONTROL.search(query):
            return 400, "the query string has control characters"
        return None

    def refusal(self, scope: Scope, status: int, message: str) -> Response:
        route = route_at(route_path(scope), pages=self.hosted_error is not None)
        face = Face.PARTNER if route is None else route.face
        if face is Face.PAGE and self.hosted_error:
            return self.hosted_error(Request(scope), status, message)
        if face is Face.STANDARD:
            return oauth_error(InvalidRequest(message))
        return broker_error(NotFound(message) if status == 404 else BadRequest(message))
