"""OpenTelemetry, seen through the SDK's in-memory exporters: the documented spans and
metric points for a partner flow, a hosted consent flow, each kind of refusal and a
revocation; no secret in any attribute; the audit events as JSON log records; and, without
the extra, nothing imported from OpenTelemetry.

The SDK's providers are global and set once: from this module on, the process records
spans (into an exporter that keeps them only while a test here asks).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import (
    MemoryStorage,
    OAuthSettings,
    SQLAlchemyStorage,
    create_oauth_app,
    telemetry,
)
from starlette_broker_oauth.errors import StorageUnavailable
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    bearer_error_response,
    requires_token,
)

from .conftest import (
    ISSUER,
    POSTGRES_URL,
    FailingPartners,
    Platform,
    drop_tables,
    full_settings,
    open_storage,
    pkce_pair,
    seed_full_platform,
    seed_platform,
)
from .test_consent import Form, location, login, query, request_params

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


class _Exporter(InMemorySpanExporter):
    """Keeps spans only while ``recording``."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.recording:
            return SpanExportResult.SUCCESS
        return super().export(spans)


@dataclass
class Recorder:
    spans: _Exporter
    reader: InMemoryMetricReader
    before: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = field(default_factory=dict)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def points(self) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
        """Every point the library's meter holds: (metric, attributes) -> the counter's
        value, the histogram's count, or the gauge's value."""
        data = self.reader.get_metrics_data()
        found: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                if scope.scope.name != telemetry.INSTRUMENTATION:
                    continue
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, tuple(sorted((point.attributes or {}).items())))
                        if isinstance(point, HistogramDataPoint):
                            found[key] = point.count
                        else:
                            assert isinstance(point, NumberDataPoint)
                            found[key] = point.value
        return found

    def start(self) -> None:
        self.spans.clear()
        self.before = self.points()

    def added(self, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        """What each point of metric ``name`` gained since :meth:`start` (counters and
        histograms: cumulative, so the difference)."""
        now = self.points()
        return {
            attrs: value - self.before.get((metric, attrs), 0)
            for (metric, attrs), value in now.items()
            if metric == name and value != self.before.get((metric, attrs), 0)
        }

    def value(self, name: str, **attributes: Any) -> float:
        """The gauge's current value with these attributes."""
        wanted = tuple(sorted(attributes.items()))
        return self.points().get((name, wanted), 0.0)


_RECORDER: Recorder | None = None


def _recorder() -> Recorder:
    """The process's SDK providers, set once: spans into an in-memory exporter, metrics to
    an in-memory reader and to Prometheus's registry (the dashboard's names)."""
    global _RECORDER
    if _RECORDER is None:
        exporter = _Exporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader, PrometheusMetricReader()]))
        _RECORDER = Recorder(exporter, reader)
    return _RECORDER


@pytest.fixture
def otel() -> Iterator[Recorder]:
    recorder = _recorder()
    recorder.spans.recording = True
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.spans.recording = False
        recorder.spans.clear()


def attrs(**values: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(values.items()))


def assert_no_secret(recorder: Recorder, secrets: list[str]) -> None:
    """No span name, span attribute, event or metric attribute holds any of ``secrets``."""
    texts: list[str] = []
    for span in recorder.finished():
        texts.append(span.name)
        texts.extend(f"{k}={v!s}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            texts.extend(f"{k}={v!s}" for k, v in (event.attributes or {}).items())
    for metric, attributes in recorder.points():
        texts.append(metric)
        texts.extend(f"{k}={v}" for k, v in attributes)
    assert texts
    for secret in secrets:
        assert len(secret) >= 8
        leaks = [text for text in texts if secret in text]
        assert not leaks, (secret, leaks)


def guarded_app(world: Platform, oauth: Starlette) -> Starlette:
    """The platform: a route behind the middleware, one guarded for ``trading``."""

    async def account(request: Request) -> Response:
        if not request.user.is_authenticated:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"ok": True})

    @requires_token("trading")
    async def orders(request: Request) -> Response:
        return JSONResponse({"orders": []})

    return Starlette(
        routes=[Route("/v2/account", account), Route("/v2/orders", orders), Mount("/", oauth)],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(oauth.state.token_verifier),
                on_error=bearer_error_response,
            )
        ],
    )


