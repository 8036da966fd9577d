"""Formats that each break one rule of the plugin guide, for the test kit's
check_format (and ``lines``, which breaks none)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

from exportd import Batch, Column, ExportInfo, Format, NoOptions, Piece, RowWriter, hookimpl


class LinesWriter(RowWriter):
    """One line per row, its values joined by ``|``; lone surrogates as ``?``."""

    def __init__(self, file: BinaryIO, columns: Sequence[Column]) -> None:
        self.file = file
        self.columns = columns
        self.rows = 0

    def write(self, batch: Batch) -> None:
        """Write the lines of ``batch``, encoded."""
        self.file.write(self.encode("".join(self.line(row) for row in batch)))
        self.rows += len(batch)

    def line(self, row: Sequence[Any]) -> str:
        """The line of ``row``."""
        return "|".join(map(str, row)) + "\n"

    def encode(self, text: str) -> bytes:
        """``text`` in UTF-8, a lone surrogate as ``?``."""
        return text.encode("utf-8", "replace")

    def close(self) -> None:
        """End with an end line."""
        self.file.write(b"-- end\n")


class Lines(Format[NoOptions]):
    """Writes with its ``Writer``, a :class:`LinesWriter`: keeps every rule."""

    name = "lines"
    media_type = "text/plain; charset=utf-8"
    extension = "txt"
    Writer: type[LinesWriter] = LinesWriter

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """A :attr:`Writer` of ``file``."""
        return self.Writer(file, columns)


class ClosesFile(Lines):
    """Closes the file it was given when it ends."""

    name = "closes_file"

    class Writer(LinesWriter):
        def close(self) -> None:
            super().close()
            self.file.close()


class WritesSurrogates(Lines):
    """Writes lone surrogates as they are: no UTF-8."""

    name = "writes_surrogates"

    class Writer(LinesWriter):
        def encode(self, text: str) -> bytes:
            return text.encode("utf-8", "surrogatepass")


class ReadsTheClock(Lines):
    """Ends with the time it was written."""

    name = "reads_the_clock"

    class Writer(LinesWriter):
        def close(self) -> None:
            self.file.write(f"-- written at {datetime.now(UTC).isoformat()}\n".encode())


class StrictNumbers(Lines):
    """Takes every value of an integer column for an int."""

    name = "strict_numbers"

    class Writer(LinesWriter):
        def line(self, row: Sequence[Any]) -> str:
            cells = [
                f"{value:d}" if column.type == "integer" and value is not None else str(value)
                for column, value in zip(self.columns, row, strict=True)
            ]
            return "|".join(cells) + "\n"


class FailingAbort(Lines):
    """Cannot abort."""

    name = "failing_abort"

    class Writer(LinesWriter):
        def abort(self) -> None:
            raise RuntimeError("cannot abort")


class DividesByRows(Lines):
    """Ends with the columns per row, whatever the count of rows."""

    name = "divides_by_rows"

    class Writer(LinesWriter):
        def close(self) -> None:
            self.file.write(f"-- {len(self.columns) / self.rows} columns a row\n".encode())


class DottedExtension(Lines):
    """An extension with its dot."""

    name = "dotted_extension"
    extension = ".txt"


class NoWriter(Lines):
    """``open`` returns no writer."""

    name = "no_writer"

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """None."""
        return None


class EndsEveryPiece(Lines):
    """Says it joins, but ends every piece with its end line, as a whole file ends."""

    name = "ends_every_piece"

    def joins(self, columns: Sequence[Column], options: NoOptions) -> bool:
        return True


class HeadsItsRows(Lines):
    """Says it joins, and writes its header line before the first rows of its first
    piece: a file whose first piece is empty has none."""

    name = "heads_its_rows"

    def joins(self, columns: Sequence[Column], options: NoOptions) -> bool:
        return True

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """A :class:`HeadedWriter` of ``file`` for ``info.piece``."""
        return HeadedWriter(file, columns, info.piece)


class HeadedWriter(LinesWriter):
    """Lines under a header line written with the first piece's first rows; the end line
    in the last piece."""

    def __init__(self, file: BinaryIO, columns: Sequence[Column], piece: Piece) -> None:
        super().__init__(file, columns)
        self.piece = piece

    def write(self, batch: Batch) -> None:
        """Write the header first if these are the first piece's first rows."""
        if batch and self.piece.first and not self.rows:
            self.file.write(self.encode("|".join(column.name for column in self.columns) + "\n"))
        super().write(batch)

    def close(self) -> None:
        """End the last piece with the end line."""
        if self.piece.last:
            super().close()


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Every format of this module."""
    return [
        cls()
        for cls in (
            Lines,
            ClosesFile,
            WritesSurrogates,
            ReadsTheClock,
            StrictNumbers,
            FailingAbort,
            DividesByRows,
            DottedExtension,
            NoWriter,
            EndsEveryPiece,
            HeadsItsRows,
        )
    ]
