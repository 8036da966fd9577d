"""Which range of a file a download's ``Range`` header asks for (exportd/http/ranges.py)."""

from __future__ import annotations

import pytest

from exportd.http.ranges import ByteRange, RangeNotSatisfiable, requested_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, ByteRange(0, 1, 10)),
        ("bytes=2-", 10, ByteRange(2, 10, 10)),
        ("bytes=-3", 10, ByteRange(7, 10, 10)),
        ("bytes=-30", 10, ByteRange(0, 10, 10)),  # more than the file: all of it
        ("bytes=5-99", 10, ByteRange(5, 10, 10)),
        (" bytes=1-2 ", 10, ByteRange(1, 3, 10)),
        ("bytes=1-2,4-5", 10, None),  # several ranges: the whole file
        ("bytes=3-1", 10, None),  # not a range
        ("bytes=-", 10, None),
        ("lines=1-2", 10, None),
        ("Bytes=1-2", 10, ByteRange(1, 3, 10)),  # the unit in any case
        ("BYTES=-2", 10, ByteRange(8, 10, 10)),
        (f"bytes={'9' * 19}-", 10**20, ByteRange(10**19 - 1, 10**20, 10**20)),
        (f"bytes={'9' * 5000}-", 10, None),  # past int()'s 4300 digits: ignored
        (f"bytes=0-{'9' * 20}", 10, None),
        (f"bytes=-{'9' * 5000}", 10, None),
        ("bytes=-5", 0, None),  # the last bytes of an empty file: all of it, nothing
        (None, 10, None),
    ],
)
def test_one_range_is_served_and_other_headers_are_ignored(
    header: str | None, size: int, expected: ByteRange | None
) -> None:
    assert requested_range(header, None, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-0", 0)]
)
def test_a_range_outside_the_file_is_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        requested_range(header, None, size)
    assert refused.value.content_range() == f"bytes */{size}"
    assert refused.value.fields[0].name == "Range"


def test_with_if_range_the_whole_file_is_served() -> None:
    """Downloads carry no validator (ETag, Last-Modified) for an If-Range to match."""
    assert requested_range("bytes=0-1", '"an-etag"', 10) is None
