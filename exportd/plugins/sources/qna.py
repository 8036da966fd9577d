"""The ``qna`` source: the questions asked in a Q&A channel, one row per question.

Like the IBM Video Q&A export, a channel with many rooms is exported in parts
of at most ``rooms_per_part`` rooms (25 by default); each part names its rooms
in ``room_ids``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, NamedTuple

import msgspec
import pyarrow as pa

from exportd import Column, FieldError, NotFound, ReadContext, Source, hookimpl
from exportd.plugins.sources.common import (
    check_text,
    exists,
    read_arrow,
    scalar,
    sql_limit,
    time_range,
    window_args,
)


class QnaParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which channel's questions to export, and how many rooms go in one part."""

    channel_id: Annotated[str, msgspec.Meta(min_length=1)]
    room_ids: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    """Only these rooms of the channel; null for all of them."""
    rooms_per_part: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 25


COLUMNS = (
    Column("question_id", "integer"),
    Column("room_id", "text"),
    Column("room_name", "text", "conversation"),
    Column("asked_at", "datetime", "time"),
    Column("author_name", "text", "author"),
    Column("question", "text", "text"),
    Column("upvotes", "integer"),
    Column("status", "text"),
    Column("answered_at", "datetime"),
    Column("answered_by", "text"),
    Column("answer", "text"),
)


class QnaSql(NamedTuple):
    """The statements of the ``qna`` source in one dialect."""

    select: str
    row_count: str
    known_rooms: str
    """Which of the rooms ``rooms`` are the channel's."""
    channel_rooms: str
    channel_range: str
    """The first and the last question of the channel: its index answers."""
    rooms_range: str
    """The first and the last question of the rooms ``rooms``: each room's index answers."""


QUESTION_COLUMNS = (
    "q.id, q.room_id, r.name, q.asked_at, q.author_name, q.question, q.upvotes,"
    " q.status, q.answered_at, q.answered_by, q.answer"
)
QUESTIONS_ORDER = "ORDER BY q.room_id, q.asked_at, q.id"
SQLITE_FROM = """
FROM qna_questions AS q JOIN qna_rooms AS r ON r.id = q.room_id
WHERE q.channel_id = :channel AND q.asked_at >= :start AND q.asked_at < :end
    AND (:rooms IS NULL OR q.room_id IN (SELECT value FROM json_each(:rooms)))
"""
POSTGRES_FROM = """
FROM qna_questions AS q JOIN qna_rooms AS r ON r.id = q.room_id
WHERE q.channel_id = %(channel)s AND q.asked_at >= %(start)s AND q.asked_at < %(end)s
    AND (%(rooms)s::text[] IS NULL OR q.room_id = ANY(%(rooms)s::text[]))
"""
SQLITE_CHANNEL = "FROM qna_questions WHERE channel_id = :channel"
POSTGRES_CHANNEL = "FROM qna_questions WHERE channel_id = %(channel)s"
ROOM = "FROM qna_questions WHERE room_id = r.value"
SQLITE = QnaSql(
    select=f"SELECT {QUESTION_COLUMNS} {SQLITE_FROM} {QUESTIONS_ORDER} LIMIT coalesce(:limit, -1)",
    row_count=f"SELECT count(*) {SQLITE_FROM}",
    known_rooms="SELECT id FROM qna_rooms WHERE channel_id = :channel"
    " AND id IN (SELECT value FROM json_each(:rooms))",
    channel_rooms="SELECT id FROM qna_rooms WHERE channel_id = :channel ORDER BY id",
    channel_range=f"SELECT (SELECT min(asked_at) {SQLITE_CHANNEL}),"
    f" (SELECT max(asked_at) {SQLITE_CHANNEL})",
    rooms_range=f"""
SELECT min(first), max(last) FROM (
    SELECT (SELECT min(asked_at) {ROOM}) AS first, (SELECT max(asked_at) {ROOM}) AS last
    FROM json_each(:rooms) AS r
)
""",
)
POSTGRESQL = QnaSql(
    select=f"SELECT {QUESTION_COLUMNS} {POSTGRES_FROM} {QUESTIONS_ORDER} LIMIT %(limit)s",
    row_count=f"SELECT count(*) {POSTGRES_FROM}",
    known_rooms="SELECT id FROM qna_rooms WHERE channel_id = %(channel)s"
    " AND id = ANY(%(rooms)s::text[])",
    channel_rooms="SELECT id FROM qna_rooms WHERE channel_id = %(channel)s ORDER BY id",
    channel_range=f"SELECT (SELECT min(asked_at) {POSTGRES_CHANNEL}),"
    f" (SELECT max(asked_at) {POSTGRES_CHANNEL})",
    rooms_range=f"""
SELECT min(first), max(last) FROM (
    SELECT (SELECT min(asked_at) {ROOM}) AS first, (SELECT max(asked_at) {ROOM}) AS last
    FROM unnest(%(rooms)s::text[]) AS r(value)
) AS rooms
""",
)
STATEMENTS = {"sqlite": SQLITE, "postgresql": POSTGRESQL}


