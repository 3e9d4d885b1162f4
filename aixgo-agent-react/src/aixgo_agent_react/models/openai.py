"""An OpenAI-compatible Chat Completions model, on the official ``openai`` SDK.

``base_url`` reaches OpenAI (the default), vLLM, Ollama (``http://localhost:11434/v1``) or a
llama.cpp server; ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` are read when not given. Requests
are retried on 408/409/429/5xx and connection errors (``max_retries``, honouring
``Retry-After``) and bounded by ``timeout`` seconds (between two chunks, when streamed); a
failure that remains is a :class:`~aixgo_agent_react.models.ModelError` naming the model and
endpoint, never the key. :meth:`OpenAIModel.stream` sends ``stream=True`` and yields the text
as it arrives, assembling tool calls from their pieces.

>>> m = OpenAIModel("llama3.2", base_url="http://localhost:11434/v1", max_retries=1)
>>> m.model, m.base_url
('llama3.2', 'http://localhost:11434/v1/')
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aixgo import Message
from aixgo.errors import ConfigError
from aixgo.message import ToolCall
from pydantic import JsonValue

from aixgo_agent_react.models import ModelError

if TYPE_CHECKING:  # imported when a model is made: loading plugins must not pay for the SDK
    import openai
from aixgo_agent_react.tools import Tool

__all__ = ["BAD_ARGUMENTS", "OpenAIModel"]

#: Metadata key of an assistant message: tool call id -> the raw arguments text the model
#: sent when it was not a JSON object (the agent reports it to the model as a tool error).
BAD_ARGUMENTS = "aixgo.react.bad_arguments"


class OpenAIModel:
    """Chat Completions with tool calling. ``options`` (e.g. ``temperature``) are sent with
    every request. Close it with :meth:`aclose` (the agent does so when it stops)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        **options: Any,
    ) -> None:
        if not model:
            raise ConfigError("the OpenAI model needs a name, e.g. 'openai:gpt-4o-mini'")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if base_url is None:
                raise ConfigError(
                    f"model 'openai:{model}' needs an API key: set OPENAI_API_KEY, or pass "
                    "api_key (or base_url for a local server that needs none)"
                )
            api_key = "unused"  # local servers (Ollama, vLLM, llama.cpp) ignore it
        import openai

        self.model = model
        self.options = options
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self.base_url = str(self._client.base_url)

    @classmethod
    def from_spec(cls, name: str, **options: Any) -> OpenAIModel:
        """``openai:<name>`` as a string names it."""
        return cls(name, **options)

    def __repr__(self) -> str:
        return f"OpenAIModel({self.model!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    def _request(self, messages: Sequence[Message], tools: Sequence[Tool]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai(m) for m in messages],
            **self.options,
        }
        if tools:
            request["tools"] = [t.spec() for t in tools]
        return request

    async def complete(self, messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
        """One Chat Completions request; the reply as an assistant message."""
        with self._errors():
            response = await self._client.chat.completions.create(**self._request(messages, tools))
        if not response.choices:
            raise ModelError(f"model {self.model!r} at {self.base_url} sent no choices")
        return from_openai(response.choices[0].message.model_dump())

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Tool]
    ) -> AsyncIterator[str | Message]:
        """One streamed Chat Completions request (``stream=True``): the text as it comes,
        then the whole reply, its tool calls assembled from their pieces."""
        parts = _Assembly()
        with self._errors():
            chunks = await self._client.chat.completions.create(
                **self._request(messages, tools), stream=True
            )
            # Closing the stream closes the HTTP response, also when the caller stops early.
            async with chunks:
                async for chunk in chunks:
                    if not chunk.choices:  # e.g. a closing chunk with usage only
                        continue
                    parts.seen = True
                    text = parts.add(chunk.choices[0].delta.model_dump())
                    if text:
                        yield text
        if not parts.seen:
            raise ModelError(f"model {self.model!r} at {self.base_url} sent no choices")
        yield from_openai(parts.message())

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The SDK's errors as :class:`ModelError` naming the model and endpoint."""
        import openai

        try:
            yield
        except openai.APITimeoutError as exc:
            raise ModelError(
                f"model {self.model!r} at {self.base_url} did not answer in time "
                f"(after retries): {exc}"
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelError(
                f"model {self.model!r} at {self.base_url} refused the request with HTTP "
                f"{exc.status_code}: {_detail(exc)}"
            ) from exc
        except openai.APIError as exc:
            raise ModelError(f"model {self.model!r} at {self.base_url} failed: {exc}") from exc


class _Assembly:
    """A streamed reply put back together: the text, and each tool call from the pieces
    that carry its ``index`` (its id and name come once, its arguments in parts)."""

    def __init__(self) -> None:
        self.seen = False
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, delta: dict[str, Any]) -> str:
        """Take one chunk's ``delta``; return its text."""
        text = delta.get("content") or ""
        if isinstance(text, str) and text:
            self.text.append(text)
        else:
            text = ""
        for piece in delta.get("tool_calls") or []:
            index = piece.get("index")
            call = self.calls.setdefault(index if isinstance(index, int) else len(self.calls),
                                         {"id": "", "name": "", "arguments": []})  # fmt: skip
            call["id"] = call["id"] or piece.get("id") or ""
            fn = piece.get("function") or {}
            call["name"] = call["name"] or fn.get("name") or ""
            if fn.get("arguments"):
                call["arguments"].append(fn["arguments"])
        return text

    def message(self) -> dict[str, Any]:
        """The reply as a non-streamed response's ``choices[0].message``."""
        calls = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": "".join(c["arguments"])}}
            for _, c in sorted(self.calls.items())
        ]  # fmt: skip
        return {"role": "assistant", "content": "".join(self.text), "tool_calls": calls}


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:500]
    return str(exc.message)[:500]


