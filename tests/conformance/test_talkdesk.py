"""The Talkdesk-compatible report jobs (seed 003) over real HTTP, against the real engine
and worker: each documented field, status and error, files read back and compared with
the data store, and tenant isolation."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from exportd.kernel.validation import MAX_NESTING
from exportd.messages import ExportRequest, Interval
from exportd.plugins.formats.csv import FORMULA_STARTS
from tests.http.server import Server, Tenant, nested_too_deep, serving
from tests.unit.datastore import (
    BIG_CHANNEL,
    FOREIGN_ROOM,
    MESSAGES,
    OTHER_ORG,
    QNA_QUESTIONS,
    ROOM,
    SMALL_CHANNEL,
    WINDOW,
)

SCOPE = ("data-reports:read",)
FROM, TO = "2024-10-26T00:00:00", "2024-10-29T00:00:00"


@pytest.fixture
async def toy_server(tmp_path: Path, datastore: Path) -> AsyncIterator[Server]:
    """exportd with the toy plugins too (a slow source to keep the worker busy)."""
    async with serving(tmp_path, datastore, toy=True) as running:
        yield running


def report(**changes: Any) -> dict[str, Any]:
    """A body for the chat logs of the test room over the test window."""
    return {
        "name": "October logs",
        "timezone": "UTC",
        "format": "csv",
        "timespan": {"from": FROM, "to": TO},
        "room_id": ROOM,
        **changes,
    }


def talkdesk_error(answer: httpx.Response) -> dict[str, Any]:
    """The answer's error body, checked to have Talkdesk's shape."""
    body: dict[str, Any] = answer.json()
    assert set(body) == {"code", "message", "description", "fields"}, body
    assert all(set(field) == {"name", "description"} for field in body["fields"]), body
    return body


async def create(
    server: Server, tenant: Tenant, type_: str = "chat_logs", **changes: Any
) -> dict[str, Any]:
    answer = await server.http.post(
        f"/data/reports/{type_}/jobs", json=report(**changes), headers=tenant.headers
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def finished(server: Server, tenant: Tenant, type_: str, job_id: str) -> httpx.Response:
    """The job's answer once its work is over."""
    await server.wait(job_id)
    return await server.http.get(f"/data/reports/{type_}/jobs/{job_id}", headers=tenant.headers)


