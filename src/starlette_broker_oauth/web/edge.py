"""The sub-app's edge: requests whose bytes no endpoint can read are refused here, in the
shape of the endpoint they were sent to (:meth:`.._render.ErrorHandlers.answer`), before
any handler, hook or Authlib sees them.

What is refused: a query string that is not UTF-8, a path that is not Unicode text, and
control characters (C0, DEL) in the path or the query. Every handler can then read
``request.url`` and the parameters without meeting an exception type nobody expected.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BadRequest, ConfigurationError, NotFound, RequestError
from .render import ErrorHandlers

__all__ = ["EdgeGuard"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
        issuer: The issuer: the sub-app may be mounted only where it says.
        errors: The sub-app's error handlers, which answer each refusal in its face's shape.
    """

    def __init__(self, app: ASGIApp, *, issuer: str, errors: ErrorHandlers) -> None:
        self.app = app
        self.errors = errors
        self.issuer = issuer
        self.issuer_path = urlsplit(issuer).path.rstrip("/")
        self.mounts_checked: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root: str = scope.get("root_path", "").rstrip("/")
            if root not in self.mounts_checked:
                self.check_mount(root)
            if (problem := self.problem(scope)) is not None:
                response = self.errors.answer(Request(scope), problem)
                assert response is not None  # every face answers a request it cannot read
                await response(scope, receive, send)
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
    def problem(scope: Scope) -> RequestError | None:
        """What makes the request unreadable, if anything."""
        path: str = scope["path"]
        if _CONTROL.search(path) or (not path.isascii() and not _encodable(path)):
            return NotFound("not found")
        try:
            query = scope.get("query_string", b"").decode("utf-8")
        except UnicodeDecodeError:
            return BadRequest("the query string is not valid UTF-8")
        if _CONTROL.search(query):
            return BadRequest("the query string has control characters")
        return None
