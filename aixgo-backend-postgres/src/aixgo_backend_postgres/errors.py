"""Errors particular to PostgreSQL, under aixgo's own classes so callers need no psycopg."""

from __future__ import annotations

from aixgo.errors import BackendTimeout, ConfigError

__all__ = ["SchemaVersionError", "StatementTimeout"]


class StatementTimeout(BackendTimeout):
    """A statement ran longer than ``statement_timeout_ms`` (or waited longer than the
    server's ``lock_timeout``) and was cancelled; nothing it was doing was kept. An
    :class:`aixgo.errors.BackendTimeout`, so also a :class:`TimeoutError`."""


class SchemaVersionError(ConfigError):
    """The database's aixgo schema is not the one this code uses: newer (upgrade
    aixgo-backend-postgres; the database is never altered) or older with ``migrate=false``
    (run ``aixgo sessions --url URL migrate``)."""

    def __init__(self, message: str, *, found: int, expected: int) -> None:
        self.found = found
        self.expected = expected
        super().__init__(message)
