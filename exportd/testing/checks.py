"""Contract checks: does a source or a format do what the plugin guide requires?

Each check runs the plugin as exportd does (the planner, the pipeline, a file that
exportd opens) on the cases the guide names, and raises an :class:`AssertionError`
that names the plugin and what it broke.
"""

from __future__ import annotations

import dataclasses
import email.message
import itertools
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exportd import (
    Batch,
    Cancelled,
    Column,
    ColumnType,
    DataStore,
    ExportError,
    ExportFailed,
    Format,
    Piece,
    ReadContext,
)
from exportd.kernel import pipeline
from exportd.kernel.batches import conform, to_rows
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.kernel.validation import convert
from exportd.messages import ExportRequest, Interval
from exportd.plugins.manager import Plugins
from exportd.testing.exports import (
    BATCH_SIZE,
    GENERATED_AT,
    PluginSet,
    blame,
    data_store,
    export_request,
    write_export,
)
from exportd.testing.strategies import LONE_SURROGATES, hostile_columns, hostile_rows

HOLDS: dict[ColumnType, str] = {
    "text": "a str",
    "integer": "an int",
    "float": "a float",
    "boolean": "a bool",
    "datetime": "an aware datetime in UTC",
    "date": "a date",
}
"""What a value of each column type is, as the messages say it."""
TINY = timedelta(microseconds=1)

EVERY_TYPE = [Column(f"a {type_} column", type_) for type_ in HOLDS]
TRANSCRIPT = [
    Column("conversation", role="conversation"),
    Column("sent_at", "datetime", "time"),
    Column("author", role="author"),
    Column("text", role="text"),
]
"""Columns with every role: the built-in txt and html formats write a transcript of them."""
ZONES = ("UTC", "Europe/Helsinki", "America/St_Johns", "Asia/Kathmandu")
JSON_SUBTYPES = frozenset({"json", "x-ndjson"})

Case = tuple[list[Column], list[Batch], str]
"""What a format writes in one check: columns, batches and the zone to render times in."""


