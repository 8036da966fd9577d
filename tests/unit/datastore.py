"""A small hand-written ``data.db`` whose every row is known, for exact assertions.

All times are in late October 2024, around the end of daylight saving time in
Europe (2024-10-27 01:00 UTC; Europe/Helsinki goes from +03:00 to +02:00), so
that day cutting can be checked in UTC and in a zone with a 25-hour day.  The
usual window is ``WINDOW`` (UTC 2024-10-26 to 2024-10-29); some rows sit just
outside it or exactly on its bounds.

    from tests.unit.datastore import ROOM, WINDOW, build_datastore

:func:`build_odd_datastore` adds rows whose ids and texts are ``ODD``, for
checking that such text is matched exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from exportd import Window
from exportd.data import postgres
from exportd.data.schema import TABLES as SCHEMA
from exportd.data.schema import create_schema

WINDOW = Window(
    start=datetime(2024, 10, 26, tzinfo=UTC),
    end=datetime(2024, 10, 29, tzinfo=UTC),
    timezone=ZoneInfo("UTC"),
)

ORG = "0a000000-0000-4000-8000-000000000001"
OTHER_ORG = "0a000000-0000-4000-8000-000000000002"
ROOM = "1b000000-0000-4000-8000-000000000001"
OTHER_ROOM = "1b000000-0000-4000-8000-000000000002"
EMPTY_ROOM = "1b000000-0000-4000-8000-000000000003"
FOREIGN_ROOM = "1b000000-0000-4000-8000-000000000004"
"""OTHER_ORG's only room, with no conversations."""
WEB_WORKFLOW = "2c000000-0000-4000-8000-000000000001"
INTERACTION_WORKFLOW = "2c000000-0000-4000-8000-000000000002"
VOICE_WORKFLOW = "2c000000-0000-4000-8000-000000000003"
BIG_CHANNEL = "3d000000-0000-4000-8000-000000000001"
SMALL_CHANNEL = "3d000000-0000-4000-8000-000000000002"
BIG_ROOMS = [f"big-{number:02d}" for number in range(1, 61)]
SHOP = "https://shop.example.com"


def at(day_time: str) -> str:
    """``"26T08:00:10"`` as the stored time 2024-10-26T08:00:10+00:00."""
    return f"2024-10-{day_time}+00:00"


def _rows(columns: str, *values: tuple[Any, ...]) -> list[dict[str, Any]]:
    names = columns.split()
    return [dict(zip(names, row, strict=True)) for row in values]


