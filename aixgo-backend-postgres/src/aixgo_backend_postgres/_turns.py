"""The SQL of the two optional capabilities of issue #21: a user's session, got or created
atomically (:class:`aixgo.session.SessionPerUser`), and per-session turn leases
(:class:`aixgo.session.TurnLeases`).

A lease is a row of ``aixgo_turns`` (schema version 3). Each statement reads the server's
``clock_timestamp()`` once per decision, so every client agrees on expiry whatever its own
clock says, and a statement that waited for a row lock decides with the time it got it. The
row stays after a release (``owner`` NULL), so the next acquisition's token is still larger.

Get-or-create runs in one transaction that first takes a transaction-scoped advisory lock
on the (schema, agent, user) triple: callers for one pair queue there, and each one's read
after the lock sees what the one before it committed.
"""

from __future__ import annotations

from dataclasses import dataclass

_TEMPLATES = {
    # The ttl travels in whole milliseconds (a bigint): no float rounding on the way.
    # Insert the first lease of a session (its foreign key fails for an unknown one), or
    # take over an expired or released lease with the next token, or renew our own live one
    # keeping its token; no row when another owner holds it.
    "acquire": (
        "INSERT INTO {s}.aixgo_turns AS t (session_id, owner, token, expires_at) "
        "VALUES (%(id)s, %(owner)s, 1, clock_timestamp() + %(ms)s * interval '1 millisecond') "
        "ON CONFLICT (session_id) DO UPDATE SET "
        "token = CASE WHEN t.owner = excluded.owner AND t.expires_at > clock_timestamp() "
        "THEN t.token ELSE t.token + 1 END, "
        "owner = excluded.owner, "
        "expires_at = clock_timestamp() + %(ms)s * interval '1 millisecond' "
        "WHERE t.owner = excluded.owner OR t.owner IS NULL "
        "OR t.expires_at <= clock_timestamp() "
        "RETURNING t.token"
    ),
    # (renewed, session exists): a data-modifying WITH runs whether or not it is read.
    "renew": (
        "WITH r AS (UPDATE {s}.aixgo_turns t "
        "SET expires_at = clock_timestamp() + %(ms)s * interval '1 millisecond' "
        "WHERE t.session_id = %(id)s AND t.owner = %(owner)s "
        "AND t.expires_at > clock_timestamp() RETURNING 1) "
        "SELECT EXISTS (SELECT 1 FROM r), "
        "EXISTS (SELECT 1 FROM {s}.aixgo_sessions WHERE id = %(id)s)"
    ),
    "release": (
        "WITH r AS (UPDATE {s}.aixgo_turns t SET owner = NULL, expires_at = clock_timestamp() "
        "WHERE t.session_id = %(id)s AND t.owner = %(owner)s "
        "AND t.expires_at > clock_timestamp() RETURNING 1) "
        "SELECT EXISTS (SELECT 1 FROM {s}.aixgo_sessions WHERE id = %(id)s)"
    ),
    # The single-bigint form of the lock: a different key space from the migrations' lock.
    "pair_lock": "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
}


@dataclass(frozen=True, slots=True)
class TurnStatements:
    """The statements above, with the schema filled in."""

    acquire: bytes
    renew: bytes
    release: bytes
    pair_lock: bytes

    @classmethod
    def for_schema(cls, schema: str) -> TurnStatements:
        # As in statements.py: the schema name was checked, so quoting is enough.
        quoted = f'"{schema}"'
        return cls(**{k: v.replace("{s}", quoted).encode() for k, v in _TEMPLATES.items()})