def check_source(
    source: str,
    params: Mapping[str, Any] | None = None,
    *,
    start: str | date,
    end: str | date,
    timezone: str = "UTC",
    data: Path | DataStore | None = None,
    plugins: PluginSet | None = None,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Check that the source called ``source`` keeps the plugin guide's contract for
    ``params`` over ``start`` to ``end`` (as :func:`~exportd.testing.run_export` takes
    them; ``data`` is the data store, if it reads one), or raise an
    :class:`AssertionError` that names it and what it broke.

    Checked: its columns are ``Column`` instances of known types and roles; ``parts``
    gives its ``Params``; every batch of every part is, in the source's ``form``, a list
    of rows of one value per column, each ``None`` or of the column's type (datetimes
    aware, in UTC), or a record batch of one array per column whose type casts to the
    column's (:func:`~exportd.arrow_type`); a ``sliceable`` source's slices, read one
    after the other, hold the rows of the whole read, in order; the window
    holds rows (else the check checks nothing); ``estimate`` and ``time_range`` answer
    what they must; the rows export to every format of ``plugins``, with as many rows in
    each file as were read; an export canceled after its first batch stops cleanly; a
    window of a microsecond (usually empty) works, or is refused as a bad request.
    Whatever the source raises fails the check, naming it.
    """
    label = f"source {source!r}"
    loaded = (plugins or PluginSet()).load()
    if not loaded.formats:
        raise AssertionError(f"checking {label} needs a format, and the plugins have none")
    with tempfile.TemporaryDirectory() as folder:
        check = _SourceCheck(
            label, loaded, data_store(data, Path(folder)), Path(folder), batch_size
        )
        request = export_request(
            source, params, next(iter(loaded.formats)), start=start, end=end, timezone=timezone
        )
        plan = check.planned(request)
        check.columns(plan)
        parts = check.parts(plan)
        counts = [check.rows(part, number, len(parts)) for number, part in enumerate(parts)]
        if not any(counts):
            raise AssertionError(
                f"{label} yielded no rows for {dict(params or {})} from {start} to {end}: "
                "give parameters and a window that hold rows, or the check checks nothing"
            )
        if plan.source.sliceable:
            for number, part in enumerate(parts):
                check.slices(part, number, len(parts))
        check.time_range(plan)
        for format_name in loaded.formats:
            check.export(msgspec.structs.replace(request, format=format_name), counts)
        canceled = next(number for number, count in enumerate(counts) if count)
        check.cancel(parts[canceled], canceled, len(parts))
        check.tiny_window(request, plan)


@dataclasses.dataclass(frozen=True)
class _SourceCheck:
    """The steps of :func:`check_source`, for the source ``label`` among ``plugins``."""

    label: str
    plugins: Plugins
    data: DataStore
    folder: Path
    batch_size: int

    def planned(self, request: ExportRequest) -> ExportPlan:
        """``request`` planned; a source that fails or refuses it fails the check."""
        try:
            return plan_export(request, self.plugins, self.data, generated_at=GENERATED_AT)
        except ExportFailed as exc:
            raise AssertionError(f"{exc}, while the export was planned") from exc
        except ExportError as exc:
            raise AssertionError(f"{self.label} refused the check's request: {exc}") from exc

    def columns(self, plan: ExportPlan) -> None:
        """The source gives columns (planning checked their types and roles)."""
        if not plan.columns:
            raise AssertionError(f"{self.label}: columns() gave no columns")

    def parts(self, plan: ExportPlan) -> list[ExportPlan]:
        """The plan's parts, each with parameters of the source's ``Params``."""
        try:
            parts = plan.parts(self.batch_size)
        except ExportFailed as exc:
            raise AssertionError(str(exc)) from exc
        params_type = plan.source.Params
        if not parts or not all(isinstance(part.params, params_type) for part in parts):
            given = [part.params for part in parts]
            raise AssertionError(
                f"{self.label}: parts() must give one or more {params_type.__name__}, got {given!r}"
            )
        return parts

    def rows(self, plan: ExportPlan, number: int, count: int) -> int:
        """Read part ``number`` of ``count`` and check every batch; its row count."""
        where = f"part {number + 1} of {count}, " if count > 1 else ""
        ctx = plan.context(batch_size=self.batch_size, part=number, part_count=count)
        with blame(self.label, "estimate()"):
            estimate = plan.source.estimate(plan.params, ctx)
        if estimate is not None and (not isinstance(estimate, int) or estimate < 0):
            raise AssertionError(
                f"{self.label}: {where}estimate() must be a whole number of rows or None, "
                f"got {estimate!r}"
            )
        return len(self.read(plan, ctx, where))

    def read(self, plan: ExportPlan, ctx: ReadContext, where: str) -> list[Any]:
        """The rows ``read`` yields with ``ctx``, each batch checked; ``where`` says which
        read it is (``part 2 of 3, ``) in a failure's message."""
        rows: list[Any] = []
        for index, batch in enumerate(self.batches(plan, ctx), start=1):
            batch_rows = self.in_rows(plan, batch, f"{where}batch {index}")
            self.batch(batch_rows, plan.columns, f"{where}batch {index}")
            rows += batch_rows
        return rows

    def in_rows(self, plan: ExportPlan, batch: Any, where: str) -> Any:
        """``batch`` as row tuples, from a record batch of a source whose form is Arrow
        (which must be one whose arrays cast to their columns' types)."""
        if plan.source.form != "arrow":
            return batch
        try:
            return to_rows(conform(batch, plan.columns, self.label))
        except ExportFailed as exc:
            raise AssertionError(f"{exc}, in {where}") from exc

    def slices(self, plan: ExportPlan, number: int, count: int) -> None:
        """Part ``number``'s slices, read one after the other in two and in three slices,
        hold the rows of its whole read, in order."""
        part = f"part {number + 1} of {count}, " if count > 1 else ""
        ctx = plan.context(batch_size=self.batch_size, part=number, part_count=count)
        whole = self.read(plan, ctx, part)
        for slice_count in (2, 3):

            def context(index: int, slicing: Any = None, slice_count: int = slice_count) -> Any:
                return plan.context(
                    batch_size=self.batch_size,
                    part=number,
                    part_count=count,
                    slice=index,
                    slice_count=slice_count,
                    slicing=slicing,
                )

            with blame(self.label, "slicing()"):
                slicing = plan.source.slicing(plan.params, context(0))
            sliced = [
                row
                for index in range(slice_count)
                for row in self.read(
                    plan,
                    context(index, slicing),
                    f"{part}slice {index + 1} of {slice_count}, ",
                )
            ]
            if sliced != whole:
                raise AssertionError(
                    f"{self.label} is sliceable, and its {slice_count} slices read one after "
                    f"the other ({len(sliced)} rows) are not its whole read ({len(whole)} "
                    "rows, in order): slice ctx.slice of ctx.slice_count must read its share "
                    "of the rows alone, the slices in the read's order"
                )

    def batches(self, plan: ExportPlan, ctx: ReadContext) -> Iterator[Any]:
        """What ``read`` yields, each step blamed on the source if it raises."""
        with blame(self.label, "read()"):
            batches = iter(plan.source.read(plan.params, ctx))
        try:
            while True:
                with blame(self.label, "read()"):
                    batch = next(batches, None)
                if batch is None:
                    return
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                with blame(self.label, "read(), when closed"):
                    close()

    def batch(self, batch: Any, columns: Sequence[Column], where: str) -> None:
        """``batch`` is a list of rows, each of one value per column, of its type."""
        if not _is_sequence(batch):
            raise AssertionError(f"{self.label}: {where} is {batch!r}, not a list of rows")
        for index, row in enumerate(batch, start=1):
            if not _is_sequence(row):
                raise AssertionError(
                    f"{self.label}: {where}, row {index} is {row!r}, not a tuple of values"
                )
            if len(row) != len(columns):
                names = ", ".join(column.name for column in columns)
                raise AssertionError(
                    f"{self.label}: {where}, row {index} has {len(row)} values for "
                    f"{len(columns)} columns ({names}): {row!r}"
                )
            for value, column in zip(row, columns, strict=True):
                if not _fits(value, column.type):
                    raise AssertionError(
                        f"{self.label}: {where}, row {index}: column {column.name!r} "
                        f"({column.type}) holds {value!r}, which is not "
                        f"{HOLDS[column.type]} (or None)"
                    )

    def time_range(self, plan: ExportPlan) -> None:
        """``time_range`` is ``None`` or the first and last times, aware, in UTC, in order."""
        try:
            found = plan.data_range()
        except ExportFailed as exc:
            raise AssertionError(str(exc)) from exc
        if found is None:
            return
        if (
            not isinstance(found, tuple)
            or len(found) != 2
            or not all(_fits(moment, "datetime") and moment is not None for moment in found)
            or found[0] > found[1]
        ):
            raise AssertionError(
                f"{self.label}: time_range() must be None or (first, last), aware datetimes "
                f"in UTC with first <= last, got {found!r}"
            )

    def export(self, request: ExportRequest, counts: Sequence[int]) -> None:
        """Every part of ``request`` exports, with the rows read before in each file."""
        parts = self.parts(self.planned(request))
        for number, part in enumerate(parts):
            target = self.folder / f"export-{number}.{part.format.extension}"
            try:
                info = pipeline.run_export(
                    part, target, batch_size=self.batch_size, part=number, part_count=len(parts)
                )
            except Exception as exc:
                raise AssertionError(
                    f"exporting {self.label} to {part.format_label} failed: {_described(exc)}"
                ) from exc
            target.unlink()
            if info.rows != counts[number]:
                raise AssertionError(
                    f"{self.label} yielded {counts[number]} rows when read, and {info.rows} "
                    f"when exported to {part.format_label}: it must read the same rows "
                    "every time"
                )

    def cancel(self, plan: ExportPlan, number: int, count: int) -> None:
        """An export canceled after its first batch ends with :class:`~exportd.Cancelled`."""
        checks = itertools.count()
        target = self.folder / f"canceled.{plan.format.extension}"
        try:
            pipeline.run_export(
                plan,
                target,
                batch_size=self.batch_size,
                cancelled=lambda: next(checks) > 0,
                part=number,
                part_count=count,
            )
        except Cancelled:
            return
        except Exception as exc:
            raise AssertionError(
                f"{self.label} did not stop cleanly when the export was canceled after its "
                f"first batch: {_described(exc)}"
            ) from exc

    def tiny_window(self, request: ExportRequest, plan: ExportPlan) -> None:
        """A window of a microsecond reads and exports, unless the source refuses it."""
        start = plan.window.start + TINY
        tiny = msgspec.structs.replace(
            request, interval=Interval(start.isoformat(), (start + TINY).isoformat())
        )
        try:
            tiny_plan = plan_export(tiny, self.plugins, self.data, generated_at=GENERATED_AT)
        except ExportFailed as exc:
            raise AssertionError(f"{exc}, while an export of a microsecond was planned") from exc
        except ExportError:
            return  # refused as a bad request: a source may need a longer window
        try:
            parts = self.parts(tiny_plan)
            counts = [self.rows(part, number, len(parts)) for number, part in enumerate(parts)]
            self.export(tiny, counts)
        except AssertionError as exc:
            exc.add_note(
                f"with a window of a microsecond: {tiny.interval.start} to {tiny.interval.end}"
            )
            raise


