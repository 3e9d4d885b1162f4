"""``aixgo sessions ...``: list, show, export, import, delete, checkpoints, restore, migrate,
on any backend (``--url``, else ``$AIXGO_SESSION_URL``, else the embedded file store).

Tables are for people; ``--json`` prints JSON for scripts. Stored text is shown with control
characters escaped (``\x1b``), so a name, label or message cannot drive the terminal;
``--json`` output is exact (JSON escapes them). ``export``/``import`` move sessions between
stores as JSON Lines (see :mod:`aixgo.session.archive` for what is carried)::

    aixgo sessions --url file:///srv/sessions export -o all.jsonl
    aixgo sessions --url redis://cache:6379/0 import all.jsonl

SIGTERM is handled like Ctrl-C: the running operation is cancelled and rolls back what it must.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

import click

from aixgo.cli_progress import HELP as PROGRESS_HELP
from aixgo.cli_progress import ProgressReport
from aixgo.crypto import keyring_from_env
from aixgo.errors import AixgoError, InvalidArgument
from aixgo.message import Message
from aixgo.session import (
    Migratable,
    MigrationReport,
    SessionManager,
    default_session_url,
    open_backend,
    redact_url,
)
from aixgo.session.archive import (
    OnConflict,
    TransferStats,
    escape_controls,
    export_sessions,
    import_sessions,
)

__all__ = ["message_table", "printable", "sessions", "table"]

T = TypeVar("T")

# C0 controls but tab and newline, DEL, C1 controls, lone surrogates: what a terminal may act
# on (ESC starts colour, cursor and OSC title sequences; C1 CSI does the same on some).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str, *, lines: bool = False) -> str:
    r"""``text`` safe to print on a terminal: control characters as ``\x..`` escapes.
    With ``lines``, tabs and newlines are kept (message text); without, they are escaped too.

    >>> print(printable("\x1b]0;pwned\x07 hi\ttab"))
    \x1b]0;pwned\x07 hi\x09tab
    >>> print(printable("two\nlines\x9b2J", lines=True))
    two
    lines\x9b2J
    """
    pattern = _CONTROL if lines else _CONTROL_ONE_LINE
    return pattern.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns under a header; the last column is not padded.

    >>> print(table(("A", "B"), [("x", "1"), ("long", "2")]))
    A     B
    x     1
    long  2
    """
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def message_table(messages: Sequence[Message]) -> str:
    """Messages as a SEQ/ROLE/MESSAGE table, as wide as the longest role shown; the lines of a
    multi-line message are indented under its first.

    >>> print(message_table([Message.user("hi", seq=1), Message.assistant("two\\nlines", seq=2)]))
    SEQ  ROLE       MESSAGE
    1    user       hi
    2    assistant  two
                    lines
    """
    header = ("SEQ", "ROLE", "MESSAGE")
    cells = []
    for m in messages:
        names = ", ".join(printable(c.name) for c in m.tool_calls or ())
        calls = f" [calls {names}]" if m.tool_calls else ""
        cells.append((str(m.seq), printable(m.role), printable(m.text, lines=True) + calls))
    indent = " " * sum(max(len(r[c]) for r in [header, *cells]) + 2 for c in (0, 1))
    rows = [(seq, role, text.replace("\n", "\n" + indent)) for seq, role, text in cells]
    return table(header, rows)


def _run(url: str, work: Callable[[SessionManager], Awaitable[T]]) -> T:
    """Run ``work`` with a manager of ``url``. SIGTERM cancels it as Ctrl-C does (so it rolls
    back what it must) and then ends the command as Ctrl-C does."""
    terminated = False

    async def go() -> T:
        nonlocal terminated
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        with _signal_handler(signal.SIGTERM, on_sigterm):
            keyring = keyring_from_env()
            allow = os.environ.get("AIXGO_ENCRYPTION_ALLOW_PLAINTEXT", "") in ("1", "true")
            async with SessionManager(url, encryption=keyring, allow_plaintext=allow) as mgr:
                return await work(mgr)

    try:
        return asyncio.run(go())
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None  # click reports it as "Aborted!", status 1
        raise


@contextlib.contextmanager
def _signal_handler(signum: int, handler: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signum, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, threads)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signum)


def _when(dt: Any) -> str:
    return str(dt.strftime("%Y-%m-%d %H:%M:%S"))


def _dump(obj: Any) -> None:
    click.echo(escape_controls(json.dumps(obj, indent=2, ensure_ascii=False)))


