"""Tiny plugins for testing the manager, the planner and the pipeline on their own."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import msgspec

from exportd import (
    Batch,
    Column,
    ExportInfo,
    Format,
    InvalidRequest,
    ReadContext,
    RowWriter,
    Settings,
    Source,
    Storage,
    hookimpl,
)
from exportd.plugins.storages.local import LocalStorage


class CountParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How many rows to count to, and whether to blow up half-way."""

    rows: Annotated[int, msgspec.Meta(ge=0)]
    explode_at: int | None = None
    forbidden: str | None = None
    pause: float = 0.0
    """Seconds to sleep before each batch: a slow export, for runtime tests."""
    fail_while: str | None = None
    """A path: reading fails while a file exists there (a failure the test can end)."""
    crash: bool = False
    """Reading ends the whole process at once: a poison task, for runtime tests."""
    range_fails: bool = False
    """:meth:`CountSource.time_range` raises instead of saying it knows no range."""


class CountSource(Source[CountParams]):
    """Rows (n, n squared, "row n"), with an optional failure part-way; slice ``i`` of
    ``k`` counts the ``i``-th ``k``-th of the rows."""

    name = "count"
    description = "counts"
    Params = CountParams
    sliceable = True

    def validate(self, params: CountParams, ctx: ReadContext) -> None:
        if params.forbidden is not None:
            raise InvalidRequest.field("params.forbidden", "this value is not allowed")

    def columns(self, params: CountParams, ctx: ReadContext) -> Sequence[Column]:
        return [Column("n", "integer"), Column("square", "integer"), Column("label")]

    def estimate(self, params: CountParams, ctx: ReadContext) -> int | None:
        return params.rows

    def time_range(self, params: CountParams, ctx: ReadContext) -> tuple[datetime, datetime] | None:
        if params.range_fails:
            raise RuntimeError("no range today")
        return None

    def parts(self, params: CountParams, ctx: ReadContext) -> Sequence[CountParams]:
        half = params.rows // 2
        if params.rows < 10:
            return [params]
        return [
            msgspec.structs.replace(params, rows=half),
            msgspec.structs.replace(params, rows=params.rows - half),
        ]

    def read(self, params: CountParams, ctx: ReadContext) -> Iterator[Batch]:
        if params.crash:
            os._exit(70)
        if params.fail_while is not None and Path(params.fail_while).exists():
            raise RuntimeError(f"failing while {params.fail_while} exists")
        batch: list[tuple[int, int, str]] = []
        first = params.rows * ctx.slice // ctx.slice_count
        last = params.rows * (ctx.slice + 1) // ctx.slice_count
        for n in range(first, last):
            if n == params.explode_at:
                raise RuntimeError(f"boom at {n}")
            batch.append((n, n * n, f"row {n}"))
            if len(batch) == ctx.batch_size:
                time.sleep(params.pause)
                yield batch
                batch = []
        if batch:
            yield batch


class LinesOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The separator between values."""

    separator: str = "|"
    stamp: bool = False
    """End with a line of the run's own: a format whose bytes differ from one run to the
    next, as nothing guarantees they do not."""


class LinesWriter(RowWriter):
    def __init__(
        self, file: BinaryIO, columns: Sequence[Column], separator: str, *, stamp: bool = False
    ) -> None:
        self.file = file
        self.separator = separator
        self.stamp = stamp
        file.write((separator.join(c.name for c in columns) + "\n").encode())

    def write(self, batch: Batch) -> None:
        sep = self.separator
        self.file.write("".join(sep.join(map(str, row)) + "\n" for row in batch).encode())

    def close(self) -> None:
        self.file.write(b"-- end\n")
        if self.stamp:
            self.file.write(f"-- run {uuid.uuid4()}\n".encode())


class LinesFormat(Format[LinesOptions]):
    """One line per row, values joined by a separator, and an end marker."""

    name = "lines"
    media_type = "text/plain"
    extension = "lines"
    Options = LinesOptions

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: LinesOptions, info: ExportInfo
    ) -> RowWriter:
        return LinesWriter(file, columns, options.separator, stamp=options.stamp)


class SlowStorage(LocalStorage):
    """The local storage, taking ``STORE_SECONDS`` to take each file: a slow upload."""

    name = "slow"
    description = "local, slowly"
    STORE_SECONDS = 0.5

    def store(self, key: str, path: Path) -> None:
        time.sleep(self.STORE_SECONDS)
        super().store(key, path)


class FlakyStorage(LocalStorage):
    """The local storage, whose server is down for the first ``failures`` files it is
    handed (each raises :class:`ConnectionRefusedError`); tests set ``failures``."""

    name = "flaky"
    description = "local, down for a while"
    failures = 0

    def store(self, key: str, path: Path) -> None:
        if FlakyStorage.failures > 0:
            FlakyStorage.failures -= 1
            raise ConnectionRefusedError("the storage's server is down")
        super().store(key, path)


class TakenStorage(LocalStorage):
    """The local storage, finding every key taken: what another try cannot mend."""

    name = "taken"
    description = "local, every key taken"

    def store(self, key: str, path: Path) -> None:
        raise FileExistsError(f"the storage already holds {key!r}")


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    return [CountSource()]


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    return [LinesFormat()]


@hookimpl
def exportd_storages(settings: Settings) -> list[Storage]:
    return [
        SlowStorage(settings.files_path),
        BrittleStorage(settings.files_path),
        FlakyStorage(settings.files_path),
        TakenStorage(settings.files_path),
    ]


class Abort(BaseException):
    """What a library may raise to end a whole program (as ``SystemExit`` does), and what
    no loop of exportd can take as a failure to retry."""


class BrittleStorage(LocalStorage):
    """The local storage, whose ``delete`` raises :class:`Abort`: a bug that ends the
    engine's sweeper, which deletes the files of the jobs it expires."""

    name = "brittle"
    description = "local, ends the program on delete"

    def delete(self, key: str) -> None:
        raise Abort(f"cannot delete {key}")
