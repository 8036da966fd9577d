"""Helpers the built-in formats share: times in the request's zone, transcript roles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from exportd import Column


def local_time(value: datetime, zone: ZoneInfo) -> datetime:
    """``value`` (aware) in ``zone``; a naive value is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return value.astimezone(zone)


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
