"""Fixtures for the ReAct agent: a memory store and a real local Chat Completions server."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import pytest_asyncio
from aixgo.session import SessionManager


@pytest_asyncio.fixture
async def mgr() -> AsyncIterator[SessionManager]:
    async with SessionManager("memory://") as m:
        yield m


@dataclass
class Reply:
    """One scripted HTTP answer: a status, a JSON body, extra headers, a delay first. To a
    request with ``"stream": true`` a completion is sent as server-sent events instead (see
    :func:`stream_chunks`), waiting for ``hold`` after the first chunk that has text, and
    ``broken`` ends the stream with an error event instead of its last chunks."""

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: threading.Event | None = None
    broken: bool = False


def stream_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A completion as the ``chat.completion.chunk`` objects a streaming server sends: the
    role, the text a word at a time, each tool call's id and name and then its arguments in
    pieces of four characters, and the finish reason."""
    choice = body["choices"][0]
    message = choice["message"]
    base = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": w}) for w in re.findall(r"\S*\s*", message["content"] or "") if w]
    for i, c in enumerate(message.get("tool_calls") or []):
        fn = c["function"]
        first = {"index": i, "id": c["id"], "type": "function"}
        out.append(chunk({"tool_calls": [first | {"function": {"name": fn["name"]}}]}))
        args = fn["arguments"]
        for j in range(0, len(args), 4):
            piece = {"index": i, "function": {"arguments": args[j : j + 4]}}
            out.append(chunk({"tool_calls": [piece]}))
    out.append(chunk({}, choice["finish_reason"]))
    return out


def completion(content: str | None = None, tool_calls: list[dict[str, Any]] | None = None) -> Reply:
    """A Chat Completions reply with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return Reply(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "test-model",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A tool call as the API sends one (``arguments`` is JSON text)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def error(status: int, message: str, **headers: str) -> Reply:
    return Reply({"error": {"message": message, "type": "test"}}, status=status, headers=headers)


class ChatServer:
    """A real HTTP server speaking enough of ``POST /v1/chat/completions``: it answers with the
    queued replies in order and records every request body and header."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    reply = server.replies.pop(0) if server.replies else None
                if self.path != "/v1/chat/completions":
                    reply = error(404, f"no route {self.path}")
                if reply is None:
                    reply = error(500, "the test queued no reply")
                if reply.delay:
                    time.sleep(reply.delay)
                if body.get("stream") and reply.status == 200:
                    self._stream(reply)
                    return
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _stream(self, reply: Reply) -> None:
                # No length: the events run until the connection closes, as SSE servers do.
                self.close_connection = True
                chunks = stream_chunks(reply.body)
                if reply.broken:
                    chunks = chunks[:2]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    held = False
                    for c in chunks:
                        self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                        self.wfile.flush()
                        if (
                            reply.hold is not None
                            and not held
                            and c["choices"][0]["delta"].get("content")
                        ):
                            held = True
                            reply.hold.wait(10)
                    if reply.broken:
                        err = {"error": {"message": "the model crashed", "type": "server_error"}}
                        self.wfile.write(f"data: {json.dumps(err)}\n\n".encode())
                    else:
                        self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away mid-stream

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    try:
        yield server
    finally:
        server.close()