@pytest.fixture
async def cached(backend: str, tmp_path: Path) -> AsyncIterator[Platform]:
    """A platform with the token cache on, behind OpenTelemetry's ASGI middleware (the
    platform's own span of each request)."""
    settings = OAuthSettings(issuer=ISSUER, token_cache_ttl=timedelta(seconds=30))
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, settings)
        await world.http.aclose()
        oauth = create_oauth_app(settings=settings, storage=storage, clock=world.clock)
        world.app = guarded_app(world, oauth)
        world.oauth = oauth
        world.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=OpenTelemetryMiddleware(world.app, exclude_spans=["receive", "send"])
            ),
            base_url=ISSUER,
        )
        async with world.http:
            yield world


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_partner_flow_is_traced_and_counted(otel: Recorder, cached: Platform) -> None:
    world = cached
    otel.start()
    looked = await world.http.get(
        f"/v1/oauth/clients/{world.client_id}",
        params={"response_type": "code", "redirect_uri": world.redirect_uri, "scope": "general"},
        auth=world.partner,
    )
    assert looked.status_code == 200
    code = await world.code()
    exchanged = await world.exchange(code)
    assert exchanged.status_code == 200
    token = exchanged.json()["access_token"]
    assert (await world.account(token)).status_code == 200  # a miss, then cached
    assert (await world.account(token)).status_code == 200  # a hit
    direct = await world.http.post("/v1/oauth/token", json=world.grant_body(), auth=world.partner)
    assert direct.status_code == 200
    other = direct.json()["access_token"]
    deleted = await world.http.delete(f"/v1/oauth/token/{other}", auth=world.partner)
    assert deleted.status_code == 204
    assert (await world.account(other)).status_code == 401

    # One span per endpoint request, named by its path template, each a child of the
    # platform's ASGI span.
    partner_id = world.partner[0]
    expected = {
        "broker_oauth GET /v1/oauth/clients/{client_id}": ("ok", 200),
        "broker_oauth POST /v1/oauth/authorize": ("ok", 200),
        "broker_oauth POST /oauth/token": ("ok", 200),
        "broker_oauth POST /v1/oauth/token": ("ok", 200),
        "broker_oauth DELETE /v1/oauth/token/{token_id}": ("ok", 204),
    }
    spans = otel.finished()
    by_id = {span.context.span_id: span for span in spans}
    for name, (outcome, status) in expected.items():
        (span,) = otel.named(name)
        assert span.attributes is not None
        assert span.attributes["broker_oauth.outcome"] == outcome
        assert span.attributes["http.response.status_code"] == status
        assert span.attributes["http.route"] == name.split(" ", 2)[2]
        assert span.parent is not None
        parent = by_id[span.parent.span_id]
        assert parent.kind == trace.SpanKind.SERVER  # the platform's ASGI span
        if name != "broker_oauth POST /oauth/token":
            assert span.attributes["broker_oauth.partner"] == partner_id
    exchange = otel.named("broker_oauth POST /oauth/token")[0].attributes
    assert exchange is not None
    assert exchange["oauth.grant_type"] == "authorization_code"
    assert exchange["oauth.client_id"] == world.client_id
    issued = otel.named("broker_oauth POST /v1/oauth/token")[0].attributes
    assert issued is not None
    assert issued["oauth.grant_type"] == "partner"
    assert issued["oauth.client_id"] == world.client_id

    # The token check: a span for each check that reached the storage, none for a hit.
    checks = otel.named("broker_oauth.token_check")
    assert [(s.attributes or {}).get("broker_oauth.outcome") for s in checks] == [
        "valid",
        "refused",
    ]
    assert (checks[0].attributes or {})["oauth.client_id"] == world.client_id
    assert (checks[1].attributes or {})["broker_oauth.reason"] == "revoked"

    # Storage operations (the SQLAlchemy storage): each inside a request's span.
    storage_spans = [s for s in spans if s.name.startswith("broker_oauth.storage ")]
    if world.kind == "memory":
        assert storage_spans == []
    else:
        names = {s.name for s in storage_spans}
        assert {
            "broker_oauth.storage get_partner",
            "broker_oauth.storage save_code",
            "broker_oauth.storage redeem_code",
            "broker_oauth.storage token_with_client",
            "broker_oauth.storage revoke_grant",
        } <= names
        for span in storage_spans:
            assert span.kind == trace.SpanKind.CLIENT
            assert (span.attributes or {})["db.system.name"] == {
                "sqlite": "sqlite",
                "postgres": "postgresql",
            }[world.kind]
            assert span.parent is not None, span.name
            parent = by_id[span.parent.span_id]
            assert parent.name.startswith(("broker_oauth ", "broker_oauth.token_check"))
        durations = otel.added("broker_oauth.storage.operation.duration")
        operations = {dict(a)["db.operation.name"] for a in durations}
        assert {"save_code", "redeem_code", "token_with_client", "revoke_grant"} <= operations

    # Metrics.
    client = world.client_id
    assert otel.added("broker_oauth.codes.issued") == {
        attrs(**{"oauth.client_id": client, "broker_oauth.via": "partner"}): 1
    }
    assert otel.added("broker_oauth.tokens.issued") == {
        attrs(**{"oauth.grant_type": "authorization_code", "oauth.client_id": client}): 1,
        attrs(**{"oauth.grant_type": "partner", "oauth.client_id": client}): 1,
    }
    assert otel.added("broker_oauth.revocations") == {
        attrs(**{"broker_oauth.cause": "partner_delete"}): 1
    }
    checked = otel.added("broker_oauth.token_check.duration")
    assert checked == {
        attrs(**{"broker_oauth.cache": "miss", "broker_oauth.outcome": "valid"}): 1,
        attrs(**{"broker_oauth.cache": "hit", "broker_oauth.outcome": "valid"}): 1,
        attrs(**{"broker_oauth.cache": "miss", "broker_oauth.outcome": "refused"}): 1,
    }
    assert otel.added("broker_oauth.refusals") == {
        attrs(
            **{
                "broker_oauth.endpoint": "protected route",
                "broker_oauth.reason": "revoked",
                "oauth.error": "invalid_token",
            }
        ): 1
    }
    assert otel.value("broker_oauth.token_cache.size") >= 1

    assert_no_secret(
        otel,
        [
            world.client_secret,
            world.partner[1],
            code,
            token,
            other,
            str(world.paper_account),
            world.paper_account.hex,
        ],
    )


