"""The ``rooms`` source: a chat room's message logs, or its figures per day.

It follows the giosg report export: ``type`` is ``logs`` (one row per message,
with its conversation) or ``stats`` (one row per day in the request's time
zone); ``is_real_conversation`` and ``min_message_count`` filter the logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa

from exportd import (
    Column,
    DataStore,
    FieldError,
    InvalidRequest,
    NotFound,
    ReadContext,
    Source,
    Window,
    hookimpl,
)
from exportd.plugins.sources.common import (
    SQL_INT_MAX,
    arrow_batch,
    check_text,
    db_time,
    exists,
    scalar,
    sql_limit,
    time_range,
    window_args,
)


class RoomsParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What to export from a room."""

    room_id: Annotated[str, msgspec.Meta(min_length=1)]
    type: Literal["logs", "stats"]
    is_real_conversation: bool | None = None
    """logs only: true for real conversations, false for the others, null for all."""
    min_message_count: Annotated[int, msgspec.Meta(ge=0, le=SQL_INT_MAX)] = 0
    """logs only: the fewest visitor and operator messages a conversation must have."""


LOG_COLUMNS = (
    Column("conversation_id", "text", "conversation"),
    Column("conversation_started_at", "datetime"),
    Column("is_real_conversation", "boolean"),
    Column("message_id", "integer"),
    Column("sent_at", "datetime", "time"),
    Column("sender_type", "text"),
    Column("sender_name", "text", "author"),
    Column("body", "text", "text"),
)

STATS_COLUMNS = (
    Column("date", "date"),
    Column("chats", "integer"),
    Column("real_chats", "integer"),
    Column("missed_chats", "integer"),
    Column("visitors", "integer"),
    Column("messages", "integer"),
    Column("visitor_messages", "integer"),
    Column("operator_messages", "integer"),
    Column("operators", "integer"),
    Column("avg_first_response_seconds", "float"),
    Column("median_first_response_seconds", "float"),
    Column("avg_duration_seconds", "float"),
)


class RoomsSql(NamedTuple):
    """The statements of the ``rooms`` source in one dialect."""

    logs_from: str
    """The logs' rows, with ``{columns}`` to select and ``{filters}`` on ``c``."""
    logs: str
    """:attr:`logs_from` in order, at most ``limit`` rows."""
    is_real: str
    """The filter ``c.is_real = is_real``."""
    min_count: str
    """The filter "``c`` has at least ``min_count`` visitor and operator messages"."""
    room_messages: str
    room_conversations: str
    touched_range: str
    """The first and last start time of the conversations with a message in the window,
    from the window's messages (each of them read)."""
    first_touched: str
    """The first of them, from the room's conversations in start order (until one has a
    message in the window: the earlier ones are read); ``{order}`` is ``ASC``, or
    ``DESC`` for the last."""
    some_messages: str
    """How many messages the room has in the window, counting no more than ``cap``."""
    started_between: str
    """How many of the room's conversations started from ``first`` to ``last``."""
    nth_started: str
    """When the ``offset``-th (0-based) of them started."""
    slice_start: str
    slice_end: str
    """The filters "``c`` started at ``slice_start`` or later" and "before ``slice_end``"."""
    room_range: str
    stats: str


# The start times of the conversations with a message in the window (``:first`` and
# ``:last``, found by _started_range) bound the scan of the room's conversations (in
# start order), so that each conversation's messages stream out without sorting the
# whole result.
SQLITE_LOGS_FROM = """
SELECT {columns}
FROM conversations AS c
CROSS JOIN messages AS m ON m.conversation_id = c.id AND m.sent_at >= :start AND m.sent_at < :end
WHERE c.room_id = :room AND c.started_at >= :first AND c.started_at <= :last
    {filters}
"""
POSTGRES_LOGS_FROM = """
SELECT {columns}
FROM conversations AS c
JOIN messages AS m
    ON m.conversation_id = c.id AND m.sent_at >= %(start)s AND m.sent_at < %(end)s
WHERE c.room_id = %(room)s AND c.started_at >= %(first)s AND c.started_at <= %(last)s
    {filters}
"""
LOGS_ORDER = "ORDER BY c.started_at, c.id, m.sent_at, m.id"
LOG_SELECT = "c.id, c.started_at, c.is_real, m.id, m.sent_at, m.sender_type, m.sender_name, m.body"

