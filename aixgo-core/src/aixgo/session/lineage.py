"""Lineage: how checkpoints and restore work without ever rewriting history.

A session's messages live on *branches*. Branch 0 is the root. Restoring to a checkpoint
starts a new branch that inherits the first ``fork_seq`` messages of the history it came from
and grows from there; older branches are never changed. A checkpoint is just
``(branch, seq)``, so it means the same history forever, and restore is O(1).

The current history is the head branch's: its own messages ``fork_seq+1 .. length``, preceded
by its parent's history up to ``fork_seq``, and so on. A branch's parent is always the branch
that *owns* message ``fork_seq`` (not merely one that inherited it), so walking back from the
head visits at most ``n + 1`` branches to collect the last ``n`` messages, however many
restores came before.

Backends keep the branch table (one small row per restore) and store each message under
``(branch, seq)``; :class:`Lineage` tells them which keys make up a history.

>>> lin = Lineage()
>>> lin.append(3)                     # messages 1..3 on branch 0
(0, 1)
>>> cp = lin.head_ref()               # a checkpoint at seq 3
>>> lin.append(2)                     # messages 4..5 on branch 0
(0, 4)
>>> lin.move_head(*cp)                # restore: branch 1 inherits 1..3
1
>>> lin.append(1)                     # message 4 of the new history lives on branch 1
(1, 4)
>>> lin.spans(lin.head, 1, 4)         # where messages 1..4 of the history are stored
[(0, 1, 3), (1, 4, 4)]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Branch", "Lineage"]


@dataclass(slots=True)
class Branch:
    """One branch: it inherits messages ``1..fork_seq`` from ``parent`` and owns
    ``fork_seq+1 .. length``."""

    parent: int | None
    fork_seq: int
    length: int

    def to_list(self) -> list[int | None]:
        """A JSON-friendly form, ``[parent, fork_seq, length]``."""
        return [self.parent, self.fork_seq, self.length]


class Lineage:
    """The branch table of one session and its head. Pure bookkeeping, no I/O."""

    __slots__ = ("branches", "head")

    def __init__(self, branches: list[Branch] | None = None, head: int = 0) -> None:
        self.branches: list[Branch] = branches if branches is not None else [Branch(None, 0, 0)]
        self.head = head

    @property
    def length(self) -> int:
        """How many messages the current history has."""
        return self.branches[self.head].length

    def head_ref(self) -> tuple[int, int]:
        """``(branch, seq)`` of the current head: what a checkpoint records."""
        return self.head, self.length

    def append(self, count: int) -> tuple[int, int]:
        """Grow the head branch by ``count`` messages; return ``(branch, first_seq)``."""
        head = self.branches[self.head]
        first = head.length + 1
        head.length += count
        return self.head, first

    def owner(self, branch: int, seq: int) -> int | None:
        """The branch that stores message ``seq`` of ``branch``'s history (``None`` for 0)."""
        if seq <= 0:
            return None
        b: int | None = branch
        while b is not None and seq <= self.branches[b].fork_seq:
            b = self.branches[b].parent
        return b

    def move_head(self, branch: int, seq: int) -> int:
        """Make the history of checkpoint ``(branch, seq)`` current by starting a new branch;
        return its number. Nothing existing changes."""
        if not 0 <= seq <= self.branches[branch].length:
            raise ValueError(f"seq {seq} is outside branch {branch}")
        self.branches.append(Branch(self.owner(branch, seq), seq, seq))
        self.head = len(self.branches) - 1
        return self.head

    def spans(self, branch: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """``(branch, first_seq, last_seq)`` runs that hold messages ``lo..hi`` of
        ``branch``'s history, oldest first. Cost grows with the runs returned, not with
        the history."""
        runs: list[tuple[int, int, int]] = []
        b: int | None = branch
        while hi >= lo and b is not None:
            start = max(self.branches[b].fork_seq + 1, lo)
            if start <= hi:
                runs.append((b, start, hi))
            hi = start - 1
            b = self.branches[b].parent
        runs.reverse()
        return runs

    def tail_spans(self, last: int | None) -> list[tuple[int, int, int]]:
        """The runs of the current history's final ``last`` messages (all if ``None``)."""
        hi = self.length
        lo = 1 if last is None else max(1, hi - last + 1)
        return self.spans(self.head, lo, hi)

    def is_live(self, branch: int, seq: int) -> bool:
        """Whether the message stored at ``(branch, seq)`` is in the current history."""
        return seq <= self.length and self.owner(self.head, seq) == branch

    def to_list(self) -> list[list[int | None]]:
        """The branch table in a JSON-friendly form."""
        return [b.to_list() for b in self.branches]