async def test_a_hosted_consent_flow_is_traced_and_counted(
    otel: Recorder, backend: str, tmp_path: Path
) -> None:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings())
        async with world.http:
            otel.start()
            verifier, challenge = pkce_pair()
            pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
            page = await world.http.get(query(request_params(world, **pkce)), headers=login(world))
            assert page.status_code == 200
            form = Form(page.text)
            answer = await world.http.post(
                form.action, data=form.submit("approve"), headers=login(world)
            )
            code = location(answer)["code"]
            exchanged = await world.exchange(code, code_verifier=verifier)
            assert exchanged.status_code == 200
            tokens = exchanged.json()
            refreshed = await world.http.post(
                "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                auth=(world.client_id, world.client_secret),
            )
            assert refreshed.status_code == 200
            new = refreshed.json()
            revoked = await world.http.post(
                "/oauth/revoke",
                data={"token": new["access_token"]},
                auth=(world.client_id, world.client_secret),
            )
            assert revoked.status_code == 200

    for name, status in [
        ("broker_oauth GET /oauth/authorize", 200),
        ("broker_oauth POST /oauth/authorize", 303),
        ("broker_oauth POST /oauth/revoke", 200),
    ]:
        (span,) = otel.named(name)
        assert (span.attributes or {})["broker_oauth.outcome"] == "ok"
        assert (span.attributes or {})["http.response.status_code"] == status
    grants = [
        (s.attributes or {}).get("oauth.grant_type")
        for s in otel.named("broker_oauth POST /oauth/token")
    ]
    assert grants == ["authorization_code", "refresh_token"]
    client = world.client_id
    assert otel.added("broker_oauth.codes.issued") == {
        attrs(**{"oauth.client_id": client, "broker_oauth.via": "consent"}): 1
    }
    assert otel.added("broker_oauth.tokens.issued") == {
        attrs(**{"oauth.grant_type": "authorization_code", "oauth.client_id": client}): 1,
        attrs(**{"oauth.grant_type": "refresh_token", "oauth.client_id": client}): 1,
    }
    assert otel.added("broker_oauth.revocations") == {
        attrs(**{"broker_oauth.cause": "revocation_endpoint"}): 1
    }
    assert_no_secret(
        otel,
        [
            world.client_secret,
            code,
            verifier,
            tokens["access_token"],
            tokens["refresh_token"],
            new["access_token"],
            new["refresh_token"],
            str(world.paper_account),
            world.paper_account.hex,
        ],
    )


@dataclass(frozen=True)
class Refused:
    """A refused request: what is sent, and what it must be counted as."""

    name: str
    endpoint: str
    reason: str
    error: str
    status: int