ORGS = _rows("id name", (ORG, "Acme"), (OTHER_ORG, "Globex"))
ROOMS = _rows(
    "id org_id name",
    (ROOM, ORG, "Support"),
    (OTHER_ROOM, ORG, "Sales"),
    (EMPTY_ROOM, ORG, "Quiet"),
    (FOREIGN_ROOM, OTHER_ORG, "Lobby"),
)
# conv-1a and conv-1b start at the same second: their order is by id.
CONVERSATIONS = _rows(
    "id room_id started_at ended_at is_real visitor_id",
    ("conv-0", ROOM, at("25T23:58:00"), at("26T00:01:00"), 1, "v-alice"),
    ("conv-1b", ROOM, at("26T08:00:00"), at("26T08:03:00"), 1, "v-bob"),
    ("conv-1a", ROOM, at("26T08:00:00"), at("26T08:01:00"), 0, "v-carol"),
    ("conv-6", ROOM, at("26T12:00:00"), at("26T12:02:00"), 1, "v-gina"),
    ("conv-7", ROOM, at("26T13:00:00"), at("26T13:10:00"), 1, "v-hank"),
    ("conv-2", ROOM, at("26T21:30:00"), at("26T21:35:00"), 0, "v-dave"),
    ("conv-3", ROOM, at("27T10:00:00"), at("27T10:10:00"), 1, "v-alice"),
    ("conv-4", ROOM, at("27T21:50:00"), at("27T22:15:00"), 1, "v-dana"),
    ("conv-5", ROOM, at("29T00:00:00"), at("29T00:01:00"), 1, "v-erin"),
    ("conv-9", OTHER_ROOM, at("26T09:00:00"), at("26T09:05:00"), 1, "v-frank"),
    # Sub-millisecond times: each rounds to the millisecond (.001 and .050), so the chat
    # lasts 0.049 s, 0.0 rounded, on both stores (the raw 0.0498 s would round to 0.1).
    ("conv-10", OTHER_ROOM, at("28T10:00:00.000600"), at("28T10:00:00.050400"), 1, "v-ivan"),
)
MESSAGES = _rows(
    "id conversation_id room_id sent_at sender_type sender_id sender_name body",
    (1, "conv-0", ROOM, at("25T23:58:10"), "visitor", "v-alice", "Alice", "Hello?"),
    (2, "conv-0", ROOM, at("26T00:00:00"), "operator", "op-olivia", "Olivia", "Hi Alice!"),
    (3, "conv-1a", ROOM, at("26T08:00:20"), "bot", None, "Chatbot", "Free shipping over 50 €"),
    (4, "conv-1b", ROOM, at("26T08:00:05"), "bot", None, "Chatbot", "Hi! 👋 How can we help?"),
    (5, "conv-1b", ROOM, at("26T08:00:10"), "visitor", "v-bob", "Bob", 'Order "A-1",\nlost 📦'),
    (6, "conv-1b", ROOM, at("26T08:00:40"), "operator", "op-olivia", "Olivia", "<b>One</b> sec"),
    (7, "conv-1b", ROOM, at("26T08:01:00"), "visitor", "v-bob", "Bob", "=SUM(A1)"),
    (8, "conv-1b", ROOM, at("26T08:02:00"), "operator", "op-matti", "Matti", "It ships today."),
    (9, "conv-6", ROOM, at("26T12:00:10"), "visitor", "v-gina", "Gina", "Question"),
    (10, "conv-6", ROOM, at("26T12:00:20"), "operator", "op-matti", "Matti", "Answer"),
    (11, "conv-7", ROOM, at("26T13:00:05"), "visitor", "v-hank", "Hank", "Hello"),
    (12, "conv-7", ROOM, at("26T13:05:05"), "operator", "op-olivia", "Olivia", "Sorry, busy!"),
    (13, "conv-2", ROOM, at("26T21:30:00"), "operator", "op-olivia", "Olivia", "Can I help?"),
    (14, "conv-3", ROOM, at("27T10:00:10"), "visitor", "v-alice", "Alice", "مرحبا، أحتاج مساعدة"),
    (15, "conv-3", ROOM, at("27T10:05:00"), "visitor", "v-alice", "Alice", "Anyone there?"),
    (16, "conv-4", ROOM, at("27T21:50:10"), "visitor", "v-dana", "Dana", "Hi"),
    (17, "conv-4", ROOM, at("27T21:51:10"), "operator", "op-matti", "Matti", "Hello Dana"),
    (18, "conv-4", ROOM, at("27T22:10:00"), "visitor", "v-dana", "Dana", "Thanks, bye"),
    (19, "conv-4", ROOM, at("27T22:11:00"), "operator", "op-olivia", "Olivia", "Bye!"),
    (20, "conv-4", ROOM, at("27T22:12:00"), "system", None, None, "Visitor left the chat."),
    (21, "conv-5", ROOM, at("29T00:00:00"), "visitor", "v-erin", "Erin", "Too late?"),
    (22, "conv-9", OTHER_ROOM, at("26T09:00:30"), "visitor", "v-frank", "Frank", "Other room"),
    (23, "conv-9", OTHER_ROOM, at("26T09:01:00"), "operator", "op-olivia", "Olivia", "Hi Frank"),
    (24, "conv-10", OTHER_ROOM, at("28T10:00:00.000600"), "visitor", "v-ivan", "Ivan", "Quick?"),
    (25, "conv-10", OTHER_ROOM, at("28T10:00:00.050400"), "operator", "op-matti", "Matti", "Yes"),
)

