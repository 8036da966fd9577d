"""Deterministic, realistic demo data for the embedded data store (``data.db``).

:func:`generate_demo_data` builds a new database file beside the target and
renames it into place, so a reader never sees a half-written store.  Every
random choice comes from ``random.Random`` seeded from ``seed``: the same seed
gives the same file.  Orgs, rooms, workflows and Q&A channels get ids derived
from their names (UUID 5), so they are the same for every seed and can be
quoted in docs.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

import sqlite_utils

from exportd.config.data_url import redact
from exportd.data import demo_text as text
from exportd.data import postgres
from exportd.data.schema import TABLES, create_indexes, create_tables

PERIOD_END = datetime(2024, 11, 1, tzinfo=UTC)
PERIOD = timedelta(days=30)
NAMESPACE = uuid.UUID("5b0e8a52-6d0b-4c55-9f0e-2f4f3c1d7a10")
WORKFLOW_SESSIONS = 250

# Chat traffic by hour of day (UTC): quiet nights, busy office hours.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 15, 14, 13, 14, 15, 14, 12, 10, 8, 7, 6, 4, 2, 1)
HOUR_CUM_WEIGHTS = tuple(accumulate(HOUR_WEIGHTS))

# What kind of conversation, how often: answered by an operator, missed (the
# visitor wrote, nobody answered), an invitation the visitor ignored, bot only.
# The last two are not "real" conversations.
CHAT_KINDS = ("answered", "missed", "invite", "bot_only")
CHAT_KIND_CUM_WEIGHTS = tuple(accumulate((72, 8, 14, 6)))

LINES: dict[str, Sequence[str]] = {
    "visitor": text.VISITOR_LINES,
    "operator": text.OPERATOR_LINES,
    "bot": text.BOT_LINES,
    "system": text.SYSTEM_LINES,
}
HOSTILE_SHARE = 0.02
RETURNING_SHARE = 0.15  # conversations by a visitor who chatted recently

Row = tuple[Any, ...]


@dataclass(frozen=True)
class DemoData:
    """What :func:`load_demo_data` (or :func:`generate_demo_data`) wrote, with ids worth
    trying an export on."""

    url: str
    """The store written, as ``data.url`` names it (without a password)."""
    start: datetime
    end: datetime
    orgs: int
    rooms: int
    conversations: int
    messages: int
    workflows: int
    workflow_events: int
    qna_channels: int
    qna_rooms: int
    qna_questions: int
    room_id: str
    """The busiest room."""
    org_id: str
    """The organisation of the busiest room (an export for an org reads only its data)."""
    workflow_id: str
    """A web navigation workflow."""
    channel_id: str
    """The first Q&A channel: 60 rooms, so it exports in parts."""


@dataclass(frozen=True)
class DemoSummary(DemoData):
    """What :func:`generate_demo_data` wrote into a SQLite file: :class:`DemoData` and
    the file's ``path``."""

    path: Path


@dataclass(frozen=True)
class _Room:
    id: str
    org_index: int
    name: str
    weight: int


def stable_id(*names: str) -> str:
    """The UUID 5 of a path of names: the same on every run and for every seed."""
    return str(uuid.uuid5(NAMESPACE, "/".join(names)))


