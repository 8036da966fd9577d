"""The JSON Schemas of the wire messages and the OpenAPI document: shipped up to date,
and true to the Structs.

The shipped files are what the locked versions (requirements.lock) generate: a refresh
of the lock that changes them fails here, naming the command that regenerates them.
A real JSON Schema validator (jsonschema) checks messages that exportd encodes, as a
producer or subscriber in another language would.
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
from exportd.cli.schema import generated_documents
from exportd.config import Settings
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


REGENERATE = "docs/schemas is out of date; regenerate it: exportd schema --write docs/schemas"


@pytest.fixture(scope="module")
def generated() -> dict[str, dict[str, Any]]:
    """What ``exportd schema --write`` writes, by file name."""
    return generated_documents(Settings())


def test_the_shipped_files_are_the_generated_ones(generated: dict[str, dict[str, Any]]) -> None:
    shipped = {path.name: json.loads(path.read_text()) for path in SHIPPED.glob("*.json")}
    assert set(shipped) == set(generated), REGENERATE
    for name, document in generated.items():
        assert shipped[name] == document, f"{name}: {REGENERATE}"


def test_schema_write_writes_the_files_it_checks(tmp_path: Path) -> None:
    assert main(["schema", "--write", str(tmp_path)]) == 0
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (SHIPPED / path.name).read_bytes(), REGENERATE
    assert {path.name for path in tmp_path.iterdir()} == {p.name for p in SHIPPED.iterdir()}


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
    assert main(["schema", "--openapi"]) == 0
    assert json.loads(capsys.readouterr().out)["openapi"].startswith("3.")
