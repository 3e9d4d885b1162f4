"""Remote agents (aixgo-runtime-grpc) on loopback over mutual TLS, side by side:

* a stateless remote call of an echo agent vs a bare grpcio unary echo with the same TLS
  (paired, so the ratio is taken under the same load; the target is at most 1.3x);
* a remote call in a session vs the same call made locally: the overhead in us;
* time to the first streamed event vs time to the whole reply, for an agent that streams;
* calls/s with 1, 16 and 64 concurrent callers against one node, and against two nodes
  sharing one store (round-robin), each caller in a session of its own.

For the latencies, node and client share one process and event loop (as the bare echo's
server and client do), so each side's CPU is in every number; the echo call there is
stateless on both sides (no user, no session: no store work), like the bare echo. For the
throughput, the nodes are real ``aixgo serve`` processes (a ReAct agent on the scripted echo
model) on the shared Redis store, called from this process: on a 2-core machine the client
and the nodes share those two cores, so two nodes cannot double one node's rate here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from aixgo import Message, Runtime
from aixgo.events import Delta
from aixgo.session import Session, SessionManager
from aixgo_runtime_grpc import AgentServer, ClientTLS, RemoteAgent, ServerTLS
from remote_nodes import running_nodes
from timing import ECHO_OP, Result, measure, measure_pair

NAME = "aixgo remote (mTLS)"
CONCURRENCY = (1, 16, 64)


class _Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant(input.text)


class _Streamer:
    """Says its reply in 20 chunks, a millisecond apart, as a model would."""

    async def execute(self, input: Message) -> Message:
        return Message.assistant("x" * 20)

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Message]:
        for _ in range(20):
            await asyncio.sleep(0.001)
            yield Delta(text="x")
        yield Message.assistant("x" * 20)


def _certs(folder: Path) -> Any:
    # The tests' certificate maker, loaded by path: bench/ and tests/ are not packages.
    path = Path(__file__).parent.parent / "tests" / "runtime_grpc" / "certs.py"
    spec = importlib.util.spec_from_file_location("aixgo_bench_certs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.make_certs(folder)


async def _bare_echo(tls: ServerTLS) -> tuple[grpc.aio.Server, int]:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(echo)  # bytes in, bytes out
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),)
    )
    port = server.add_secure_port("127.0.0.1:0", tls.credentials())
    await server.start()
    return server, port


async def _throughput(
    folder: Path, store_url: str, certs: Any, ctls: ClientTLS, seconds: float
) -> list[Result]:
    """Calls/s of real node processes sharing ``store_url``, one node and then two."""
    if store_url.startswith("memory://"):
        print("   throughput: skipped (nodes in separate processes need Redis to share a store)")
        return []
    tls_args = ["--cert", str(certs.server.cert), "--key", str(certs.server.key),
                "--client-ca", str(certs.ca)]  # fmt: skip
    out: list[Result] = []
    for label, count in (("one node", 1), ("two nodes", 2)):
        async with running_nodes(folder, store_url, count, tls_args) as ports:
            client = Runtime(session_manager="memory://", timeout=60)
            urls = [f"grpcs://127.0.0.1:{port}" for port in ports]
            client.register("echo", RemoteAgent(urls, agent="echo", tls=ctls))
            async with client:
                # Every caller's session exists before timing starts, on every node's path.
                await asyncio.gather(*(client.call("echo", Message.user("hi"), user=f"tp-{k}")
                                       for k in range(max(CONCURRENCY))))  # fmt: skip
                for n in CONCURRENCY:
                    rate = await _rate(client, n, seconds)
                    print(f"   {label:<9} {n:>3} callers {rate:>8.0f} calls/s "
                          "(processes, shared redis://)")  # fmt: skip
                    out.append(Result(f"{NAME}, {label}", "calls with callers", n, rate, None,
                                      1, unit="calls/s"))  # fmt: skip
    return out


async def _rate(rt: Runtime, callers: int, seconds: float) -> float:
    end = time.perf_counter() + seconds
    counts = [0] * callers

    async def caller(k: int) -> None:
        while time.perf_counter() < end:
            await rt.call("echo", Message.user("hi"), user=f"tp-{k}")
            counts[k] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return sum(counts) / (time.perf_counter() - t0)


async def run_all(runs: int, budget_s: float, seconds: float, store_url: str) -> list[Result]:
    print(f"== {NAME}", flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = _certs(Path(tmp))
        tls = ServerTLS.from_files(certs.server.cert, certs.server.key, certs.ca)
        ctls = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key)
        async with SessionManager(store_url) as mgr:
            nodes = [Runtime(session_manager=mgr, timeout=60)]
            servers = []
            for rt in nodes:
                rt.register("echo", _Echo())
                rt.register("streamer", _Streamer())
                await rt.start()
                server = AgentServer(rt, "127.0.0.1:0", tls=tls)
                await server.start()
                servers.append(server)
            bare, bare_port = await _bare_echo(tls)
            one = [f"grpcs://127.0.0.1:{servers[0].port}"]
            client = Runtime(session_manager="memory://", timeout=60)
            client.register("echo", RemoteAgent(one, agent="echo", tls=ctls))
            client.register("streamer", RemoteAgent(one, agent="streamer", tls=ctls))
            channel = grpc.aio.secure_channel(f"127.0.0.1:{bare_port}", ctls.credentials())
            bare_call = channel.unary_unary("/bench.Echo/Echo")
            payload = Message.user("hi").model_dump_json().encode()
            try:
                async with client:

                    async def remote() -> object:
                        return await client.call("echo", Message.user("hi"))

                    async def grpc_echo() -> object:
                        return await bare_call(payload)

                    ra, rb = await measure_pair(
                        (NAME, "bare grpcio echo (mTLS)"), ECHO_OP,
                        (remote, grpc_echo), runs=runs, budget_s=budget_s,
                    )  # fmt: skip
                    results += [ra, rb]
                    ratio = (ra.median_us or 0) / (rb.median_us or 1)
                    print(f"   stateless echo {ra.median_us or 0:>10.1f} / "
                          f"{rb.median_us or 0:.1f} us = {ratio:.2f}x "
                          "(target <= 1.3x)")  # fmt: skip

                    async def remote_session() -> object:
                        return await client.call("echo", Message.user("hi"), user="bench")

                    async def local_session() -> object:
                        return await nodes[0].call("echo", Message.user("hi"), user="bench-l")

                    rr, rl = await measure_pair(
                        (NAME, "aixgo local call"), "call in a session",
                        (remote_session, local_session), runs=runs, budget_s=budget_s,
                    )  # fmt: skip
                    results += [rr, rl]
                    extra = (rr.median_us or 0) - (rl.median_us or 0)
                    print(f"   call in session {rr.median_us or 0:>9.1f} vs local "
                          f"{rl.median_us or 0:.1f} us: +{extra:.0f} us remote")  # fmt: skip

                    firsts: list[float] = []

                    async def streamed() -> object:
                        t0 = time.perf_counter_ns()
                        first = None
                        async for _ in client.stream("streamer", Message.user("go"), user="s"):
                            if first is None:
                                first = time.perf_counter_ns()
                        firsts.append(((first or 0) - t0) / 1000)
                        return None

                    full = await measure(NAME, "stream: whole reply", streamed,
                                         runs=min(runs, 200), budget_s=budget_s)  # fmt: skip
                    firsts.sort()
                    results += [
                        full,
                        Result(NAME, "stream: first event", None, statistics.median(firsts),
                               firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))],
                               len(firsts)),
                    ]  # fmt: skip
                    print(f"   stream first event {statistics.median(firsts):>8.1f} us, "
                          f"whole reply {full.median_us or 0:.1f} us")  # fmt: skip

            finally:
                await channel.close()
                await bare.stop(None)
                for server in servers:
                    await server.stop(1)
                for rt in nodes:
                    await rt.stop()
        results += await _throughput(Path(tmp), store_url, certs, ctls, seconds)
    return results