WORKFLOWS = _rows(
    "id org_id name kind step_count",
    (WEB_WORKFLOW, ORG, "Landing to cart", "web_navigation", 3),
    (INTERACTION_WORKFLOW, ORG, "Sale popup", "interaction", 3),
    (VOICE_WORKFLOW, ORG, "Video call", "voice_video", 2),
)
# Event 3 happens before event 2; events 4 and 5 at the same second.
WORKFLOW_EVENTS = _rows(
    "id workflow_id step_index action occurred_at visitor_id session_id page_url view_uid"
    " goal_triggered",
    (1, WEB_WORKFLOW, 0, "page_view", at("26T10:00:00"), "v1", "s1", f"{SHOP}/", None, 0),
    (2, WEB_WORKFLOW, 1, "page_view", at("26T10:02:00"), "v1", "s1", f"{SHOP}/tents", None, 0),
    (3, WEB_WORKFLOW, 1, "page_view", at("26T10:01:00"), "v2", "s2", f"{SHOP}/stoves", None, 0),
    (4, WEB_WORKFLOW, 1, "page_view", at("26T10:03:00"), "v3", "s3", f"{SHOP}/tents", None, 1),
    (5, WEB_WORKFLOW, 1, "page_view", at("26T10:03:00"), "v4", "s4", f"{SHOP}/tents", None, 0),
    (6, WEB_WORKFLOW, 1, "page_view", at("29T00:00:00"), "v5", "s5", f"{SHOP}/tents", None, 0),
    (7, WEB_WORKFLOW, 2, "page_view", at("26T10:05:00"), "v1", "s1", f"{SHOP}/cart", None, 1),
    (8, INTERACTION_WORKFLOW, 1, "clicked", at("26T11:00:00"), "v1", "s1", SHOP, "view-a", 0),
    (9, INTERACTION_WORKFLOW, 1, "closed", at("26T11:01:00"), "v2", "s2", SHOP, "view-b", 0),
    (10, INTERACTION_WORKFLOW, 1, "clicked", at("26T11:02:00"), "v3", "s3", SHOP, "view-b", 1),
    (11, VOICE_WORKFLOW, 1, "User dialed", at("27T09:00:00"), "v1", "s1", None, None, 0),
    (12, VOICE_WORKFLOW, 1, "Visitor dialed", at("27T09:05:00"), "v2", "s2", None, None, 1),
    (13, VOICE_WORKFLOW, 1, "Call answered", at("27T09:06:00"), "v2", "s2", None, None, 1),
)

QNA_CHANNELS = _rows(
    "id org_id name",
    (BIG_CHANNEL, ORG, "Town hall"),
    (SMALL_CHANNEL, ORG, "Launch"),
)
QNA_ROOMS = _rows(
    "id channel_id name",
    *[(room_id, BIG_CHANNEL, f"Hall {room_id[4:]}") for room_id in reversed(BIG_ROOMS)],
    ("small-a", SMALL_CHANNEL, "Main stage"),
    ("small-b", SMALL_CHANNEL, "Side stage"),
)
UNANSWERED = (None, None, None)
QNA_QUESTIONS = _rows(
    "id channel_id room_id asked_at author_name question upvotes status answered_at"
    " answered_by answer",
    (
        1,
        SMALL_CHANNEL,
        "small-a",
        at("26T10:00:00"),
        "Alice",
        "When?",
        5,
        "answered",
        at("26T10:05:00"),
        "Olivia",
        "Next week.",
    ),
    (
        2,
        SMALL_CHANNEL,
        "small-b",
        at("26T09:00:00"),
        None,
        'Is "beta" <safe>?\nReally?',
        0,
        "pending",
        *UNANSWERED,
    ),
    (3, SMALL_CHANNEL, "small-a", at("26T09:30:00"), "Bob", "=1+1", 2, "rejected", *UNANSWERED),
    (4, SMALL_CHANNEL, "small-a", at("29T00:00:00"), "Late", "Late?", 0, "pending", *UNANSWERED),
    (5, BIG_CHANNEL, "big-01", at("26T12:00:00"), "Ann", "First", 1, "approved", *UNANSWERED),
    (6, BIG_CHANNEL, "big-26", at("26T12:00:00"), "Ben", "Middle", 0, "pending", *UNANSWERED),
    (
        7,
        BIG_CHANNEL,
        "big-60",
        at("26T11:00:00"),
        "Cid",
        "Last",
        3,
        "answered",
        at("26T11:30:00"),
        "Olivia",
        "Yes.",
    ),
)