# What the two dialects' stats share: the first operator reply after the visitor's
# first message, the median of the responses, and one row per day.
CHATS = """chats AS MATERIALIZED (
    SELECT s.*, (
        SELECT min(r.sent_at) FROM messages AS r
        WHERE r.conversation_id = s.id AND r.sender_type = 'operator' AND r.sent_at > s.asked_at
    ) AS replied_at, EXISTS (
        SELECT 1 FROM messages AS o WHERE o.conversation_id = s.id AND o.sender_type = 'operator'
    ) AS answered
    FROM started AS s
),"""
RESPONSE_FIGURES = """response_figures AS (
    -- The median is the middle response, or the mean of the middle two.
    SELECT day, round(max(average), 1) AS average, round(avg(seconds), 1) AS median
    FROM responses WHERE rank IN ((n + 1) / 2, (n + 2) / 2)
    GROUP BY day
),"""
BY_DAY = """FROM days AS d
LEFT JOIN chat_figures USING (day)
LEFT JOIN response_figures USING (day)
LEFT JOIN message_figures USING (day)
ORDER BY d.day"""

# A chat counts on the day it started; a message on the day it was sent.  Durations and
# response times are of times rounded to the millisecond (SQLite's julianday() keeps
# milliseconds), and rounded to the millisecond before they are averaged, so that
# SQLite's floating days give PostgreSQL's exact figures.
SQLITE_STATS = f"""
WITH days AS (
    SELECT key AS day, json_extract(value, '$[0]') AS lo, json_extract(value, '$[1]') AS hi
    FROM json_each(:days)
),
started AS MATERIALIZED (
    SELECT d.day, c.id, c.is_real, c.visitor_id, c.started_at, c.ended_at, (
        SELECT min(v.sent_at) FROM messages AS v
        WHERE v.conversation_id = c.id AND v.sender_type = 'visitor'
    ) AS asked_at
    FROM days AS d
    JOIN conversations AS c ON c.room_id = :room AND c.started_at >= d.lo AND c.started_at < d.hi
),
{CHATS}
chat_figures AS (
    SELECT day, count(*) AS chats, sum(is_real) AS real_chats,
        sum(is_real AND NOT answered) AS missed_chats, count(DISTINCT visitor_id) AS visitors,
        round(avg(round((julianday(ended_at) - julianday(started_at)) * 86400, 3)), 1)
            AS duration
    FROM chats GROUP BY day
),
responses AS (
    SELECT day, seconds, avg(seconds) OVER per_day AS average,
        row_number() OVER (per_day ORDER BY seconds) AS rank, count(*) OVER per_day AS n
    FROM (
        SELECT day, round((julianday(replied_at) - julianday(asked_at)) * 86400, 3) AS seconds
        FROM chats WHERE replied_at IS NOT NULL
    )
    WINDOW per_day AS (PARTITION BY day)
),
{RESPONSE_FIGURES}
message_figures AS (
    SELECT d.day, count(*) AS messages,
        sum(m.sender_type = 'visitor') AS visitor_messages,
        sum(m.sender_type = 'operator') AS operator_messages,
        count(DISTINCT CASE WHEN m.sender_type = 'operator'
            THEN coalesce(m.sender_id, m.sender_name) END) AS operators
    FROM days AS d
    JOIN messages AS m ON m.room_id = :room AND m.sent_at >= d.lo AND m.sent_at < d.hi
    GROUP BY d.day
)
SELECT d.day, coalesce(chats, 0), coalesce(real_chats, 0), coalesce(missed_chats, 0),
    coalesce(visitors, 0), coalesce(messages, 0), coalesce(visitor_messages, 0),
    coalesce(operator_messages, 0), coalesce(operators, 0), average, median, duration
{BY_DAY}
"""


def _pg_seconds(start: str, end: str) -> str:
    """PostgreSQL's seconds from ``start`` to ``end``, each time rounded to the
    millisecond (half up) as SQLite's julianday() rounds it, so that both stores agree
    for sub-millisecond times; ``numeric`` also where ``extract`` gives ``double
    precision`` (PostgreSQL 13)."""
    start, end = (f"date_trunc('milliseconds', {t} + interval '0.5 ms')" for t in (start, end))
    return f"round(extract(epoch FROM {end} - {start})::numeric, 3)"


