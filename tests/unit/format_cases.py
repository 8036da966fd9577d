"""Cases that the tests of the built-in formats share: zones, columns, many rows.

They draw hostile cells and write files with the test kit, as a plugin's tests do::

    from exportd.testing import hostile_columns, hostile_rows, write_export
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exportd import Batch, Column, Format
from exportd.testing import write_export

# (zone, an aware UTC moment, that moment in RFC 3339 with the zone's offset, as
# msgspec renders it): both sides of DST changes, and the UTC "Z" form.
ZONE_CASES: tuple[tuple[str, datetime, str], ...] = (
    # Helsinki springs forward at 03:00 local (01:00 UTC) on 31 March 2024.
    ("Europe/Helsinki", datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC), "2024-03-31T02:59:59+02:00"),
    ("Europe/Helsinki", datetime(2024, 3, 31, 1, 0, 0, tzinfo=UTC), "2024-03-31T04:00:00+03:00"),
    # Los Angeles springs forward at 02:00 local (10:00 UTC) on 10 March 2024...
    ("America/Los_Angeles", datetime(2024, 3, 10, 9, 59, tzinfo=UTC), "2024-03-10T01:59:00-08:00"),
    ("America/Los_Angeles", datetime(2024, 3, 10, 10, 0, tzinfo=UTC), "2024-03-10T03:00:00-07:00"),
    # ...and falls back at 02:00 local (09:00 UTC) on 3 November: 01:30 happens twice.
    ("America/Los_Angeles", datetime(2024, 11, 3, 8, 30, tzinfo=UTC), "2024-11-03T01:30:00-07:00"),
    ("America/Los_Angeles", datetime(2024, 11, 3, 9, 30, tzinfo=UTC), "2024-11-03T01:30:00-08:00"),
    ("UTC", datetime(2024, 11, 3, 9, 30, 0, 1000, tzinfo=UTC), "2024-11-03T09:30:00.001000Z"),
)


# One column of every type, with the roles of a transcript.
MIXED = [
    Column("id", "integer"),
    Column("sent_at", "datetime", "time"),
    Column("author", "text", "author"),
    Column("real", "boolean"),
    Column("day", "date"),
    Column("score", "float"),
]


SYNTHETIC_COLUMNS = (
    Column("id", "integer"),
    Column("sent_at", "datetime", "time"),
    Column("author", "text", "author"),
    Column("body", "text", "text"),
    Column("real", "boolean"),
)


def synthetic_batches(count: int, size: int = 1000) -> Iterator[list[tuple[Any, ...]]]:
    """``count`` batches of rows fitting :data:`SYNTHETIC_COLUMNS`, made one at a time."""
    start = datetime(2024, 3, 1, tzinfo=UTC)
    for batch in range(count):
        yield [
            (n, start.replace(microsecond=n % 1000), f"user {n % 97}", f"message {n} =1+1", True)
            for n in range(batch * size, (batch + 1) * size)
        ]


def peak_memory_of_export(
    path: Path,
    format_: Format[Any],
    columns: Sequence[Column],
    batches: Callable[[], Iterable[Batch]],
    tries: int = 2,
) -> int:
    """The peak of Python allocations (bytes) while the batches that ``batches()`` gives
    are written to ``path``: the least of ``tries`` writes, since tracemalloc counts what
    any other thread (one a previous test left) allocates meanwhile too.

    Have ``batches()`` return a generator so that only the batch being written exists.
    """
    peaks = []
    for _ in range(tries):
        tracemalloc.start()
        try:
            write_export(path, format_, columns, batches())
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks)
