"""An offline, deterministic model for tests and demos that really drives the tool loop.

A :class:`ScriptedModel` answers with a *policy*: a function of the context it is sent (and
the tools offered) returning the next assistant message, or a list of replies taken in order.
Strings pick a built-in policy:

* ``scripted:echo``: answers ``You said: <last user text>``;
* ``scripted:calls`` (also ``scripted:``): runs the tool calls written in the last user
  message as ``name(key=value, ...)`` (values are JSON, else text), then answers with the
  results; an unknown tool or bad arguments are sent as written, as a confused model would.

>>> import asyncio
>>> from aixgo import Message
>>> from aixgo_agent_react.tools import tool
>>> @tool
... def double(x: int) -> int:
...     '''Twice x.'''
...     return 2 * x
>>> m = ScriptedModel.from_spec("calls")
>>> reply = asyncio.run(m.complete([Message.user("please double(x=21)")], [double]))
>>> [(c.name, c.arguments) for c in reply.tool_calls]
[('double', {'x': 21})]
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aixgo import Message
from aixgo.errors import ConfigError, InvalidArgument
from aixgo.message import ToolCall
from pydantic import JsonValue

from aixgo_agent_react.tools import Tool

__all__ = ["Policy", "ScriptedModel", "calls_policy", "echo_policy"]

#: Decides the next assistant message from the context and the tools on offer.
Policy = Callable[[Sequence[Message], Sequence[Tool]], Message]

# A word and the spaces after it: the chunks of a streamed reply, which join back to its text.
_CHUNK = re.compile(r"\S*\s*")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)\(([^()]*)\)")
_ARG = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*(\"[^\"]*\"|[^,]*)\s*(?:,|$)")


def _last_user(messages: Sequence[Message]) -> Message | None:
    return next((m for m in reversed(messages) if m.role == "user"), None)


def _results_since_call(messages: Sequence[Message]) -> list[Message] | None:
    # The tool results that end the context, if it ends with results.
    tail: list[Message] = []
    for m in reversed(messages):
        if m.role != "tool":
            break
        tail.append(m)
    return list(reversed(tail)) if tail else None


def echo_policy(messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
    """Answer ``You said: <last user text>``.

    >>> echo_policy([Message.user("hi")], []).text
    'You said: hi'
    """
    last = _last_user(messages)
    return Message.assistant("You said: " + (last.text if last else ""))


def calls_policy(messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
    """Call the tools written as ``name(key=value)`` in the last user message, then answer
    with their results.

    >>> calls_policy([Message.user("no calls here")], []).text
    'No tools to call.'
    """
    results = _results_since_call(messages)
    if results is not None:
        return Message.assistant("Results: " + "; ".join(r.text for r in results))
    last = _last_user(messages)
    found = _CALL.findall(last.text) if last else []
    if not found:
        return Message.assistant("No tools to call.")
    calls = [
        ToolCall(id=f"call_{i}", name=name, arguments=_arguments(args))
        for i, (name, args) in enumerate(found, 1)
    ]
    return Message.assistant(tool_calls=calls)


def _arguments(text: str) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for key, raw in _ARG.findall(text):
        raw = raw.strip()
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


_POLICIES: dict[str, Policy] = {"": calls_policy, "calls": calls_policy, "echo": echo_policy}


class ScriptedModel:
    """A model that follows ``script``: a policy function, or a list of replies (assistant
    messages or plain strings) returned one per request, in order. Streamed, a reply's text
    comes a word at a time (with the spaces after it), then the reply. ``requests`` holds the
    last ``keep_requests`` contexts it was sent, oldest first (a test looks at them; a long
    run must not keep them all: each holds up to the agent's whole context window).

    >>> import asyncio
    >>> m = ScriptedModel(["first", "second"], keep_requests=1)
    >>> asyncio.run(m.complete([Message.user("hi")], [])).text
    'first'
    >>> asyncio.run(m.complete([Message.user("again")], [])).text
    'second'
    >>> [[c.text for c in context] for context in m.requests]
    [['again']]
    """

    #: How many of the latest contexts are kept by default.
    KEEP_REQUESTS = 16

    def __init__(
        self, script: Policy | Sequence[Message | str], *, keep_requests: int = KEEP_REQUESTS
    ) -> None:
        if keep_requests < 0:
            raise InvalidArgument(f"keep_requests must be 0 or more, not {keep_requests}")
        self._policy: Policy | None = None
        self._replies: list[Message] = []
        if callable(script):
            self._policy = script
        else:
            self._replies = [r if isinstance(r, Message) else Message.assistant(r) for r in script]
        self.requests: deque[list[Message]] = deque(maxlen=keep_requests)

    def __repr__(self) -> str:
        if self._policy is not None:
            return f"ScriptedModel({getattr(self._policy, '__name__', 'policy')})"
        return f"ScriptedModel({len(self._replies)} replies left)"

    @classmethod
    def from_spec(cls, name: str, **options: Any) -> ScriptedModel:
        """The built-in policy ``name`` (``"echo"``, ``"calls"``; empty means ``"calls"``)."""
        if options:
            raise ConfigError(f"scripted models take no options, not {', '.join(options)}")
        policy = _POLICIES.get(name)
        if policy is None:
            known = ", ".join(p for p in _POLICIES if p)
            raise ConfigError(f"no scripted policy {name!r}; built-in ones: {known}")
        return cls(policy)

    async def complete(self, messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
        """The next reply of the script."""
        if self.requests.maxlen:
            self.requests.append(list(messages))
        if self._policy is not None:
            return self._policy(messages, tools)
        if not self._replies:
            from aixgo_agent_react.models import ModelError

            raise ModelError("the scripted model ran out of replies")
        reply = self._replies.pop(0)
        # A fresh id each time: a reply is a new message even if the script repeats one.
        return reply.model_copy(update={"id": Message.assistant().id})

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Tool]
    ) -> AsyncIterator[str | Message]:
        """The next reply of the script, its text first a word at a time.

        >>> import asyncio
        >>> async def chunks() -> list[object]:
        ...     m = ScriptedModel(["Hello there, world"])
        ...     return [c if isinstance(c, str) else "reply" async for c in m.stream([], [])]
        >>> asyncio.run(chunks())
        ['Hello ', 'there, ', 'world', 'reply']
        """
        reply = await self.complete(messages, tools)
        for chunk in _CHUNK.findall(reply.text):
            if chunk:
                yield chunk
        yield reply
