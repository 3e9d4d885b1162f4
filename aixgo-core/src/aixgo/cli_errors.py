"""What the command line says about an error: the error's own words, with hints that name
commands to run instead of the Python calls the library's messages suggest.

>>> from aixgo.errors import SessionNotFound
>>> cli_message(SessionNotFound("s1"))
"session 's1' does not exist; `aixgo sessions list` shows the sessions there are"
>>> cli_message(SessionNotFound("s1"), chat=True)
"session 's1' does not exist; /sessions lists yours"
"""

from __future__ import annotations

from aixgo.errors import CheckpointNotFound, SessionNotFound

__all__ = ["cli_message"]


def cli_message(exc: BaseException, *, chat: bool = False) -> str:
    """``exc`` as the CLI tells it: in ``aixgo chat`` (``chat``) hints name slash-commands,
    elsewhere ``aixgo`` commands."""
    if isinstance(exc, SessionNotFound):
        hint = (
            "/sessions lists yours"
            if chat
            else "`aixgo sessions list` shows the sessions there are"
        )
        return f"{exc.problem}; {hint}"
    if isinstance(exc, CheckpointNotFound):
        if chat:
            hint = "/restore without an id lists this session's checkpoints"
        else:
            hint = f"`aixgo sessions checkpoints {exc.session_id}` lists the ones there are"
        return f"{exc.problem}; {hint}"
    return str(exc)
