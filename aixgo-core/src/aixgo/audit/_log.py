"""AuditLog: builds audit records, applies the failure policy and hands them to a sink."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from aixgo.audit._actor import current_actor
from aixgo.audit._chain import MIN_KEY_BYTES, Sealer, VerifyReport, verify_lines_async
from aixgo.audit._sink import AuditSink, JsonlSink
from aixgo.errors import AuditError, ConfigError, InvalidArgument
from aixgo.message import utc_now

if TYPE_CHECKING:
    from aixgo.session.backend import Backend

__all__ = ["MAX_IDS", "AuditLog", "FailurePolicy", "audit_from_env", "key_from_env"]

#: What happens when the sink cannot take a record: ``fatal`` raises :class:`AuditError`
#: from the operation; ``buffer`` keeps the record in memory, logs a warning, retries it
#: before the next record and raises at ``flush()``/``close()`` if it still cannot.
FailurePolicy = Literal["fatal", "buffer"]
#: A record lists at most this many ids (message ids of a large append); ``count`` says
#: how many there were.
MAX_IDS = 100
_log = logging.getLogger("aixgo.audit")


class AuditLog:
    """A tamper-evident log of session operations.

    ``target`` is a JSONL file path, a ``scheme://`` URL of an audit sink a plugin
    registers (``postgresql://...`` with ``aixgo-backend-postgres``; ``file://`` is the
    JSONL file), or an :class:`AuditSink`. ``key`` (at least 16 bytes, separate from any
    encryption key) keys the HMAC chain. Give it to a manager:
    ``SessionManager(url, audit=AuditLog(path, key=key))``.

    >>> import asyncio, os, tempfile
    >>> log = AuditLog(os.path.join(tempfile.mkdtemp(), "audit.jsonl"), key=b"k" * 32)
    >>> async def demo() -> bool:
    ...     await log.record("create", agent="assistant", session_id="s1")
    ...     report = await log.verify()
    ...     await log.close()
    ...     return report.intact
    >>> asyncio.run(demo())
    True
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | AuditSink,
        *,
        key: bytes,
        fsync: bool = False,
        on_failure: FailurePolicy = "fatal",
        max_buffer: int = 10_000,
        on_report: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise InvalidArgument(f"the audit key must be at least {MIN_KEY_BYTES} bytes")
        if on_failure not in ("fatal", "buffer"):
            raise InvalidArgument(f"on_failure must be 'fatal' or 'buffer', not {on_failure!r}")
        if type(max_buffer) is not int or max_buffer < 1:
            raise InvalidArgument(f"max_buffer must be a positive integer, not {max_buffer!r}")
        self.sink = _open_sink(target, fsync=fsync)
        self.on_failure: FailurePolicy = on_failure
        self.max_buffer = max_buffer
        #: Called with the error and the number of buffered records each time a record is
        #: buffered (besides the warning on the ``aixgo.audit`` logger).
        self.on_report = on_report
        #: How many times the sink failed since this log was made.
        self.failures = 0
        self._key = key
        self._sealer = Sealer(key)
        self._buffer: list[dict[str, Any]] = []
        self._lock: asyncio.Lock | None = None
        self._next: _Batch | None = None  # records waiting for the write in flight

    def __repr__(self) -> str:
        return f"AuditLog({self.sink!r}, on_failure={self.on_failure!r})"

    @property
    def pending(self) -> int:
        """Records buffered after a sink failure, not written yet."""
        return len(self._buffer)

    def wrap(self, backend: Backend) -> Backend:
        """``backend`` with every session operation recorded here (what
        ``SessionManager(..., audit=log)`` does)."""
        from aixgo.audit._backend import AuditedBackend

        return AuditedBackend(backend, self)

    async def record(
        self,
        op: str,
        *,
        outcome: str = "ok",
        agent: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        ids: Iterable[str] = (),
        count: int | None = None,
        actor: str | None = None,
    ) -> None:
        """Append one record: the time, the actor (``actor``, else the current one), the
        operation and the names, ids and count it concerns, and ``outcome`` (``"ok"`` or an
        error type). Never message content or metadata values: pass none here."""
        id_list = list(ids)
        body: dict[str, Any] = {
            "time": utc_now().isoformat(),
            "actor": actor if actor is not None else current_actor(),
            "op": op,
            "agent": agent,
            "user_id": user_id,
            "session_id": session_id,
            "ids": id_list[:MAX_IDS],
            "count": count,
            "outcome": outcome,
        }
        idle = (
            not self._buffer
            and self._next is None
            and (self._lock is None or not self._lock.locked())
        )
        if idle and getattr(self.sink, "synchronous", False):
            # Nothing waits before this record and the sink never suspends: written inline,
            # so no lock is needed and a cancellation cannot cut it short.
            try:
                await self.sink.write((body,), self._sealer)
            except Exception as exc:
                self.failures += 1
                self._failed(exc, body)
        else:
            # Shielded: a caller cancelled while its record is written (a call timing out)
            # does not lose the record of what it already did.
            await asyncio.shield(self._submit(body))

    @asynccontextmanager
    async def operation(self, op: str, **fields: Any) -> AsyncIterator[dict[str, Any]]:
        """Record ``op`` when the block ends: ``ok``, or the type of the error it raised.
        Fields added to the yielded dict (``count``, ``ids``) go into the record."""
        extra: dict[str, Any] = {}
        try:
            yield extra
        except BaseException as exc:
            await self.record(op, **{**fields, **extra, "outcome": type(exc).__name__})
            raise
        await self.record(op, **{**fields, **extra})

    async def _submit(self, body: dict[str, Any]) -> None:
        # Group commit: records that arrive while a write is in flight wait together and go
        # out in the next write (one fsync for all of them with fsync=True); each caller
        # returns only when the write holding its record is done. A lone record never
        # waits for company.
        if self._lock is None:
            self._lock = asyncio.Lock()
        batch = self._next
        if batch is None:
            batch = self._next = _Batch()
        slot = len(batch.bodies)
        batch.bodies.append(body)
        async with self._lock:
            if not batch.done:
                if self._next is batch:
                    self._next = None  # later records form the next batch
                await self._write_batch(batch)
        error = batch.errors.get(slot)
        if error is not None:
            raise error

    async def _write_batch(self, batch: _Batch) -> None:
        try:
            await self.sink.write([*self._buffer, *batch.bodies], self._sealer)
        except Exception as exc:
            self.failures += 1
            for slot, body in enumerate(batch.bodies):
                try:
                    self._failed(exc, body)
                except AuditError as error:
                    batch.errors[slot] = error
        except BaseException as exc:  # cancelled (the loop shutting down): nobody is told ok
            for slot in range(len(batch.bodies)):
                batch.errors[slot] = exc
            raise
        else:
            self._buffer.clear()
        finally:
            batch.done = True

    def _failed(self, exc: Exception, body: dict[str, Any]) -> None:
        """Apply the failure policy to ``body``, which the sink could not take."""
        where = f"{body['op']} of session {body['session_id']}"
        if self.on_failure == "fatal":
            raise AuditError(
                f"the audit record of {where} could not be written to {self.sink!r} "
                f"({type(exc).__name__}: {exc}); the operation itself "
                f"{'completed' if body['outcome'] == 'ok' else 'failed'}"
            ) from exc
        if len(self._buffer) >= self.max_buffer:
            raise AuditError(
                f"the audit sink {self.sink!r} keeps failing ({type(exc).__name__}: "
                f"{exc}) and {len(self._buffer):,} records are buffered, the most "
                f"allowed; the {where} is not recorded"
            ) from exc
        self._buffer.append(body)
        _log.warning(
            "audit sink %r failed (%s: %s); %d record(s) buffered",
            self.sink,
            type(exc).__name__,
            exc,
            len(self._buffer),
        )
        if self.on_report is not None:
            self.on_report(exc, len(self._buffer))

    async def flush(self) -> None:
        """Write the buffered records now; :class:`AuditError` if the sink still fails."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._buffer:
                return
            try:
                await self.sink.write(self._buffer, self._sealer)
            except Exception as exc:
                self.failures += 1
                raise AuditError(
                    f"{len(self._buffer):,} buffered audit records could not be written to "
                    f"{self.sink!r} ({type(exc).__name__}: {exc})"
                ) from exc
            self._buffer.clear()

    async def verify(self) -> VerifyReport:
        """Check the whole chain (see :func:`aixgo.audit.verify_lines`)."""
        return await verify_lines_async(self.sink.lines(), self._key)

    async def close(self) -> None:
        """Flush, then close the sink. :class:`AuditError` (after closing) if buffered
        records could not be written: they are reported, never dropped silently."""
        try:
            await self.flush()
        finally:
            await self.sink.close()


class _Batch:
    """Records written together, and what each caller is told."""

    __slots__ = ("bodies", "done", "errors")

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.done = False
        self.errors: dict[int, BaseException] = {}


def _open_sink(target: str | os.PathLike[str] | AuditSink, *, fsync: bool) -> AuditSink:
    if isinstance(target, AuditSink) and not isinstance(target, str):
        return target
    text = os.fspath(target)
    if "://" not in text:
        return JsonlSink(text, fsync=fsync)
    from aixgo import plugins

    factory, _ = plugins.audit_sink_factory(text.split("://", 1)[0].lower())
    sink = factory(text, fsync=fsync)
    if not isinstance(sink, AuditSink):
        raise ConfigError(f"the audit sink for {text.split('://', 1)[0]}:// is not an AuditSink")
    return sink


def key_from_env(var: str = "AIXGO_AUDIT_KEY") -> bytes:
    """The audit key from the environment variable ``var``, in hex."""
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"set {var} to the audit key in hex (at least {MIN_KEY_BYTES} bytes)")
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        raise ConfigError(f"{var} is not hex; it must hold the audit key in hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{var} holds {len(key)} bytes; the audit key needs {MIN_KEY_BYTES}+")
    return key


def audit_from_env() -> AuditLog | None:
    """The audit log ``$AIXGO_AUDIT_LOG`` names (a path or sink URL; key in
    ``$AIXGO_AUDIT_KEY``, ``$AIXGO_AUDIT_FSYNC=true``, ``$AIXGO_AUDIT_ON_FAILURE``), or
    ``None`` when it is unset. The ``aixgo sessions`` commands use it."""
    target = os.environ.get("AIXGO_AUDIT_LOG")
    if not target:
        return None
    policy = os.environ.get("AIXGO_AUDIT_ON_FAILURE", "fatal")
    if policy not in ("fatal", "buffer"):
        raise ConfigError(f"AIXGO_AUDIT_ON_FAILURE must be fatal or buffer, not {policy!r}")
    fsync = os.environ.get("AIXGO_AUDIT_FSYNC", "false").lower() in ("1", "true", "yes", "on")
    return AuditLog(target, key=key_from_env(), fsync=fsync, on_failure=policy)  # type: ignore[arg-type]