REFUSALS = [
    Refused(
        "wrong partner secret", "/v1/oauth/token", "partner_unauthenticated", "unauthorized", 401
    ),
    Refused(
        "client the partner may not use",
        "/v1/oauth/authorize",
        "invalid_client",
        "invalid_client",
        401,
    ),
    Refused("unknown account", "/v1/oauth/authorize", "unknown_account", "invalid_request", 422),
    Refused("scope not offered", "/v1/oauth/token", "invalid_scope", "invalid_scope", 422),
    Refused("wrong client secret", "/oauth/token", "invalid_client", "invalid_client", 401),
    Refused("replayed code", "/oauth/token", "code_replayed", "invalid_grant", 400),
    Refused(
        "unsupported grant", "/oauth/token", "unsupported_grant_type", "unsupported_grant_type", 400
    ),
    Refused("path nothing serves", "unrouted", "not_found", "invalid_request", 404),
    Refused("no token", "protected route", "missing", "", 401),
    Refused("malformed token", "protected route", "malformed", "invalid_token", 401),
    Refused("unknown token", "protected route", "unknown", "invalid_token", 401),
    Refused("scope missing", "protected route", "insufficient_scope", "insufficient_scope", 403),
]


async def send(world: Platform, case: Refused) -> tuple[httpx.Response, list[str]]:
    """Send the refused request of ``case``; returns the answer and the secrets used."""
    http, secrets = world.http, [world.client_secret, world.partner[1]]
    if case.name == "wrong partner secret":
        wrong = (world.partner[0], "x" * 40)
        return await http.post("/v1/oauth/token", json=world.grant_body(), auth=wrong), secrets
    if case.name == "client the partner may not use":
        return await world.authorize(client_id="unknown-client"), secrets
    if case.name == "unknown account":
        return await world.authorize(account_id=str(uuid.uuid4())), secrets
    if case.name == "scope not offered":
        body = world.grant_body(scope="general withdraw-everything")
        return await http.post("/v1/oauth/token", json=body, auth=world.partner), secrets
    if case.name == "wrong client secret":
        code = await world.code()
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": world.redirect_uri,
        }
        answer = await http.post("/oauth/token", data=data, auth=(world.client_id, "y" * 40))
        return answer, [*secrets, code]
    if case.name == "replayed code":
        code = await world.code()
        first = await world.exchange(code)
        assert first.status_code == 200
        return await world.exchange(code), [*secrets, code, first.json()["access_token"]]
    if case.name == "unsupported grant":
        data = {"grant_type": "urn:example:nope"}
        answer = await http.post(
            "/oauth/token", data=data, auth=(world.client_id, world.client_secret)
        )
        return answer, secrets
    if case.name == "path nothing serves":
        return await http.get("/v1/oauth/nothing-here"), secrets
    if case.name == "no token":
        return await http.get("/v2/orders"), secrets
    if case.name == "malformed token":
        return await http.get("/v2/orders", headers=bearer("not a token!")), secrets
    if case.name == "unknown token":
        guess = "u" * 43
        return await http.get("/v2/orders", headers=bearer(guess)), [*secrets, guess]
    assert case.name == "scope missing"
    direct = await http.post(
        "/v1/oauth/token", json=world.grant_body(scope="general"), auth=world.partner
    )
    token = direct.json()["access_token"]
    return await http.get("/v2/orders", headers=bearer(token)), [*secrets, token]


@pytest.mark.parametrize("case", REFUSALS, ids=[case.name for case in REFUSALS])
async def test_each_refusal_is_counted_with_its_reason(
    otel: Recorder, cached: Platform, case: Refused
) -> None:
    world = cached
    otel.start()
    before = otel.before
    answer, secrets = await send(world, case)
    assert answer.status_code == case.status, answer.text
    otel.before = before
    refusals = otel.added("broker_oauth.refusals")
    assert refusals == {
        attrs(
            **{
                "broker_oauth.endpoint": case.endpoint,
                "broker_oauth.reason": case.reason,
                "oauth.error": case.error,
            }
        ): 1
    }, refusals
    if case.endpoint != "protected route":
        route = case.endpoint if case.endpoint != "unrouted" else "unrouted"
        spans = [s for s in otel.finished() if s.name.startswith("broker_oauth ")]
        spans = [s for s in spans if s.name.endswith(" " + route)]
        refused = [s for s in spans if (s.attributes or {}).get("broker_oauth.outcome") != "ok"]
        (span,) = refused
        assert (span.attributes or {})["broker_oauth.outcome"] == "refused"
        assert (span.attributes or {})["broker_oauth.reason"] == case.reason
        assert (span.attributes or {})["http.response.status_code"] == case.status
    if case.name == "replayed code":
        events = otel.added("broker_oauth.audit.events")
        assert events[attrs(**{"broker_oauth.event": "CodeReplayDetected"})] == 1
        assert otel.added("broker_oauth.revocations") == {
            attrs(**{"broker_oauth.cause": "code_replay"}): 1
        }
    if case.name == "wrong client secret":
        events = otel.added("broker_oauth.audit.events")
        assert events[attrs(**{"broker_oauth.event": "ClientAuthenticationFailed"})] == 1
    assert_no_secret(otel, secrets)


