"""The schema, as ordered migrations. ``{s}`` stands for the quoted schema name.

Why these tables (see the README for the SQL view people query):

* ``aixgo_sessions``: one row per session; ``head`` is the branch holding the current
  history and ``message_count`` its length. Four listing indexes, one per filter combination
  the API offers (none, agent, user, both), each ending in ``(updated_at DESC, id DESC)`` so a
  page is one index range scan from the cursor (keyset pagination).
* ``aixgo_messages``: one JSONB row per stored message, keyed ``(session_id, branch, seq)``.
  Restore never deletes or rewrites a row: it starts a new branch (see
  :mod:`aixgo.session.lineage`), so checkpoints are O(1) and keep meaning their history. The
  alternative, keying rows by ``(session_id, seq)`` and moving discarded tails to an archive
  on restore, makes restore O(tail) and breaks old checkpoints, so we did not take it.
  A message id is unique per branch (a branch only grows while it is the head, and everything
  it owns is then live), which the unique index enforces.
* ``aixgo_branches``: the small lineage table, one row per restore plus branch 0.
* ``aixgo_checkpoints``: ``(branch, seq)`` per checkpoint; ``n`` orders them.
* ``aixgo_history(session, last)`` and the view ``aixgo_current_messages``: current
  histories, for SQL users.
* ``aixgo_turns`` (version 3): the turn lease of a session (see :mod:`.turns`).

No foreign keys: each write that touches several tables runs in one function that locks the
session row first, so integrity holds without an extra trigger lookup per inserted message.
The one exception is ``aixgo_turns``, written once per turn rather than per message: its
foreign key makes an unknown session fail the insert and drops the lease with its session.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    """One schema version: the SQL that brings the previous version to it. Released
    migrations are never edited; a change is a new one."""

    version: int
    description: str
    sql: str


_V1 = r"""
CREATE TABLE {s}.aixgo_sessions (
    id            text COLLATE "C" PRIMARY KEY,
    agent         text COLLATE "C" NOT NULL,
    user_id       text COLLATE "C",
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    message_count bigint NOT NULL DEFAULT 0,
    head          integer NOT NULL DEFAULT 0,
    metadata      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX aixgo_sessions_recent ON {s}.aixgo_sessions (updated_at DESC, id DESC);
CREATE INDEX aixgo_sessions_agent_recent
    ON {s}.aixgo_sessions (agent, updated_at DESC, id DESC);
CREATE INDEX aixgo_sessions_user_recent
    ON {s}.aixgo_sessions (user_id, updated_at DESC, id DESC);
CREATE INDEX aixgo_sessions_agent_user_recent
    ON {s}.aixgo_sessions (agent, user_id, updated_at DESC, id DESC);

CREATE TABLE {s}.aixgo_branches (
    session_id text COLLATE "C" NOT NULL,
    branch     integer NOT NULL,
    parent     integer,
    fork_seq   bigint NOT NULL,
    PRIMARY KEY (session_id, branch)
);

CREATE TABLE {s}.aixgo_messages (
    session_id text COLLATE "C" NOT NULL,
    branch     integer NOT NULL,
    seq        bigint NOT NULL,
    id         text COLLATE "C" NOT NULL,
    message    jsonb NOT NULL,
    PRIMARY KEY (session_id, branch, seq)
);
CREATE UNIQUE INDEX aixgo_messages_id ON {s}.aixgo_messages (session_id, id, branch);

CREATE TABLE {s}.aixgo_checkpoints (
    session_id text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    branch     integer NOT NULL,
    seq        bigint NOT NULL,
    created_at timestamptz NOT NULL,
    label      text,
    n          bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (session_id, id)
);
CREATE INDEX aixgo_checkpoints_order ON {s}.aixgo_checkpoints (session_id, n);

-- The current history of one session (its last p_last messages, or all), oldest first:
-- walk the branch table from the head only as far back as needed, then read each span by
-- the (session_id, branch, seq) primary key. The backend runs the same SQL as one statement.
CREATE FUNCTION {s}.aixgo_history(p_session text, p_last bigint DEFAULT NULL)
RETURNS TABLE (seq bigint, id text, message jsonb)
LANGUAGE sql STABLE AS $$
WITH RECURSIVE
s AS (
    SELECT head, message_count AS len,
           greatest(1, message_count - coalesce(p_last, message_count) + 1) AS lo
      FROM {s}.aixgo_sessions WHERE id = p_session
),
walk (branch, parent, lo, hi) AS (
    SELECT b.branch, b.parent, greatest(b.fork_seq + 1, s.lo), s.len
      FROM s JOIN {s}.aixgo_branches b ON b.session_id = p_session AND b.branch = s.head
    UNION ALL
    SELECT b.branch, b.parent, greatest(b.fork_seq + 1, s.lo), w.lo - 1
      FROM walk w CROSS JOIN s
      JOIN {s}.aixgo_branches b ON b.session_id = p_session AND b.branch = w.parent
     WHERE w.lo > s.lo
)
SELECT m.seq, m.id, m.message
  FROM walk w CROSS JOIN LATERAL (
       SELECT m.seq, m.id, m.message FROM {s}.aixgo_messages m
        WHERE m.session_id = p_session AND m.branch = w.branch
          AND m.seq BETWEEN w.lo AND w.hi
       OFFSET 0) m
 ORDER BY m.seq
$$;

-- Every session's current history, for SQL users: filter it by session_id.
CREATE VIEW {s}.aixgo_current_messages AS
SELECT s.id AS session_id, h.seq, h.id, h.message
  FROM {s}.aixgo_sessions s CROSS JOIN LATERAL {s}.aixgo_history(s.id) h;

-- Append a batch (a JSON array of messages) in one statement; return the history's length
-- before it. The UPDATE takes the session row lock and bumps the count first, so every
-- statement after it sees what committed before (a volatile function takes a fresh snapshot
-- per statement). Errors roll the whole call back:
--   AXS01 no such session;  AXC09 expected_seq does not match (message: the actual length);
--   AXR01 or unique_violation (23505): some ids of the batch are stored already; call
--         aixgo_append_replay instead.
CREATE FUNCTION {s}.aixgo_append(p_session text, p_batch jsonb, p_expected bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer := jsonb_array_length(p_batch);
    v_head integer;
    v_len bigint;
    v_conflict boolean;
BEGIN
    UPDATE {s}.aixgo_sessions s
       SET message_count = s.message_count + v_n,
           updated_at = greatest(clock_timestamp(), s.updated_at)
     WHERE s.id = p_session
    RETURNING s.head, s.message_count - v_n INTO v_head, v_len;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % does not exist', p_session USING ERRCODE = 'AXS01';
    END IF;
    -- A batch holding an id stored before goes the careful way. On branch 0 (never
    -- restored: it owns the whole history) the unique index (session_id, id, branch) finds
    -- such an id as the INSERT runs (unique_violation), so the probe is needed only after a
    -- restore, or to tell a conflict from a repeated batch. It tests (session_id, id) alone,
    -- so its only useful index is aixgo_messages_id (with a seq bound too, a generic plan
    -- may range-scan the whole history by primary key).
    v_conflict := p_expected IS NOT NULL AND p_expected <> v_len;
    IF (v_head <> 0 OR v_conflict) AND EXISTS (
        SELECT 1 FROM {s}.aixgo_messages m
         WHERE m.session_id = p_session
           AND m.id = ANY (ARRAY(SELECT e ->> 'id' FROM jsonb_array_elements(p_batch) e))
    ) THEN
        RAISE EXCEPTION 'part of the batch is stored already' USING ERRCODE = 'AXR01';
    END IF;
    IF v_conflict THEN
        RAISE EXCEPTION '%', v_len USING ERRCODE = 'AXC09';
    END IF;
    -- The seq goes into the stored JSON too: a message keeps its position in every history
    -- that contains it, so reads return rows as they are.
    INSERT INTO {s}.aixgo_messages (session_id, branch, seq, id, message)
    SELECT p_session, v_head, v_len + e.o, e.m ->> 'id',
           jsonb_set(e.m, '{seq}', to_jsonb(v_len + e.o))
      FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS e (m, o);
    RETURN v_len;
END
$$;

-- The careful append, for batches holding messages stored before (retries, replays): lock
-- the session, return the messages of the batch already in the current history, check
-- expected_seq, store the rest. Rows: (pos, seq, stored json) per message of the batch
-- already stored (pos is 1-based in the batch); then (0, length before, NULL) on success,
-- or (-1, length, NULL) alone, with nothing stored, when expected_seq does not match.
CREATE FUNCTION {s}.aixgo_append_replay(p_session text, p_batch jsonb, p_expected bigint)
RETURNS TABLE (pos integer, stored_seq bigint, stored text)
LANGUAGE plpgsql AS $$
DECLARE
    v_ids text[] := ARRAY(SELECT e ->> 'id' FROM jsonb_array_elements(p_batch) AS e);
    v_head integer;
    v_len bigint;
    v_known text[] := '{}';
    v_fresh integer;
    r record;
BEGIN
    SELECT s.head, s.message_count INTO v_head, v_len
      FROM {s}.aixgo_sessions s WHERE s.id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % does not exist', p_session USING ERRCODE = 'AXS01';
    END IF;
    -- Live means on the walk from the head branch (lineage.py: Lineage.is_live).
    FOR r IN
        WITH RECURSIVE walk (branch, parent, lo, hi) AS (
            SELECT b.branch, b.parent, b.fork_seq + 1, v_len
              FROM {s}.aixgo_branches b
             WHERE b.session_id = p_session AND b.branch = v_head
            UNION ALL
            SELECT b.branch, b.parent, b.fork_seq + 1, w.lo - 1
              FROM walk w JOIN {s}.aixgo_branches b
                ON b.session_id = p_session AND b.branch = w.parent
             WHERE w.lo > 1
        )
        SELECT u.o::integer AS o, u.id, m.seq, m.message::text AS message
          FROM unnest(v_ids) WITH ORDINALITY AS u (id, o)
         CROSS JOIN LATERAL (
               SELECT m.branch, m.seq, m.message FROM {s}.aixgo_messages m
                WHERE m.session_id = p_session AND m.id = u.id
               OFFSET 0) m
          JOIN walk w ON w.branch = m.branch AND m.seq BETWEEN w.lo AND w.hi
    LOOP
        pos := r.o; stored_seq := r.seq; stored := r.message;
        RETURN NEXT;
        v_known := v_known || r.id;
    END LOOP;
    v_fresh := cardinality(v_ids) - cardinality(v_known);
    IF v_fresh > 0 THEN
        IF p_expected IS NOT NULL AND p_expected <> v_len THEN
            pos := -1; stored_seq := v_len; stored := NULL;
            RETURN NEXT;
            RETURN;
        END IF;
        INSERT INTO {s}.aixgo_messages (session_id, branch, seq, id, message)
        SELECT p_session, v_head, v_len + f.n, f.id,
               jsonb_set(f.m, '{seq}', to_jsonb(v_len + f.n))
          FROM (SELECT e.m ->> 'id' AS id, e.m, row_number() OVER (ORDER BY e.o) AS n
                  FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS e (m, o)
                 WHERE (e.m ->> 'id') <> ALL (v_known)) f;
        UPDATE {s}.aixgo_sessions s
           SET message_count = v_len + v_fresh,
               updated_at = greatest(clock_timestamp(), s.updated_at)
         WHERE s.id = p_session;
    END IF;
    pos := 0; stored_seq := v_len; stored := NULL;
    RETURN NEXT;
END
$$;

-- Restore: record the head as checkpoint p_undo, then start a new branch holding the
-- checkpoint's history. Nothing is deleted or rewritten. Returns the undo checkpoint's seq
-- and time. Missing session: AXS01; missing checkpoint: AXC01; p_undo taken: 23505.
CREATE FUNCTION {s}.aixgo_restore(p_session text, p_checkpoint text, p_undo text)
RETURNS TABLE (undo_seq bigint, undo_created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_head integer;
    v_len bigint;
    v_now timestamptz := clock_timestamp();
    t_branch integer;
    t_seq bigint;
    v_owner integer;
    v_fork bigint;
    v_parent integer;
    v_new integer;
BEGIN
    SELECT s.head, s.message_count INTO v_head, v_len
      FROM {s}.aixgo_sessions s WHERE s.id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % does not exist', p_session USING ERRCODE = 'AXS01';
    END IF;
    SELECT c.branch, c.seq INTO t_branch, t_seq
      FROM {s}.aixgo_checkpoints c WHERE c.session_id = p_session AND c.id = p_checkpoint;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'checkpoint % does not exist', p_checkpoint USING ERRCODE = 'AXC01';
    END IF;
    INSERT INTO {s}.aixgo_checkpoints (session_id, id, branch, seq, created_at, label)
    VALUES (p_session, p_undo, v_head, v_len, v_now, 'before-restore');
    -- The new branch's parent is the branch that owns message t_seq (Lineage.owner), so a
    -- tail read never walks through branches that own nothing it needs.
    IF t_seq > 0 THEN
        v_owner := t_branch;
        LOOP
            SELECT b.fork_seq, b.parent INTO v_fork, v_parent
              FROM {s}.aixgo_branches b WHERE b.session_id = p_session AND b.branch = v_owner;
            EXIT WHEN t_seq > v_fork OR v_parent IS NULL;
            v_owner := v_parent;
        END LOOP;
    END IF;
    SELECT max(b.branch) + 1 INTO v_new FROM {s}.aixgo_branches b WHERE b.session_id = p_session;
    INSERT INTO {s}.aixgo_branches (session_id, branch, parent, fork_seq)
    VALUES (p_session, v_new, v_owner, t_seq);
    UPDATE {s}.aixgo_sessions s
       SET head = v_new, message_count = t_seq, updated_at = greatest(v_now, s.updated_at)
     WHERE s.id = p_session;
    undo_seq := v_len; undo_created_at := v_now;
    RETURN NEXT;
END
$$;

-- Delete a session with everything it owns; false if there is no such session.
CREATE FUNCTION {s}.aixgo_delete_session(p_session text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    -- Lock first, so an append or restore in flight finishes before the rows go.
    PERFORM 1 FROM {s}.aixgo_sessions s WHERE s.id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM {s}.aixgo_messages m WHERE m.session_id = p_session;
    DELETE FROM {s}.aixgo_branches b WHERE b.session_id = p_session;
    DELETE FROM {s}.aixgo_checkpoints c WHERE c.session_id = p_session;
    DELETE FROM {s}.aixgo_sessions s WHERE s.id = p_session;
    RETURN true;
END
$$;
"""

# Appending one message (Session.append_message: most appends) with less work than
# aixgo_append, which unpacks a JSON array and rebuilds each element with jsonb_set. Here the
# id comes as its own parameter and the message as JSON text, whose seq is set by appending a
# "seq" member before the text is parsed (in JSON input to jsonb the last of duplicate keys
# wins), so the message is parsed once and never taken apart. The probe for a stored id is a
# nested IF, so on a never-restored session without expected_seq no subquery is even planned.
_V2 = r"""
-- Append one message, given as a JSON object (text) and its id; return the history's length
-- before it. Same locking, checks and errors as aixgo_append.
CREATE FUNCTION {s}.aixgo_append_one(p_session text, p_id text, p_message text,
                                     p_expected bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_head integer;
    v_len bigint;
    v_conflict boolean;
BEGIN
    UPDATE {s}.aixgo_sessions s
       SET message_count = s.message_count + 1,
           updated_at = greatest(clock_timestamp(), s.updated_at)
     WHERE s.id = p_session
    RETURNING s.head, s.message_count - 1 INTO v_head, v_len;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % does not exist', p_session USING ERRCODE = 'AXS01';
    END IF;
    v_conflict := p_expected IS NOT NULL AND p_expected <> v_len;
    IF v_head <> 0 OR v_conflict THEN
        IF EXISTS (SELECT 1 FROM {s}.aixgo_messages m
                    WHERE m.session_id = p_session AND m.id = p_id) THEN
            RAISE EXCEPTION 'the message is stored already' USING ERRCODE = 'AXR01';
        END IF;
        IF v_conflict THEN
            RAISE EXCEPTION '%', v_len USING ERRCODE = 'AXC09';
        END IF;
    END IF;
    INSERT INTO {s}.aixgo_messages (session_id, branch, seq, id, message)
    VALUES (p_session, v_head, v_len + 1, p_id,
            (left(p_message, -1) || ',"seq":' || (v_len + 1) || '}')::jsonb);
    RETURN v_len;
END
$$;
"""

# Turn leases: one row per session that ever took one, kept after a release (owner NULL) so
# the token only ever grows for that session. Expiry is decided by the server's clock alone.
_V3 = r"""
CREATE TABLE {s}.aixgo_turns (
    session_id text COLLATE "C" PRIMARY KEY
               REFERENCES {s}.aixgo_sessions (id) ON DELETE CASCADE,
    owner      text COLLATE "C",
    token      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "sessions, branches, messages, checkpoints", _V1),
    Migration(2, "aixgo_append_one: one message, parsed once", _V2),
    Migration(3, "aixgo_turns: per-session turn leases with fencing tokens", _V3),
]
