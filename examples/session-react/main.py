"""A ReAct agent with two tools that remembers the user's name across two runs of a program.

Run it with ``uvx nox -s demo``, or directly: ``uv run python examples/session-react/main.py``.
It runs itself twice, as two separate processes (``--run 1``, then ``--run 2``): the first
introduces the user, the second asks a question only the stored session can answer. Sessions
live in the embedded default store (``$AIXGO_SESSION_URL``, else the file store under
``$AIXGO_HOME``, else ``~/.aixgo/sessions``).

The model is offline and deterministic (a scripted policy that reads only the context the
agent sends it) unless ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set; then it is
``openai:$AIXGO_DEMO_MODEL`` (default ``gpt-4o-mini``), e.g. a local Ollama with
``OPENAI_BASE_URL=http://localhost:11434/v1 AIXGO_DEMO_MODEL=llama3.2``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Sequence

from aixgo import Message, Runtime, plugins
from aixgo.identifiers import new_id
from aixgo.message import ToolCall
from aixgo.session import default_session_url
from aixgo_agent_react import Model, ReActAgent, ScriptedModel, Tool, tool

AGENT = "assistant"
QUESTIONS = {
    1: "Hello! My name is Alice. How many letters are in my name?",
    2: "Do you remember my name? Spell it backwards for me.",
}


@tool
def letter_count(word: str) -> int:
    """How many letters a word has."""
    return sum(ch.isalpha() for ch in word)


@tool
def reverse(word: str) -> str:
    """A word spelled backwards."""
    return word[::-1]


def offline_policy(messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
    """A tiny deterministic 'model': it knows the user's name only if the context it is sent
    (built by the agent from the stored session) contains it."""
    names = [
        m.group(1)
        for msg in messages
        if msg.role == "user"
        for m in [re.search(r"my name is (\w+)", msg.text, re.IGNORECASE)]
        if m
    ]
    question = next(m.text for m in reversed(messages) if m.role == "user")
    if messages[-1].role == "tool":  # the tool answered: give the final answer
        result = messages[-1].text
        if "backwards" in question:
            return Message.assistant(f"Of course: you are {names[-1]}. Backwards: {result}.")
        return Message.assistant(f"Nice to meet you, {names[-1]}! Your name has {result} letters.")
    if not names:
        return Message.assistant("I do not know your name yet. What is it?")
    name = "reverse" if "backwards" in question else "letter_count"
    return Message.assistant(
        tool_calls=[ToolCall(id=f"call_{new_id()[:8]}", name=name, arguments={"word": names[-1]})]
    )


def make_model() -> Model | str:
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return "openai:" + os.environ.get("AIXGO_DEMO_MODEL", "gpt-4o-mini")
    return ScriptedModel(offline_policy)


def store_url() -> str:
    url = default_session_url()  # $AIXGO_SESSION_URL, else the embedded file store
    if url.partition("://")[0] not in plugins.backend_schemes():
        print(f"({url} needs a backend plugin that is not installed; using memory://)")
        return "memory://"
    return url


async def run(rt: Runtime, number: int, user: str) -> None:
    """One run of the program: one question, answered with the session's history."""
    question = QUESTIONS[number]
    print(f"[run {number}] user: {question}")
    out = await rt.call(AGENT, Message.user(question), user=user)
    print(f"[run {number}] assistant: {out.text}")
    if number == 2:
        s = await rt.session_manager.get_or_create(AGENT, user)
        stored = await s.get_messages()
        print(f"[run 2] session {s.id} holds {len(stored)} messages:")
        for m in stored:
            what = m.text or ", ".join(f"{c.name}({c.arguments})" for c in m.tool_calls or [])
            print(f"  {m.seq}. {m.role}: {what}")
        offline = isinstance(rt.get(AGENT).model, ScriptedModel)
        if offline and not ("Alice" in out.text and "ecilA" in out.text):
            raise SystemExit(f"the agent forgot the user's name: {out.text!r}")
        await s.delete()  # a demo leaves nothing behind


def agent() -> ReActAgent:
    return ReActAgent(
        make_model(),
        [letter_count, reverse],
        system_prompt="You are a friendly assistant. Use the tools for counting and spelling.",
        max_steps=4,
    )


async def child(number: int, user: str) -> None:
    async with Runtime(session_manager=store_url(), timeout=120) as rt:
        rt.register(AGENT, agent())
        await run(rt, number, user)


async def in_one_process(user: str) -> None:
    # memory:// lives in one process only: both runs share one runtime.
    async with Runtime(session_manager="memory://", timeout=120) as rt:
        rt.register(AGENT, agent())
        for number in QUESTIONS:
            await run(rt, number, user)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=int, choices=sorted(QUESTIONS))
    parser.add_argument("--user", default=None)
    args = parser.parse_args()
    user = args.user or f"demo-{new_id()[:12]}"
    if args.run is not None:
        asyncio.run(child(args.run, user))
        return
    print(f"store: {store_url()}; model: {make_model()!r}")
    if store_url().startswith("memory:"):
        asyncio.run(in_one_process(user))
        return
    for number in QUESTIONS:  # two separate processes: memory comes only from the store
        cmd = [sys.executable, __file__, "--run", str(number), "--user", user]
        subprocess.run(cmd, check=True)  # noqa: S603 - our own script, fixed arguments


if __name__ == "__main__":
    main()
