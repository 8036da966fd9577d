"""exportd.plugins.formats.compute calls Arrow's compute functions as pyarrow.compute does,
without importing it (see tests/unit/test_loaded_modules.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as reference
import pytest

from exportd.plugins.formats import compute as pc

TEXT = pa.array(["=a", 'b"c', None, "d d", ""], pa.string())
TIMES = pa.array([datetime(2024, 10, 27, 1, 30, 15), None], pa.timestamp("us", tz="UTC"))
CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("positional options", lambda c: c.replace_substring(TEXT, '"', '""')),
    ("keyword options", lambda c: c.replace_substring(TEXT, " ", "T", max_replacements=1)),
    (
        "options object",
        lambda c: c.match_substring_regex(TEXT, options=c.MatchSubstringOptions("^[=]")),
    ),
    ("options dict", lambda c: c.match_substring_regex(TEXT, options={"pattern": "d"})),
    ("no options", lambda c: c.binary_length(TEXT)),
    ("any number of arguments", lambda c: c.binary_join_element_wise(TEXT, "'", TEXT, "")),
    ("a scalar argument", lambda c: c.if_else(c.is_null(TEXT), "null", TEXT)),
    ("aggregate", lambda c: c.any(c.equal(TEXT, "")).as_py()),
    ("renamed", lambda c: c.or_(c.is_null(TEXT), c.equal(TEXT, ""))),
    ("temporal", lambda c: c.floor_temporal(TIMES, unit="minute")),
    ("cast", lambda c: c.cast(c.cast(TIMES, pa.int64()), pa.string())),
    ("take", lambda c: c.take(TEXT, pa.array([4, 0, 2]))),
    ("fill_null", lambda c: c.fill_null(TEXT, "-")),
    ("fill_null, another type", lambda c: c.fill_null(TEXT, pa.scalar("-", pa.large_string()))),
]


@pytest.mark.parametrize(("label", "call"), CALLS, ids=[label for label, _ in CALLS])
def test_a_call_gives_what_pyarrow_compute_gives(label: str, call: Callable[[Any], Any]) -> None:
    assert call(pc) == call(reference), label


def test_a_cast_is_checked_unless_asked_not_to_be() -> None:
    big = pa.array([300], pa.int64())
    with pytest.raises(pa.ArrowInvalid):
        pc.cast(big, pa.int8())
    assert pc.cast(big, pa.int8(), safe=False) == reference.cast(big, pa.int8(), safe=False)


def test_wrong_arguments_are_type_errors_and_unknown_names_attribute_errors() -> None:
    with pytest.raises(TypeError):
        pc.binary_length(TEXT, "extra")
    with pytest.raises(TypeError):
        pc.binary_length()
    with pytest.raises(TypeError):
        pc.replace_substring(TEXT, "a", "b", options=pc.ReplaceSubstringOptions("a", "b"))
    with pytest.raises(AttributeError):
        _ = pc.no_such_function
