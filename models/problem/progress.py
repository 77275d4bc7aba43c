"""Progress of long runs, on stderr.

In a terminal it is a tqdm bar, with its estimate of the time left. Elsewhere
(a log file, a pipe, CI) it is a plain line with the time of day and, with a
total, the time left at the mean pace so far, at most one every INTERVAL
seconds (and the last one), so that a logged run is never silent for minutes
and never floods the log. `enabled=False` (the command line's `--quiet`) prints nothing.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

INTERVAL = 5.0  # seconds between plain progress lines


class Progress:
    """Counts `total` steps of a task named `what`; `note` adds a line of context (a bar's postfix)."""

    def __init__(self, total: int | None, what: str, unit: str = "step", enabled: bool = True):
        self.total, self.what, self.unit = total, what, unit
        self.enabled = enabled
        self.done = 0
        self.started = time.perf_counter()
        self.last_line = -INTERVAL
        self.bar = tqdm(total=total, desc=what, unit=unit, leave=False, file=sys.stderr) \
            if enabled and sys.stderr.isatty() else None

    def update(self, steps: int = 1, note: str = "") -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
        elif self.enabled and (time.perf_counter() - self.last_line >= INTERVAL or self.done == self.total):
            self.line(note)

    def line(self, note: str = "") -> None:
        """A plain line now: time of day, the task, steps done (of the total), elapsed seconds, the estimated
        seconds left, the note."""
        self.last_line = time.perf_counter()
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        elapsed = self.last_line - self.started
        text = f"{time.strftime('%H:%M:%S')} {self.what}: {count} {self.unit}s, {elapsed:.0f} s{self.estimate()}"
        print(text + (f"; {note}" if note else ""), file=sys.stderr, flush=True)

    def estimate(self) -> str:
        """', about N s left' at the mean time per step so far; empty without a total or before the first step."""
        if self.total is None or not 0 < self.done < self.total:
            return ""
        left = (time.perf_counter() - self.started) / self.done * (self.total - self.done)
        return f", about {left:.0f} s left"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
