"""Exports in tests: a format on its own, as the pipeline drives it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import msgspec

from exportd import Batch, Column, ExportInfo, Format, RowWriter, Window

GENERATED_AT = datetime(2024, 4, 1, 8, 30, tzinfo=UTC)
"""The time the kit's exports record as their making, so that the same export writes
the same bytes (see :class:`~exportd.ExportInfo`)."""


def export_info(columns: Sequence[Column], zone: str = "UTC") -> ExportInfo:
    """What a format is told about an export of room r1's March 2024 in ``zone``."""
    return ExportInfo(
        source="rooms",
        params={"room_id": "r1"},
        window=Window(
            start=datetime(2024, 3, 1, tzinfo=UTC),
            end=datetime(2024, 4, 1, tzinfo=UTC),
            timezone=ZoneInfo(zone),
        ),
        columns=columns,
        generated_at=GENERATED_AT,
    )


def write_export(
    path: Path,
    format: Format[Any],
    columns: Sequence[Column],
    batches: Iterable[Batch],
    *,
    options: msgspec.Struct | None = None,
    zone: str = "UTC",
    abort: bool = False,
) -> Path:
    """Write ``batches`` into ``path`` through ``format`` as the pipeline does: ``open``,
    ``write`` once per batch, then ``close`` (``abort`` instead with ``abort=True``, as
    for an export that fails or is canceled).

    The file must stay open throughout, and ``open`` must return a
    :class:`~exportd.RowWriter`: an :class:`AssertionError` naming the format says what
    it broke, as it does when one of those calls raises.
    """
    label = f"format {format.name!r}"
    info = export_info(columns, zone)
    with path.open("wb") as file:
        with blame(label, "open()"):
            writer = format.open(
                file, columns, format.Options() if options is None else options, info
            )
        if not isinstance(writer, RowWriter):
            raise AssertionError(f"{label}: open() must return a RowWriter, got {writer!r}")
        _still_open(file, label, "open()")
        for batch in batches:
            with blame(label, "write()"):
                writer.write(batch)
            _still_open(file, label, "write()")
        finish = writer.abort if abort else writer.close
        step = f"{finish.__name__}()"
        with blame(label, step):
            finish()
        _still_open(file, label, step)
    return path


@contextmanager
def blame(label: str, step: str) -> Iterator[None]:
    """Turn an exception that the plugin ``label`` (``format 'csv'``) raises in ``step``
    into an :class:`AssertionError` that names them (an ``AssertionError`` passes as it is)."""
    try:
        yield
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{label} raised {type(exc).__name__} in {step}: {exc}") from exc


def _still_open(file: BinaryIO, label: str, step: str) -> None:
    """Fail, naming the format ``label``, if it closed ``file`` in ``step``."""
    if file.closed:
        raise AssertionError(
            f"{label} closed the file it was given, in {step}: exportd owns that file "
            "(it flushes, hashes and renames it once the export is complete)"
        )