def check_format(
    format: str,
    options: Mapping[str, Any] | None = None,
    *,
    plugins: PluginSet | None = None,
    max_examples: int = 50,
) -> None:
    """Check that the format called ``format`` keeps the plugin guide's contract with
    these ``options`` (its default ones if ``None``), or raise an :class:`AssertionError`
    that names it and what it broke.

    The format writes an export with no rows; one with lone surrogates in its column
    names and text in a column of every type; a transcript (columns with every role);
    then ``max_examples`` exports of hostile columns and rows
    (:func:`~exportd.testing.hostile_rows` with ``wild=True``), drawn by Hypothesis,
    which shrinks a failure to a small example and shows it.  For each: ``open``
    returns a :class:`~exportd.RowWriter`; no call closes the file or raises; a media
    type that names a charset (or is JSON) gets text in it; the same rows written twice
    give the same bytes; ``abort`` after the first batch raises nothing either; and a
    format that :meth:`~exportd.Format.joins` writes pieces (cut where a batch starts a
    conversation, then with empty pieces between them too) whose files, end to end, are
    the whole file.

    Call it from a plain test, not from one of Hypothesis's ``@given`` tests.
    """
    label = f"format {format!r}"
    loaded = (plugins or PluginSet()).load()
    try:
        format_ = loaded.format(format)
        chosen = convert(dict(options or {}), format_.Options, "format_options")
    except ExportError as exc:
        raise AssertionError(f"cannot check {label}: {exc}") from exc
    _check_names(label, format_)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"export.{format_.extension}"
        writes = _FormatCheck(label, format_, chosen, path)
        writes.case("an export with no rows", (EVERY_TYPE, [], "UTC"))
        writes.case("lone surrogates and text in every column", _surrogates_everywhere())
        writes.case("a transcript", (TRANSCRIPT, _transcript_rows(), "Europe/Helsinki"))

        @settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(hostile=_hostile_cases())
        def hostile_rows_survive(hostile: Case) -> None:
            writes.case("hostile rows (Hypothesis shows them below)", hostile)

        hostile_rows_survive()