async def test_an_unavailable_storage_is_counted_as_such(otel: Recorder) -> None:
    storage = MemoryStorage()
    async with storage:
        oauth = create_oauth_app(
            settings=OAuthSettings(issuer=ISSUER),
            storage=storage,
            partners=FailingPartners(StorageUnavailable("the database is away")),
        )
        transport = httpx.ASGITransport(app=oauth)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            otel.start()
            answer = await http.post("/v1/oauth/token", json={}, auth=("key", "secret"))
    assert answer.status_code == 503
    assert otel.added("broker_oauth.refusals") == {
        attrs(
            **{
                "broker_oauth.endpoint": "/v1/oauth/token",
                "broker_oauth.reason": "storage_unavailable",
                "oauth.error": "temporarily_unavailable",
            }
        ): 1
    }
    (span,) = otel.named("broker_oauth POST /v1/oauth/token")
    assert (span.attributes or {})["broker_oauth.outcome"] == "unavailable"


@pytest.mark.postgres
@pytest.mark.skipif(POSTGRES_URL is None, reason="needs PostgreSQL")
async def test_listener_and_revocation_lag_on_postgresql(otel: Recorder) -> None:
    """Two processes' storages on one database: the listening one reports its LISTEN
    connection up, and the lag of a revocation committed by the other."""
    assert POSTGRES_URL is not None
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    settings = OAuthSettings(issuer=ISSUER, token_cache_ttl=timedelta(seconds=30))
    here = SQLAlchemyStorage(POSTGRES_URL, table_prefix=prefix)
    there = SQLAlchemyStorage(POSTGRES_URL, table_prefix=prefix)
    try:
        async with here:
            world = await seed_platform("postgres", here, settings)
            async with there:
                listening = create_oauth_app(settings=settings, storage=there)
                verifier = listening.state.token_verifier
                channel = there.revocation_channel
                with anyio.fail_after(10):
                    while (  # noqa: ASYNC110
                        otel.value(
                            "broker_oauth.revocation_listener.connected",
                            **{"broker_oauth.channel": channel},
                        )
                        != 1
                    ):
                        await anyio.sleep(0.02)
                async with world.http:
                    issued = await world.http.post(
                        "/v1/oauth/token", json=world.grant_body(), auth=world.partner
                    )
                    token = issued.json()["access_token"]
                    await verifier.verify(token)
                    otel.start()
                    deleted = await world.http.delete(
                        f"/v1/oauth/token/{token}", auth=world.partner
                    )
                    assert deleted.status_code == 204
                with anyio.fail_after(10):
                    while verifier.cached(token) is not None:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                lag = otel.added("broker_oauth.revocation.lag")
                assert sum(lag.values()) >= 1
        # Both storages closed: no listener is up.
        assert (
            otel.value(
                "broker_oauth.revocation_listener.connected", **{"broker_oauth.channel": channel}
            )
            == 0
        )
    finally:
        await drop_tables(here)


async def test_audit_events_are_json_log_records(
    cached: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    world = cached
    caplog.set_level(logging.INFO, logger="starlette_broker_oauth.audit")
    code = await world.code()
    token = (await world.exchange(code)).json()["access_token"]
    assert (await world.exchange(code)).status_code == 400  # replayed
    bad = await world.http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": "c" * 43},
        auth=(world.client_id, "wrong-" * 8),
    )
    assert bad.status_code == 401
    records = [r for r in caplog.records if r.name == "starlette_broker_oauth.audit"]
    lines = [r.getMessage() for r in records]
    decoded = [json.loads(line) for line in lines]
    assert [r["event"] for r in decoded] == [
        "CodeIssued",
        "TokenIssued",
        "CodeReplayDetected",
        "TokenRevoked",
        "ClientAuthenticationFailed",
    ]
    for record, line in zip(records, decoded, strict=True):
        assert record.levelno == logging.INFO
        assert record.__dict__["audit"] == line
        assert line["schema"] == "starlette_broker_oauth.audit/1"
        assert line["at"].endswith("+00:00")
    issued = decoded[1]
    assert issued["client_id"] == world.client_id
    assert issued["account_id"] == str(world.paper_account)
    assert issued["grant_type"] == "authorization_code"
    assert issued["scope"] == "general trading"
    assert len(issued["token_id"]) == 64
    assert issued["token_id"] != token
    assert decoded[3]["reason"] == "code_replay"
    assert decoded[3]["token_ids"] == [issued["token_id"]]
    assert decoded[4]["endpoint"] == "token"
    for line in lines:
        for secret in (token, code, world.client_secret, "wrong-" * 8):
            assert secret not in line


