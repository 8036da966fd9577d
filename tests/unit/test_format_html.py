"""The html format: real pages, read back with the standard library's HTML parser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exportd import Column
from exportd.kernel.batches import to_arrow
from exportd.plugins.formats import html as html_plugin
from exportd.plugins.formats.html import HtmlFormat
from exportd.plugins.manager import Plugins
from exportd.testing import hostile_columns, hostile_rows, write_export

ZONE = "Europe/Helsinki"
TITLE = "rooms: 2024-03-01 02:00:00 to 2024-04-01 03:00:00 (Europe/Helsinki)"
VOID = {"meta"}
TABLE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "table", "thead", "tbody"}
TABLE_TAGS |= {"tr", "th", "td", "time"}
TRANSCRIPT_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "main", "section"}
TRANSCRIPT_TAGS |= {"h2", "div", "span", "time"}
TRANSCRIPT = [
    Column("conversation_id", "integer", "conversation"),
    Column("sent_at", "datetime", "time"),
    Column("sender", "text", "author"),
    Column("body", "text", "text"),
]


@dataclass
class Element:
    """An element of a parsed page, with its attributes and children."""

    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        """All the text inside, as a browser would copy it."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str) -> list[Element]:
        """Every element with ``tag`` inside this one, in document order."""
        found: list[Element] = []
        for child in self.children:
            if isinstance(child, Element):
                found += [child] if child.tag == tag else []
                found += child.all(tag)
        return found

    def tags(self) -> set[str]:
        """The tags of every element inside."""
        return {self.tag} | {t for c in self.children if isinstance(c, Element) for t in c.tags()}