# The same figures; numeric arithmetic (exact), cast to float8 at the end.
POSTGRES_STATS = f"""
WITH days AS (
    SELECT d.day - 1 AS day, d.lo, d.hi
    FROM unnest(%(los)s::timestamptz[], %(his)s::timestamptz[]) WITH ORDINALITY AS d(lo, hi, day)
),
started AS MATERIALIZED (
    SELECT d.day, c.id, c.is_real, c.visitor_id, c.started_at, c.ended_at, (
        SELECT min(v.sent_at) FROM messages AS v
        WHERE v.conversation_id = c.id AND v.sender_type = 'visitor'
    ) AS asked_at
    FROM days AS d
    JOIN conversations AS c
        ON c.room_id = %(room)s AND c.started_at >= d.lo AND c.started_at < d.hi
),
{CHATS}
chat_figures AS (
    SELECT day, count(*) AS chats, count(*) FILTER (WHERE is_real) AS real_chats,
        count(*) FILTER (WHERE is_real AND NOT answered) AS missed_chats,
        count(DISTINCT visitor_id) AS visitors,
        round(avg({_pg_seconds("started_at", "ended_at")}), 1) AS duration
    FROM chats GROUP BY day
),
responses AS (
    SELECT day, seconds, avg(seconds) OVER per_day AS average,
        row_number() OVER (per_day ORDER BY seconds) AS rank, count(*) OVER per_day AS n
    FROM (
        SELECT day, {_pg_seconds("asked_at", "replied_at")} AS seconds
        FROM chats WHERE replied_at IS NOT NULL
    ) AS replied
    WINDOW per_day AS (PARTITION BY day)
),
{RESPONSE_FIGURES}
message_figures AS (
    SELECT d.day, count(*) AS messages,
        count(*) FILTER (WHERE m.sender_type = 'visitor') AS visitor_messages,
        count(*) FILTER (WHERE m.sender_type = 'operator') AS operator_messages,
        count(DISTINCT CASE WHEN m.sender_type = 'operator'
            THEN coalesce(m.sender_id, m.sender_name) END) AS operators
    FROM days AS d
    JOIN messages AS m ON m.room_id = %(room)s AND m.sent_at >= d.lo AND m.sent_at < d.hi
    GROUP BY d.day
)
SELECT d.day, coalesce(chats, 0), coalesce(real_chats, 0), coalesce(missed_chats, 0),
    coalesce(visitors, 0), coalesce(messages, 0), coalesce(visitor_messages, 0),
    coalesce(operator_messages, 0), coalesce(operators, 0),
    average::float8, median::float8, duration::float8
{BY_DAY}
"""

