"""The ReAct agent: a model that reasons, calls tools, and remembers its session.

In a session, each call builds the model's context from the session's history (within a token
budget, see :mod:`aixgo_agent_react.budget`), then loops: ask the model; if it wants tools,
store its request, run each tool and store each result *as it happens*; until it answers or
``max_steps`` model calls are spent. The final answer is returned to the runtime, which stores
it. Streamed (:meth:`ReActAgent.stream_with_session`, which the runtime uses for ``call`` and
``stream``), the model's text arrives as it is produced and each stored step is reported.
Because every step is stored, a call resumed after a crash (same input message id) continues
from the last stored step: a tool whose result is stored is never run again.

>>> import asyncio
>>> from aixgo import Message, Runtime
>>> from aixgo_agent_react import ReActAgent, tool
>>> @tool
... def add(a: int, b: int) -> int:
...     '''Add two integers.'''
...     return a + b
>>> async def demo() -> list[str]:
...     agent = ReActAgent(model="scripted:calls", tools=[add], system_prompt="Be exact.")
...     async with Runtime(session_manager="memory://") as rt:
...         rt.register("calc", agent)
...         await rt.call("calc", Message.user("add(a=2, b=3)"), user="alice")
...         s = await rt.session_manager.get_or_create("calc", "alice")
...         return [f"{m.role}: {m.text or m.tool_calls[0].name}" for m in await s.get_messages()]
>>> for line in asyncio.run(demo()): print(line)
user: add(a=2, b=3)
assistant: add
tool: 5
assistant: Results: 5
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from aixgo import Message
from aixgo.agent import AgentEvent
from aixgo.errors import InvalidArgument, InvalidMessage
from aixgo.events import Delta, Step
from aixgo.message import ToolCall
from aixgo.session import Session
from aixgo.session.codec import check_json_value
from pydantic import JsonValue

from aixgo_agent_react.budget import TokenCounter, estimate_tokens, fit_history
from aixgo_agent_react.models import Model, StreamingModel, resolve_model
from aixgo_agent_react.models.openai import BAD_ARGUMENTS
from aixgo_agent_react.tools import Tool, ToolResult, tool

__all__ = ["MAX_INPUT_CHARS", "STOPPED", "TOOL_ERROR", "ReActAgent"]

#: The longest input text accepted, in characters (the original's limit was of this order).
MAX_INPUT_CHARS = 100_000
#: Metadata key on a final answer given because ``max_steps`` was reached.
STOPPED = "aixgo.react.stopped"
#: Metadata key on a tool message that reports an error to the model.
TOOL_ERROR = "aixgo.react.tool_error"
# How many of the latest messages are read to build the context; the budget is met within.
_WINDOW = 400
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def _strings(value: object) -> Iterator[str]:
    """Every string in ``value``, keys included (its depth is already bounded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)


