"""Key layout: which Redis keys hold a session, and which hold the listing indexes.

Every key of one session carries the hash tag ``{s:<session id>}``, so in Redis Cluster they
all live in one slot and one script can change them atomically::

    <prefix>{s:<id>}:s   hash  summary: agent, user, created, updated, count, meta, head
                               (current branch), hfork (its fork_seq), nb (branches), idx;
                               and "#<message id>" -> "branch:seq ..." where it was stored
    <prefix>{s:<id>}:b   hash  branch table: branch -> "parent,fork_seq,start" (parent -1: root)
    <prefix>{s:<id>}:m   list  message JSON in the order stored; branch b's own message seq
                               is at index start + seq - fork_seq - 1
    <prefix>{s:<id>}:c   hash  checkpoint id -> "ordinal,branch,seq,created_us,label_json"

Listing indexes are sorted sets of session ids scored by ``updated_at`` in microseconds (exact
in a double until the year 2255); each has its own hash tag, one slot per index::

    <prefix>{x:all}                     every session
    <prefix>{x:a:<agent>}               sessions of one agent
    <prefix>{x:u:<user>}                sessions of one user
    <prefix>{x:au:<agent>:<user>}       sessions of one agent and user
    <prefix>{x:au:<agent>:<user>}:p     Redis Cluster only: the id of the session being
                                        created for that pair right now (get-or-create),
                                        for a few seconds at most

A session's turn lease is not a key of its own: it is four fields of its summary hash
(``lease_owner``, ``lease_token``, ``lease_until``, ``fence``), so it lives, expires and is
deleted with the session.

Agent names and user ids are free text (``:``, braces, spaces, any Unicode), so they appear in
keys only as unpadded base64url of their UTF-8: never raw, never able to close a hash tag.

>>> k = Keys("aixgo:")
>>> k.session("abc")[0]
'aixgo:{s:abc}:s'
>>> k.indexes("assistant", "a:b{c}")[1:]
['aixgo:{x:a:YXNzaXN0YW50}', 'aixgo:{x:u:YTpie2N9}', 'aixgo:{x:au:YXNzaXN0YW50:YTpie2N9}']
"""

from __future__ import annotations

import base64


def _name(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")


class Keys:
    """Key names under one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def session(self, session_id: str) -> list[str]:
        """The four keys of a session, in the order the scripts expect (``KEYS[1..4]``)."""
        base = f"{self.prefix}{{s:{session_id}}}:"
        return [base + "s", base + "b", base + "m", base + "c"]

    def summary_affixes(self) -> tuple[str, str]:
        """What goes before and after a session id to name its summary hash (for listing)."""
        return f"{self.prefix}{{s:", "}:s"

    def index(self, agent: str | None, user_id: str | None) -> str:
        """The index a listing with these filters reads."""
        if agent is not None and user_id is not None:
            return f"{self.prefix}{{x:au:{_name(agent)}:{_name(user_id)}}}"
        if agent is not None:
            return f"{self.prefix}{{x:a:{_name(agent)}}}"
        if user_id is not None:
            return f"{self.prefix}{{x:u:{_name(user_id)}}}"
        return f"{self.prefix}{{x:all}}"

    def claim(self, agent: str, user_id: str) -> str:
        """The marker of a get-or-create in flight for the pair (Redis Cluster only); in the
        slot of the pair's index."""
        return self.index(agent, user_id) + ":p"

    def indexes(self, agent: str, user_id: str | None) -> list[str]:
        """Every index a session of ``agent`` and ``user_id`` belongs to."""
        keys = [self.index(None, None), self.index(agent, None)]
        if user_id is not None:
            keys += [self.index(None, user_id), self.index(agent, user_id)]
        return keys
