"""The engine's per-job throttle of progress events: one an interval, and no key kept
longer than it matters."""

from __future__ import annotations

from exportd.engine.throttle import Throttle


def test_a_key_passes_once_an_interval() -> None:
    throttle: Throttle[str] = Throttle(1.0)
    assert throttle.passes("a", 10.0)
    assert not throttle.passes("a", 10.5)
    assert not throttle.passes("a", 10.99)
    assert throttle.passes("a", 11.0)
    assert not throttle.passes("a", 11.5)


def test_keys_are_throttled_each_on_its_own() -> None:
    throttle: Throttle[str] = Throttle(1.0)
    assert throttle.passes("a", 0.0)
    assert throttle.passes("b", 0.5)
    assert not throttle.passes("a", 0.9)
    assert throttle.passes("a", 1.0)
    assert not throttle.passes("b", 1.2)
    assert throttle.passes("b", 1.5)


def test_keys_are_forgotten_an_interval_after_they_passed() -> None:
    throttle: Throttle[int] = Throttle(1.0)
    for job in range(10_000):  # a job each millisecond, each passing once
        assert throttle.passes(job, job / 1000)
    assert len(throttle) == 1000  # the last second's
    assert throttle.passes(10_000, 100.0)
    assert len(throttle) == 1