def test_the_dashboard_queries_only_what_the_library_emits() -> None:
    """docs/grafana-dashboard.json queries the library's metrics under the names and
    labels Prometheus's exporter gives them, and has a panel for each."""
    _recorder()
    meter = MeterProvider(metric_readers=[PrometheusMetricReader()]).get_meter("check")
    # Every metric of the catalogue, once, through the real exporter: its names.
    for name, (kind, unit, _, attributes) in telemetry.METRICS.items():
        values = dict.fromkeys(attributes, "x")
        if kind == "counter":
            meter.create_counter(name, unit=unit).add(1, values)
        elif kind == "histogram":
            meter.create_histogram(name, unit=unit).record(0.5, values)
        else:
            observed = [metrics.Observation(1, values)]
            meter.create_observable_gauge(
                name,
                unit=unit,
                callbacks=[lambda _, o=observed: o],  # type: ignore[misc]
            )
    exposition = generate_latest(REGISTRY).decode()
    emitted = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE")}
    series = {
        name + suffix
        for name in emitted
        if name.startswith("broker_oauth_")
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    labels = {"le", "instance", "job"} | {
        attribute.replace(".", "_")
        for *_, attributes in telemetry.METRICS.values()
        for attribute in attributes
    }
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queried: set[str] = set()
    used_labels: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            queried.update(re.findall(r"\b(broker_oauth_\w+)\s*[{\[]", expr))
            for selector in re.findall(r"\{([^}]*)\}", expr):
                used_labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
            for grouping in re.findall(r"by \(([^)]*)\)", expr):
                used_labels.update(label.strip() for label in grouping.split(","))
    assert queried
    assert not queried - series, queried - series
    assert not used_labels - labels, used_labels - labels
    for name in telemetry.METRICS:
        base = name.replace(".", "_")
        assert any(q.startswith(base) for q in queried), name


def test_without_the_extra_nothing_is_imported_from_opentelemetry(tmp_path: Path) -> None:
    """With OpenTelemetry not installed, a whole partner flow and a protected route work,
    and no module of it is imported."""
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        class NoOpenTelemetry(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())

        from datetime import timedelta
        import anyio, httpx
        from starlette_broker_oauth import (
            OAuthSettings, SQLAlchemyStorage, create_oauth_app, telemetry,
        )

        async def main():
            settings = OAuthSettings(
                issuer="https://broker.test", token_cache_ttl=timedelta(seconds=30)
            )
            storage = SQLAlchemyStorage("sqlite:///" + sys.argv[1])
            app = create_oauth_app(settings=settings, storage=storage)
            async with storage:
                client = await storage.create_client(
                    name="App", redirect_uris=["https://app.example/cb"]
                )
                partner = await storage.create_partner(name="P")
                await storage.allow_partner_client(partner.key_id, client.client_id)
                account = await storage.create_account()
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url=settings.issuer
                ) as http:
                    answer = await http.post(
                        "/v1/oauth/token",
                        auth=(partner.key_id, partner.secret),
                        json={
                            "client_id": client.client_id,
                            "client_secret": client.client_secret,
                            "redirect_uri": "https://app.example/cb",
                            "scope": "general",
                            "account_id": str(account.account_id),
                        },
                    )
                    assert answer.status_code == 200, answer.text
                    token = answer.json()["access_token"]
                    verifier = app.state.token_verifier
                    assert (await verifier.verify(token)).client_id == client.client_id
                    assert verifier.cached(token) is not None
                    gone = await http.delete(
                        f"/v1/oauth/token/{token}", auth=(partner.key_id, partner.secret)
                    )
                    assert gone.status_code == 204
                    assert verifier.cached(token) is None
            assert telemetry.ENABLED is False
            loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
            assert loaded == [], loaded
            print("ok")

        anyio.run(main)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "oauth.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