class TreeBuilder(HTMLParser):
    """Parses a page into :class:`Element` trees, failing on any badly nested tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document")
        self.open = [self.root]
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.open[-1].children.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1].tag == tag, f"</{tag}> closes <{self.open[-1].tag}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def write_html(path: Path, columns: list[Column], batches: list[list[tuple[Any, ...]]]) -> Element:
    """Write ``batches`` as html in :data:`ZONE` and parse the page back."""
    write_export(path, HtmlFormat(), columns, batches, zone=ZONE)
    parser = TreeBuilder()
    parser.feed(path.read_bytes().decode("utf-8"))
    parser.close()
    assert parser.doctype == "DOCTYPE html"
    assert parser.open == [parser.root], "unclosed elements"
    [page] = parser.root.all("html")
    [title] = page.all("title")
    [heading] = page.all("h1")
    assert title.text() == heading.text() == TITLE
    assert {"charset": "utf-8"} in [meta.attrs for meta in page.all("meta")]
    return page


def shown(text: str) -> str:
    """``text`` as the format documents showing it: CRLF as LF, tabs and LF kept,
    other controls as symbols."""
    return "".join(_symbol(char) for char in text.replace("\r\n", "\n"))


def _symbol(char: str) -> str:
    code = ord(char)
    if char in "\t\n":
        return char
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd" if 0x80 <= code <= 0x9F or 0xD800 <= code <= 0xDFFF else char


def display(column: Column, value: Any) -> str:
    """The documented display text of ``value`` in ``column``."""
    if value is None:
        return ""
    if column.type == "boolean" and not isinstance(value, str):
        return "true" if value else "false"
    if column.type == "datetime" and isinstance(value, datetime):
        return value.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    return shown(str(value))


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2024, 3, 5, hour, minute, second, tzinfo=UTC)


def test_it_is_registered_as_text_html() -> None:
    registered = Plugins(builtins=False, entry_points=False, extra=[html_plugin]).format("html")
    assert (registered.media_type, registered.extension) == ("text/html; charset=utf-8", "html")


def test_a_table_holds_every_value_and_times_are_local(tmp_path: Path) -> None:
    columns = [
        Column("id", "integer"),
        Column("sent_at", "datetime"),
        Column("name"),
        Column("real", "boolean"),
        Column("day", "date"),
    ]
    rows = [
        (1, at(8, 15, 2), "<b>Ann</b> & co", True, date(2024, 3, 5)),
        (2, None, "two\r\nlines\tand\x00", False, None),
    ]
    page = write_html(tmp_path / "out.html", columns, [rows[:1], [], rows[1:]])

    assert page.tags() == TABLE_TAGS
    [table] = page.all("table")
    header, *body = table.all("tr")
    assert [th.text() for th in header.all("th")] == ["id", "sent_at", "name", "real", "day"]
    assert [[td.text() for td in tr.all("td")] for tr in body] == [
        ["1", "2024-03-05 10:15:02", "<b>Ann</b> & co", "true", "2024-03-05"],
        ["2", "", "two\nlines\tand␀", "false", ""],
    ]
    [time] = table.all("time")
    assert time.attrs == {"datetime": "2024-03-05T10:15:02+02:00"}
    [style] = page.all("style")
    assert "td:nth-child(1){text-align:right}" in style.text()


def test_a_transcript_has_a_section_per_conversation(tmp_path: Path) -> None:
    rows = [
        (41, at(8, 15, 2), "Alice", "Hello"),
        (41, at(8, 15, 9), "Bob", "Hi Alice,\nhow can I help?"),
        (42, at(9, 0), "<Eve>", "<script>alert(1)</script>"),
    ]
    page = write_html(tmp_path / "out.html", TRANSCRIPT, [rows[:2], rows[2:]])

    assert page.tags() == TRANSCRIPT_TAGS
    sections = page.all("section")
    assert [section.all("h2")[0].text() for section in sections] == [
        "conversation_id: 41",
        "conversation_id: 42",
    ]
    assert [messages(section) for section in sections] == [
        [
            ("2024-03-05T10:15:02+02:00", "2024-03-05 10:15:02", "Alice", "Hello"),
            (
                "2024-03-05T10:15:09+02:00",
                "2024-03-05 10:15:09",
                "Bob",
                "Hi Alice,\nhow can I help?",
            ),
        ],
        [
            (
                "2024-03-05T11:00:00+02:00",
                "2024-03-05 11:00:00",
                "<Eve>",
                "<script>alert(1)</script>",
            )
        ],
    ]


def messages(section: Element) -> list[tuple[str | None, str, str, str]]:
    """(datetime attribute, time, author, text) of every message in ``section``."""
    found = []
    for message in section.all("div"):
        if message.attrs.get("class") != "message":
            continue
        # Before the author: a <time>, the text of a time column that holds no time, or nothing.
        *when, author, text = message.children
        assert isinstance(author, Element) and isinstance(text, Element)
        times = [child for child in when if isinstance(child, Element)]
        attribute = times[0].attrs["datetime"] if times else None
        time = "".join(child if isinstance(child, str) else child.text() for child in when)
        found.append((attribute, time, author.text(), text.text()))
    return found


def test_a_transcript_without_conversations_has_no_sections(tmp_path: Path) -> None:
    page = write_html(tmp_path / "out.html", TRANSCRIPT[1:], [[(at(8, 0), "Ann", "hi")]])

    assert page.all("section") == []
    [main] = page.all("main")
    assert messages(main) == [("2024-03-05T10:00:00+02:00", "2024-03-05 10:00:00", "Ann", "hi")]


def test_empty_exports_are_whole_pages(tmp_path: Path) -> None:
    table = write_html(tmp_path / "table.html", [Column("a")], [])
    transcript = write_html(tmp_path / "transcript.html", TRANSCRIPT, [])

    assert [th.text() for th in table.all("th")] == ["a"]
    assert table.all("td") == []
    assert transcript.all("main")[0].children == ["\n"]


def test_text_in_a_column_of_any_type_is_shown_as_it_is(tmp_path: Path) -> None:
    # SQLite stores text in a column of any type, and users load their own data.
    columns = [Column("n", "integer"), Column("at", "datetime"), Column("ok", "boolean")]
    rows = [("=1+1", "<b>yesterday</b>", "no"), (7, at(8, 0), False)]
    page = write_html(tmp_path / "out.html", columns, [rows])

    assert [[td.text() for td in tr.all("td")] for tr in page.all("tr")[1:]] == [
        ["=1+1", "<b>yesterday</b>", "no"],
        ["7", "2024-03-05 10:00:00", "false"],
    ]
    assert [time.attrs for time in page.all("time")] == [{"datetime": "2024-03-05T10:00:00+02:00"}]


def test_lone_surrogates_are_shown_as_the_replacement_character(tmp_path: Path) -> None:
    rows = [(1, at(8, 0), "Ann\ud800", "a\udfff\nb\ud83d\ude00")]
    page = write_html(tmp_path / "out.html", TRANSCRIPT, [rows])

    [section] = page.all("section")
    assert messages(section) == [
        ("2024-03-05T10:00:00+02:00", "2024-03-05 10:00:00", "Ann\ufffd", "a\ufffd\nb\ufffd\ufffd")
    ]


def test_the_page_loads_nothing_and_runs_nothing(tmp_path: Path) -> None:
    rows = [(1, at(8, 0), '<img src="http://evil.example/x.png">', "<link href=x>")]
    path = tmp_path / "out.html"
    page = write_html(path, TRANSCRIPT, [rows])

    assert page.tags() == TRANSCRIPT_TAGS
    attributes = {name for element in [page, *all_elements(page)] for name in element.attrs}
    assert attributes <= {"lang", "charset", "name", "content", "class", "datetime"}
    [style] = page.all("style")
    assert "url(" not in style.text()
    assert "@import" not in style.text()


def all_elements(element: Element) -> list[Element]:
    return [e for tag in element.tags() for e in element.all(tag)]


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(data=st.data())
def test_hostile_tables_round_trip(tmp_path: Path, data: st.DataObject) -> None:
    columns = data.draw(hostile_columns(wild=True))
    rows = data.draw(hostile_rows(columns, wild=True))
    page = write_html(tmp_path / "hostile.html", columns, [rows[:5], rows[5:]])

    assert page.tags() <= TABLE_TAGS
    header, *body = page.all("tr")
    assert [th.text() for th in header.all("th")] == [shown(column.name) for column in columns]
    assert [[td.text() for td in tr.all("td")] for tr in body] == [
        [display(column, value) for column, value in zip(columns, row, strict=True)] for row in rows
    ]


@SETTINGS
@given(data=st.data())
def test_hostile_transcripts_round_trip(tmp_path: Path, data: st.DataObject) -> None:
    columns = [Column("conversation", "text", "conversation"), *TRANSCRIPT[1:]]
    rows = data.draw(hostile_rows(columns, wild=True))
    page = write_html(tmp_path / "hostile.html", columns, [rows[:5], rows[5:]])

    assert page.tags() <= TRANSCRIPT_TAGS
    sections = page.all("section")
    runs: list[list[tuple[Any, ...]]] = []
    for row in rows:
        if not runs or runs[-1][0][0] != row[0]:
            runs.append([])
        runs[-1].append(row)
    assert [s.all("h2")[0].text() for s in sections] == [
        f"conversation: {display(columns[0], run[0][0])}" for run in runs
    ]
    assert [[m[1:] for m in messages(section)] for section in sections] == [
        [
            (display(columns[1], time), display(columns[2], author), display(columns[3], text))
            for _, time, author, text in run
        ]
        for run in runs
    ]


def test_it_takes_arrow_batches() -> None:
    assert HtmlFormat.form == "arrow"


def test_times_are_local_beyond_the_listed_transitions_and_within_an_hour(
    tmp_path: Path,
) -> None:
    # Arrow's time zone database lists transitions to 2037 only; Nepal moved from
    # +05:30 to +05:45 at 18:30 UTC, within an hour.
    columns = [Column("at", "datetime")]
    summer = [(datetime(2090, 7, 1, 12, 0, tzinfo=UTC),)]
    nepal = [
        (datetime(1985, 12, 31, 18, 15, tzinfo=UTC),),
        (datetime(1985, 12, 31, 18, 45, tzinfo=UTC),),
    ]
    pages = [
        write_export(tmp_path / "h.html", HtmlFormat(), columns, [summer], zone=ZONE),
        write_export(tmp_path / "n.html", HtmlFormat(), columns, [nepal], zone="Asia/Kathmandu"),
    ]

    times = [re.findall(r"<time [^>]*>[^<]*</time>", page.read_text("utf-8")) for page in pages]
    assert times == [
        ['<time datetime="2090-07-01T15:00:00+03:00">2090-07-01 15:00:00</time>'],
        [
            '<time datetime="1985-12-31T23:45:00+05:30">1985-12-31 23:45:00</time>',
            '<time datetime="1986-01-01T00:30:00+05:45">1986-01-01 00:30:00</time>',
        ],
    ]


def test_an_arrow_batch_with_stray_text_is_written_as_its_rows_are(tmp_path: Path) -> None:
    columns = [
        Column("n", "integer"),
        Column("at", "datetime", "time"),
        Column("who", "text", "author"),
        Column("text", "text", "text"),
    ]
    rows = [(1, at(8, 0), "<a>", "x & 'y'\r\n"), ("two", "<soon>", None, '"\x00"')]
    batch = to_arrow(rows, columns)
    assert pa.types.is_union(batch.column(1).type)
    from_arrow = write_export(tmp_path / "a.html", HtmlFormat(), columns, [batch], zone=ZONE)
    from_rows = write_export(tmp_path / "r.html", HtmlFormat(), columns, [rows], zone=ZONE)

    assert from_arrow.read_bytes() == from_rows.read_bytes()
    assert from_arrow.read_text("utf-8").split("<main>\n")[1] == (
        '<div class="message"><time datetime="2024-03-05T10:00:00+02:00">2024-03-05 10:00:00'
        '</time><span class="author">&lt;a&gt;</span>'
        '<div class="text">x &amp; &#x27;y&#x27;\n</div></div>\n'
        '<div class="message">&lt;soon&gt;<span class="author"></span>'
        '<div class="text">&quot;␀&quot;</div></div>\n'
        "</main>\n</body>\n</html>\n"
    )
