"""The data store's tables and indexes on PostgreSQL, and how demo data gets there.

The tables are :mod:`exportd.data.schema`'s, column for column, with PostgreSQL's own
types: ``timestamptz`` for times, ``boolean`` for flags, ``bigint`` for row numbers.
Ids and names are ``text`` in the "C" collation, so that they sort by code point as
in SQLite and both stores give rows in the same order.  No column holds a document,
so none is ``jsonb``.  docs/data-model.md shows this DDL.

:func:`load` fills a database in one transaction: it drops and creates the tables,
copies the rows in (``COPY``, not row-by-row ``INSERT``), then adds the foreign keys
and the indexes, analyzes the tables and commits, so a reader sees the old data or
the new, never half.  It drops exportd's tables only (no ``CASCADE``), and waits at
most :data:`LOCK_TIMEOUT` for a reader's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from exportd.config.data_url import reason, redact, with_session
from exportd.data.schema import TABLES
from exportd.errors import ExportFailed

if TYPE_CHECKING:
    import psycopg

TABLES_DDL = """
CREATE TABLE orgs (
    id text COLLATE "C" PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE rooms (
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    name text NOT NULL
);
CREATE TABLE conversations (
    id text COLLATE "C" PRIMARY KEY,
    room_id text COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    is_real boolean NOT NULL DEFAULT false,
    visitor_id text COLLATE "C"
);
CREATE TABLE messages (
    id bigint PRIMARY KEY,
    conversation_id text COLLATE "C" NOT NULL,
    room_id text COLLATE "C" NOT NULL,
    sent_at timestamptz NOT NULL,
    sender_type text NOT NULL,
    sender_id text COLLATE "C",
    sender_name text,
    body text NOT NULL DEFAULT ''
);
CREATE TABLE workflows (
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    step_count integer NOT NULL
);
CREATE TABLE workflow_events (
    id bigint PRIMARY KEY,
    workflow_id text COLLATE "C" NOT NULL,
    step_index integer NOT NULL,
    action text NOT NULL,
    occurred_at timestamptz NOT NULL,
    visitor_id text COLLATE "C",
    session_id text COLLATE "C",
    page_url text,
    view_uid text,
    goal_triggered boolean NOT NULL DEFAULT false
);
CREATE TABLE qna_channels (
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    name text NOT NULL
);
CREATE TABLE qna_rooms (
    id text COLLATE "C" PRIMARY KEY,
    channel_id text COLLATE "C" NOT NULL,
    name text NOT NULL
);
CREATE TABLE qna_questions (
    id bigint PRIMARY KEY,
    channel_id text COLLATE "C" NOT NULL,
    room_id text COLLATE "C" NOT NULL,
    asked_at timestamptz NOT NULL,
    author_name text,
    question text NOT NULL,
    upvotes integer NOT NULL DEFAULT 0,
    status text NOT NULL,
    answered_at timestamptz,
    answered_by text,
    answer text
);
"""
"""The tables, without their references (added after a bulk load, with the indexes)."""

INDEXES_DDL = """
ALTER TABLE rooms ADD FOREIGN KEY (org_id) REFERENCES orgs (id);
ALTER TABLE conversations ADD FOREIGN KEY (room_id) REFERENCES rooms (id);
ALTER TABLE messages ADD FOREIGN KEY (conversation_id) REFERENCES conversations (id);
ALTER TABLE messages ADD FOREIGN KEY (room_id) REFERENCES rooms (id);
ALTER TABLE workflows ADD FOREIGN KEY (org_id) REFERENCES orgs (id);
ALTER TABLE workflow_events ADD FOREIGN KEY (workflow_id) REFERENCES workflows (id);
ALTER TABLE qna_channels ADD FOREIGN KEY (org_id) REFERENCES orgs (id);
ALTER TABLE qna_rooms ADD FOREIGN KEY (channel_id) REFERENCES qna_channels (id);
ALTER TABLE qna_questions ADD FOREIGN KEY (channel_id) REFERENCES qna_channels (id);
ALTER TABLE qna_questions ADD FOREIGN KEY (room_id) REFERENCES qna_rooms (id);
CREATE INDEX idx_messages_room_id_sent_at_conversation_id
    ON messages (room_id, sent_at, conversation_id);
CREATE INDEX idx_messages_conversation_id_sent_at_sender_type
    ON messages (conversation_id, sent_at, sender_type);
CREATE INDEX idx_conversations_room_id_started_at_id ON conversations (room_id, started_at, id);
CREATE INDEX idx_workflow_events_workflow_id_step_index_occurred_at
    ON workflow_events (workflow_id, step_index, occurred_at);
CREATE INDEX idx_qna_rooms_channel_id_id ON qna_rooms (channel_id, id);
CREATE INDEX idx_qna_questions_channel_id_asked_at ON qna_questions (channel_id, asked_at);
CREATE INDEX idx_qna_questions_room_id_asked_at ON qna_questions (room_id, asked_at);
"""
"""The references and the indexes the sources need (those of :data:`~exportd.data.schema.
INDEXES`), made once the rows are in."""

DROP_DDL = f"DROP TABLE IF EXISTS {', '.join(t.name for t in reversed(TABLES))};"
"""Drops exportd's tables, and nothing else: no ``CASCADE``, so a view or a table of
someone else's that depends on them makes the load fail instead of vanishing."""

ANALYZE_DDL = f"ANALYZE {', '.join(t.name for t in TABLES)};"
"""Gives the planner the new tables' statistics before the first export reads them."""

LOCK_TIMEOUT = "10s"
"""How long the load waits for a lock on a table (a reader holding it): then it fails,
rather than queue every reader behind it."""

LOAD_SESSION = {"connect_timeout": "10", "application_name": "exportd demo-data"}
"""The load's connection parameters, where the URL does not set them."""

Put = Callable[[str, Iterable[tuple[Any, ...]]], int]
"""Writes rows, in the schema's column order, into the named table; says how many."""


def load(url: str, fill: Callable[[Put], None]) -> None:
    """Replace the data store's tables at ``url`` with what ``fill`` puts there, in one
    transaction.

    Rows may hold times as ISO 8601 text and flags as 0 and 1, as SQLite stores them:
    ``COPY`` reads the text form either way.
    """
    import psycopg

    try:
        conninfo = with_session(url, f"-c lock_timeout={LOCK_TIMEOUT}", LOAD_SESSION)
        with psycopg.connect(conninfo) as conn:  # one transaction, committed at the end
            conn.execute(DROP_DDL)
            conn.execute(TABLES_DDL)
            fill(lambda table, rows: _copy(conn, table, rows))
            conn.execute(INDEXES_DDL)
            conn.execute(ANALYZE_DDL)
    except psycopg.errors.DependentObjectsStillExist as exc:
        raise ExportFailed(
            f"cannot load the data store {redact(url)}: other objects depend on exportd's "
            f"tables, and the load drops only its own ({reason(exc, url)}): drop them first, "
            "or load into a database of exportd's own"
        ) from None
    except psycopg.Error as exc:
        raise ExportFailed(
            f"cannot load the data store {redact(url)}: {reason(exc, url)}"
        ) from None


def _copy(conn: psycopg.Connection[Any], table: str, rows: Iterable[tuple[Any, ...]]) -> int:
    columns = ", ".join(next(t.columns for t in TABLES if t.name == table))
    count = 0
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count