@dataclasses.dataclass(frozen=True)
class _FormatCheck:
    """The writes of :func:`check_format`, of ``format`` with ``options`` into ``path``."""

    label: str
    format: Format[Any]
    options: msgspec.Struct
    path: Path

    def case(self, name: str, case: Case) -> None:
        """Write ``case`` twice, then once aborted, checking each time; ``name`` is in
        the note of a failure."""
        columns, batches, zone = case
        try:
            written = self.write(columns, batches, zone)
            self.encoded(written)
            if self.write(columns, batches, zone) != written:
                raise AssertionError(
                    f"{self.label} wrote other bytes when it wrote the same rows again: a "
                    "file depends only on its rows and ExportInfo (a time it records is "
                    "info.generated_at, never the clock's)"
                )
            write_export(
                self.path,
                self.format,
                columns,
                batches[:1],
                options=self.options,
                zone=zone,
                abort=True,
            )
            if self.format.joins(columns, self.options):
                self.joined(columns, batches, zone, written)
        except AssertionError as exc:
            exc.add_note(f"while writing {name}")
            raise

    def joined(
        self, columns: Sequence[Column], batches: Sequence[Batch], zone: str, whole: bytes
    ) -> None:
        """A format that joins writes ``batches`` in pieces (one a batch, a piece starting
        where a conversation does), and in those pieces with an empty one before, between
        and after them (as a source's slices without rows are), that end to end are the
        ``whole`` file."""
        cut = _pieces(columns, batches)
        for pieces, which in ((cut, ""), (_between_empty_pieces(cut), ", every other one empty")):
            written = [
                self.write(columns, piece, zone, Piece(index, len(pieces)))
                for index, piece in enumerate(pieces)
            ]
            if b"".join(written) != whole:
                raise AssertionError(
                    f"{self.label} says it joins these columns, but the files of {len(pieces)} "
                    f"pieces{which}, end to end, are not the file of the whole export: a piece "
                    "writes what comes before the rows only if info.piece.first, what comes "
                    "after them only if info.piece.last, and nothing that depends on whether "
                    "the pieces before it hold rows (see docs/plugins.md, 'Pieces')"
                )

    def write(
        self,
        columns: Sequence[Column],
        batches: Sequence[Batch],
        zone: str,
        piece: Piece | None = None,
    ) -> bytes:
        """The bytes of the export of ``batches`` (of its ``piece``, if given)."""
        write_export(
            self.path, self.format, columns, batches, options=self.options, zone=zone, piece=piece
        )
        return self.path.read_bytes()

    def encoded(self, written: bytes) -> None:
        """The file is text in the charset its media type names, if it names one."""
        encoding = _text_encoding(self.format.media_type)
        if encoding is None:
            return
        try:
            written.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise AssertionError(
                f"{self.label} wrote what is not {encoding} text, which its media type "
                f"{self.format.media_type!r} says the file is: {exc} (a lone surrogate "
                "written as it is? UTF-8 cannot encode one: write U+FFFD instead)"
            ) from exc


