"""OpenTelemetry traces and metrics, optional and free when off.

With the ``otel`` extra (``opentelemetry-api``) installed, the library records into
whatever OpenTelemetry SDK the platform configures: spans for each endpoint's decision,
each storage operation and each token check that reaches the storage; and the metrics
below. Without the extra nothing is imported from OpenTelemetry and every hook here is a
no-op; with the API and no SDK, metrics go to the API's no-op instruments and no span is
started at all. ``docs/operations.md`` lists every name with its meaning and an alert.

Attributes carry ids and reasons, never a token, code, secret, password or account id.
"""

from __future__ import annotations

import functools
import inspect
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .events import (
    CodeIssued,
    CodeReplayDetected,
    ConnectionRevoked,
    OAuthEvent,
    RefreshTokenReuseDetected,
    TokenIssued,
    TokenRevoked,
)

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError:  # the otel extra is not installed
    ENABLED = False
else:
    ENABLED = True

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span

__all__ = [
    "ENABLED",
    "METRICS",
    "SPANS",
    "annotate",
    "conceal_path",
    "instrumented",
    "record_event",
    "record_refusal",
    "record_revocation_lag",
    "record_token_check",
    "span",
    "watch_listener",
    "watch_token_cache",
]

INSTRUMENTATION = "starlette_broker_oauth"

#: Every metric: name -> (instrument, unit, description, attributes).
METRICS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "broker_oauth.tokens.issued": (
        "counter",
        "{token}",
        "Access tokens issued.",
        ("oauth.grant_type", "oauth.client_id"),
    ),
    "broker_oauth.codes.issued": (
        "counter",
        "{code}",
        "Authorization codes issued.",
        ("oauth.client_id", "broker_oauth.via"),
    ),
    "broker_oauth.refusals": (
        "counter",
        "{refusal}",
        "Requests refused, by endpoint and reason (503s included, reason storage_unavailable).",
        ("broker_oauth.endpoint", "broker_oauth.reason", "oauth.error"),
    ),
    "broker_oauth.revocations": (
        "counter",
        "{token}",
        "Access tokens revoked, by cause.",
        ("broker_oauth.cause",),
    ),
    "broker_oauth.audit.events": (
        "counter",
        "{event}",
        "Audit events, by event (CodeReplayDetected, RefreshTokenReuseDetected, …).",
        ("broker_oauth.event",),
    ),
    "broker_oauth.token_check.duration": (
        "histogram",
        "s",
        "Duration of the token check of a protected route, by cache hit or miss.",
        ("broker_oauth.cache", "broker_oauth.outcome"),
    ),
    "broker_oauth.storage.operation.duration": (
        "histogram",
        "s",
        "Duration of a storage operation (SQLAlchemy storage).",
        ("db.system.name", "db.operation.name", "error.type"),
    ),
    "broker_oauth.token_cache.size": (
        "gauge",
        "{entry}",
        "Entries in this process's token caches.",
        (),
    ),
    "broker_oauth.revocation_listener.connected": (
        "gauge",
        "1",
        "1 while this process's PostgreSQL LISTEN connection is up, else 0.",
        ("broker_oauth.channel",),
    ),
    "broker_oauth.revocation.lag": (
        "histogram",
        "s",
        "From a revocation's commit in another process to this process's caches dropping it.",
        (),
    ),
}

#: Every span: name pattern -> attributes.
SPANS: dict[str, tuple[str, ...]] = {
    "broker_oauth {method} {route}": (
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "broker_oauth.outcome",
        "broker_oauth.reason",
        "oauth.error",
        "oauth.client_id",
        "oauth.grant_type",
        "broker_oauth.partner",
    ),
    "broker_oauth.token_check": ("broker_oauth.outcome", "broker_oauth.reason", "oauth.client_id"),
    "broker_oauth.storage {operation}": ("db.system.name", "db.operation.name"),
}

# Seconds, from a cached token check (microseconds) to a statement waiting out a timeout.
_SECONDS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_caches: weakref.WeakSet[Any] = weakref.WeakSet()
_listeners: weakref.WeakSet[Any] = weakref.WeakSet()


def _cache_sizes(options: CallbackOptions) -> Iterable[Observation]:
    yield otel_metrics.Observation(sum(cache.cache_size for cache in list(_caches)))


def _listener_states(options: CallbackOptions) -> Iterable[Observation]:
    for listener in list(_listeners):
        yield otel_metrics.Observation(
            int(listener.connected), {"broker_oauth.channel": listener.channel}
        )


if ENABLED:
    _tracer = otel_trace.get_tracer(INSTRUMENTATION)
    _meter = otel_metrics.get_meter(INSTRUMENTATION)

    def _counter(name: str) -> Any:
        _, unit, description, _ = METRICS[name]
        return _meter.create_counter(name, unit=unit, description=description)

    def _histogram(name: str) -> Any:
        _, unit, description, _ = METRICS[name]
        return _meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=_SECONDS
        )

    def _gauge(name: str, callback: Callable[[CallbackOptions], Iterable[Observation]]) -> Any:
        _, unit, description, _ = METRICS[name]
        return _meter.create_observable_gauge(
            name, callbacks=[callback], unit=unit, description=description
        )

    _tokens_issued = _counter("broker_oauth.tokens.issued")
    _codes_issued = _counter("broker_oauth.codes.issued")
    _refusals = _counter("broker_oauth.refusals")
    _revocations = _counter("broker_oauth.revocations")
    _audit_events = _counter("broker_oauth.audit.events")
    _token_check = _histogram("broker_oauth.token_check.duration")
    _storage = _histogram("broker_oauth.storage.operation.duration")
    _lag = _histogram("broker_oauth.revocation.lag")
    _gauge("broker_oauth.token_cache.size", _cache_sizes)
    _gauge("broker_oauth.revocation_listener.connected", _listener_states)


