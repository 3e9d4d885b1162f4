"""The token budget: which part of a session's history goes into the model's context.

The system prompt, the current input and the steps of the turn in progress are always sent.
Earlier history fills what is left of the budget, newest first, in whole turns (a turn starts
at a user message), so the oldest turns are dropped first and an assistant's tool calls never
travel without their results, nor results without their call. A turn that a crash left with
unanswered tool calls keeps its text but loses the unanswered request (the Chat Completions
API refuses one).

The default counter, :func:`estimate_tokens`, is about four characters per token plus a small
overhead per message: no tokenizer to download, close enough for English text and JSON. Pass
your own ``count`` (a function of a :class:`~aixgo.Message`) for exact figures.

>>> from aixgo import Message
>>> history = [Message.user("a" * 400), Message.assistant("b" * 400),
...            Message.user("c" * 40), Message.assistant("d" * 40)]
>>> kept = fit_history(history, budget=100)
>>> [m.text[:1] for m in kept]
['c', 'd']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from aixgo import Message

__all__ = [
    "CostedTurns",
    "TokenCounter",
    "costed_turns",
    "estimate_tokens",
    "fit_history",
    "fit_turns",
    "split_turns",
    "well_formed",
]

#: Counts the tokens a message costs in the model's context.
TokenCounter = Callable[[Message], int]

_PER_MESSAGE = 4  # role and separators


def estimate_tokens(message: Message) -> int:
    """About one token per four characters of text and tool calls, plus four per message.

    >>> estimate_tokens(Message.user("x" * 40))
    14
    """
    size = len(message.text)
    if message.tool_calls:
        size += sum(len(c.name) + len(json.dumps(c.arguments)) for c in message.tool_calls)
    return size // 4 + _PER_MESSAGE


def split_turns(history: Sequence[Message]) -> list[list[Message]]:
    """``history`` cut before each user message (what precedes the first one is a turn too).

    >>> [len(t) for t in split_turns([Message.system("s"), Message.user("a"),
    ...     Message.assistant("b"), Message.user("c")])]
    [1, 2, 1]
    """
    turns: list[list[Message]] = []
    for m in history:
        if m.role == "user" or not turns:
            turns.append([])
        turns[-1].append(m)
    return turns


def well_formed(messages: Sequence[Message]) -> list[Message]:
    """``messages`` without tool calls that lack a result and results that lack their call:
    what a model API accepts. An assistant message whose calls are not all answered keeps its
    text, if any, without the calls.

    >>> from aixgo.message import ToolCall
    >>> call = ToolCall(id="c1", name="clock")
    >>> msgs = [Message.user("time?"), Message.assistant(tool_calls=[call]),
    ...         Message.tool("stray", tool_call_id="c9")]
    >>> [m.role for m in well_formed(msgs)]
    ['user']
    """
    out: list[Message] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        if m.role == "assistant" and m.tool_calls:
            results: list[Message] = []
            j = i + 1
            while j < len(messages) and messages[j].role == "tool":
                results.append(messages[j])
                j += 1
            wanted = {c.id for c in m.tool_calls}
            answered = {r.tool_call_id for r in results}
            if wanted <= answered:
                out.append(m)
                out += [r for r in results if r.tool_call_id in wanted]
            elif m.text:
                out.append(m.model_copy(update={"tool_calls": None}))
            i = j
            continue
        if m.role != "tool":
            out.append(m)
        i += 1
    return out


#: A history's turns, newest first, each well formed and with its token cost.
CostedTurns = list[tuple[list[Message], int]]


def costed_turns(history: Sequence[Message], count: TokenCounter = estimate_tokens) -> CostedTurns:
    """What :func:`fit_turns` picks from, worked out once: an agent fits the same history
    into a smaller budget at each step of a turn, and need not split and count it again."""
    out: CostedTurns = []
    for turn in reversed(split_turns(history)):
        clean = well_formed(turn)
        out.append((clean, sum(count(m) for m in clean)))
    return out


def fit_turns(turns: CostedTurns, budget: int) -> list[Message]:
    """The newest of ``turns`` (from :func:`costed_turns`) that fit in ``budget`` tokens,
    oldest first. The first turn that does not fit ends the search: nothing older is sent."""
    end, left = 0, budget
    while end < len(turns) and turns[end][1] <= left:
        left -= turns[end][1]
        end += 1
    return [m for clean, _ in reversed(turns[:end]) for m in clean]


def fit_history(
    history: Sequence[Message], *, budget: int, count: TokenCounter = estimate_tokens
) -> list[Message]:
    """The newest whole turns of ``history`` that fit in ``budget`` tokens, well formed.
    The first turn that does not fit ends the search: nothing older is sent."""
    return fit_turns(costed_turns(history, count), budget)
