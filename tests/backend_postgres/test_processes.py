"""Several processes writing one session at once: nothing lost, nothing doubled, no gaps."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest
from aixgo.session import SessionManager

WRITER = textwrap.dedent(
    """
    import asyncio, random, sys
    from aixgo import Message
    from aixgo.errors import ConflictError
    from aixgo.session import SessionManager

    async def main(url, session_id, name):
        async with SessionManager(url) as mgr:
            s = await mgr.get(session_id)
            for i in range(25):
                msg = Message.user(f"{name}-{i}", id=f"{name}x{i:04d}")
                if random.random() < 0.5:
                    await s.append_message(msg)
                else:  # optimistic writers: re-read and retry on a conflict
                    while True:
                        seen = (await s.info()).message_count
                        try:
                            await s.append_message(msg, expected_seq=seen)
                            break
                        except ConflictError:
                            pass
                if random.random() < 0.3:
                    await s.append_message(msg)  # a retry of the same message: a no-op

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.asyncio
async def test_processes_appending_to_one_session(pg_url: str) -> None:
    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant", user_id="u")
        names = ["a", "b", "c"]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WRITER,
                pg_url,
                s.id,
                name,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for name in names
        ]
        outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
        assert [p.returncode for p in procs] == [0, 0, 0], outs
        history = await s.get_messages()
        assert [m.seq for m in history] == list(range(1, 76))
        assert len({m.id for m in history}) == 75
        for name in names:  # each writer's messages, in its own order
            mine = [m.text for m in history if m.text.startswith(f"{name}-")]
            assert mine == [f"{name}-{i}" for i in range(25)]
        assert (await s.info()).message_count == 75