class _Progress:
    """Progress of an export or import, fed its :class:`TransferStats` (see
    :mod:`aixgo.cli_progress` for what is shown where)."""

    def __init__(self, label: str, show: bool | None, total: int | None = None) -> None:
        self.report = ProgressReport(label, show=show, total=total)
        self.stats: TransferStats | None = None
        self.report.__enter__()

    def __call__(self, stats: TransferStats) -> None:
        self.stats = stats
        done = stats.sessions + stats.sessions_skipped + stats.sessions_unchanged
        self.report.update(done, f"{stats.messages:,} messages")

    def done(self) -> None:
        self.report.close()


@click.group("sessions")
@click.option(
    "--url",
    envvar="AIXGO_SESSION_URL",
    default=None,
    metavar="URL",
    help="Backend URL (default: $AIXGO_SESSION_URL, else the embedded file store).",
)
@click.pass_context
def sessions(ctx: click.Context, url: str | None) -> None:
    """Manage stored sessions on any backend.

    \b
    Exit status: 0 done; 1 the operation failed, was refused or was interrupted
    (Ctrl-C, SIGTERM), with a one-line "error: ..." on stderr; 2 the command line
    itself is wrong (unknown option, missing argument).
    """
    ctx.obj = url or default_session_url()


@sessions.command("list")
@click.option("--agent", help="Only this agent's sessions.")
@click.option("--user", "user_id", help="Only this user's sessions.")
@click.option("--limit", default=50, show_default=True, help="Sessions per page.")
@click.option("--cursor", help="Continue from a previous page (see --json's next_cursor).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_command(
    url: str, agent: str | None, user_id: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """Sessions, most recently updated first."""
    page = _run(url, lambda m: m.list(agent=agent, user_id=user_id, limit=limit, cursor=cursor))
    if as_json:
        _dump({"items": [i.model_dump(mode="json") for i in page.items],
               "next_cursor": page.next_cursor})  # fmt: skip
        return
    if not page.items:
        click.echo(f"no sessions in {printable(redact_url(url))}")
        return
    rows = [
        (printable(i.id), printable(i.agent), printable(i.user_id or "-"), str(i.message_count),
         _when(i.updated_at), printable(str(i.metadata.get("title", ""))))
        for i in page.items
    ]  # fmt: skip
    click.echo(table(("ID", "AGENT", "USER", "MESSAGES", "UPDATED", "TITLE"), rows))
    if page.next_cursor:
        click.echo(f"more: --cursor {printable(page.next_cursor)}")


@sessions.command("show")
@click.argument("session_id")
@click.option("--user", "user_id", help="Refuse unless the session is this user's.")
@click.option("--last", type=int, help="Only the last N messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def show_command(
    url: str, session_id: str, user_id: str | None, last: int | None, as_json: bool
) -> None:
    """A session's summary and messages."""

    async def work(mgr: SessionManager) -> tuple[Any, Any]:
        s = await mgr.get(session_id, user_id=user_id)
        return await s.info(), await s.get_messages(last=last)

    info, messages = _run(url, work)
    if as_json:
        _dump({"session": info.model_dump(mode="json"),
               "messages": [m.model_dump(mode="json") for m in messages]})  # fmt: skip
        return
    who = printable(info.user_id or "-")
    click.echo(f"session  {printable(info.id)}\nagent    {printable(info.agent)}\nuser     {who}")
    click.echo(f"created  {_when(info.created_at)}\nupdated  {_when(info.updated_at)}")
    click.echo(f"messages {info.message_count}")
    if info.metadata:
        click.echo(f"metadata {printable(json.dumps(info.metadata, ensure_ascii=False))}")
    if messages:
        click.echo(message_table(messages))


@sessions.command("export")
@click.argument("session_ids", nargs=-1)
@click.option("--agent", help="Only this agent's sessions (others count as not found).")
@click.option("--user", "user_id", help="Only this user's sessions (others count as not found).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of stdout.")  # fmt: skip
@click.option("--progress/--no-progress", default=None, help=PROGRESS_HELP)
@click.pass_obj
def export_command(
    url: str,
    session_ids: tuple[str, ...],
    agent: str | None,
    user_id: str | None,
    output: Path | None,
    progress: bool | None,
) -> None:
    """Write sessions (all, or the ones named or filtered) as JSON Lines. With -o, the file
    appears only once the export is complete."""

    async def work(mgr: SessionManager) -> TransferStats:
        from aixgo.session.archive import list_ids

        ids = list(session_ids) or await list_ids(mgr, agent=agent, user_id=user_id)
        bar = _Progress("exporting", progress, len(ids))
        out: TextIO
        with _open_output(output) if output else _stdout() as out:
            stats = await export_sessions(
                mgr, out.write, session_ids=ids, agent=agent, user_id=user_id, progress=bar
            )
        bar.done()
        return stats

    stats = _run(url, work)
    if output is not None:
        click.echo(
            f"exported {stats.sessions} sessions, {stats.messages:,} messages, "
            f"{stats.checkpoints} checkpoints to {printable(str(output))}",
            err=True,
        )


@contextlib.contextmanager
def _open_output(path: Path) -> Iterator[TextIO]:
    """``path`` for writing, through a file beside it that replaces it only once the export is
    complete: a failed export leaves no partial archive and does not truncate an older one.
    The archive holds conversations, so it is made 0600 like the stores' own files."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)  # also when a stale partial file of another mode was there
        out = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with out:
            yield out
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class _stdout:
    """stdout as a context manager that is not closed on exit."""

    def __enter__(self) -> TextIO:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


@sessions.command("import")
@click.argument("archive", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--on-conflict", type=click.Choice(["fail", "skip", "replace"]), default="fail",
              show_default=True,
              help="When the store has a different session with the same id.")  # fmt: skip
@click.option("--progress/--no-progress", default=None, help=PROGRESS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def import_command(
    url: str, archive: Path, on_conflict: OnConflict, progress: bool | None, as_json: bool
) -> None:
    """Recreate sessions from a JSON Lines archive (ids kept). '-' reads stdin.

    Each session is validated whole before any of it is written, and lands whole or not at
    all: one that fails, or is interrupted by Ctrl-C or SIGTERM, is rolled back (with
    --on-conflict replace, the session it replaced is put back). Sessions are imported in
    archive order, so a failed run leaves the ones before the failing session imported and
    the later ones not; an interrupted rollback or a hard kill (kill -9) can leave one
    session cut short, and with replace lose the session it was replacing.

    To finish after any failure, fix the cause and run the same command again: a session
    already identical to the archived one is left alone (counted as unchanged) and one an
    earlier run cut short is completed, whatever --on-conflict says (if completing it fails
    in turn, it stays cut short for the next run to complete).
    """
    source = "stdin" if str(archive) == "-" else str(archive)
    bar = _Progress("importing", progress)
    if bar.report.active and source != "stdin":
        bar.report.set_total(_sessions_in(archive))

    async def work(mgr: SessionManager) -> TransferStats:
        with _open_archive(archive, source) as stream:
            return await import_sessions(
                mgr,
                stream,
                source=source,
                on_conflict=on_conflict,
                progress=bar,
            )

    try:
        stats = _run(url, work)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        bar.done()
        click.echo(
            f"interrupted: {_so_far(bar.stats)}; the session in progress was rolled back. "
            "Run the same command again to finish.",
            err=True,
        )
        raise
    except (AixgoError, OSError) as exc:
        bar.done()
        if bar.stats is not None:
            exc.add_note(
                f"{_so_far(bar.stats)} before this; nothing of the failing session was kept. "
                "Fix the cause and run the same command again to finish."
            )
        raise
    bar.done()
    if as_json:
        _dump({"sessions": stats.sessions, "messages": stats.messages,
               "checkpoints": stats.checkpoints, "sessions_skipped": stats.sessions_skipped,
               "checkpoints_skipped": stats.checkpoints_skipped,
               "sessions_unchanged": stats.sessions_unchanged,
               "sessions_completed": stats.sessions_completed,
               "sessions_replaced": stats.sessions_replaced})  # fmt: skip
        return
    msg = (f"imported {stats.sessions} sessions, {stats.messages:,} messages, "
           f"{stats.checkpoints} checkpoints into {printable(redact_url(url))}")  # fmt: skip
    if stats.sessions_completed:
        msg += f" ({stats.sessions_completed} cut short by an earlier run, now completed)"
    if stats.sessions_replaced:
        msg += f"; replaced {stats.sessions_replaced} existing sessions"
    if stats.sessions_unchanged:
        msg += f"; {stats.sessions_unchanged} sessions were there already, unchanged"
    if stats.sessions_skipped:
        msg += f"; skipped {stats.sessions_skipped} existing sessions"
    if stats.checkpoints_skipped:
        msg += f"; {stats.checkpoints_skipped} checkpoints pointed into discarded history"
    click.echo(msg)


_SESSION_LINE = (b'{"type":"session"', b'{"type": "session"')


def _sessions_in(archive: Path) -> int | None:
    """How many sessions ``archive`` holds, for the progress display's total: the lines that
    start a session as :func:`export_sessions` writes them (``None`` when it cannot tell)."""
    try:
        with archive.open("rb") as f:
            count = sum(line.startswith(_SESSION_LINE) for line in f)
    except OSError:
        return None  # the import itself reports it
    return count or None


def _so_far(stats: TransferStats | None) -> str:
    if stats is None:
        return "no session was written"
    return (f"{stats.sessions} sessions were written and {stats.sessions_unchanged} found "
            "there already")  # fmt: skip


@contextlib.contextmanager
def _open_archive(archive: Path, source: str) -> Iterator[IO[bytes]]:
    """The archive as binary lines: the importer decodes each and names the line that is not
    UTF-8."""
    if source == "stdin":
        yield sys.stdin.buffer
        return
    try:
        stream = archive.open("rb")
    except OSError as exc:
        raise InvalidArgument(f"cannot read {archive}: {exc.strerror or exc}") from None
    with stream:
        yield stream


@sessions.command("delete")
@click.argument("session_ids", nargs=-1, required=True)
@click.option("--user", "user_id", help="Refuse unless each session is this user's.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete_command(url: str, session_ids: tuple[str, ...], user_id: str | None, yes: bool) -> None:
    """Delete sessions with their messages and checkpoints."""
    if not yes:
        click.confirm(
            f"delete {len(session_ids)} session(s) from {printable(redact_url(url))}?", abort=True
        )

    async def work(mgr: SessionManager) -> None:
        for sid in session_ids:
            await mgr.delete(sid, user_id=user_id)
            click.echo(f"deleted {printable(sid)}")

    _run(url, work)


@sessions.command("checkpoints")
@click.argument("session_id")
@click.option("--user", "user_id", help="Refuse unless the session is this user's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def checkpoints_command(url: str, session_id: str, user_id: str | None, as_json: bool) -> None:
    """A session's checkpoints, oldest first."""

    async def work(mgr: SessionManager) -> Any:
        return await (await mgr.get(session_id, user_id=user_id)).list_checkpoints()

    cps = _run(url, work)
    if as_json:
        _dump([c.model_dump(mode="json") for c in cps])
        return
    if not cps:
        click.echo(f"session {printable(session_id)} has no checkpoints")
        return
    rows = [
        (printable(c.id), str(c.seq), _when(c.created_at), printable(c.label or "")) for c in cps
    ]
    click.echo(table(("ID", "SEQ", "CREATED", "LABEL"), rows))


@sessions.command("restore")
@click.argument("session_id")
@click.argument("checkpoint_id")
@click.option("--user", "user_id", help="Refuse unless the session is this user's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def restore_command(
    url: str, session_id: str, checkpoint_id: str, user_id: str | None, as_json: bool
) -> None:
    """Make a session's history what it was at a checkpoint (undoable)."""

    async def work(mgr: SessionManager) -> Any:
        s = await mgr.get(session_id, user_id=user_id)
        undo = await s.restore(checkpoint_id)
        return undo, await s.info()

    undo, info = _run(url, work)
    if as_json:
        _dump({"undo": undo.model_dump(mode="json"), "session": info.model_dump(mode="json")})
        return
    sid, cid = printable(session_id), printable(checkpoint_id)
    click.echo(f"restored {sid} to {cid}: {info.message_count} messages")
    user = f" --user {printable(user_id)}" if user_id is not None else ""
    click.echo(f"undo with: aixgo sessions restore {sid} {printable(undo.id)}{user}")


async def _migrate(url: str, check: bool) -> MigrationReport | None:
    # The backend itself, never a manager: opening may migrate on its own, which --check
    # must not do.
    backend = open_backend(url)
    try:
        if not isinstance(backend, Migratable):
            return None
        return await backend.migrate(check=check)
    finally:
        await backend.close()


@sessions.command("migrate")
@click.option("--url", "own_url", metavar="URL", help="Backend URL (same as `sessions --url`).")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a migration is due.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def migrate_command(ctx: click.Context, own_url: str | None, check: bool, as_json: bool) -> None:
    """Create or upgrade the store's schema (PostgreSQL's tables, say).

    Safe to run from several processes at once. A store without a schema (memory://,
    file://, redis://) has nothing to migrate: that is reported, exit status 0. A store whose
    schema is newer than the installed backend is refused, unchanged (exit status 1).
    """
    url: str = own_url or ctx.obj
    shown = redact_url(url)
    report = asyncio.run(_migrate(url, check))
    if report is None:
        scheme = url.partition("://")[0].lower()
        message = f"{scheme}:// has no schema to migrate ({shown})"
        data: dict[str, Any] = {"url": shown, "migratable": False, "pending": False}
    else:
        message = str(report)
        if check and report.pending:
            message += "; run `aixgo sessions migrate` to apply it"
        data = {"url": shown, "migratable": True, "target": report.target,
                "found": report.found, "version": report.version, "latest": report.latest,
                "applied": list(report.applied), "pending": report.pending}  # fmt: skip
    if as_json:
        _dump({**data, "message": message})
    else:
        click.echo(printable(message))
    if report is not None and report.pending:
        ctx.exit(1)
