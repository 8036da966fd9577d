"""At most one event per key an interval, remembering only the keys that still matter.

The engine publishes ``job.progress`` at most once a second per job.  A plain dict of
the last moment per job would grow by every job the engine ever ran; a key whose last
moment is an interval old says nothing any more (the next event passes anyway), so
:class:`Throttle` forgets it.  Keys are kept in the order of their last moment, so the
forgotten ones are always the oldest: each call costs constant time, amortised.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Throttle(Generic[K]):
    """Lets a key pass at most once an ``interval`` (seconds, of a monotonic clock)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: OrderedDict[K, float] = OrderedDict()

    def passes(self, key: K, moment: float) -> bool:
        """Whether ``key`` may pass at ``moment``; if it may, ``moment`` is its last."""
        self._forget(moment)
        if key in self._last:
            return False
        self._last[key] = moment
        return True

    def __len__(self) -> int:
        """How many keys are remembered: those that passed within the interval."""
        return len(self._last)

    def _forget(self, moment: float) -> None:
        while self._last:
            key, last = next(iter(self._last.items()))
            if moment - last < self.interval:
                return
            del self._last[key]
