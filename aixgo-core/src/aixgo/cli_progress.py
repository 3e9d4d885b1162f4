"""Progress of a long CLI operation (export, import, ...) on stderr.

On a terminal: a bar with the count done of the total, the rate and the time left (rich's
progress display). Not on a terminal (a CI log, a file): nothing, or, when asked for, one plain
line every ``every`` items and one at the end, so a log shows the operation moving without a
line per item.

>>> import io
>>> out = io.StringIO()
>>> with ProgressReport("exporting", show=True, total=5, every=2, stream=out) as p:
...     for done in range(1, 6):
...         p.update(done)
>>> [line.split(",")[0] for line in out.getvalue().splitlines()]
['exporting: 2/5 sessions', 'exporting: 4/5 sessions', 'exporting: 5/5 sessions']
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["EVERY", "HELP", "ProgressReport"]

#: Items between two plain progress lines when stderr is not a terminal.
EVERY = 100

#: The ``--progress/--no-progress`` help text of the commands that show progress.
HELP = (
    "Progress on stderr. On a terminal (the default there): a bar with count, rate and time "
    f"left. Elsewhere: nothing, or with --progress one line per {EVERY} sessions."
)


def _bar(stream: TextIO, unit: str) -> Progress:
    """rich's progress display on ``stream``: description, bar, count of total, percentage,
    rate, time left, detail. rich is imported here, by the commands that draw a bar only."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        """Items per second, in the operation's own unit."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            shown = "-" if speed is None else f"{speed:,.1f}"
            return Text(f"{shown} {unit}/s", style="progress.data.speed")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        Rate(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[detail]}"),
        console=Console(file=stream),
    )


class ProgressReport:
    """Progress of one operation, shown as the module docs say. ``show``: ``None`` for a bar on
    a terminal and nothing elsewhere, ``True`` for plain lines too, ``False`` for nothing.
    Use it as a context manager; :meth:`update` with the count done so far."""

    def __init__(
        self,
        label: str,
        *,
        show: bool | None,
        total: int | None = None,
        unit: str = "sessions",
        every: int = EVERY,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.every = every
        self.stream = sys.stderr if stream is None else stream
        terminal = self.stream.isatty()
        self.mode = "off" if show is False else "bar" if terminal else "lines" if show else "off"
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._done = 0
        self._printed = 0
        self._detail = ""

    @property
    def active(self) -> bool:
        """Whether anything is shown (so a caller may skip work only a display needs)."""
        return self.mode != "off"

    def __enter__(self) -> ProgressReport:
        self._started = time.monotonic()
        if self.mode == "bar":
            self._bar = _bar(self.stream, self.unit)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, detail="")
        return self

    def set_total(self, total: int | None) -> None:
        """The total, once known."""
        self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def update(self, done: int, detail: str = "") -> None:
        """``done`` items of the total are finished; ``detail`` is shown beside the count."""
        self._done, self._detail = done, detail
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, detail=detail)
        elif self.mode == "lines" and done // self.every > self._printed // self.every:
            self._line()

    def _line(self) -> None:
        of = f"/{self.total:,}" if self.total is not None else ""
        elapsed = time.monotonic() - self._started
        rate = f"{self._done / elapsed:,.1f}" if elapsed > 0 else "-"
        detail = f", {self._detail}" if self._detail else ""
        self.stream.write(
            f"{self.label}: {self._done:,}{of} {self.unit}{detail}, {rate} {self.unit}/s\n"
        )
        self.stream.flush()
        self._printed = self._done

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the display: the bar stays as it last was; plain lines end with the final count."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.mode == "lines" and self._done != self._printed:
            self._line()