def to_openai(m: Message) -> dict[str, Any]:
    """A message as the Chat Completions API takes it.

    >>> to_openai(Message.tool("12°C", tool_call_id="c1"))
    {'role': 'tool', 'content': '12°C', 'tool_call_id': 'c1'}
    """
    out: dict[str, Any] = {"role": m.role}
    if m.role == "user" and isinstance(m.content, list):
        out["content"] = m.content  # text and image parts pass through
    else:
        out["content"] = m.text
    if m.role == "assistant" and m.tool_calls:
        out["content"] = m.text or None
        bad = m.metadata.get(BAD_ARGUMENTS)
        raw = bad if isinstance(bad, dict) else {}
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    # What the model sent, even if it was not valid JSON.
                    "arguments": str(raw[c.id]) if c.id in raw else json.dumps(c.arguments),
                },
            }
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    if m.name and m.role == "user":
        out["name"] = m.name
    return out


def from_openai(message: dict[str, Any]) -> Message:
    """The assistant message of a Chat Completions reply (``choices[0].message``).

    >>> reply = from_openai({"role": "assistant", "content": None, "tool_calls": [
    ...     {"id": "c1", "type": "function",
    ...      "function": {"name": "clock", "arguments": "{\\"tz\\": \\"UTC\\"}"}}]})
    >>> [(c.id, c.name, c.arguments) for c in reply.tool_calls]
    [('c1', 'clock', {'tz': 'UTC'})]
    """
    calls: list[ToolCall] = []
    bad: dict[str, JsonValue] = {}
    seen: set[str] = set()
    for raw in message.get("tool_calls") or []:
        fn = raw.get("function") or {}
        call_id = str(raw.get("id") or "")
        if not call_id or call_id in seen or len(call_id) > 256:
            call_id = ToolCall(name="x").id  # some servers send none, or repeat one
        seen.add(call_id)
        text = fn.get("arguments") or "{}"
        try:
            args = json.loads(text)
        except ValueError:
            args = None
        if not isinstance(args, dict):
            bad[call_id] = str(text)[:10_000]
            args = {}
        calls.append(ToolCall(id=call_id, name=str(fn.get("name") or "?")[:256], arguments=args))
    metadata: dict[str, JsonValue] = {BAD_ARGUMENTS: bad} if bad else {}
    content = message.get("content") or ""
    return Message.assistant(
        content.replace("\x00", "") if isinstance(content, str) else "",
        tool_calls=calls or None,
        metadata=metadata,
    )
