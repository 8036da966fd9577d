"""The test kit's contract checks: every built-in source and format passes them, and a
plugin that breaks a rule of the guide fails them with a message naming it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from exportd.testing import DemoSummary, PluginSet, check_format, check_source
from tests.unit import broken_formats, broken_sources

BUILT_INS = PluginSet(installed=False)
BROKEN_SOURCES = PluginSet(broken_sources, installed=False)
BROKEN_FORMATS = PluginSet(broken_formats, installed=False)
BUILT_IN_FORMATS = ("csv", "xlsx", "txt", "html", "json", "json_bulk")
BUILT_IN_SOURCES: dict[str, tuple[str, Callable[[DemoSummary], dict[str, Any]]]] = {
    "rooms-logs": ("rooms", lambda demo: {"room_id": demo.room_id, "type": "logs"}),
    "rooms-stats": ("rooms", lambda demo: {"room_id": demo.room_id, "type": "stats"}),
    "workflows": (
        "workflows",
        lambda demo: {"workflow_id": demo.workflow_id, "step_index": 0, "filters": []},
    ),
    "qna-in-parts": ("qna", lambda demo: {"channel_id": demo.channel_id}),
}
A_DAY = {"start": "2024-01-01", "end": "2024-01-02"}


def test_the_checks_cover_every_built_in_source_and_format() -> None:
    built_ins = BUILT_INS.load()
    assert set(BUILT_IN_FORMATS) == set(built_ins.formats)
    assert {source for source, _ in BUILT_IN_SOURCES.values()} == set(built_ins.sources)


@pytest.mark.parametrize("name", BUILT_IN_FORMATS)
def test_every_built_in_format_keeps_the_contract(name: str) -> None:
    check_format(name, plugins=BUILT_INS, max_examples=10)


def test_a_format_is_checked_with_the_options_given() -> None:
    check_format("csv", {"delimiter": ";", "bom": True}, plugins=BUILT_INS, max_examples=5)
    with pytest.raises(AssertionError, match=r"cannot check format 'csv': .*format_options.bom"):
        check_format("csv", {"bom": "yes"}, plugins=BUILT_INS)


@pytest.mark.parametrize("case", BUILT_IN_SOURCES)
def test_every_built_in_source_keeps_the_contract(exportd_demo: DemoSummary, case: str) -> None:
    source, params = BUILT_IN_SOURCES[case]
    check_source(
        source,
        params(exportd_demo),
        start=exportd_demo.start,
        end=exportd_demo.end,
        timezone="Europe/Helsinki",
        data=exportd_demo.path,
        plugins=BUILT_INS,
    )


def test_the_toys_keep_the_contract_but_what_each_breaks() -> None:
    check_source("rows", **A_DAY, plugins=BROKEN_SOURCES)
    check_source("arrow_rows", **A_DAY, plugins=BROKEN_SOURCES)
    check_format("lines", plugins=BROKEN_FORMATS, max_examples=5)


@pytest.mark.parametrize(
    ("source", "broken"),
    [
        (
            "short_rows",
            r"batch 1, row 1 has 2 values for 3 columns \(n, label, at\): \(0, 'row 0'\)",
        ),
        (
            "naive_times",
            r"batch 1, row 1: column 'at' \(datetime\) holds "
            r"datetime.datetime\(2024, 1, 1, 0, 0\), which is not an aware datetime in UTC",
        ),
        ("text_numbers", r"batch 1, row 1: column 'n' \(integer\) holds '0', which is not an int"),
        ("money_column", r"column 'at' has type 'money' and role None; the types are"),
        ("negative_estimate", r"estimate\(\) must be a whole number of rows or None, got -1"),
        ("no_rows", r"yielded no rows for \{\} from 2024-01-01 to 2024-01-02"),
        ("fails_later", r"raised ZeroDivisionError in read\(\): division by zero"),
        (
            "ignores_cancel",
            r"did not stop cleanly when the export was canceled after its first batch: "
            r"RuntimeError: generator ignored GeneratorExit",
        ),
        ("fails_when_empty", r"raised ValueError in read\(\): min\(\) .*empty"),
        ("bad_time_range", r"time_range\(\) must be None or \(first, last\)"),
        (
            "arrow_text_numbers",
            r"column 'n' \(integer\) came as string: .*'#.*, in batch 1",
        ),
        (
            "whole_slices",
            r"is sliceable, and its 2 slices read one after the other \(12 rows\) are not "
            r"its whole read \(6 rows, in order\)",
        ),
    ],
)
def test_a_source_that_breaks_a_rule_fails_the_check_naming_it(source: str, broken: str) -> None:
    with pytest.raises(AssertionError, match=rf"source '{source}'[: ]+(failed: )?{broken}"):
        check_source(source, **A_DAY, plugins=BROKEN_SOURCES)


@pytest.mark.parametrize(
    ("format_name", "broken"),
    [
        ("closes_file", r"closed the file it was given, in close\(\): exportd owns that file"),
        (
            "writes_surrogates",
            r"wrote what is not utf-8 text, .*\(a lone surrogate written as it is\?",
        ),
        ("reads_the_clock", r"wrote other bytes when it wrote the same rows again"),
        ("strict_numbers", r"raised ValueError in write\(\): Unknown format code 'd'"),
        ("failing_abort", r"raised RuntimeError in abort\(\): cannot abort"),
        ("divides_by_rows", r"raised ZeroDivisionError in close\(\)"),
        ("dotted_extension", r"extension '.txt' must be the file name extension, without the dot"),
        ("no_writer", r"open\(\) must return a RowWriter, got None"),
        ("ends_every_piece", r"says it joins these columns, but the files of \d+ pieces"),
        (
            "heads_its_rows",
            r"says it joins these columns, but the files of \d+ pieces, every other one empty, "
            r"end to end, are not the file of the whole export",
        ),
    ],
)
def test_a_format_that_breaks_a_rule_fails_the_check_naming_it(
    format_name: str, broken: str
) -> None:
    with pytest.raises(AssertionError, match=rf"format '{format_name}'[: ]+{broken}"):
        check_format(format_name, plugins=BROKEN_FORMATS, max_examples=5)