class ReActAgent:
    """A tool-using agent. ``model`` is a :class:`~aixgo_agent_react.models.Model` or a
    string such as ``"openai:gpt-4o-mini"`` or ``"scripted:calls"``; ``tools`` are
    :class:`~aixgo_agent_react.tools.Tool` objects or plain typed functions.

    ``max_steps`` bounds the model calls per turn; ``max_context_tokens`` the context sent
    (counted by ``count_tokens``, default :func:`~aixgo_agent_react.budget.estimate_tokens`);
    ``tool_timeout`` the seconds a tool may run unless it has its own timeout;
    ``max_input_chars`` the input's length. ``model_options`` go to the model provider when
    ``model`` is a string (``base_url``, ``api_key``, ``timeout``, ``max_retries``, ...).
    """

    def __init__(
        self,
        model: Model | str,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        *,
        system_prompt: str | None = None,
        max_steps: int = 10,
        max_context_tokens: int = 16_000,
        count_tokens: TokenCounter = estimate_tokens,
        tool_timeout: float | None = 60.0,
        max_input_chars: int = MAX_INPUT_CHARS,
        **model_options: Any,
    ) -> None:
        if max_steps < 1:
            raise InvalidArgument(f"max_steps must be at least 1, not {max_steps}")
        if max_context_tokens < 1:
            raise InvalidArgument(f"max_context_tokens must be positive, not {max_context_tokens}")
        self.model: Model = resolve_model(model, **model_options)
        self.tools: dict[str, Tool] = {}
        for t in tools:
            made = t if isinstance(t, Tool) else tool(t)
            if made.name in self.tools:
                raise InvalidArgument(f"two tools are named {made.name!r}")
            self.tools[made.name] = made
        self.system_prompt = system_prompt
        self.max_steps = max_steps
        self.max_context_tokens = max_context_tokens
        self.count_tokens = count_tokens
        self.tool_timeout = tool_timeout
        self.max_input_chars = max_input_chars

    def __repr__(self) -> str:
        return f"ReActAgent(model={self.model!r}, tools={sorted(self.tools)})"

    async def start(self) -> None:
        """Nothing to open: model clients connect on first use."""

    async def stop(self) -> None:
        """Close the model's connections, if it has any."""
        close = getattr(self.model, "aclose", None)
        if close is not None:
            await close()

    def check_input(self, input: Message) -> None:
        """Refuse, with :class:`~aixgo.errors.InvalidMessage`, an input that is not a user
        message, is longer than ``max_input_chars``, or holds NUL or other control characters
        (tab and newlines are fine).

        >>> ReActAgent("scripted:echo").check_input(Message.user("bell\\x07"))
        Traceback (most recent call last):
        ...
        aixgo.errors.InvalidMessage: the input holds the control character '\\x07' at ...
        """
        if not isinstance(input, Message):
            raise InvalidMessage(f"the input must be a Message, not {type(input).__name__}")
        if input.role != "user":
            raise InvalidMessage(f"the input must be a user message, not a {input.role!r} one")
        if isinstance(input.content, str):
            texts = [input.content]
        else:
            # Structured content reaches the model too: every string in every part (an image
            # URL, a file name), not only the text parts, counts and is checked.
            check_json_value(input.content, "the input's content", InvalidMessage)
            texts = list(_strings(input.content))
        size = sum(map(len, texts))
        if size > self.max_input_chars:
            raise InvalidMessage(
                f"the input is {size:,} characters; at most {self.max_input_chars:,} are "
                "accepted (max_input_chars)"
            )
        for text in texts:
            for i, ch in enumerate(text):
                if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) == "Cc":
                    raise InvalidMessage(
                        f"the input holds the control character {ch!r} at position {i}; remove it"
                    )

    async def execute(self, input: Message) -> Message:
        """Answer without a session: the context is the system prompt and ``input``."""
        return await _reply(self._turn(input, None, streamed=False))

    async def execute_with_session(self, input: Message, session: Session) -> Message:
        """Answer ``input``, the session's latest user message, using the session's history
        and storing each step; continue where a crashed run of this turn stopped."""
        return await _reply(self._turn(input, session, streamed=False))

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[AgentEvent]:
        """Like :meth:`execute_with_session` (or :meth:`execute` without a session), yielding
        the text as the model produces it (a :class:`~aixgo.events.Delta` per chunk, from a
        model that streams), a :class:`~aixgo.events.Step` per stored tool request and tool
        result, and last the reply. This is what the runtime calls."""
        async for event in self._turn(input, session, streamed=True):
            yield event

    async def _turn(
        self, input: Message, session: Session | None, *, streamed: bool
    ) -> AsyncGenerator[AgentEvent, None]:
        self.check_input(input)
        if session is None:
            async for event in self._loop(input, [], [], None, streamed):
                yield event
            return
        history = await session.get_messages(last=_WINDOW)
        at = _index_of(history, input.id)
        if at is None:  # the turn in progress is longer than the window: read it all
            history = await session.get_messages()
            at = _index_of(history, input.id)
        if at is None:
            # Not stored (a caller outside the runtime): answer it as the newest message.
            before, steps = history, []
        else:
            before, steps = history[:at], history[at + 1 :]
            if before and (before[0].seq or 1) > 1:
                # A tail of the history may begin inside a turn: drop that turn's remains.
                first_user = next((i for i, m in enumerate(before) if m.role == "user"), None)
                before = before[first_user:] if first_user is not None else []
        async for event in self._loop(input, before, steps, session, streamed):
            yield event

    # -- the loop ---------------------------------------------------------------------------

    async def _loop(
        self,
        input: Message,
        before: list[Message],
        steps: list[Message],
        session: Session | None,
        streamed: bool,
    ) -> AsyncGenerator[AgentEvent, None]:
        steps = _this_turn(steps)
        while True:
            pending = _unanswered(steps)
            for call_id in pending:
                request = next(m for m in reversed(steps) if m.tool_calls)
                result = await self._run_tool(request, call_id)
                steps.append(await self._store(session, result, steps, input))
                yield Step(message=steps[-1])
            done = sum(1 for m in steps if m.role == "assistant" and m.tool_calls)
            if done >= self.max_steps:
                yield Message.assistant(
                    f"I stopped after {self.max_steps} steps without reaching a final answer "
                    "(max_steps). Ask me to continue, or ask a narrower question.",
                    metadata={STOPPED: "max_steps"},
                )
                return
            context = self._context(input, before, steps)
            tools = list(self.tools.values())
            reply: object = None
            if streamed and isinstance(self.model, StreamingModel):
                async for chunk in self.model.stream(context, tools):
                    if isinstance(chunk, str):
                        yield Delta(text=chunk)
                    else:
                        reply = chunk
            else:
                reply = await self.model.complete(context, tools)
            if not isinstance(reply, Message) or reply.role != "assistant":
                raise InvalidMessage(f"the model returned {reply!r}, not an assistant message")
            if not reply.tool_calls:
                yield reply
                return
            reply = _distinct_call_ids(reply)
            steps.append(await self._store(session, reply, steps, input))
            yield Step(message=steps[-1])

    def _context(
        self, input: Message, before: list[Message], steps: list[Message]
    ) -> list[Message]:
        fixed = [Message.system(self.system_prompt)] if self.system_prompt else []
        # The session's history already ends with the input: it is placed once, here.
        current = [input, *steps]
        used = sum(self.count_tokens(m) for m in fixed + current)
        left = max(0, self.max_context_tokens - used)
        return [*fixed, *fit_history(before, budget=left, count=self.count_tokens), *current]

    async def _store(
        self,
        session: Session | None,
        message: Message,
        steps: list[Message],
        input: Message,
    ) -> Message:
        if session is None:
            return message
        # expected_seq: another writer in between (a second run of this turn elsewhere) is a
        # ConflictError, never an interleaved turn.
        last = steps[-1] if steps else input
        return await session.append_message(message, expected_seq=last.seq)

    async def _run_tool(self, request: Message, call_id: str) -> Message:
        call = next(c for c in request.tool_calls or [] if c.id == call_id)
        bad = request.metadata.get(BAD_ARGUMENTS)
        found = self.tools.get(call.name)
        if isinstance(bad, dict) and call_id in bad:
            result = ToolResult(
                f"error: the arguments for tool {call.name!r} are not a JSON object: "
                f"{str(bad[call_id])[:200]}",
                True,
            )
        elif found is None:
            names = ", ".join(sorted(self.tools)) or "none"
            result = ToolResult(f"error: there is no tool {call.name!r}; tools: {names}", True)
        else:
            result = await found.run(call.arguments, default_timeout=self.tool_timeout)
        metadata: dict[str, JsonValue] = {TOOL_ERROR: True} if result.error else {}
        return Message.tool(
            result.text, tool_call_id=call.id, name=call.name[:256], metadata=metadata
        )


