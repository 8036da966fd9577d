"""The tables and indexes of the embedded data store, ``data.db``.

Every time is stored as text in one sortable UTC form, what ``isoformat()``
gives for an aware UTC datetime: ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``.
Because ``+`` sorts before ``.`` and the digits, plain text comparison orders
these values in time, so range queries use the indexes directly, and
``datetime.fromisoformat`` reads them back as aware UTC datetimes.
docs/data-model.md describes every column.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils


@dataclass(frozen=True)
class Table:
    """One table: its columns (name -> Python type), primary key and references."""

    name: str
    columns: dict[str, type]
    not_null: frozenset[str]
    foreign_keys: tuple[tuple[str, str, str], ...] = ()
    defaults: tuple[tuple[str, object], ...] = ()
    pk: str = "id"


TABLES: tuple[Table, ...] = (
    Table("orgs", {"id": str, "name": str}, frozenset({"name"})),
    Table(
        "rooms",
        {"id": str, "org_id": str, "name": str},
        frozenset({"org_id", "name"}),
        (("org_id", "orgs", "id"),),
    ),
    Table(
        "conversations",
        {
            "id": str,
            "room_id": str,
            "started_at": str,
            "ended_at": str,
            "is_real": int,
            "visitor_id": str,
        },
        frozenset({"room_id", "started_at", "is_real"}),
        (("room_id", "rooms", "id"),),
        (("is_real", 0),),
    ),
    Table(
        "messages",
        {
            "id": int,
            "conversation_id": str,
            "room_id": str,
            "sent_at": str,
            "sender_type": str,
            "sender_id": str,
            "sender_name": str,
            "body": str,
        },
        frozenset({"conversation_id", "room_id", "sent_at", "sender_type", "body"}),
        (("conversation_id", "conversations", "id"), ("room_id", "rooms", "id")),
        (("body", ""),),
    ),
    Table(
        "workflows",
        {"id": str, "org_id": str, "name": str, "kind": str, "step_count": int},
        frozenset({"org_id", "name", "kind", "step_count"}),
        (("org_id", "orgs", "id"),),
    ),
    Table(
        "workflow_events",
        {
            "id": int,
            "workflow_id": str,
            "step_index": int,
            "action": str,
            "occurred_at": str,
            "visitor_id": str,
            "session_id": str,
            "page_url": str,
            "view_uid": str,
            "goal_triggered": int,
        },
        frozenset({"workflow_id", "step_index", "action", "occurred_at", "goal_triggered"}),
        (("workflow_id", "workflows", "id"),),
        (("goal_triggered", 0),),
    ),
    Table(
        "qna_channels",
        {"id": str, "org_id": str, "name": str},
        frozenset({"org_id", "name"}),
        (("org_id", "orgs", "id"),),
    ),
    Table(
        "qna_rooms",
        {"id": str, "channel_id": str, "name": str},
        frozenset({"channel_id", "name"}),
        (("channel_id", "qna_channels", "id"),),
    ),
    Table(
        "qna_questions",
        {
            "id": int,
            "channel_id": str,
            "room_id": str,
            "asked_at": str,
            "author_name": str,
            "question": str,
            "upvotes": int,
            "status": str,
            "answered_at": str,
            "answered_by": str,
            "answer": str,
        },
        frozenset({"channel_id", "room_id", "asked_at", "question", "upvotes", "status"}),
        (("channel_id", "qna_channels", "id"), ("room_id", "qna_rooms", "id")),
        (("upvotes", 0),),
    ),
)

INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A room's messages in a time range, and which conversations they belong to.
    ("messages", ("room_id", "sent_at", "conversation_id")),
    # One conversation's messages in time order; covers the per-conversation
    # message counts and first-response times.
    ("messages", ("conversation_id", "sent_at", "sender_type")),
    ("conversations", ("room_id", "started_at", "id")),
    ("workflow_events", ("workflow_id", "step_index", "occurred_at")),
    ("qna_rooms", ("channel_id", "id")),
    ("qna_questions", ("channel_id", "asked_at")),
    ("qna_questions", ("room_id", "asked_at")),
)


def create_tables(db: sqlite_utils.Database) -> None:
    """Create every table that does not exist yet."""
    for table in TABLES:
        db.table(table.name).create(
            table.columns,
            pk=table.pk,
            not_null=table.not_null,
            foreign_keys=list(table.foreign_keys),
            defaults=dict(table.defaults),
            if_not_exists=True,
        )


def create_indexes(db: sqlite_utils.Database) -> None:
    """Create every index that does not exist yet (after a bulk load is fastest)."""
    for table, columns in INDEXES:
        db.table(table).create_index(
            columns, index_name=f"idx_{table}_{'_'.join(columns)}", if_not_exists=True
        )


def create_schema(db: sqlite_utils.Database) -> None:
    """Create the tables and indexes of ``data.db``; harmless to run again."""
    create_tables(db)
    create_indexes(db)
