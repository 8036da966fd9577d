"""The ``qna`` source: the questions asked in a Q&A channel, one row per question.

Like the IBM Video Q&A export, a channel with many rooms is exported in parts
of at most ``rooms_per_part`` rooms (25 by default); each part names its rooms
in ``room_ids``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any

import msgspec

from exportd import Batch, Column, FieldError, NotFound, ReadContext, Source, hookimpl
from exportd.plugins.sources.common import (
    Rows,
    batches,
    check_text,
    connection,
    exists,
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

FROM = """
FROM qna_questions AS q JOIN qna_rooms AS r ON r.id = q.room_id
WHERE q.channel_id = :channel AND q.asked_at >= :start AND q.asked_at < :end
    AND (:rooms IS NULL OR q.room_id IN (SELECT value FROM json_each(:rooms)))
"""
SELECT = (
    "SELECT q.id, q.room_id, r.name, q.asked_at, q.author_name, q.question, q.upvotes,"
    f" q.status, q.answered_at, q.answered_by, q.answer {FROM}"
    " ORDER BY q.room_id, q.asked_at, q.id LIMIT :limit"
)
COUNT = f"SELECT count(*) {FROM}"
# The channel's index answers for the whole channel; each named room's, for some rooms.
CHANNEL = "FROM qna_questions WHERE channel_id = :channel"
CHANNEL_RANGE = f"SELECT (SELECT min(asked_at) {CHANNEL}), (SELECT max(asked_at) {CHANNEL})"
ROOM = "FROM qna_questions WHERE room_id = r.value"
ROOMS_RANGE = f"""
SELECT min(first), max(last) FROM (
    SELECT (SELECT min(asked_at) {ROOM}) AS first, (SELECT max(asked_at) {ROOM}) AS last
    FROM json_each(:rooms) AS r
)
"""


def _args(params: QnaParams, ctx: ReadContext) -> dict[str, Any]:
    rooms = None if params.room_ids is None else json.dumps(params.room_ids)
    return {"channel": params.channel_id, "rooms": rooms, **window_args(ctx.window)}


def _question_rows(rows: Rows) -> Batch:
    parse = datetime.fromisoformat
    return [
        (id_, room, name, parse(asked), author, text, votes, status, at and parse(at), by, answer)
        for id_, room, name, asked, author, text, votes, status, at, by, answer in rows
    ]


class QnaSource(Source[QnaParams]):
    """One row per question of a Q&A channel, in parts of at most ``rooms_per_part`` rooms."""

    name = "qna"
    description = "questions of a Q&A channel (one row per question, parts of 25 rooms)"
    Params = QnaParams

    def validate(self, params: QnaParams, ctx: ReadContext) -> None:
        """The channel exists, and so does every room named, in that channel."""
        check_text(params)
        with connection(ctx) as conn:
            if not exists(conn, "qna_channels", params.channel_id, ctx.org_id):
                raise NotFound.field(
                    "params.channel_id", f"no Q&A channel with id {params.channel_id!r}"
                )
            if params.room_ids is None:
                return
            known = {
                room_id
                for (room_id,) in conn.execute(
                    "SELECT id FROM qna_rooms WHERE channel_id = ?"
                    " AND id IN (SELECT value FROM json_each(?))",
                    (params.channel_id, json.dumps(params.room_ids)),
                )
            }
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
            with connection(ctx) as conn:
                rooms = [
                    room_id
                    for (room_id,) in conn.execute(
                        "SELECT id FROM qna_rooms WHERE channel_id = ? ORDER BY id",
                        (params.channel_id,),
                    )
                ]
        size = params.rooms_per_part
        if len(rooms) <= size:
            return [params]
        return [
            msgspec.structs.replace(params, room_ids=rooms[start : start + size])
            for start in range(0, len(rooms), size)
        ]

    def estimate(self, params: QnaParams, ctx: ReadContext) -> int | None:
        """The number of questions asked in the window."""
        with connection(ctx) as conn:
            count: int = conn.execute(COUNT, _args(params, ctx)).fetchone()[0]
        return count

    def time_range(self, params: QnaParams, ctx: ReadContext) -> tuple[datetime, datetime] | None:
        """When the first and the last question of the channel (or of ``room_ids``) was asked."""
        if params.room_ids is None:
            return time_range(ctx, CHANNEL_RANGE, {"channel": params.channel_id})
        return time_range(ctx, ROOMS_RANGE, {"rooms": json.dumps(params.room_ids)})

    def read(self, params: QnaParams, ctx: ReadContext) -> Iterator[Batch]:
        """Yield the questions room by room, in the order they were asked."""
        with connection(ctx) as conn:
            args = _args(params, ctx) | {"limit": sql_limit(ctx.limit)}
            cursor = conn.execute(SELECT, args)
            yield from batches(cursor, ctx.batch_size, _question_rows)


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    """The ``qna`` source."""
    return [QnaSource()]
