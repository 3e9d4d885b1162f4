"""Audit on vs off: the same backend through a manager with and without an AuditLog, timed
alternately in the paired phase (append and tail-100), so their ratio is the audit's cost."""

from __future__ import annotations

import tempfile
from pathlib import Path

from aixgo.audit import AuditLog
from aixgo.session import SessionManager
from subjects import AixgoSubject, Pool

KEY = bytes(range(32))


class AuditedSubject(AixgoSubject):
    """An aixgo backend whose manager records every write in a JSONL audit log."""

    def __init__(self, name: str, url: str, fsync: bool) -> None:
        super().__init__(name, url, {})
        self.fsync = fsync
        self.folder = tempfile.TemporaryDirectory(prefix="aixgo-bench-audit-")

    async def open(self) -> None:
        log = AuditLog(Path(self.folder.name) / "audit.jsonl", key=KEY, fsync=self.fsync)
        self.mgr = SessionManager(self.url, audit=log)
        self.caps = self.mgr.backend.capabilities
        self.pool = Pool()
        await self.mgr.open()
        self.session = await self.mgr.create("bench", user_id="bench-appender")

    async def close(self) -> None:
        await super().close()
        self.folder.cleanup()


def pairs(stores: list[tuple[str, str, bool]]) -> list[tuple[AixgoSubject, AixgoSubject]]:
    """``(audited, plain)`` for each ``(name, url, fsync)``: the audit log flushes like the
    store (fsync with a file store in fsync mode)."""
    return [
        (AuditedSubject(f"{name} audit on", url, fsync), AixgoSubject(f"{name} audit off", url, {}))
        for name, url, fsync in stores
    ]