TABLES: dict[str, list[dict[str, Any]]] = {
    "orgs": ORGS,
    "rooms": ROOMS,
    "conversations": CONVERSATIONS,
    "messages": MESSAGES,
    "workflows": WORKFLOWS,
    "workflow_events": WORKFLOW_EVENTS,
    "qna_channels": QNA_CHANNELS,
    "qna_rooms": QNA_ROOMS,
    "qna_questions": QNA_QUESTIONS,
}


def load_postgres(url: str, *tables: dict[str, list[dict[str, Any]]]) -> str:
    """Replace the data store at ``url`` (PostgreSQL) with the rows of ``tables``, as
    :func:`build_datastore` writes them into SQLite (a column a row leaves out gets its
    default, or null); return ``url``."""

    def fill(put: postgres.Put) -> None:
        for table in SCHEMA:
            defaults = dict(table.defaults)
            rows = [row for given in tables for row in given.get(table.name, [])]
            put(
                table.name,
                [
                    tuple(row.get(name, defaults.get(name)) for name in table.columns)
                    for row in rows
                ],
            )

    postgres.load(url, fill)
    return url


def build_datastore(path: Path) -> Path:
    """Write the rows above into a new ``data.db`` at ``path``; return ``path``."""
    db = sqlite_utils.Database(path)
    create_schema(db)
    for table, rows in TABLES.items():
        db.table(table).insert_all(rows)
    db.close()
    return path


ODD = 'it\'s 100%_"odd" \\ 😀 مرحبا'
"""Text with quotes, SQL LIKE wildcards, a backslash, an emoji and right-to-left script."""

ODD_TABLES: dict[str, list[dict[str, Any]]] = {
    "rooms": _rows("id org_id name", (ODD, ORG, ODD)),
    "conversations": _rows(
        "id room_id started_at ended_at is_real visitor_id",
        (ODD, ODD, at("26T10:00:00"), at("26T10:01:00"), 1, ODD),
    ),
    "messages": _rows(
        "id conversation_id room_id sent_at sender_type sender_id sender_name body",
        (100, ODD, ODD, at("26T10:00:10"), "visitor", ODD, ODD, ODD),
    ),
    "workflow_events": _rows(
        "id workflow_id step_index action occurred_at visitor_id session_id page_url view_uid"
        " goal_triggered",
        (100, WEB_WORKFLOW, 1, ODD, at("26T10:04:00"), ODD, ODD, ODD, None, 0),
    ),
    "qna_rooms": _rows("id channel_id name", (ODD, SMALL_CHANNEL, ODD)),
    "qna_questions": _rows(
        "id channel_id room_id asked_at author_name question upvotes status answered_at"
        " answered_by answer",
        (100, SMALL_CHANNEL, ODD, at("26T11:00:00"), ODD, ODD, 0, "pending", *UNANSWERED),
    ),
}


def build_odd_datastore(path: Path) -> Path:
    """The store of :func:`build_datastore` plus the ``ODD`` rows above; return ``path``."""
    build_datastore(path)
    db = sqlite_utils.Database(path)
    for table, rows in ODD_TABLES.items():
        db.table(table).insert_all(rows)
    db.close()
    return path
