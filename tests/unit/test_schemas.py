"""The JSON Schemas of the wire messages: shipped up to date, and true to the Structs.

A real JSON Schema validator (jsonschema) checks messages that exportd encodes,
as a producer or subscriber in another language would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from exportd.cli import main
from exportd.errors import ErrorBody, FieldError
from exportd.messages import (
    CancelSignal,
    ExportRequest,
    ExportTask,
    FileInfo,
    Interval,
    JobEvent,
    JobSnapshot,
    PartSnapshot,
    Progress,
    RequestFields,
    RequestReply,
    StatusUpdate,
)
from exportd.schemas import MESSAGES, message_schema

SHIPPED = Path(__file__).parent.parent.parent / "docs" / "schemas"
NOW = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
REQUEST = ExportRequest(
    source="rooms",
    format="xlsx",
    params={"room_id": "r1", "type": "logs"},
    interval=Interval(start="2024-05-01", end="2024-05-02"),
    org_id="org1",
)
FILE = FileInfo(key="j1/1/a.xlsx", name="a.xlsx", media_type="x", size=10, sha256="ab", rows=2)
SNAPSHOT = JobSnapshot(
    id="j1",
    status="done",
    request=msgspec.convert(msgspec.to_builtins(REQUEST), RequestFields),
    attempt=1,
    part_count=1,
    parts=[PartSnapshot(part=0, status="done", progress=Progress(rows=2), file=FILE)],
    progress=Progress(rows=2, total=2),
    created_at=NOW,
    updated_at=NOW,
    completed_at=NOW,
    expires_at=NOW,
)
ERROR = ErrorBody("invalid_request", "bad", [FieldError("params.room_id", "unknown")])
EXAMPLES: list[msgspec.Struct] = [
    REQUEST,
    RequestReply(ok=True, job=SNAPSHOT),
    RequestReply(ok=False, error=ERROR),
    ExportTask(job_id="j1", part=0, part_count=1, attempt=1, request=REQUEST, key="j1/1/a"),
    StatusUpdate(job_id="j1", part=0, attempt=1, seq=3, status="done", file=FILE, at=NOW),
    StatusUpdate(job_id="j1", part=0, attempt=1, seq=4, status="failed", error=ERROR),
    CancelSignal(job_id="j1", attempt=1),
    JobEvent(id="e1", type="job.done", occurred_at=NOW, job=SNAPSHOT),
    JobEvent(id="e2", type="request.rejected", occurred_at=NOW, error=ERROR),
]


@pytest.mark.parametrize("name", MESSAGES)
def test_the_shipped_schema_is_the_generated_one(name: str) -> None:
    shipped = json.loads((SHIPPED / f"{name}.json").read_text())
    assert shipped == message_schema(name), f"run: exportd schema {name} > docs/schemas/{name}.json"


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_messages_exportd_sends_are_valid_against_their_schema(message: msgspec.Struct) -> None:
    name = next(n for n, t in MESSAGES.items() if isinstance(message, t))
    document = json.loads(msgspec.json.encode(message))
    jsonschema.validate(document, message_schema(name))


def test_the_request_schema_refuses_an_unknown_field_like_exportd_does() -> None:
    document: dict[str, Any] = json.loads(msgspec.json.encode(REQUEST))
    document["fromat"] = "csv"
    with pytest.raises(jsonschema.ValidationError, match="fromat"):
        jsonschema.validate(document, message_schema("ExportRequest"))


def test_internal_messages_let_unknown_fields_through_for_rolling_upgrades() -> None:
    document: dict[str, Any] = json.loads(msgspec.json.encode(EXAMPLES[4]))
    document["added_in_v2"] = True
    jsonschema.validate(document, message_schema("StatusUpdate"))
    assert msgspec.json.decode(json.dumps(document), type=StatusUpdate).seq == 3


def test_the_schema_command_prints_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "CancelSignal"]) == 0
    assert json.loads(capsys.readouterr().out) == message_schema("CancelSignal")
    assert main(["schema"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(MESSAGES)
