"""Liveness and readiness over HTTP, for the platform's orchestrator (Kubernetes probes, a
load balancer's health check).

* ``GET /healthz/live``: the worker's event loop answers; nothing else is asked. Always
  ``200 {"status": "alive"}``.
* ``GET /healthz/ready``: the checks of :mod:`starlette_broker_oauth.core.health`, within
  their bound: ``200 {"status": "ready", "checks": {…}}``, or ``503`` with
  ``Retry-After: 1`` and ``"status": "not_ready"``; each check says ``ok``, ``skipped`` or
  why it failed.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.health import DEFAULT_TIMEOUT, Readiness, ReadinessReport
from .render import RETRY_AFTER

__all__ = ["ReadinessBody", "health_routes", "readiness_body"]

_HEADERS = {"Cache-Control": "no-store"}


class ReadinessBody(TypedDict):
    """The readiness answer: ``ready`` or ``not_ready``, and each check's outcome
    (``status`` and what else it found)."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, dict[str, str | float | None]]


def readiness_body(report: ReadinessReport) -> ReadinessBody:
    """The JSON body of a readiness report."""
    return {
        "status": "ready" if report.ready else "not_ready",
        "checks": {
            name: {"status": check.status, **check.details} for name, check in report.checks.items()
        },
    }


def health_routes(
    oauth: Starlette,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    live: str = "/healthz/live",
    ready: str = "/healthz/ready",
) -> list[Route]:
    """The liveness and readiness routes, for the platform's own routes (beside the
    ``Mount`` of the OAuth app: an orchestrator asks the host, not the issuer's path)::

        routes = [*health_routes(oauth), Mount("/", oauth)]

    On FastAPI: ``app.router.routes.extend(health_routes(oauth))``.

    Parameters:
        oauth: The app of :func:`~starlette_broker_oauth.create_oauth_app`, whose storage
            is probed.
        timeout: How long readiness waits for the storage, in seconds, in all; it answers
            within this bound even when the database hangs (``"status": "timeout"``).
        live: The liveness path.
        ready: The readiness path.
    """
    built: Readiness = oauth.state.readiness
    readiness = Readiness(storage=built.storage, grants=built.grants, timeout=timeout)

    async def liveness(request: Request) -> Response:
        return JSONResponse({"status": "alive"}, headers=_HEADERS)

    async def ready_answer(request: Request) -> Response:
        report = await readiness.check()
        if report.ready:
            return JSONResponse(readiness_body(report), headers=_HEADERS)
        return JSONResponse(
            readiness_body(report), status_code=503, headers={**_HEADERS, **RETRY_AFTER}
        )

    return [
        Route(live, liveness, methods=["GET"], name="liveness"),
        Route(ready, ready_answer, methods=["GET"], name="readiness"),
    ]
