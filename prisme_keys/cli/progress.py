"""Progress on long work: a rich progress bar on stderr (count, rate, ETA).

The core reports progress through a plain callback ``progress(done, total)`` (``total`` is
``None`` when unknown); :class:`Progress` is such a callback. It draws nothing unless stderr is
a terminal and the command is neither ``-q`` nor ``--json``, and it waits until the work has
run for :data:`DELAY` seconds, so quick commands never import rich nor flash a bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from prisme_keys.cli.output import is_tty

#: Seconds of work before the bar appears (shorter work shows nothing).
DELAY = 0.5
#: Seconds between two redraws requested by the callback.
INTERVAL = 0.1


def wanted(st: Any, *, streams_to_stdout: bool = False) -> bool:
    """Whether a bar may be drawn: stderr a terminal, no ``-q``/``--json``.

    ``streams_to_stdout``: the command writes results line by line while it works (``mint``,
    ``verify --batch``); on a terminal those lines are the progress, so the bar shows only
    when stdout is redirected.
    """
    if st.quiet or st.json or not is_tty(sys.stderr):
        return False
    return not (streams_to_stdout and is_tty(sys.stdout))


class Progress:
    """A progress callback ``(done, total)`` that renders a rich bar on stderr once work runs long.

    Use as a context manager so the bar is closed (cursor restored) however the work ends::

        with Progress("minting", "tokens", enabled=wanted(st)) as progress:
            core_function(..., progress=progress)

    Args:
        what: the description before the bar (``"minting"``).
        unit: the counted things, for the rate column (``"tokens"`` gives ``1,234 tokens/s``).
        enabled: draw at all (see :func:`wanted`).
        estimate_total: for work of unknown size, ``done -> estimated total`` (or ``None``),
            e.g. from the bytes of a regular file read so far; gives an ETA.
    """

    def __init__(
        self,
        what: str,
        unit: str,
        *,
        enabled: bool,
        estimate_total: Callable[[int], int | None] | None = None,
    ) -> None:
        self.what, self.unit, self.enabled = what, unit, enabled
        self.estimate_total = estimate_total
        self._start = time.monotonic()
        self._next = self._start + DELAY
        self._bar: Any = None
        self._task: Any = None
        self._last: tuple[int, int | None] = (0, None)

    def __call__(self, done: int, total: int | None = None) -> None:
        """Record that ``done`` of ``total`` items are finished (cheap: redraws at most every 0.1 s)."""
        if not self.enabled:
            return
        self._last = (done, total)
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + INTERVAL
        self._draw(done, total)

    def _draw(self, done: int, total: int | None) -> None:
        if total is None and self.estimate_total is not None:
            total = self.estimate_total(done)
            if total is not None:
                total = max(total, done)
        if self._bar is None:
            self._bar = _make_bar(self.unit)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=total, start=True)
            # the rate counts from the start of the work, not from the first redraw
            self._bar.tasks[0].start_time = self._bar.get_time() - (time.monotonic() - self._start)
        self._bar.update(self._task, completed=done, total=total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is None:
            return
        if exc_type is None:  # the last count, so the bar ends at what was done
            done, total = self._last
            self._bar.update(self._task, completed=done, total=total if total is not None else done)
        self._bar.stop()


def _make_bar(unit: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class CountColumn(ProgressColumn):
        """``1,234/20,000``, or ``1,234`` when the total is unknown."""

        def render(self, task: Any) -> Text:
            done = f"{int(task.completed):,}"
            return Text(f"{done}/{int(task.total):,}" if task.total is not None else done, style="progress.download")

    class RateColumn(ProgressColumn):
        """``1,234 tokens/s`` from the count and the time since the work started."""

        def render(self, task: Any) -> Text:
            elapsed = task.elapsed
            if not elapsed or not task.completed:
                return Text(f"- {unit}/s")
            return Text(f"{task.completed / elapsed:,.0f} {unit}/s")

    class EtaColumn(ProgressColumn):
        """``ETA 0:01:05`` while the total is known and work remains, else nothing."""

        max_refresh = 0.5

        def render(self, task: Any) -> Text:
            left = task.time_remaining
            if task.total is None or left is None or task.finished:
                return Text("")
            minutes, seconds = divmod(int(left), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"ETA {hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

    console = Console(file=sys.stderr, stderr=True, highlight=False)
    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        CountColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        EtaColumn(),
        console=console,
        redirect_stdout=False,
        redirect_stderr=False,
        transient=False,
        refresh_per_second=8,
    )
