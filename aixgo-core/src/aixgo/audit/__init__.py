"""A tamper-evident audit log of session operations.

>>> from aixgo.audit import AuditLog, audit_actor

``SessionManager(url, audit=AuditLog(path, key=key))`` appends one record per session
operation — ``create``, ``append``, ``checkpoint``, ``restore``, ``delete``, and ``export``,
``import``, ``sweep`` (plus whatever else calls :meth:`AuditLog.record`, found with
:func:`audit_of`) — naming the time, the actor (:func:`audit_actor`), the operation, the
agent, user id, session id, ids and counts, and the outcome. Never message content or
metadata values. Records are chained with HMAC-SHA256 under ``key``; ``aixgo audit verify``
names the first record modified, deleted, inserted or moved. See docs/audit.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aixgo.audit._actor import acting_for, audit_actor, current_actor
from aixgo.audit._backend import AuditedBackend, audit_of
from aixgo.audit._chain import MIN_KEY_BYTES, Sealer, VerifyReport, verify_lines
from aixgo.audit._log import MAX_IDS, AuditLog, FailurePolicy, audit_from_env, key_from_env
from aixgo.audit._sink import AuditSink, JsonlSink

__all__ = [
    "MAX_IDS",
    "MIN_KEY_BYTES",
    "AuditLog",
    "AuditSink",
    "AuditedBackend",
    "FailurePolicy",
    "JsonlSink",
    "Sealer",
    "VerifyReport",
    "acting_for",
    "audit_actor",
    "audit_from_env",
    "audit_of",
    "audited",
    "current_actor",
    "key_from_env",
    "verify_lines",
]


@asynccontextmanager
async def audited(backend: Any, op: str, **fields: Any) -> AsyncIterator[dict[str, Any]]:
    """Record ``op`` (see :meth:`AuditLog.operation`) in the audit log of ``backend``, if it
    has one; otherwise just run the block. For operations that are not single backend
    calls: ``async with audited(mgr.backend, "erase", user_id=u) as rec: ...;
    rec["count"] = n``."""
    log = audit_of(backend)
    if log is None:
        yield {}
        return
    async with log.operation(op, **fields) as extra:
        yield extra
