"""The job, part and attempt a log line is about.

Code that works for one job says so with :func:`job_context` around the work; every line
logged inside (in the same task or thread, and in the threads it starts with
:func:`asyncio.to_thread`, which copies the context) gets the fields, added by
:class:`JobFields` (a filter of the services' handler).  A call may also give them
itself: ``log.info(..., extra={"job_id": ...})`` wins over the context.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple


class JobRef(NamedTuple):
    """Which job (and, for a task, which part of which attempt) the work is for."""

    job_id: str
    part: int | None = None
    attempt: int | None = None


FIELDS = ("job_id", "part", "attempt")
"""The record attributes :class:`JobFields` sets, in :class:`JobRef`'s order."""

_current: ContextVar[JobRef | None] = ContextVar("exportd_log_job", default=None)


@contextmanager
def job_context(job_id: str, part: int | None = None, attempt: int | None = None) -> Iterator[None]:
    """Have every line logged in the block carry ``job_id`` (and ``part`` and ``attempt``,
    if given)."""
    token = _current.set(JobRef(job_id, part, attempt))
    try:
        yield
    finally:
        _current.reset(token)


def current_job() -> JobRef | None:
    """The job of the innermost :func:`job_context` around this call, if any."""
    return _current.get()


class JobFields(logging.Filter):
    """Sets ``job_id``, ``part`` and ``attempt`` on each record from the current
    :func:`job_context`, where the call did not give them (``extra=``); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; keep the record."""
        job = _current.get()
        if job is not None:
            for name, value in zip(FIELDS, job, strict=True):
                if value is not None and not hasattr(record, name):
                    setattr(record, name, value)
        return True
