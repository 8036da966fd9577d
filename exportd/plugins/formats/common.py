"""Helpers the built-in formats share: times in the request's zone, transcript roles,
and the display text of values for the human-readable formats (txt, html)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from exportd import Column, ExportInfo

Render = Callable[[Any], str]

# C0 controls and DEL have visible stand-ins in Unicode's Control Pictures block
# (U+2400-U+2421); C1 controls, lone surrogates (which UTF-8 cannot encode) and the
# line/paragraph separators have none, so they become U+FFFD.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_CONTROLS_BUT_LINES = re.compile("\r\n|[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def local_time(value: datetime, zone: ZoneInfo) -> datetime:
    """``value`` (aware) in ``zone``; a naive value is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return value.astimezone(zone)


def clock(local: datetime) -> str:
    """A local time as ``YYYY-MM-DD HH:MM:SS``: to the second, without its offset."""
    return local.isoformat(" ", "seconds")[:19]


def export_title(info: ExportInfo) -> str:
    """A heading for an export: its source and interval, in the request's zone."""
    window = info.window
    start, end = (clock(local_time(t, window.timezone)) for t in (window.start, window.end))
    return f"{info.source}: {start} to {end} ({window.timezone.key})"


def printable(text: str) -> str:
    """``text`` with every control character shown as a visible symbol, so that it
    stays on one line: ``"\\n"`` becomes ``"␊"``, NUL ``"␀"``, tab ``"␉"`` (the
    Control Pictures block); C1 controls, U+2028/U+2029 and lone surrogates ``"�"``.
    """
    return _CONTROLS.sub(_picture, text)


def printable_lines(text: str) -> str:
    """Like :func:`printable`, but tabs, line feeds and U+2028/U+2029 stay; CRLF becomes LF."""
    return _CONTROLS_BUT_LINES.sub(_picture, text)


def _picture(match: re.Match[str]) -> str:
    char = match[0]
    if char == "\r\n":
        return "\n"
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    return "\u2421" if code == 0x7F else "\ufffd"


def renderers(columns: Sequence[Column], zone: ZoneInfo) -> list[Render]:
    """For each column, a function giving the display text of one of its values.

    ``None`` is empty, booleans (or SQLite's 0/1) are ``true``/``false``,
    datetimes are the local :func:`clock` time in ``zone``, anything else ``str()``.
    Control characters are left as they are: see :func:`printable`.
    """

    def render_time(value: Any) -> str:
        return "" if value is None else clock(local_time(value, zone))

    by_type: dict[str, Render] = {"datetime": render_time, "boolean": _render_boolean}
    return [by_type.get(column.type, _render_plain) for column in columns]


def _render_plain(value: Any) -> str:
    return "" if value is None else str(value)


def _render_boolean(value: Any) -> str:
    return "" if value is None else "true" if value else "false"


@dataclass(frozen=True)
class TranscriptLayout:
    """Column positions of a transcript: time, author, text and (maybe) conversation."""

    time: int
    author: int
    text: int
    conversation: int | None


def transcript_layout(columns: Sequence[Column]) -> TranscriptLayout | None:
    """The transcript layout if the columns carry time, author and text roles, else None."""
    roles = {column.role: index for index, column in enumerate(columns) if column.role}
    if not {"time", "author", "text"} <= roles.keys():
        return None
    return TranscriptLayout(
        time=roles["time"],
        author=roles["author"],
        text=roles["text"],
        conversation=roles.get("conversation"),
    )
