"""aixgo-backend-postgres: durable aixgo sessions in PostgreSQL.

Install it and open ``postgresql://`` (or ``postgres://``) URLs with
:func:`aixgo.session.open_backend` or ``SessionManager(url)``; the plugin registers both
schemes. See the README for URL options, the schema and the ``aixgo_current_messages`` view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aixgo.plugins import lazy_exports

if TYPE_CHECKING:
    from aixgo_backend_postgres._migrations import LATEST as SCHEMA_VERSION
    from aixgo_backend_postgres.backend import PostgresBackend
    from aixgo_backend_postgres.errors import SchemaVersionError, StatementTimeout
    from aixgo_backend_postgres.options import PostgresOptions, parse_url

#: Imported on first use: loading plugins imports this package, and must not import
#: its dependencies (every process that opens any store would pay for them).
_LAZY = {
    "SCHEMA_VERSION": ("aixgo_backend_postgres._migrations", "LATEST"),
    "PostgresBackend": ("aixgo_backend_postgres.backend", "PostgresBackend"),
    "SchemaVersionError": ("aixgo_backend_postgres.errors", "SchemaVersionError"),
    "StatementTimeout": ("aixgo_backend_postgres.errors", "StatementTimeout"),
    "PostgresOptions": ("aixgo_backend_postgres.options", "PostgresOptions"),
    "parse_url": ("aixgo_backend_postgres.options", "parse_url"),
}

__all__ = [
    "PostgresBackend",
    "PostgresOptions",
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "StatementTimeout",
    "parse_url",
]


__getattr__ = lazy_exports(__name__, _LAZY)