def _rooms(rooms: list[str] | None, ctx: ReadContext) -> str | list[str] | None:
    """A list of room ids as the store takes it: JSON text for SQLite, an array for
    PostgreSQL."""
    return json.dumps(rooms) if rooms is not None and ctx.data.dialect == "sqlite" else rooms


def _args(params: QnaParams, ctx: ReadContext) -> dict[str, Any]:
    rooms = _rooms(params.room_ids, ctx)
    return {"channel": params.channel_id, "rooms": rooms, **window_args(ctx.data, ctx.window)}


class QnaSource(Source[QnaParams]):
    """One row per question of a Q&A channel, in parts of at most ``rooms_per_part`` rooms."""

    name = "qna"
    description = "questions of a Q&A channel (one row per question, parts of 25 rooms)"
    Params = QnaParams
    form = "arrow"

    def validate(self, params: QnaParams, ctx: ReadContext) -> None:
        """The channel exists, and so does every room named, in that channel."""
        check_text(params)
        if not exists(ctx, "qna_channels", params.channel_id):
            raise NotFound.field(
                "params.channel_id", f"no Q&A channel with id {params.channel_id!r}"
            )
        if params.room_ids is None:
            return
        args = {"channel": params.channel_id, "rooms": _rooms(params.room_ids, ctx)}
        with ctx.data.connect() as conn:
            rows = conn.execute(STATEMENTS[ctx.data.dialect].known_rooms, args).fetchall()
        known = {room_id for (room_id,) in rows}
        missing = [
            FieldError(f"params.room_ids[{index}]", f"no room {room_id!r} in this channel")
            for index, room_id in enumerate(params.room_ids)
            if room_id not in known
        ]
        if missing:
            raise NotFound("unknown Q&A rooms", missing)

    def columns(self, params: QnaParams, ctx: ReadContext) -> Sequence[Column]:
        """The question columns."""
        return COLUMNS

    def parts(self, params: QnaParams, ctx: ReadContext) -> Sequence[QnaParams]:
        """The channel's rooms (or ``room_ids``), sorted by id, ``rooms_per_part`` at a time."""
        if params.room_ids is not None:
            rooms = sorted(set(params.room_ids))
        else:
            sql = STATEMENTS[ctx.data.dialect].channel_rooms
            with ctx.data.connect() as conn:
                rows = conn.execute(sql, {"channel": params.channel_id}).fetchall()
            rooms = [room_id for (room_id,) in rows]
        size = params.rooms_per_part
        if len(rooms) <= size:
            return [params]
        return [
            msgspec.structs.replace(params, room_ids=rooms[start : start + size])
            for start in range(0, len(rooms), size)
        ]

    def estimate(self, params: QnaParams, ctx: ReadContext) -> int | None:
        """The number of questions asked in the window."""
        return int(scalar(ctx, STATEMENTS[ctx.data.dialect].row_count, _args(params, ctx)))

    def time_range(self, params: QnaParams, ctx: ReadContext) -> tuple[datetime, datetime] | None:
        """When the first and the last question of the channel (or of ``room_ids``) was asked."""
        sql = STATEMENTS[ctx.data.dialect]
        if params.room_ids is None:
            return time_range(ctx, sql.channel_range, {"channel": params.channel_id})
        return time_range(ctx, sql.rooms_range, {"rooms": _rooms(params.room_ids, ctx)})

    def read(self, params: QnaParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield the questions room by room, in the order they were asked, as Arrow batches."""
        args = _args(params, ctx) | {"limit": sql_limit(ctx.limit)}
        yield from read_arrow(ctx, STATEMENTS[ctx.data.dialect].select, args, COLUMNS)


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    """The ``qna`` source."""
    return [QnaSource()]