SQLITE = RoomsSql(
    logs_from=SQLITE_LOGS_FROM,
    logs=f"{SQLITE_LOGS_FROM}{LOGS_ORDER} LIMIT coalesce(:limit, -1)",
    is_real=" AND c.is_real = :is_real",
    min_count=""" AND (
        SELECT count(*) FROM messages AS x
        WHERE x.conversation_id = c.id AND x.sender_type IN ('visitor', 'operator')
    ) >= :min_count""",
    room_messages="""
SELECT count(*) FROM messages
WHERE room_id = :room AND sent_at >= :start AND sent_at < :end
""",
    room_conversations="SELECT count(*) FROM conversations WHERE room_id = :room",
    touched_range="""
SELECT min(c.started_at), max(c.started_at) FROM conversations AS c
WHERE c.id IN (
    SELECT m.conversation_id FROM messages AS m
    WHERE m.room_id = :room AND m.sent_at >= :start AND m.sent_at < :end
)
""",
    first_touched="""
SELECT c.started_at FROM conversations AS c
WHERE c.room_id = :room AND EXISTS (
    SELECT 1 FROM messages AS m
    WHERE m.conversation_id = c.id AND m.sent_at >= :start AND m.sent_at < :end
)
ORDER BY c.started_at {order} LIMIT 1
""",
    some_messages="SELECT count(*) FROM (SELECT 1 FROM messages WHERE room_id = :room"
    " AND sent_at >= :start AND sent_at < :end LIMIT :cap)",
    started_between="SELECT count(*) FROM conversations"
    " WHERE room_id = :room AND started_at >= :first AND started_at <= :last",
    nth_started="SELECT started_at FROM conversations"
    " WHERE room_id = :room AND started_at >= :first AND started_at <= :last"
    " ORDER BY started_at LIMIT 1 OFFSET :offset",
    slice_start=" AND c.started_at >= :slice_start",
    slice_end=" AND c.started_at < :slice_end",
    # Two subqueries, as min() and max() together would scan the room's entries of the index.
    room_range="""
SELECT (SELECT min(sent_at) FROM messages WHERE room_id = :room),
    (SELECT max(sent_at) FROM messages WHERE room_id = :room)
""",
    stats=SQLITE_STATS,
)
POSTGRESQL = RoomsSql(
    logs_from=POSTGRES_LOGS_FROM,
    logs=f"{POSTGRES_LOGS_FROM}{LOGS_ORDER} LIMIT %(limit)s",
    is_real=" AND c.is_real = %(is_real)s",
    min_count=""" AND (
        SELECT count(*) FROM messages AS x
        WHERE x.conversation_id = c.id AND x.sender_type IN ('visitor', 'operator')
    ) >= %(min_count)s""",
    room_messages="""
SELECT count(*) FROM messages
WHERE room_id = %(room)s AND sent_at >= %(start)s AND sent_at < %(end)s
""",
    room_conversations="SELECT count(*) FROM conversations WHERE room_id = %(room)s",
    touched_range="""
SELECT min(c.started_at), max(c.started_at) FROM conversations AS c
WHERE c.id IN (
    SELECT m.conversation_id FROM messages AS m
    WHERE m.room_id = %(room)s AND m.sent_at >= %(start)s AND m.sent_at < %(end)s
)
""",
    first_touched="""
SELECT c.started_at FROM conversations AS c
WHERE c.room_id = %(room)s AND EXISTS (
    SELECT 1 FROM messages AS m
    WHERE m.conversation_id = c.id AND m.sent_at >= %(start)s AND m.sent_at < %(end)s
)
ORDER BY c.started_at {order} LIMIT 1
""",
    some_messages="SELECT count(*) FROM (SELECT 1 FROM messages WHERE room_id = %(room)s"
    " AND sent_at >= %(start)s AND sent_at < %(end)s LIMIT %(cap)s) AS capped",
    started_between="SELECT count(*) FROM conversations"
    " WHERE room_id = %(room)s AND started_at >= %(first)s AND started_at <= %(last)s",
    nth_started="SELECT started_at FROM conversations"
    " WHERE room_id = %(room)s AND started_at >= %(first)s AND started_at <= %(last)s"
    " ORDER BY started_at LIMIT 1 OFFSET %(offset)s",
    slice_start=" AND c.started_at >= %(slice_start)s",
    slice_end=" AND c.started_at < %(slice_end)s",
    room_range="""
SELECT (SELECT min(sent_at) FROM messages WHERE room_id = %(room)s),
    (SELECT max(sent_at) FROM messages WHERE room_id = %(room)s)
""",
    stats=POSTGRES_STATS,
)
STATEMENTS = {"sqlite": SQLITE, "postgresql": POSTGRESQL}


def _local_date(moment: datetime, zone: ZoneInfo, field: str) -> date:
    """The day ``moment`` falls on in ``zone``, or an error naming ``field`` if out of range."""
    try:
        return moment.astimezone(zone).date()
    except OverflowError:
        raise InvalidRequest.field(
            field, f"its day in {zone} is out of the supported range (years 1 to 9999)"
        ) from None


def local_dates(window: Window) -> tuple[date, date]:
    """The first and the last day of the window in its time zone.

    A day beyond the years 1 to 9999 is an :class:`~exportd.InvalidRequest`
    naming the end of the interval it belongs to.
    """
    last_moment = window.end - timedelta(microseconds=1)
    return (
        _local_date(window.start, window.timezone, "interval.start"),
        _local_date(last_moment, window.timezone, "interval.end"),
    )


def day_count(window: Window) -> int:
    """How many days :func:`local_days` yields, without making them."""
    first, last = local_dates(window)
    return (last - first).days + 1


def local_days(window: Window) -> Iterator[tuple[date, datetime, datetime]]:
    """The days of the window in its time zone, each with its UTC ``[start, end)``.

    A day runs from local midnight to the next (23 or 25 hours on a DST change);
    the first and last day are cut to the window.
    """
    first, last = local_dates(window)
    day, start = first, window.start
    while day < last:
        following = day + timedelta(days=1)
        end = datetime.combine(following, time(), window.timezone).astimezone(UTC)
        yield day, start, end
        day, start = following, end
    yield last, start, window.end


