"""Progress of long work in logs: plain periodic lines when stdout is not a terminal.

On a terminal lobgym shows rich progress bars. In CI logs, under ``nohup`` or through a pipe rich
draws nothing until the end, so :class:`ProgressLines` prints the same progress as plain lines
instead (no control codes), e.g.::

    train: 40,960/300,000 timesteps (13.7%), 2,100 steps/s, elapsed 19s, eta 2m03s, last eval return 4.12

one at the start, then at most one every ``LOBGYM_PROGRESS_INTERVAL`` seconds (default 15), and one
at the end.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any

INTERVAL_VARIABLE = "LOBGYM_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 15.0


def is_terminal(console: Any = None) -> bool:
    """Whether progress should be drawn as a live rich bar.

    It should when ``console`` (default: a rich console on stdout) writes to a terminal, as rich decides
    it (``FORCE_TERMINAL`` etc. are honoured).
    """
    if console is None:
        from rich.console import Console

        console = Console()
    return bool(console.is_terminal)


def bar(label: str, *fields: str, remaining: bool = True, **kwargs: Any) -> Any:
    """The rich progress bar of lobgym.

    Columns: ``label``, the bar, done/total, text columns from the ``fields`` templates (e.g.
    ``"lr {task.fields[lr]}"``), elapsed and (with ``remaining``) remaining time. ``kwargs`` go to
    :class:`rich.progress.Progress`.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), *map(TextColumn, fields),
               TimeElapsedColumn(), *([TimeRemainingColumn()] if remaining else [])]
    return Progress(*columns, **kwargs)


def interval_seconds() -> float:
    """Seconds between plain progress lines: ``LOBGYM_PROGRESS_INTERVAL``, else 15."""
    raw = os.environ.get(INTERVAL_VARIABLE)
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{INTERVAL_VARIABLE} = {raw!r}: allowed: a number of seconds >= 0")
    return value


def duration(seconds: float) -> str:
    """``45s``, ``2m03s``, ``1h02m``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLines:
    """Plain progress lines for ``what``.

    Each line shows ``done`` of ``total`` ``unit``, the rate (when ``rate_unit`` is given), elapsed and
    remaining time, and a caller's detail.

    Args:
        what: the line's prefix (``train``, ``study``, ...).
        total: the amount of work.
        unit: what ``total`` counts (``timesteps``, ``trials``).
        rate_unit: shows ``<rate> <rate_unit>/s`` when given.
        start: work already done when the clock starts (a resumed run): the rate counts from it.
        interval: seconds between lines (default :func:`interval_seconds`).
        file: where lines go (default stdout).
        heartbeat: also print from a background thread every ``interval`` while no update comes
            (for work that reports only when a long piece of it ends).
    """

    def __init__(self, what: str, total: float, unit: str, *, rate_unit: str | None = None, start: float = 0,
                 interval: float | None = None, file: IO[str] | None = None, heartbeat: bool = False):
        self.what, self.total, self.unit, self.rate_unit = what, total, unit, rate_unit
        self.interval = interval_seconds() if interval is None else interval
        self.file = file
        self.done, self.detail = start, ""
        self._start = start
        self._t0 = time.monotonic()
        self._last: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True) if heartbeat else None

    def __enter__(self) -> ProgressLines:
        self.begin()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end()

    def begin(self) -> None:
        """The first line (and the heartbeat thread)."""
        self._t0 = time.monotonic()
        self._emit()
        if self._thread is not None:
            self._thread.start()

    def update(self, done: float, detail: str | None = None, force: bool = False) -> None:
        """Record progress; prints a line if ``interval`` seconds passed since the last one (or ``force``)."""
        with self._lock:
            self.done = done
            if detail is not None:
                self.detail = detail
            due = self._last is None or time.monotonic() - self._last >= self.interval
        if due or force:
            self._emit()

    def end(self, detail: str | None = None) -> None:
        """The last line; stops the heartbeat."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()
        if detail is not None:
            self.detail = detail
        self._emit()

    def line(self) -> str:
        """The current progress as one line."""
        elapsed = time.monotonic() - self._t0
        parts = [f"{self.what}: {self.done:,.0f}/{self.total:,.0f} {self.unit}"
                 + (f" ({100 * self.done / self.total:.1f}%)" if self.total else "")]
        rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
        if self.rate_unit is not None:
            parts.append(f"{rate:,.0f} {self.rate_unit}/s")
        parts.append(f"elapsed {duration(elapsed)}")
        if 0 < self.done < self.total and rate > 0:
            parts.append(f"eta {duration((self.total - self.done) / rate)}")
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)

    def _emit(self) -> None:
        with self._lock:
            self._last = time.monotonic()
            print(self.line(), file=self.file or sys.stdout, flush=True)

    def _beat(self) -> None:
        while not self._stop.wait(max(self.interval, 0.05)):
            with self._lock:
                quiet = self._last is None or time.monotonic() - self._last >= self.interval
            if quiet:
                self._emit()
