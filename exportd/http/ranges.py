"""Range requests on file downloads (RFC 9110, section 14): one byte range.

A download answers ``Accept-Ranges: bytes``.  A ``Range`` header of one range
(``bytes=a-b``, ``bytes=a-``, ``bytes=-n``; the unit in any case) gets ``206 Partial
Content`` with just those bytes and their ``Content-Range``; one that starts past the
file's end, or ``bytes=-0``, gets ``416`` (:class:`RangeNotSatisfiable`, with
``Content-Range: bytes */size``).  A header exportd does not serve (several ranges,
another unit, a malformed one, a number of more than 19 digits, or an ``If-Range``,
since downloads carry no validator to compare it with) is ignored, as the RFC allows:
the answer is the whole file; so is ``bytes=-n`` of an empty file (a suffix of it is
all of it, nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exportd.errors import ExportError, FieldError

RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})", re.IGNORECASE)
"""One range; a position of more than 19 digits (past any file) is not one."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``stop`` (exclusive) of a file of ``size`` bytes."""

    start: int
    stop: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.stop - self.start

    def content_range(self) -> str:
        """The ``Content-Range`` header of a 206 answer with this range."""
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


class RangeNotSatisfiable(ExportError):
    """A download's ``Range`` lies outside the file (HTTP 416)."""

    code = "range_not_satisfiable"

    def __init__(self, header: str, size: int) -> None:
        super().__init__(
            f"the range {header!r} is outside the file, which has {size} bytes",
            [FieldError("Range", f"must start before byte {size}")],
        )
        self.size = size

    def content_range(self) -> str:
        """The ``Content-Range`` header of the 416 answer."""
        return f"bytes */{self.size}"


def requested_range(header: str | None, if_range: str | None, size: int) -> ByteRange | None:
    """The one range of a file of ``size`` bytes that a ``Range`` header asks for, or
    ``None`` for the whole file (no header, or one that is ignored: see the module
    docstring); :class:`RangeNotSatisfiable` for a range past the end."""
    if header is None or if_range is not None:
        return None
    found = RANGE.fullmatch(header.strip())
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = found.group(1), found.group(2)
    if first == "":  # the last n bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable(header, size)
        if size == 0:
            return None  # all of an empty file: 200, nothing (RFC 9110, 14.1.2)
        return ByteRange(max(0, size - length), size, size)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # not a valid range: ignored
    if start >= size:
        raise RangeNotSatisfiable(header, size)
    stop = size if last == "" else min(int(last) + 1, size)
    return ByteRange(start, stop, size)