def _conversation_filters(params: RoomsParams, sql: RoomsSql) -> tuple[str, dict[str, Any]]:
    """The logs' conversation filters as SQL on ``c`` and their parameters."""
    filters = ""
    args: dict[str, Any] = {}
    if params.is_real_conversation is not None:
        filters += sql.is_real
        args["is_real"] = params.is_real_conversation
    if params.min_message_count:
        filters += sql.min_count
        args["min_count"] = params.min_message_count
    return filters, args


def _day_args(store: DataStore, chunk: Sequence[tuple[date, datetime, datetime]]) -> dict[str, Any]:
    """The UTC ``[start, end)`` of each day of ``chunk``: for SQLite one JSON array of
    pairs, ``days``; for PostgreSQL two arrays, ``los`` and ``his``."""
    if store.dialect == "sqlite":
        pairs = [[db_time(store, start), db_time(store, end)] for _, start, end in chunk]
        return {"days": json.dumps(pairs)}
    return {"los": [start for _, start, _ in chunk], "his": [end for _, _, end in chunk]}


def touched_starts(conn: Any, sql: RoomsSql, args: dict[str, Any]) -> tuple[Any, Any] | None:
    """The first and the last start time of the room's conversations with a message in
    the window, or ``None`` without one.

    They come from whichever the room has fewer of: its conversations (read in start
    order from each end until one has a message in the window, no more than all of
    them) or the window's messages (each read, their conversations looked up).  The
    messages are counted up to one more than the conversations only.
    """
    conversations = conn.execute(sql.room_conversations, args).fetchone()[0]
    messages = conn.execute(sql.some_messages, args | {"cap": conversations + 1}).fetchone()[0]
    if not messages:
        return None
    if conversations < messages:
        first, last = (
            conn.execute(sql.first_touched.format(order=order), args).fetchone()[0]
            for order in ("ASC", "DESC")
        )
    else:
        first, last = conn.execute(sql.touched_range, args).fetchone()
    return first, last


class RoomsSlicing(NamedTuple):
    """The bounds every slice of one sliced logs read takes: the first and last start
    times of the conversations it holds (``None``: it holds none), and the start time
    each slice but the first starts from."""

    touched: tuple[Any, Any] | None
    starts: tuple[Any, ...]


