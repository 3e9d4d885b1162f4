"""Recent: the message records a store read lately, as read and as decoded, so that reading
them again costs a byte comparison and a copy instead of a checksum and a parse.

What a read returns rests on the bytes alone. An entry holds a record line exactly as it was
read from the log, after its checksum and seq checked out, and the message decoded from it.
A later read, which locks the log and catches up with other writers first as every read does,
uses an entry only for a line it has just read again at the same offset, if that line is byte
for byte the entry's and stands at the entry's seq. The same bytes decode to the same message,
so the read returns what decoding would, whoever appended in between; a byte changed on disk
fails the comparison, and the record is then checked (and refused) as on a first read. The key
(session id, log offset) only says which entry to compare with.

Entries are never handed out: a read returns copies
(:func:`~aixgo.session.codec.stored_copy`), so no caller shares a list or dict with the store
or with another caller. A session keeps the records of its latest read only, and the store
keeps sessions, least recently read forgotten first, up to :data:`BUDGET`.
"""

from __future__ import annotations

from collections import OrderedDict

from aixgo.message import Message

#: Record line and decoded message, by log offset.
Records = dict[int, tuple[bytes, Message]]

#: What the store keeps at most, counted as record bytes plus :data:`OVERHEAD` per message
#: (a decoded message takes about that much beyond its line). A read larger than a quarter
#: of it is not kept.
BUDGET = 8 << 20
OVERHEAD = 1024


class Recent:
    """The records of the latest reads of a store's sessions (see the module docs)."""

    __slots__ = ("_sessions", "_total", "budget")

    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._sessions: OrderedDict[str, tuple[Records, int]] = OrderedDict()
        self._total = 0

    def of(self, session_id: str) -> Records:
        """The records of the session's latest read kept (empty if none); read-only."""
        kept = self._sessions.get(session_id)
        return kept[0] if kept is not None else {}

    def limit(self) -> int:
        """The most one read may weigh to be kept."""
        return self.budget // 4

    def keep(self, session_id: str, records: Records, weight: int) -> None:
        """Keep ``records`` (weighing ``weight``) as the session's, in place of what it had."""
        self.drop(session_id)
        if not records or weight > self.limit():
            return
        self._sessions[session_id] = (records, weight)
        self._total += weight
        while self._total > self.budget:
            self._total -= self._sessions.popitem(last=False)[1][1]

    def drop(self, session_id: str) -> None:
        kept = self._sessions.pop(session_id, None)
        if kept is not None:
            self._total -= kept[1]
