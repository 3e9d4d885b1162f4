"""Retention: delete sessions by policy, per agent, in bounded batches.

A :class:`RetentionPolicy` names up to three rules; a session any rule selects is deleted:

* ``idle`` — not updated for longer than this;
* ``max_age`` — created longer ago than this;
* ``keep_last`` — beyond the user's ``keep_last`` most recently updated sessions with the
  agent (sessions without a user count as one user).

:func:`sweep` applies policies to a manager's store (``aixgo sessions sweep`` on the command
line), page by page; each deletion goes through the manager, so an audit log records it, and
each agent's sweep adds one ``sweep`` record with the count. Before deleting, a session is read
again and spared if it was used since it was listed.

Trimming a session to its last M messages is not offered: the backend protocol has no way to
drop the start of a history short of rewriting it whole, and a checkpoint into the dropped
part would name a history that no longer exists (restoring it could only fail). Use
``keep_last`` and ``idle`` instead, or export and re-import what you want to keep.

>>> RetentionPolicy.from_mapping({"idle": "30d", "keep_last": 20})
RetentionPolicy(idle=datetime.timedelta(days=30), max_age=None, keep_last=20)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aixgo.audit import audited
from aixgo.errors import ConfigError, SessionNotFound
from aixgo.identifiers import validate_name
from aixgo.message import utc_now
from aixgo.session.manager import SessionManager
from aixgo.session.models import SessionInfo

__all__ = ["RetentionPolicy", "SweepReport", "parse_duration", "policies_from_config", "sweep"]

# ASCII digits only: \d would take look-alikes such as fullwidth digits (U+FF11 for 1).
_DURATION = re.compile(r"\s*(\d{1,12}(?:\.\d{1,9})?)\s*([smhdw]?)\s*", re.ASCII)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RULES = ("idle", "max_age", "keep_last")


def parse_duration(value: object, what: str = "duration") -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"``, a number of seconds or a
    ``timedelta``, as a positive ``timedelta``.

    >>> parse_duration("1.5h")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # An int beyond a float's range is as out of range as any other huge number.
        seconds = float(value) if abs(value) < 1e300 else float("inf")
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ConfigError(f"{what} must be a duration such as 30d, 12h, 90m or 45s, "
                          f"not {value!r}")  # fmt: skip
    if not 0 < seconds < 1e10:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
        raise ConfigError(f"{what} must be positive and under 10,000,000,000 s (317 years), "
                          f"not {shown}")  # fmt: skip
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What to delete of one agent's sessions (see the module docs); ``None`` turns a rule
    off."""

    idle: timedelta | None = None
    max_age: timedelta | None = None
    keep_last: int | None = None

    def __post_init__(self) -> None:
        if self.keep_last is not None and (type(self.keep_last) is not int or self.keep_last < 1):
            raise ConfigError(f"keep_last must be a positive integer, not {self.keep_last!r}")
        for name in ("idle", "max_age"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_duration(value, name))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "retention") -> RetentionPolicy:
        """A policy from config: ``{idle: 30d, max_age: 365d, keep_last: 20}``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping with idle, max_age, keep_last")
        unknown = sorted(set(data) - set(_RULES))
        if unknown:
            raise ConfigError(f"{where}: unknown rule(s) {', '.join(map(str, unknown))}; "
                              f"valid: {', '.join(_RULES)}")  # fmt: skip
        try:
            return cls(**{k: data[k] for k in _RULES if data.get(k) is not None})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def reason(self, info: SessionInfo, rank: int, now: datetime) -> str | None:
        """The rule that selects ``info`` (``rank``: how many of the user's sessions with the
        agent were updated more recently), or ``None``."""
        if self.idle is not None and now - info.updated_at > self.idle:
            return "idle"
        if self.max_age is not None and now - info.created_at > self.max_age:
            return "max_age"
        if self.keep_last is not None and rank >= self.keep_last:
            return "keep_last"
        return None


def policies_from_config(data: object, where: str = "retention") -> dict[str, RetentionPolicy]:
    """``{agent: policy}`` from the config mapping ``{agent: {idle: ..., ...}}``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must map agent names to policies")
    out = {}
    for agent, rules in data.items():
        validate_name(agent, "agent name")
        out[agent] = RetentionPolicy.from_mapping(rules, f"{where}.{agent}")
    return out


@dataclass(slots=True)
class SweepReport:
    """What a sweep did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    #: Sessions looked at.
    examined: int = 0
    #: Sessions deleted (or selected, in a dry run), by rule.
    by_rule: Counter[str] = field(default_factory=Counter)
    #: Their ids, in the order they were selected.
    session_ids: list[str] = field(default_factory=list)
    #: Selected but used since they were listed, so kept.
    spared: int = 0
    #: Whether ``max_deletions`` stopped the sweep before the end (run it again).
    truncated: bool = False

    @property
    def deleted(self) -> int:
        return sum(self.by_rule.values())


Progress = Callable[[str, SweepReport], None]


async def sweep(
    mgr: SessionManager,
    policies: Mapping[str, RetentionPolicy],
    *,
    dry_run: bool = False,
    batch: int = 500,
    max_deletions: int | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> SweepReport:
    """Delete the sessions ``policies`` (``{agent: policy}``) select, listing ``batch`` at a
    time and stopping after ``max_deletions``; ``dry_run`` only reports them. ``progress``
    is called with the agent and the report after each batch."""
    if type(batch) is not int or not 1 <= batch <= 1000:
        raise ConfigError(f"batch must be an integer from 1 to 1000, not {batch!r}")
    report = SweepReport(dry_run=dry_run)
    now = now or utc_now()
    for agent, policy in policies.items():
        validate_name(agent, "agent name")
        if dry_run:
            await _sweep_agent(mgr, agent, policy, report, batch, max_deletions, now, progress)
            continue
        async with audited(mgr.backend, "sweep", agent=agent) as record:
            before = report.deleted
            await _sweep_agent(mgr, agent, policy, report, batch, max_deletions, now, progress)
            record["count"] = report.deleted - before
        if report.truncated:
            break
    return report


async def _sweep_agent(
    mgr: SessionManager,
    agent: str,
    policy: RetentionPolicy,
    report: SweepReport,
    batch: int,
    max_deletions: int | None,
    now: datetime,
    progress: Progress | None,
) -> None:
    ranks: Counter[str | None] = Counter()
    cursor: str | None = None
    while True:
        page = await mgr.list(agent=agent, limit=batch, cursor=cursor)
        for info in page.items:
            report.examined += 1
            rank = ranks[info.user_id]
            ranks[info.user_id] += 1
            rule = policy.reason(info, rank, now)
            if rule is None:
                continue
            if max_deletions is not None and report.deleted >= max_deletions:
                report.truncated = True
                return
            if not report.dry_run and not await _delete_unused(mgr, info):
                report.spared += 1
                continue
            report.by_rule[rule] += 1
            report.session_ids.append(info.id)
        if progress is not None:
            progress(agent, report)
        cursor = page.next_cursor
        if cursor is None:
            return


async def _delete_unused(mgr: SessionManager, listed: SessionInfo) -> bool:
    """Delete the session unless it changed since it was listed; whether it is gone."""
    try:
        fresh = await mgr.backend.get_session(listed.id)
        if fresh.updated_at != listed.updated_at:
            return False
        await mgr.delete(listed.id)
    except SessionNotFound:
        return True  # someone else deleted it meanwhile: gone either way
    return True