def _pieces(columns: Sequence[Column], batches: Sequence[Batch]) -> list[list[Batch]]:
    """``batches`` in pieces as a sliceable source's slices would cut them: a new piece at
    each batch that has rows and starts a conversation (where a column has that role)."""
    conversation = next((i for i, c in enumerate(columns) if c.role == "conversation"), None)
    pieces: list[list[Batch]] = [[]]
    last: list[Any] = []
    for batch in batches:
        if (
            batch
            and last
            and (conversation is None or batch[0][conversation] != last[conversation])
        ):
            pieces.append([])
        pieces[-1].append(batch)
        last = list(batch[-1]) if batch else last
    return pieces


def _between_empty_pieces(pieces: list[list[Batch]]) -> list[list[Batch]]:
    """``pieces`` with an empty piece before, between and after them."""
    return [[], *(cut for piece in pieces for cut in (piece, []))]


def _check_names(label: str, format_: Format[Any]) -> None:
    """The format's media type is ``type/subtype``, its extension a name without a dot."""
    kind = format_.media_type.partition(";")[0].strip()
    if kind.count("/") != 1 or not all(kind.split("/")):
        raise AssertionError(f"{label}: media_type {format_.media_type!r} is not type/subtype")
    extension = format_.extension
    if not extension or extension.startswith(".") or "/" in extension:
        raise AssertionError(
            f"{label}: extension {extension!r} must be the file name extension, without the dot"
        )


def _hostile_cases() -> st.SearchStrategy[Case]:
    """Hostile columns (or a transcript's) with hostile batches of rows, and a zone."""
    columns = st.one_of(hostile_columns(wild=True), st.just(TRANSCRIPT))
    return columns.flatmap(
        lambda chosen: st.tuples(
            st.just(chosen),
            st.lists(hostile_rows(chosen, max_size=10, wild=True), max_size=3),
            st.sampled_from(ZONES),
        )
    )


def _surrogates_everywhere() -> Case:
    """A column of every type, named with lone surrogates, holding text with them."""
    surrogates = itertools.cycle(LONE_SURROGATES)
    columns = [Column(f"{column.name} {next(surrogates)}", column.type) for column in EVERY_TYPE]
    row = tuple(next(surrogates) for _ in columns)
    return columns, [[row, (None,) * len(columns)]], "UTC"


def _transcript_rows() -> list[Batch]:
    """Two batches of two conversations, with lone surrogates and a time given as text."""
    sent_at = datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC)
    return [
        [("c1", sent_at, "Ann", "Hello\nthere"), ("c1", None, None, None)],
        [("c2", "yesterday", "B\ud800b", "a\udc00b"), (None, sent_at, "", "")],
    ]


def _fits(value: Any, column_type: ColumnType) -> bool:
    """Whether ``value`` may stand in a column of ``column_type``."""
    if value is None:
        return True
    if column_type == "datetime":
        return isinstance(value, datetime) and value.utcoffset() == timedelta(0)
    if column_type == "date":
        return isinstance(value, date) and not isinstance(value, datetime)
    if column_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    expected = {"text": str, "float": float, "boolean": bool}[column_type]
    return isinstance(value, expected)


def _described(error: Exception) -> str:
    """``error`` in a message: exportd's own as they read, others with their type."""
    return str(error) if isinstance(error, ExportError) else f"{type(error).__name__}: {error}"


def _is_sequence(value: Any) -> bool:
    """Whether ``value`` is a list or tuple (not text, which is a sequence too)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _text_encoding(media_type: str) -> str | None:
    """The charset ``media_type`` names; UTF-8 for JSON; ``None`` for anything else."""
    header = email.message.Message()
    header["Content-Type"] = media_type
    charset = header.get_content_charset()
    if charset is not None:
        return charset
    subtype = header.get_content_subtype()
    return "utf-8" if subtype in JSON_SUBTYPES or subtype.endswith("+json") else None
