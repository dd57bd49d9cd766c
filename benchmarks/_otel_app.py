"""``_token_app`` under one of three OpenTelemetry set-ups, picked by ``BENCH_OTEL``:

* ``absent`` - OpenTelemetry cannot be imported (as without the ``otel`` extra);
* ``api``    - the API is installed and no SDK is configured;
* ``sdk``    - the SDK records every span and metric, into exporters that drop them (a
  batch span processor and a periodic metric reader, as a platform runs them).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

SETUP = os.environ.get("BENCH_OTEL", "api")


class _NoOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


if SETUP == "absent":
    sys.meta_path.insert(0, _NoOpenTelemetry())
elif SETUP == "sdk":
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class _DropSpans(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class _DropMetrics(MetricExporter):
        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DropSpans()))
    trace.set_tracer_provider(provider)
    reader = PeriodicExportingMetricReader(_DropMetrics(), export_interval_millis=10_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

from _token_app import app  # noqa: E402

from starlette_broker_oauth import telemetry  # noqa: E402

if (SETUP != "absent") != telemetry.ENABLED:
    raise RuntimeError(f"BENCH_OTEL={SETUP} but telemetry.ENABLED is {telemetry.ENABLED}")

__all__ = ["app"]