def generate_demo_data(path: Path, *, messages: int = 100_000, seed: int = 1) -> DemoSummary:
    """Replace ``path`` with a data store holding ``messages`` chat messages.

    Besides the chats there are workflows of every kind with their events and
    Q&A channels with questions; their size does not depend on ``messages``.
    """
    if messages < 0:
        raise ValueError("messages must be >= 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        summary = _build(partial, path, messages, seed)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return summary


def load_demo_data(url: str, *, messages: int = 100_000, seed: int = 1) -> DemoData:
    """Replace the tables of the PostgreSQL data store at ``url`` with the demo data of
    :func:`generate_demo_data` (the same rows for the same ``seed``), in one transaction
    (see :func:`exportd.data.postgres.load`)."""
    if messages < 0:
        raise ValueError("messages must be >= 0")
    written: list[DemoData] = []
    postgres.load(url, lambda put: written.append(_fill(put, messages, seed, redact(url))))
    return written[0]


def _build(partial: Path, path: Path, messages: int, seed: int) -> DemoSummary:
    conn = sqlite3.connect(partial, isolation_level=None)
    try:
        # A fresh file that is thrown away on failure needs no journal and no syncs.
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-65536"):
            conn.execute(f"PRAGMA {pragma}")
        db = sqlite_utils.Database(conn)
        create_tables(db)
        conn.execute("BEGIN")
        data = _fill(
            lambda table, rows: _insert(conn, table, rows), messages, seed, f"sqlite:///{path}"
        )
        conn.execute("COMMIT")
        create_indexes(db)
    finally:
        conn.close()
    with partial.open("rb") as file:
        os.fsync(file.fileno())
    return DemoSummary(
        path=path, **{field.name: getattr(data, field.name) for field in dataclasses.fields(data)}
    )


def _fill(put: postgres.Put, messages: int, seed: int, url: str) -> DemoData:
    """Generate the demo data into ``put``, table by table; what it wrote."""
    orgs = [(stable_id(name), name) for name, _ in text.ORGS]
    rooms = [
        _Room(stable_id(org_name, room_name), org_index, room_name, weight)
        for org_index, (org_name, org_rooms) in enumerate(text.ORGS)
        for room_name, weight in org_rooms
    ]
    put("orgs", orgs)
    put("rooms", [(room.id, orgs[room.org_index][0], room.name) for room in rooms])
    conversations: list[Row] = []
    message_count = put(
        "messages", _chats(_rng(seed, "chats"), rooms, orgs, messages, conversations.append)
    )
    put("conversations", conversations)
    workflows = _workflows(orgs)
    put("workflows", workflows)
    event_count = put("workflow_events", _workflow_events(_rng(seed, "workflows"), workflows))
    channels, qna_rooms = _qna_channels(orgs)
    put("qna_channels", channels)
    put("qna_rooms", qna_rooms)
    question_count = put("qna_questions", _questions(_rng(seed, "qna"), qna_rooms))
    busiest = max(rooms, key=lambda room: room.weight)
    return DemoData(
        url=url,
        start=PERIOD_END - PERIOD,
        end=PERIOD_END,
        orgs=len(orgs),
        rooms=len(rooms),
        conversations=len(conversations),
        messages=message_count,
        workflows=len(workflows),
        workflow_events=event_count,
        qna_channels=len(channels),
        qna_rooms=len(qna_rooms),
        qna_questions=question_count,
        room_id=busiest.id,
        org_id=orgs[busiest.org_index][0],
        workflow_id=next(row[0] for row in workflows if row[3] == "web_navigation"),
        channel_id=channels[0][0],
    )


def _rng(seed: int, part: str) -> random.Random:
    """The random numbers of one part of the data: the chats' size does not move the rest."""
    return random.Random(f"{seed}/{part}")


def _insert(conn: sqlite3.Connection, table: str, rows: Iterable[Row]) -> int:
    """Insert rows given in the schema's column order; return how many."""
    columns = next(t.columns for t in TABLES if t.name == table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    return conn.executemany(sql, rows).rowcount


def _moment(rng: random.Random) -> datetime:
    """A time in the demo period, busier in office hours."""
    day = rng.randrange(PERIOD.days)
    hour = rng.choices(range(24), cum_weights=HOUR_CUM_WEIGHTS)[0]
    return PERIOD_END - PERIOD + timedelta(days=day, hours=hour, seconds=rng.randrange(3600))


def _random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _plan_chats(rng: random.Random, total: int) -> list[tuple[str, int]]:
    """Kinds and message counts of conversations that hold ``total`` messages together."""
    plans: list[tuple[str, int]] = []
    left = total
    while left > 0:
        kind = rng.choices(CHAT_KINDS, cum_weights=CHAT_KIND_CUM_WEIGHTS)[0]
        if kind == "answered":
            size = 2 + min(int(rng.expovariate(1 / 9)), 78)
        elif kind == "missed":
            size = rng.randint(1, 3)
        else:
            size = rng.randint(1, 2)
        size = min(size, left)
        if kind == "answered" and size < 2:
            kind = "missed"
        plans.append((kind, size))
        left -= size
    return plans


def _senders(rng: random.Random, kind: str, size: int) -> list[str]:
    """Who sends each message of a conversation of this kind."""
    if kind == "answered":
        senders = ["bot"] if size >= 3 and rng.random() < 0.2 else []
        senders += ["visitor", "operator"]
        while len(senders) < size:
            senders.append("visitor" if rng.random() < 0.5 else "operator")
        if size >= 4 and rng.random() < 0.1:
            senders[-1] = "system"
        return senders
    if kind == "missed":
        senders = ["visitor"] * size
        if size >= 2 and rng.random() < 0.5:
            senders[1] = "bot"
        return senders
    if kind == "invite":
        return ["operator"] + ["bot"] * (size - 1)
    return ["bot"] + ["system"] * (size - 1)


def _script(sender_types: Sequence[str]) -> list[Sequence[str]]:
    """The lines each message may say: an operator greets first and says goodbye last."""
    lines = [LINES[sender_type] for sender_type in sender_types]
    operator = [i for i, sender_type in enumerate(sender_types) if sender_type == "operator"]
    if len(operator) >= 2:
        lines[operator[-1]] = text.OPERATOR_FAREWELLS
    if operator:
        lines[operator[0]] = text.OPERATOR_GREETINGS
    return lines


def _chats(
    rng: random.Random,
    rooms: Sequence[_Room],
    orgs: Sequence[Row],
    total: int,
    add_conversation: Callable[[Row], None],
) -> Iterator[Row]:
    """Yield message rows; hand each conversation's row to ``add_conversation``."""
    plans = _plan_chats(rng, total)
    starts = sorted(_moment(rng) for _ in plans)
    room_cum_weights = tuple(accumulate(room.weight for room in rooms))
    operators = [
        [(stable_id(org_id, name), name) for name in text.OPERATORS[i::4]]
        for i, (org_id, _) in enumerate(orgs)
    ]
    choice, randint, rand = rng.choice, rng.randint, rng.random
    recent_visitors: list[tuple[str, str]] = []
    message_id = 0
    for (kind, size), started in zip(plans, starts, strict=True):
        room = rng.choices(rooms, cum_weights=room_cum_weights)[0]
        conversation_id = _random_uuid(rng)
        if recent_visitors and rand() < RETURNING_SHARE:
            visitor = choice(recent_visitors)
        else:
            visitor = (
                _random_uuid(rng),
                choice(text.VISITOR_NAMES) if rand() < 0.4 else f"Visitor {randint(1000, 9999)}",
            )
            recent_visitors = [*recent_visitors[-99:], visitor]
        senders: dict[str, tuple[str | None, str | None]] = {
            "visitor": visitor,
            "operator": choice(operators[room.org_index]),
            "bot": (None, "Chatbot"),
            "system": (None, None),
        }
        sent = started + timedelta(seconds=randint(0, 20))
        waiting = replied = False  # for the first operator reply to the visitor
        sender_types = _senders(rng, kind, size)
        lines_of = _script(sender_types)
        for position, sender_type in enumerate(sender_types):
            if waiting and sender_type == "operator":
                sent += timedelta(seconds=3 + int(rng.expovariate(1 / 60)))
                waiting, replied = False, True
            else:
                sent += timedelta(seconds=randint(5, 90))
            waiting = waiting or (sender_type == "visitor" and not replied)
            lines = text.HOSTILE if rand() < HOSTILE_SHARE else lines_of[position]
            message_id += 1
            sender_id, sender_name = senders[sender_type]
            yield (
                message_id,
                conversation_id,
                room.id,
                sent.isoformat(),
                sender_type,
                sender_id,
                sender_name,
                choice(lines),
            )
        ended = sent + timedelta(seconds=randint(30, 300))
        is_real = int(kind in ("answered", "missed"))
        add_conversation(
            (conversation_id, room.id, started.isoformat(), ended.isoformat(), is_real, visitor[0])
        )


def _workflows(orgs: Sequence[Row]) -> list[Row]:
    return [
        (stable_id(org_id, "workflow", kind), org_id, name, kind, len(text.EVENT_ACTIONS[kind]))
        for org_id, _ in orgs
        for kind, name in text.WORKFLOW_NAMES.items()
    ]


def _workflow_events(rng: random.Random, workflows: Sequence[Row]) -> Iterator[Row]:
    """Sessions walking each workflow's steps; fewer reach each next step."""
    event_id = 0
    for workflow_id, _, _, kind, step_count in workflows:
        actions = text.EVENT_ACTIONS[kind]
        # Interaction steps show one of two views (an A/B test).
        view_uids = [
            [stable_id(workflow_id, str(step), variant)[:8] for variant in "ab"]
            for step in range(step_count)
        ]
        for _ in range(WORKFLOW_SESSIONS):
            occurred = _moment(rng)
            visitor_id, session_id = _random_uuid(rng), f"{rng.getrandbits(64):016x}"
            for step in range(step_count):
                if step and rng.random() > 0.65:
                    break
                occurred += timedelta(seconds=rng.randint(5, 600))
                view_uid = None
                if kind == "web_navigation":
                    page_url = rng.choice(text.WEB_PAGES[step])
                elif kind == "interaction":
                    page_url, view_uid = text.SALE_PAGE, rng.choice(view_uids[step])
                else:
                    page_url = rng.choice(text.PRODUCT_PAGES)
                goal = step == step_count - 1 and rng.random() < 0.8
                event_id += 1
                yield (
                    event_id,
                    workflow_id,
                    step,
                    rng.choice(actions[step]),
                    occurred.isoformat(),
                    visitor_id,
                    session_id,
                    page_url,
                    view_uid,
                    int(goal),
                )


def _qna_channels(orgs: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    channels: list[Row] = []
    rooms: list[Row] = []
    for index, (name, room_count) in enumerate(text.QNA_CHANNELS):
        channel_id = stable_id("qna", name)
        channels.append((channel_id, orgs[index % len(orgs)][0], name))
        rooms += [
            (stable_id(channel_id, str(number)), channel_id, f"Room {number:02d}")
            for number in range(1, room_count + 1)
        ]
    return channels, rooms


def _questions(rng: random.Random, rooms: Sequence[Row]) -> Iterator[Row]:
    statuses, weights = zip(*text.QUESTION_STATUSES, strict=True)
    question_id = 0
    for room_id, channel_id, _ in rooms:
        for asked in sorted(_moment(rng) for _ in range(rng.randint(3, 25))):
            status = rng.choices(statuses, weights=weights)[0]
            answered = status == "answered"
            answered_at = asked + timedelta(seconds=rng.randint(30, 3600))
            question_id += 1
            yield (
                question_id,
                channel_id,
                room_id,
                asked.isoformat(),
                rng.choice(text.VISITOR_NAMES) if rng.random() < 0.8 else "Anonymous",
                rng.choice(text.HOSTILE if rng.random() < 0.05 else text.QUESTIONS),
                int(rng.expovariate(1 / 4)),
                status,
                answered_at.isoformat() if answered else None,
                rng.choice(text.OPERATORS) if answered else None,
                rng.choice(text.ANSWERS) if answered else None,
            )