def tracing() -> bool:
    """Whether spans are recorded: an SDK's tracer provider is set (the API's own proxy
    provider means none is)."""
    return ENABLED and not isinstance(
        otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider
    )


def annotate(attributes: Mapping[str, str | int]) -> None:
    """Add ``attributes`` to the current span (the endpoint's), when spans are recorded."""
    if ENABLED:
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.set_attributes(attributes)


def conceal_path(name: str, path: str, url: str) -> None:
    """The request's path carries a secret: name the enclosing span (the platform's ASGI
    span) ``name`` and put the path template in its URL attributes, which its
    instrumentation filled with the path as sent."""
    if ENABLED:
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.update_name(name)
            span.set_attributes(
                {
                    "http.route": path,
                    "http.target": path,
                    "url.path": path,
                    "http.url": url,
                    "url.full": url,
                }
            )


def span(name: str, attributes: Mapping[str, str] | None = None) -> AbstractContextManager[Span]:
    """A span of the library's, current while the block runs: a child of the platform's
    (its ASGI span) when it has one. Call it when :func:`tracing` is true."""
    return _tracer.start_as_current_span(name, attributes=attributes)


def record_token_check(cache: str, outcome: str, seconds: float) -> None:
    """One token check: ``cache`` ``hit`` or ``miss``; ``outcome`` ``valid``, ``refused``
    or ``unavailable``."""
    if ENABLED:
        _token_check.record(seconds, {"broker_oauth.cache": cache, "broker_oauth.outcome": outcome})


def record_refusal(endpoint: str, reason: str, error: str) -> None:
    """A refused request: the endpoint's path template (``protected route`` for the
    platform's own), the precise reason, and the RFC ``error`` code answered."""
    if ENABLED:
        attributes = {
            "broker_oauth.endpoint": endpoint,
            "broker_oauth.reason": reason,
            "oauth.error": error,
        }
        _refusals.add(1, attributes)
        annotate(attributes)


def record_event(event: OAuthEvent) -> None:
    """Count an audit event: issuance, revocation, replay."""
    if not ENABLED:
        return
    _audit_events.add(1, {"broker_oauth.event": type(event).__name__})
    if isinstance(event, TokenIssued):
        attributes = {"oauth.grant_type": event.grant_type, "oauth.client_id": event.client_id}
        _tokens_issued.add(1, attributes)
        annotate(attributes)
    elif isinstance(event, CodeIssued):
        _codes_issued.add(1, {"oauth.client_id": event.client_id, "broker_oauth.via": event.via})
        annotate({"oauth.client_id": event.client_id})
    elif isinstance(event, TokenRevoked | ConnectionRevoked):
        if event.token_ids:
            _revocations.add(len(event.token_ids), {"broker_oauth.cause": event.reason})
    elif isinstance(event, CodeReplayDetected | RefreshTokenReuseDetected):
        annotate({"oauth.client_id": event.client_id})


def record_revocation_lag(seconds: float) -> None:
    """A revocation from another process reached this one's caches ``seconds`` after its
    commit."""
    if ENABLED:
        _lag.record(max(seconds, 0.0))


class _Cache(Protocol):
    @property
    def cache_size(self) -> int: ...


class _Listener(Protocol):
    connected: bool

    @property
    def channel(self) -> str: ...


def watch_token_cache(cache: _Cache) -> None:
    """Report ``cache.cache_size`` in ``broker_oauth.token_cache.size`` while it lives."""
    if ENABLED:
        _caches.add(cache)


def watch_listener(listener: _Listener) -> None:
    """Report ``listener.connected`` in ``broker_oauth.revocation_listener.connected``
    while it lives."""
    if ENABLED:
        _listeners.add(listener)


C = TypeVar("C", bound=type)


def instrumented(cls: C) -> C:
    """Class decorator for a repository: each public coroutine method it defines is a
    storage operation, with a span (``broker_oauth.storage {operation}``) and its duration
    recorded; ``self.db_system`` names the database (``sqlite``, ``postgresql``).
    Without the extra, the class is left as it is."""
    if ENABLED:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _operation(member, name))
    return cls


def _operation(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    span_name = f"broker_oauth.storage {name}"

    @functools.wraps(method)
    async def operation(self: Any, *args: Any, **kwargs: Any) -> Any:
        attributes = {"db.system.name": self.db_system, "db.operation.name": name}
        start = time.perf_counter()
        try:
            if tracing():
                with _tracer.start_as_current_span(
                    span_name, kind=otel_trace.SpanKind.CLIENT, attributes=attributes
                ):
                    return await method(self, *args, **kwargs)
            return await method(self, *args, **kwargs)
        except BaseException as exc:
            attributes["error.type"] = type(exc).__name__
            raise
        finally:
            _storage.record(time.perf_counter() - start, attributes)

    return operation
