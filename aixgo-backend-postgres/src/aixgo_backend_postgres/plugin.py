"""The plugin: registers ``postgresql://`` and ``postgres://`` through the ``aixgo`` hook.

The factory is a ``"module:attr"`` string, so psycopg is imported only when a PostgreSQL URL
is first opened, never merely because the plugin is installed.
"""

from __future__ import annotations

from aixgo.hookspecs import AuditSinkRegister, BackendRegister, hookimpl

__all__ = ["aixgo_register_audit_sinks", "aixgo_register_backends"]

_FACTORY = "aixgo_backend_postgres.backend:PostgresBackend"


@hookimpl
def aixgo_register_backends(register: BackendRegister) -> None:
    """Register the PostgreSQL backend under both spellings libpq accepts."""
    register("postgresql", _FACTORY)
    register("postgres", _FACTORY)


@hookimpl
def aixgo_register_audit_sinks(register: AuditSinkRegister) -> None:
    """Register the PostgreSQL audit table sink (``AuditLog("postgresql://...")``)."""
    register("postgresql", "aixgo_backend_postgres.audit:PostgresAuditSink")
    register("postgres", "aixgo_backend_postgres.audit:PostgresAuditSink")
