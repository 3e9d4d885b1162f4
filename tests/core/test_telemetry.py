"""OpenTelemetry: a span per call and per backend operation, counters and latency histograms,
checked with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aixgo import Message, Runtime
from aixgo.errors import AgentError, CallTimeout
from aixgo.session import SessionManager
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()
_installed = False


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # OpenTelemetry allows one global provider per process: install once, clear per test.
    global _installed
    if not _installed:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
        _installed = True
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def points(name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    data = _READER.get_metrics_data()
    out: dict[tuple[tuple[str, Any], ...], Any] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out[tuple(sorted(p.attributes.items()))] = p
    return out


class Echo:
    async def execute(self, input: Message) -> Message:
        if input.text == "fail":
            raise RuntimeError("boom")
        if input.text == "slow":
            await asyncio.sleep(5)
        return Message.assistant(input.text)


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


@pytest.mark.asyncio
async def test_a_span_per_call_and_per_backend_operation(spans: InMemorySpanExporter) -> None:
    async with Runtime(session_manager="memory://", timeout=0.05) as rt:
        rt.register("echo", Echo())
        await rt.call("echo", Message.user("hi"), user="alice")
        with pytest.raises(AgentError):
            await rt.call("echo", Message.user("fail"), user="alice")
        with pytest.raises(CallTimeout):
            await rt.call("echo", Message.user("slow"), user="alice")
        await rt.call("echo", Message.user("stateless"))
        session_id = (await rt.session_manager.get_or_create("echo", "alice")).id
    done = list(spans.get_finished_spans())
    calls = named(done, "aixgo.call")
    assert [c.attributes["aixgo.outcome"] for c in calls] == ["ok", "error", "timeout", "ok"]  # type: ignore[index]
    for call in calls[:3]:
        assert call.attributes["aixgo.agent"] == "echo"  # type: ignore[index]
        assert call.attributes["aixgo.session_id"] == session_id  # type: ignore[index]
    assert "aixgo.session_id" not in calls[3].attributes  # type: ignore[operator]
    assert calls[1].status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in calls[1].events)

    appends = named(done, "aixgo.backend.append_messages")
    # ok call: input + output; failing and timed-out calls: the input only.
    assert len(appends) == 4
    first = calls[0]
    assert first.context is not None
    children = [
        s for s in appends if s.parent is not None and s.parent.span_id == first.context.span_id
    ]
    assert len(children) == 2
    for span in appends:
        assert span.attributes["aixgo.session_id"] == session_id  # type: ignore[index]
        assert span.attributes["aixgo.backend"] == "MemoryBackend"  # type: ignore[index]
        assert span.attributes["aixgo.outcome"] == "ok"  # type: ignore[index]
        assert span.attributes["aixgo.agent"] == "echo"  # type: ignore[index]
    # get_or_create, outside any call (memory:// finds or creates in one step).
    outside = named(done, "aixgo.backend.get_or_create_session")[-1]
    assert "aixgo.agent" not in outside.attributes  # type: ignore[operator]
    leases = named(done, "aixgo.backend.acquire_turn")
    assert len(leases) == 3  # one per call with a session
    assert len(named(done, "aixgo.backend.release_turn")) == 3


@pytest.mark.asyncio
async def test_a_callers_manager_is_traced_through_a_view_and_left_unchanged(
    spans: InMemorySpanExporter,
) -> None:
    async with SessionManager("memory://") as mgr:
        async with Runtime(session_manager=mgr) as rt:
            rt.register("echo", Echo())
            await rt.call("echo", Message.user("hi"), user="alice")
            assert rt.session_manager is mgr
            assert type(mgr.backend).__name__ == "MemoryBackend"
        assert len(named(list(spans.get_finished_spans()), "aixgo.backend.append_messages")) == 2
        await mgr.list()  # still open: it is the caller's
    assert not named(list(spans.get_finished_spans()), "aixgo.backend.list_sessions")


@pytest.mark.asyncio
async def test_counters_and_latency_histograms(spans: InMemorySpanExporter) -> None:
    before = {k: p.value for k, p in points("aixgo.calls").items()}
    async with Runtime(session_manager="memory://") as rt:
        rt.register("metered", Echo())
        for _ in range(3):
            await rt.call("metered", Message.user("hi"), user="u")
        with pytest.raises(AgentError):
            await rt.call("metered", Message.user("fail"))
    ok = (("aixgo.agent", "metered"), ("aixgo.outcome", "ok"))
    err = (("aixgo.agent", "metered"), ("aixgo.outcome", "error"))
    calls = points("aixgo.calls")
    assert calls[ok].value - before.get(ok, 0) == 3
    assert calls[err].value - before.get(err, 0) == 1
    assert points("aixgo.call.duration")[ok].count >= 3
    op = (("aixgo.backend", "MemoryBackend"), ("aixgo.operation", "append_messages"),
          ("aixgo.outcome", "ok"))  # fmt: skip
    assert points("aixgo.backend.operations")[op].value >= 6
    assert points("aixgo.backend.duration")[op].count >= 6


@pytest.mark.asyncio
async def test_tracing_off_emits_nothing(spans: InMemorySpanExporter) -> None:
    async with Runtime(session_manager="memory://", tracing=False) as rt:
        rt.register("echo", Echo())
        await rt.call("echo", Message.user("hi"), user="alice")
        assert type(rt.session_manager.backend).__name__ == "MemoryBackend"
    assert spans.get_finished_spans() == ()


@pytest.mark.asyncio
async def test_optional_backend_methods_pass_through_the_traced_wrapper() -> None:
    from aixgo.session import Migratable, MigrationReport, open_backend
    from aixgo.session.memory import MemoryBackend
    from aixgo.telemetry import TracedBackend

    class Schemaful(MemoryBackend):
        async def migrate(self, *, check: bool = False) -> MigrationReport:
            return MigrationReport("memory", found=1, latest=1)

    plain = TracedBackend(open_backend("memory://"))
    assert not isinstance(plain, Migratable)
    with pytest.raises(AttributeError):
        plain.migrate  # noqa: B018
    traced = TracedBackend(Schemaful())
    assert isinstance(traced, Migratable)
    assert (await traced.migrate(check=True)).version == 1


@pytest.mark.asyncio
async def test_a_stream_is_one_call_span_under_the_callers_span(
    spans: InMemorySpanExporter,
) -> None:
    async with Runtime(session_manager="memory://", timeout=0.05) as rt:
        rt.register("echo", Echo())
        with trace.get_tracer("test").start_as_current_span("app") as app:
            events = [ev async for ev in rt.stream("echo", Message.user("hi"), user="alice")]
        assert [ev.type for ev in events] == ["reply"]
        with pytest.raises(CallTimeout):
            async for _ in rt.stream("echo", Message.user("slow"), user="alice"):
                pass
        session_id = (await rt.session_manager.get_or_create("echo", "alice")).id
    done = list(spans.get_finished_spans())
    calls = named(done, "aixgo.call")
    assert [c.attributes["aixgo.outcome"] for c in calls] == ["ok", "timeout"]  # type: ignore[index]
    assert all(c.attributes["aixgo.session_id"] == session_id for c in calls)  # type: ignore[index]
    # The turn runs in a task of its own, which keeps the caller's context.
    assert calls[0].parent is not None and calls[0].parent.span_id == app.get_span_context().span_id
    assert len(named(done, "aixgo.backend.append_messages")) == 3  # hi, its reply, slow
