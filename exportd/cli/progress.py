"""A one-line progress bar for a terminal, redrawn at most ten times a second."""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from exportd.messages import Progress

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
CLEAR_TO_END = "\x1b[K"


class ProgressBar:
    """Shows rows written, the estimated total, a percentage and the rate on ``stream``.

    Meant for a terminal only: :func:`progress_bar` decides whether to make one.
    """

    def __init__(
        self,
        stream: TextIO,
        label: str = "",
        *,
        clock: Callable[[], float] = time.monotonic,
        width: int = 80,
    ) -> None:
        self.stream = stream
        self.label = label
        self.clock = clock
        self.width = width
        self.started = clock()
        self.drawn_at = -math.inf

    def update(self, progress: Progress) -> None:
        """Redraw with ``progress``, unless the last redraw was under 0.1 s ago."""
        now = self.clock()
        if now - self.drawn_at < REDRAW_SECONDS:
            return
        self.drawn_at = now
        line = render(progress, now - self.started, self.label)[: self.width - 1]
        self.stream.write(f"\r{line}{CLEAR_TO_END}")
        self.stream.flush()

    def close(self) -> None:
        """Erase the bar, so that what is printed next starts on a clean line."""
        if self.drawn_at > -math.inf:
            self.stream.write(f"\r{CLEAR_TO_END}")
            self.stream.flush()


def progress_bar(stream: TextIO = sys.stderr, label: str = "") -> ProgressBar | None:
    """A bar on ``stream`` if it is a terminal, else ``None`` (nothing is drawn)."""
    if not stream.isatty():
        return None
    return ProgressBar(stream, label, width=shutil.get_terminal_size().columns)


def render(progress: Progress, elapsed: float, label: str = "") -> str:
    """The bar's text: ``label [#####-----]  50%  500/1,000 rows  250 rows/s``."""
    rate = f"{progress.rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
    if not progress.total:
        counts = f"{progress.rows:,} rows"
        return "  ".join(part for part in (label, counts, rate) if part)
    done = min(progress.rows / progress.total, 1.0)
    filled = round(done * BAR_WIDTH)
    bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:4.0%}"
    counts = f"{progress.rows:,}/{progress.total:,} rows"
    return "  ".join(part for part in (label, bar, counts, rate) if part)
