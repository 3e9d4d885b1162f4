"""aixgo-backend-postgres: durable aixgo sessions in PostgreSQL.

Install it and open ``postgresql://`` (or ``postgres://``) URLs with
:func:`aixgo.session.open_backend` or ``SessionManager(url)``; the plugin registers both
schemes. See the README for URL options, the schema and the ``aixgo_current_messages`` view.
"""

from aixgo_backend_postgres._migrations import LATEST as SCHEMA_VERSION
from aixgo_backend_postgres.backend import PostgresBackend
from aixgo_backend_postgres.errors import SchemaVersionError, StatementTimeout
from aixgo_backend_postgres.options import PostgresOptions, parse_url

__all__ = [
    "PostgresBackend",
    "PostgresOptions",
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "StatementTimeout",
    "parse_url",
]