async def _reply(events: AsyncGenerator[AgentEvent, None]) -> Message:
    """The reply that ends a turn's events (the rest is for streaming callers)."""
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Message):
                return event
    raise AssertionError("a turn ends with its reply")  # pragma: no cover - _loop always does


def _distinct_call_ids(reply: Message) -> Message:
    # Results are matched to calls by id: a model repeating one within a request gets a new
    # id for the repeat, so each call has exactly one result.
    seen: set[str] = set()
    calls = []
    for c in reply.tool_calls or []:
        if c.id in seen:
            c = ToolCall(name=c.name, arguments=c.arguments)
        seen.add(c.id)
        calls.append(c)
    return reply.model_copy(update={"tool_calls": calls})


def _index_of(history: list[Message], message_id: str) -> int | None:
    for i in range(len(history) - 1, -1, -1):
        if history[i].id == message_id:
            return i
    return None


def _this_turn(steps: list[Message]) -> list[Message]:
    # Only this turn's own steps follow its input (calls on a session are serialized), but
    # keep to what the loop writes: assistant tool requests and tool results.
    out: list[Message] = []
    for m in steps:
        if (m.role == "assistant" and m.tool_calls) or m.role == "tool":
            out.append(m)
        else:
            break
    return out


def _unanswered(steps: list[Message]) -> list[str]:
    """Ids of the last tool request's calls that have no stored result, in order."""
    for i in range(len(steps) - 1, -1, -1):
        m = steps[i]
        if m.role == "assistant" and m.tool_calls:
            answered = {r.tool_call_id for r in steps[i + 1 :] if r.role == "tool"}
            return [c.id for c in m.tool_calls if c.id not in answered]
    return []
