"""Exports in tests: which plugins they see, the whole pipeline, a format on its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import msgspec

from exportd import Column, DataStore, ExportInfo, Format, Piece, RowWriter, Settings, Window
from exportd.kernel import batches as forms
from exportd.kernel import pipeline
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.plan import plan_export
from exportd.kernel.validation import convert
from exportd.messages import ExportRequest, FileInfo
from exportd.plugins.manager import Plugins

BATCH_SIZE = 7
"""Rows per batch in the kit's exports: few, so that every test crosses batch boundaries
(a writer carries its state from one batch to the next)."""
GENERATED_AT = datetime(2024, 4, 1, 8, 30, tzinfo=UTC)
"""The time the kit's exports record as their making, so that the same export writes
the same bytes (see :class:`~exportd.ExportInfo`)."""
NO_DATA_STORE = "no-data-store.db"
"""The name of the data store of an export given none: a file that does not exist."""


def data_store(data: Path | DataStore | None, folder: Path) -> DataStore:
    """``data`` as a store: a path is a SQLite file; none, a file in ``folder`` that does
    not exist (:data:`NO_DATA_STORE`)."""
    if isinstance(data, DataStore):
        return data
    return SqliteStore(data or folder / NO_DATA_STORE)


class PluginSet:
    """Which plugins the kit's exports see: ``modules`` (plugin modules that are not
    installed, with their ``@hookimpl`` functions), exportd's built-ins unless
    ``builtins=False``, and the installed plugin packages (the ``exportd`` entry points)
    unless ``installed=False``.

    Give ``installed=False`` when one of ``modules`` is installed as well: a plugin
    cannot be registered twice.
    """

    def __init__(self, *modules: object, builtins: bool = True, installed: bool = True) -> None:
        self.modules = modules
        self.builtins = builtins
        self.installed = installed

    def load(self, settings: Settings | None = None) -> Plugins:
        """The plugins, loaded as exportd loads them (storages built from ``settings``)."""
        return Plugins(
            builtins=self.builtins,
            entry_points=self.installed,
            extra=self.modules,
            settings=settings,
        )


@dataclass(frozen=True)
class ExportedFile:
    """A finished export file: where it is, and what exportd says about it (its rows,
    size, SHA-256 and media type)."""

    path: Path
    info: FileInfo


def export_request(
    source: str,
    params: Mapping[str, Any] | None,
    format: str,
    *,
    start: str | date,
    end: str | date,
    timezone: str = "UTC",
    options: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> ExportRequest:
    """The request for these fields, checked as exportd checks a request; an
    :class:`~exportd.InvalidRequest` naming the field otherwise."""
    fields = {
        "source": source,
        "params": dict(params or {}),
        "format": format,
        "format_options": dict(options or {}),
        "interval": {"start": _iso(start), "end": _iso(end)},
        "timezone": timezone,
        "limit": limit,
    }
    return convert(fields, ExportRequest)


def run_export(
    source: str,
    params: Mapping[str, Any] | None = None,
    format: str = "csv",
    *,
    into: Path,
    start: str | date,
    end: str | date,
    timezone: str = "UTC",
    options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    data: Path | DataStore | None = None,
    plugins: PluginSet | None = None,
    batch_size: int = BATCH_SIZE,
    slices: int = 1,
) -> list[ExportedFile]:
    """Export ``source`` with ``params`` to ``format`` over ``start`` (inclusive) to ``end``
    (exclusive) as ``exportd export`` does, into the folder ``into``: one file per part
    (``[file] = run_export(...)`` for an export of one part).

    ``start`` and ``end`` are ISO 8601 text, dates or datetimes; one without an offset is
    read in ``timezone``.  ``data`` is the data store (a :class:`~exportd.DataStore`, or the
    path of a SQLite file), if the source reads one; ``plugins`` the plugins to load
    (default: :class:`PluginSet`'s); ``batch_size`` the rows per batch (:data:`BATCH_SIZE`);
    ``slices`` the most slices a sliceable source's export is read in at once.
    The files record :data:`GENERATED_AT` as their making.  A request that exportd refuses,
    or an export that fails, raises exportd's own error (:class:`~exportd.InvalidRequest`,
    :class:`~exportd.NotFound`, :class:`~exportd.ExportFailed` naming the plugin...).
    """
    request = export_request(
        source,
        params,
        format,
        start=start,
        end=end,
        timezone=timezone,
        options=options,
        limit=limit,
    )
    loaded = (plugins or PluginSet()).load()
    plan = plan_export(request, loaded, data_store(data, into), generated_at=GENERATED_AT)
    parts = plan.parts(batch_size)
    into.mkdir(parents=True, exist_ok=True)
    paths = [into / name for name in plan.part_file_names(len(parts))]
    return [
        ExportedFile(
            path,
            pipeline.run_export(
                part,
                path,
                batch_size=batch_size,
                part=number,
                part_count=len(parts),
                slices=slices,
            ).file(key=path.name, name=path.name),
        )
        for number, (part, path) in enumerate(zip(parts, paths, strict=True))
    ]


def export_info(
    columns: Sequence[Column], zone: str = "UTC", piece: Piece | None = None
) -> ExportInfo:
    """What a format is told about an export of room r1's March 2024 in ``zone``, when it
    writes ``piece`` of its file."""
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
        piece=piece or Piece(),
    )


def write_export(
    path: Path,
    format: Format[Any],
    columns: Sequence[Column],
    batches: Iterable[Any],
    *,
    options: msgspec.Struct | None = None,
    zone: str = "UTC",
    abort: bool = False,
    piece: Piece | None = None,
) -> Path:
    """Write ``batches`` into ``path`` through ``format`` as the pipeline does: ``open``,
    ``write`` once per batch, then ``close`` (``abort`` instead with ``abort=True``, as
    for an export that fails or is canceled); ``piece`` of the file only, if given.  A
    batch may be row tuples or a :class:`pyarrow.RecordBatch`: each reaches the writer in
    the format's :attr:`~exportd.Format.form`, converted as the pipeline converts it.

    The file must stay open throughout, and ``open`` must return a
    :class:`~exportd.RowWriter`: an :class:`AssertionError` naming the format says what
    it broke, as it does when one of those calls raises.
    """
    label = f"format {format.name!r}"
    info = export_info(columns, zone, piece)
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
                writer.write(forms.in_form(batch, format.form, columns))
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


def _iso(moment: str | date) -> str:
    """``moment`` as a request's interval gives it: ISO 8601 text."""
    return moment if isinstance(moment, str) else moment.isoformat()