def rooms_slicing(conn: Any, sql: RoomsSql, args: dict[str, Any], count: int) -> RoomsSlicing:
    """The bounds of ``count`` slices: the start time of the conversation at each slice's
    share of those the window touches (index seeks)."""
    touched = touched_starts(conn, sql, args)
    if touched is None:
        return RoomsSlicing(None, ())
    args = args | {"first": touched[0], "last": touched[1]}
    conversations = conn.execute(sql.started_between, args).fetchone()[0]
    starts = tuple(
        conn.execute(sql.nth_started, args | {"offset": conversations * share // count}).fetchone()[
            0
        ]
        for share in range(1, count)
    )
    return RoomsSlicing(touched, starts)


def _slice_filters(
    bounds: RoomsSlicing, sql: RoomsSql, args: dict[str, Any], ctx: ReadContext
) -> str:
    """The filters on ``c`` of the slice ``ctx.slice`` of ``ctx.slice_count``, their
    parameters added to ``args``: the conversations that started from the slice's start
    time (``bounds``) to the next slice's.  The logs are in start-time order, so the
    slices, one after the other, are the whole read."""
    filters = ""
    for name, clause, share in (
        ("slice_start", sql.slice_start, ctx.slice),
        ("slice_end", sql.slice_end, ctx.slice + 1),
    ):
        if 0 < share < ctx.slice_count:
            filters += clause
            args[name] = bounds.starts[share - 1]
    return filters


class RoomsSource(Source[RoomsParams]):
    """A room's chat logs (one row per message) or stats (one row per local day)."""

    name = "rooms"
    description = "chat room logs (one row per message) or stats (one row per day)"
    Params = RoomsParams
    form = "arrow"
    sliceable = True
    Slicing = RoomsSlicing | None

    def validate(self, params: RoomsParams, ctx: ReadContext) -> None:
        """The logs-only parameters are unset for stats, the window's days exist,
        and so does the room.
        """
        check_text(params)
        if params.type == "stats":
            local_dates(ctx.window)  # the days must exist to be rows
            misplaced = [
                FieldError(f"params.{name}", "available only if type is logs")
                for name, given in (
                    ("is_real_conversation", params.is_real_conversation is not None),
                    ("min_message_count", params.min_message_count != 0),
                )
                if given
            ]
            if misplaced:
                raise InvalidRequest("parameters for logs given with type stats", misplaced)
        if not exists(ctx, "rooms", params.room_id):
            raise NotFound.field("params.room_id", f"no room with id {params.room_id!r}")

    def columns(self, params: RoomsParams, ctx: ReadContext) -> Sequence[Column]:
        """Message columns for logs, figure columns for stats."""
        return LOG_COLUMNS if params.type == "logs" else STATS_COLUMNS

    def estimate(self, params: RoomsParams, ctx: ReadContext) -> int | None:
        """Messages that match (logs) or days in the window (stats)."""
        if params.type == "stats":
            return day_count(ctx.window)
        sql = STATEMENTS[ctx.data.dialect]
        filters, args = _conversation_filters(params, sql)
        args |= {"room": params.room_id, **window_args(ctx.data, ctx.window)}
        if not filters:  # the room's index alone counts the messages
            return int(scalar(ctx, sql.room_messages, args))
        count = sql.logs_from.format(columns="count(*)", filters=filters)
        with ctx.data.connect() as conn:
            if (touched := touched_starts(conn, sql, args)) is None:
                return 0
            first, last = touched
            return int(conn.execute(count, args | {"first": first, "last": last}).fetchone()[0])

    def time_range(self, params: RoomsParams, ctx: ReadContext) -> tuple[datetime, datetime] | None:
        """When the room's first and last messages were sent (filters aside)."""
        return time_range(ctx, STATEMENTS[ctx.data.dialect].room_range, {"room": params.room_id})

    def slicing(self, params: RoomsParams, ctx: ReadContext) -> RoomsSlicing | None:
        """The logs' slices' bounds, found once for them all (the stats slice their days,
        which do not change)."""
        if params.type != "logs":
            return None
        sql = STATEMENTS[ctx.data.dialect]
        _, args = _conversation_filters(params, sql)
        args |= {"room": params.room_id, **window_args(ctx.data, ctx.window)}
        with ctx.data.connect() as conn:
            return rooms_slicing(conn, sql, args, ctx.slice_count)

    def read(self, params: RoomsParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """The logs or the stats, in Arrow batches; of the slice ``ctx.slice`` only: the
        logs of conversations started in its time range, the stats of its days."""
        return (self._logs if params.type == "logs" else self._stats)(params, ctx)

    def _logs(self, params: RoomsParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        sql = STATEMENTS[ctx.data.dialect]
        filters, args = _conversation_filters(params, sql)
        args |= {"room": params.room_id, "limit": sql_limit(ctx.limit)}
        args |= window_args(ctx.data, ctx.window)
        with ctx.data.connect() as conn:
            bounds = ctx.slicing
            if not isinstance(bounds, RoomsSlicing) or len(bounds.starts) != ctx.slice_count - 1:
                bounds = rooms_slicing(conn, sql, args, ctx.slice_count)
            if bounds.touched is None:
                return
            args["first"], args["last"] = bounds.touched
            filters += _slice_filters(bounds, sql, args, ctx)
            logs = sql.logs.format(columns=LOG_SELECT, filters=filters)
            yield from ctx.data.arrow(conn, logs, args, ctx.batch_size, LOG_COLUMNS)

    def _stats(self, params: RoomsParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        # One query per batch of days keeps memory flat however long the window.
        count = min(day_count(ctx.window), ctx.limit if ctx.limit is not None else SQL_INT_MAX)
        share = slice(
            count * ctx.slice // ctx.slice_count, count * (ctx.slice + 1) // ctx.slice_count
        )
        days = islice(local_days(ctx.window), share.start, share.stop)
        stats = STATEMENTS[ctx.data.dialect].stats
        with ctx.data.connect() as conn:
            while chunk := list(islice(days, ctx.batch_size)):
                args = {"room": params.room_id, **_day_args(ctx.data, chunk)}
                figures = conn.execute(stats, args).fetchall()
                rows = [(chunk[index][0], *values) for index, *values in figures]
                yield arrow_batch(rows, STATS_COLUMNS)


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    """The ``rooms`` source."""
    return [RoomsSource()]
