"""The SQL the backend runs, one statement (one round trip) per operation.

Built once per backend for its schema. Each is run as a prepared statement (the pool sets
``prepare_threshold=0``), so the server plans it once per connection.
"""

from __future__ import annotations

from dataclasses import dataclass

_COLUMNS = "id, agent, user_id, created_at, updated_at, message_count, metadata"


def _list(agent: bool, user: bool, after: bool) -> str:
    # One statement per filter combination, each matching one index exactly, so a page is an
    # index range scan starting at the cursor (keyset pagination, no OFFSET).
    where = []
    if agent:
        where.append("agent = %(agent)s")
    if user:
        where.append("user_id = %(user)s")
    if after:
        where.append("(updated_at, id) < (%(after_at)s, %(after_id)s)")
    cond = f"WHERE {' AND '.join(where)} " if where else ""
    # Only our own constant fragments are interpolated; values travel as parameters.
    return (
        f"SELECT {_COLUMNS} FROM {{s}}.aixgo_sessions {cond}"  # noqa: S608
        "ORDER BY updated_at DESC, id DESC LIMIT %(limit)s"
    )


_TEMPLATES = {
    "create": (
        "WITH s AS (INSERT INTO {s}.aixgo_sessions "
        "(id, agent, user_id, created_at, updated_at, message_count, metadata) "
        "VALUES (%s, %s, %s, %s, %s, 0, %s) ON CONFLICT (id) DO NOTHING RETURNING id), "
        "b AS (INSERT INTO {s}.aixgo_branches (session_id, branch, parent, fork_seq) "
        "SELECT id, 0, NULL, 0 FROM s) "
        "SELECT count(*) FROM s"
    ),
    "get": f"SELECT {_COLUMNS} FROM {{s}}.aixgo_sessions WHERE id = %s",  # noqa: S608
    "delete": "SELECT {s}.aixgo_delete_session(%s)",
    # The batch travels as one JSON array: one text parameter is far cheaper to send than
    # arrays, which psycopg adapts element by element.
    "append": "SELECT {s}.aixgo_append(%s, %s::jsonb, %s)",
    # One message (the common case): its id and JSON text travel as they are, no array.
    "append_one": "SELECT {s}.aixgo_append_one(%s, %s, %s, %s)",
    "append_replay": (
        "SELECT pos, stored_seq, stored FROM {s}.aixgo_append_replay(%s, %s::jsonb, %s)"
    ),
    # The tail: walk the lineage from the head branch only as far back as the last n
    # messages reach, then read each span by the (session_id, branch, seq) primary key.
    # OFFSET 0 keeps that a range scan per span: without it a generic plan may fetch every
    # message of the session and hash-join them. The first row (seq 0) says the session
    # exists even when it has no messages. Same SQL as the aixgo_history() function.
    "tail": """
WITH RECURSIVE
s AS (
    SELECT head, message_count AS len,
           greatest(1, message_count - coalesce(%(last)s::bigint, message_count) + 1) AS lo
      FROM {s}.aixgo_sessions WHERE id = %(id)s
),
walk (branch, parent, lo, hi) AS (
    SELECT b.branch, b.parent, greatest(b.fork_seq + 1, s.lo), s.len
      FROM s JOIN {s}.aixgo_branches b ON b.session_id = %(id)s AND b.branch = s.head
    UNION ALL
    SELECT b.branch, b.parent, greatest(b.fork_seq + 1, s.lo), w.lo - 1
      FROM walk w CROSS JOIN s
      JOIN {s}.aixgo_branches b ON b.session_id = %(id)s AND b.branch = w.parent
     WHERE w.lo > s.lo
)
SELECT 0::bigint AS seq, NULL::text AS message FROM s
UNION ALL
SELECT m.seq, m.message::text
  FROM walk w CROSS JOIN LATERAL (
       SELECT m.seq, m.message FROM {s}.aixgo_messages m
        WHERE m.session_id = %(id)s AND m.branch = w.branch AND m.seq BETWEEN w.lo AND w.hi
       OFFSET 0) m
ORDER BY 1""",
    # FOR SHARE waits for an append, restore or delete in flight, so the checkpoint names a
    # committed head (or finds the session gone).
    "checkpoint": (
        "INSERT INTO {s}.aixgo_checkpoints (session_id, id, branch, seq, created_at, label) "
        "SELECT s.id, %s, s.head, s.message_count, clock_timestamp(), %s "
        "FROM {s}.aixgo_sessions s WHERE s.id = %s FOR SHARE "
        "RETURNING seq, created_at"
    ),
    "get_checkpoint": (
        "SELECT seq, created_at, label FROM {s}.aixgo_checkpoints WHERE session_id = %s AND id = %s"
    ),
    "checkpoints": (
        "SELECT NULL::text, 0::bigint, NULL::timestamptz, NULL::text, 0::bigint "
        "FROM {s}.aixgo_sessions WHERE id = %(id)s "
        "UNION ALL "
        "SELECT c.id, c.seq, c.created_at, c.label, c.n FROM {s}.aixgo_checkpoints c "
        "WHERE c.session_id = %(id)s ORDER BY 5"
    ),
    "restore": "SELECT undo_seq, undo_created_at FROM {s}.aixgo_restore(%s, %s, %s)",
}


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement, with the schema filled in."""

    create: bytes
    get: bytes
    delete: bytes
    append: bytes
    append_one: bytes
    append_replay: bytes
    tail: bytes
    checkpoint: bytes
    get_checkpoint: bytes
    checkpoints: bytes
    restore: bytes
    #: Listing, by (agent given, user given, cursor given).
    lists: dict[tuple[bool, bool, bool], bytes]

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        # The schema name was checked against [A-Za-z_][A-Za-z0-9_]*, so quoting is enough.
        quoted = f'"{schema}"'

        def fill(template: str) -> bytes:
            return template.replace("{s}", quoted).encode()

        lists = {
            (a, u, c): fill(_list(a, u, c))
            for a in (False, True)
            for u in (False, True)
            for c in (False, True)
        }
        return cls(**{k: fill(v) for k, v in _TEMPLATES.items()}, lists=lists)