async def file_of(server: Server, tenant: Tenant, done: httpx.Response) -> httpx.Response:
    answer = await server.http.get(done.headers["location"], headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer


def csv_text(text: str) -> str:
    """``text`` as the csv format writes it: a would-be formula is quoted with ``'``."""
    return f"'{text}" if text[:1] in FORMULA_STARTS else text


def room_messages() -> list[dict[str, Any]]:
    """The test room's messages in the test window, from the data store's rows."""
    start, end = WINDOW.start, WINDOW.end
    return [
        m
        for m in MESSAGES
        if m["room_id"] == ROOM and start <= datetime.fromisoformat(m["sent_at"]) < end
    ]


async def test_a_report_job_is_created_and_its_csv_file_read(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    created = await create(server, tenant)
    job_id = created["job"]["id"]
    assert created["job"] == {
        "id": job_id,
        "name": "October logs",
        "timezone": "UTC",
        "status": "created",
        "format": "csv",
        "timespan": {"from": FROM, "to": TO},
    }
    base = f"{server.url}/data/reports/chat_logs"
    assert created["_links"] == {
        "self": {"href": f"{base}/jobs/{job_id}"},
        "files": {"href": f"{base}/files/{job_id}"},
    }

    done = await finished(server, tenant, "chat_logs", job_id)
    assert done.status_code == 300
    assert done.headers["location"] == f"{base}/files/{job_id}"
    assert done.json() == {**created, "job": {**created["job"], "status": "done"}}

    answer = await file_of(server, tenant, done)
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="October')
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    expected = room_messages()
    assert sorted(int(row["message_id"]) for row in rows) == [m["id"] for m in expected]
    by_id = {m["id"]: m for m in expected}
    for row in rows:
        message = by_id[int(row["message_id"])]
        assert (row["body"], row["sender_type"]) == (
            csv_text(message["body"]),
            message["sender_type"],
        )
        assert row["conversation_id"] == message["conversation_id"]


async def test_json_and_json_bulk_files_hold_the_same_rows(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    document = await create(server, tenant, format="json")
    lines = await create(server, tenant, format="json_bulk")
    assert (document["job"]["format"], lines["job"]["format"]) == ("json", "json_bulk")

    as_json = await file_of(
        server, tenant, await finished(server, tenant, "chat_logs", document["job"]["id"])
    )
    rows = json.loads(as_json.content)["rows"]
    as_lines = await file_of(
        server, tenant, await finished(server, tenant, "chat_logs", lines["job"]["id"])
    )
    assert as_lines.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in as_lines.content.splitlines()] == rows
    assert sorted(row["message_id"] for row in rows) == sorted(m["id"] for m in room_messages())
    assert {row["body"] for row in rows} == {m["body"] for m in room_messages()}


async def test_chat_stats_are_per_day_of_the_timezone(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    created = await create(
        server, tenant, "chat_stats", timezone="Europe/Helsinki", format="json", name="Stats"
    )
    assert created["job"]["timezone"] == "Europe/Helsinki"
    done = await finished(server, tenant, "chat_stats", created["job"]["id"])
    assert done.status_code == 300
    rows = json.loads((await file_of(server, tenant, done)).content)["rows"]
    # Helsinki midnights: the window is 26 Oct 00:00 +03:00 to 29 Oct 00:00 +02:00.
    assert [row["date"] for row in rows] == ["2024-10-26", "2024-10-27", "2024-10-28"]
    start = datetime(2024, 10, 25, 21, tzinfo=UTC)
    end = datetime(2024, 10, 28, 22, tzinfo=UTC)
    in_window = [
        m
        for m in MESSAGES
        if m["room_id"] == ROOM and start <= datetime.fromisoformat(m["sent_at"]) < end
    ]
    assert sum(row["messages"] for row in rows) == len(in_window)


async def test_a_qna_report_takes_a_channel_and_gives_one_file(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    created = await create(
        server, tenant, "qna", room_id=None, channel_id=BIG_CHANNEL, name="Town hall"
    )
    done = await finished(server, tenant, "qna", created["job"]["id"])
    assert done.status_code == 300
    rows = list(csv.DictReader(io.StringIO((await file_of(server, tenant, done)).text)))
    expected = [
        q
        for q in QNA_QUESTIONS
        if q["channel_id"] == BIG_CHANNEL
        and WINDOW.start <= datetime.fromisoformat(q["asked_at"]) < WINDOW.end
    ]
    assert sorted(int(row["question_id"]) for row in rows) == sorted(q["id"] for q in expected)
    assert {row["question"] for row in rows} == {csv_text(q["question"]) for q in expected}


async def test_a_job_not_done_answers_200_with_its_status(toy_server: Server) -> None:
    server = toy_server
    tenant = server.tenant(permissions=SCOPE)
    busy = await server.engine.submit(
        ExportRequest(
            source="count",
            format="lines",
            params={"rows": 100000, "pause": 0.01},
            interval=Interval("2024-01-01", "2024-01-02"),
        )
    )
    created = await create(server, tenant)
    job_id = created["job"]["id"]
    waiting = await server.http.get(
        f"/data/reports/chat_logs/jobs/{job_id}", headers=tenant.headers
    )
    assert waiting.status_code == 200
    assert "location" not in waiting.headers
    assert waiting.json() == created
    early = await server.http.get(f"/data/reports/chat_logs/files/{job_id}", headers=tenant.headers)
    assert early.status_code == 404
    assert talkdesk_error(early)["message"] == "report file not found"
    await server.engine.cancel(busy.id)
    assert (await finished(server, tenant, "chat_logs", job_id)).status_code == 300


async def test_a_deleted_job_shows_deleted_and_has_no_file(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    job_id = (await create(server, tenant))["job"]["id"]
    await server.wait(job_id)
    url = f"/data/reports/chat_logs/jobs/{job_id}"
    deleted = await server.http.delete(url, headers=tenant.headers)
    assert (deleted.status_code, deleted.content) == (204, b"")
    shown = await server.http.get(url, headers=tenant.headers)
    assert (shown.status_code, shown.json()["job"]["status"]) == (200, "deleted")
    assert (await server.http.delete(url, headers=tenant.headers)).status_code == 204
    file = await server.http.get(f"/data/reports/chat_logs/files/{job_id}", headers=tenant.headers)
    assert file.status_code == 404
    assert talkdesk_error(file)["code"] == "not_found"


async def test_an_expired_job_shows_deleted(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    job_id = (await create(server, tenant))["job"]["id"]
    await server.wait(job_id)
    [expired] = server.engine.store.expire_due(datetime.now(UTC) + timedelta(days=2))
    assert expired.job.status == "expired"
    shown = await server.http.get(f"/data/reports/chat_logs/jobs/{job_id}", headers=tenant.headers)
    assert (shown.status_code, shown.json()["job"]["status"]) == (200, "deleted")


async def test_an_unknown_report_type_is_400(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    answer = await server.http.post(
        "/data/reports/bogus/jobs", json=report(), headers=tenant.headers
    )
    assert answer.status_code == 400
    body = talkdesk_error(answer)
    assert (body["code"], body["message"]) == ("invalid_request", "report type is invalid")
    assert [field["name"] for field in body["fields"]] == ["type"]
    job_id = (await create(server, tenant))["job"]["id"]
    for path in (f"/data/reports/bogus/jobs/{job_id}", f"/data/reports/bogus/files/{job_id}"):
        answer = await server.http.get(path, headers=tenant.headers)
        assert answer.status_code == 400
        assert talkdesk_error(answer)["message"] == "report type is invalid"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"room_id": None}, "room_id"),
        ({"channel_id": SMALL_CHANNEL}, "channel_id"),
        ({"room_id": "no-such-room"}, "room_id"),
        ({"room_id": FOREIGN_ROOM}, "room_id"),
        ({"timespan": {"from": "yesterday", "to": TO}}, "timespan.from"),
        ({"timespan": {"from": FROM, "to": "2024-13-01"}}, "timespan.to"),
        ({"timespan": {"from": FROM}}, "timespan.to"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"format": "xlsx"}, "format"),
        ({"name": 5}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    server: Server, changes: dict[str, Any], field: str
) -> None:
    tenant = server.tenant(permissions=SCOPE)
    answer = await server.http.post(
        "/data/reports/chat_logs/jobs", json=report(**changes), headers=tenant.headers
    )
    assert answer.status_code == 400, answer.text
    body = talkdesk_error(answer)
    assert body["code"] == "invalid_request"
    assert field in [problem["name"] for problem in body["fields"]], body
    assert field in body["description"]


async def test_a_body_that_is_not_json_is_400(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    answer = await server.http.post(
        "/data/reports/chat_logs/jobs", content=b"{nope", headers=tenant.headers
    )
    assert answer.status_code == 400
    assert talkdesk_error(answer)["code"] == "invalid_request"


async def test_a_body_nested_too_deep_is_400_naming_the_body(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    answer = await server.http.post(
        "/data/reports/chat_logs/jobs",
        content=nested_too_deep({"format": "csv"}, "filters"),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    body = talkdesk_error(answer)
    assert (body["code"], body["fields"][0]["name"]) == ("invalid_request", "body")
    assert f"at most {MAX_NESTING} levels" in body["description"]


async def test_no_or_an_unknown_token_is_401(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        answer = await server.http.post(
            "/data/reports/chat_logs/jobs", json=report(), headers=headers
        )
        assert answer.status_code == 401
        body = talkdesk_error(answer)
        assert (body["code"], body["message"]) == ("unauthorized", "unauthorized access")


async def test_a_token_without_the_scope_or_subscription_is_403(server: Server) -> None:
    without_scope = server.tenant(permissions=("reports",))
    answer = await server.http.post(
        "/data/reports/chat_logs/jobs", json=report(), headers=without_scope.headers
    )
    assert answer.status_code == 403
    body = talkdesk_error(answer)
    assert (body["code"], body["message"]) == ("forbidden", "forbidden access")
    assert "data-reports:read" in body["description"]

    lapsed = server.tenant(OTHER_ORG, permissions=SCOPE)
    server.tenants.update_org(OTHER_ORG, active=False)
    answer = await server.http.get("/data/reports/chat_logs/jobs/x", headers=lapsed.headers)
    assert answer.status_code == 403
    assert "subscription" in talkdesk_error(answer)["description"]


async def test_unknown_foreign_and_other_type_jobs_are_404(server: Server) -> None:
    tenant = server.tenant(permissions=SCOPE)
    stranger = server.tenant(OTHER_ORG, permissions=SCOPE)
    job_id = (await create(server, tenant))["job"]["id"]
    for who, path in [
        (tenant, "/data/reports/chat_logs/jobs/no-such-job"),
        (stranger, f"/data/reports/chat_logs/jobs/{job_id}"),
        (stranger, f"/data/reports/chat_logs/files/{job_id}"),
        (tenant, f"/data/reports/chat_stats/jobs/{job_id}"),
        (tenant, f"/data/reports/qna/files/{job_id}"),
    ]:
        answer = await server.http.get(path, headers=who.headers)
        assert answer.status_code == 404, path
        body = talkdesk_error(answer)
        assert (body["code"], body["message"]) == ("not_found", "report job not found")
    deleted = await server.http.delete(
        f"/data/reports/chat_logs/jobs/{job_id}", headers=stranger.headers
    )
    assert deleted.status_code == 404
    assert (await server.engine.get(job_id)).status != "deleted"


async def test_another_org_cannot_report_on_a_foreign_room(server: Server) -> None:
    stranger = server.tenant(OTHER_ORG, permissions=SCOPE)
    answer = await server.http.post(
        "/data/reports/chat_logs/jobs", json=report(), headers=stranger.headers
    )
    assert answer.status_code == 400
    assert talkdesk_error(answer)["fields"][0]["name"] == "room_id"
    own = await create(server, stranger, room_id=FOREIGN_ROOM)
    done = await finished(server, stranger, "chat_logs", own["job"]["id"])
    rows = list(csv.reader(io.StringIO((await file_of(server, stranger, done)).text)))
    assert len(rows) == 1  # the header: the room has no messages
