"""Rocket.Chat's ``POST /api/v1/rooms.export`` (seed 001) over real HTTP: every
documented field and error, files read back against the data store, email to a real
SMTP server, and tenant isolation."""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from exportd.engine.store import JobQuery
from exportd.messages import JobSnapshot
from tests.http.server import Server, Tenant, nested_too_deep, serving
from tests.http.test_email import SENDER, Inbox, inbox, inbox_port, smtp_settings
from tests.unit.datastore import FOREIGN_ROOM, MESSAGES, ORG, OTHER_ORG, ROOM

__all__ = ["inbox", "inbox_port"]  # fixtures, used by name

PATH = "/api/v1/rooms.export"
WINDOW_BODY = {"rid": ROOM, "dateFrom": "2024-10-26", "dateTo": "2024-10-28"}
"""Three days of the test room, the 28th included: messages 2 to 20."""
UNAUTHORIZED = {"success": False, "error": "unauthorized"}


def rocket_error(error_type: str) -> dict[str, object]:
    """Rocket.Chat's body for ``error_type``."""
    return {"success": False, "error": f"[{error_type}]", "errorType": error_type}


def in_window(date_from: str, date_to: str) -> list[dict[str, Any]]:
    """The data store's messages of the test room sent from the day ``date_from`` to the
    day ``date_to``, both included."""
    start, last = (datetime.fromisoformat(f"{day}T00:00:00+00:00") for day in (date_from, date_to))
    end = last + timedelta(days=1)
    return [
        message
        for message in MESSAGES
        if message["room_id"] == ROOM and start <= datetime.fromisoformat(message["sent_at"]) < end
    ]


@pytest.fixture
async def rocket(tmp_path: Path, datastore: Path, inbox_port: int) -> AsyncIterator[Server]:
    """exportd with email delivery to the test SMTP server."""
    async with serving(tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}) as server:
        yield server


def user(
    server: Server, org_id: str = ORG, permissions: tuple[str, ...] = ("mail-messages",)
) -> Tenant:
    """A user of ``org_id`` with an email address and a token with ``permissions``."""
    made = server.tenants.create_user(org_id, "Ann", email=f"ann-{org_id[:4]}@example.com")
    return server.tenant(org_id, permissions, user_id=made.id)


def rocket_headers(tenant: Tenant) -> dict[str, str]:
    """Rocket.Chat's credentials: ``X-User-Id`` and ``X-Auth-Token``."""
    return {"X-User-Id": tenant.user.id, "X-Auth-Token": tenant.token}


async def export(server: Server, tenant: Tenant, body: object) -> httpx.Response:
    """POST ``body`` to rooms.export as ``tenant``."""
    return await server.http.post(PATH, json=body, headers=rocket_headers(tenant))


async def the_job(server: Server, tenant: Tenant) -> JobSnapshot:
    """The one job ``tenant`` has, once finished."""
    page = await server.engine.list_jobs(JobQuery(org_id=tenant.org.id, user_id=tenant.user.id))
    [job] = page.jobs
    return await server.wait(job.id)


def stored(server: Server, job: JobSnapshot) -> bytes:
    """The bytes of the job's only file."""
    file = job.parts[0].file
    assert file is not None
    return (server.settings.files_path / file.key).read_bytes()


async def test_type_file_format_json_exports_the_rooms_messages(rocket: Server) -> None:
    tenant = user(rocket)
    answer = await export(rocket, tenant, {**WINDOW_BODY, "type": "file", "format": "json"})
    assert (answer.status_code, answer.json()) == (200, {"success": True})

    job = await the_job(rocket, tenant)
    assert job.status == "done"
    assert (job.request.source, job.request.params) == ("rooms", {"room_id": ROOM, "type": "logs"})
    assert (job.request.org_id, job.request.user_id) == (ORG, tenant.user.id)
    assert job.request.delivery.type == "file"
    rows = json.loads(stored(rocket, job))["rows"]
    expected = in_window("2024-10-26", "2024-10-28")
    assert sorted(row["message_id"] for row in rows) == sorted(m["id"] for m in expected)
    bodies = {row["message_id"]: row["body"] for row in rows}
    assert bodies == {m["id"]: m["body"] for m in expected}


async def test_type_file_format_html_exports_the_rooms_messages(rocket: Server) -> None:
    tenant = user(rocket)
    answer = await export(rocket, tenant, {**WINDOW_BODY, "type": "file", "format": "html"})
    assert (answer.status_code, answer.json()) == (200, {"success": True})

    job = await the_job(rocket, tenant)
    assert job.parts[0].file is not None
    assert job.parts[0].file.media_type.startswith("text/html")
    page = stored(rocket, job).decode()
    for message in in_window("2024-10-26", "2024-10-28"):
        assert html.escape(message["body"]).split("\n")[0] in page
    assert "Too late?" not in page  # sent on the 29th, after dateTo


async def test_without_dates_the_export_runs_from_the_epoch_to_now(rocket: Server) -> None:
    tenant = user(rocket)
    answer = await export(rocket, tenant, {"rid": ROOM, "type": "file", "format": "json"})
    assert answer.status_code == 200

    job = await the_job(rocket, tenant)
    assert job.request.interval.start == "1970-01-01"
    assert datetime.fromisoformat(job.request.interval.end) > job.created_at.replace(microsecond=0)
    rows = json.loads(stored(rocket, job))["rows"]
    assert len(rows) == len([m for m in MESSAGES if m["room_id"] == ROOM])


@pytest.mark.parametrize(
    ("date_from", "date_to"), [("2024-10-26", "2024-10-27"), ("2024-10-27", "2024-10-27")]
)
async def test_date_to_includes_its_whole_day(rocket: Server, date_from: str, date_to: str) -> None:
    # As the Rocket.Chat server, which adds a day to dateTo.
    tenant = user(rocket)
    body = {"rid": ROOM, "dateFrom": date_from, "dateTo": date_to, "type": "file", "format": "json"}
    answer = await export(rocket, tenant, body)
    assert (answer.status_code, answer.json()) == (200, {"success": True})

    job = await the_job(rocket, tenant)
    rows = json.loads(stored(rocket, job))["rows"]
    expected = in_window(date_from, date_to)
    assert {m["sent_at"][:10] for m in expected} >= {date_to}
    assert sorted(row["message_id"] for row in rows) == sorted(m["id"] for m in expected)


@pytest.mark.parametrize(
    ("date_from", "date_to"), [("2024-10-28", "2024-10-26"), ("2024-10-27T00:00:01", "2024-10-27")]
)
async def test_date_from_after_date_to_is_invalid_dates(
    rocket: Server, date_from: str, date_to: str
) -> None:
    body = {"rid": ROOM, "dateFrom": date_from, "dateTo": date_to, "type": "file", "format": "json"}
    answer = await export(rocket, user(rocket), body)
    assert (answer.status_code, answer.json()) == (
        400,
        {
            "success": False,
            "error": "From date cannot be after To date [error-invalid-dates]",
            "errorType": "error-invalid-dates",
        },
    )
    assert (await rocket.engine.list_jobs(JobQuery(org_id=ORG))).total == 0


async def test_type_email_sends_the_file_to_the_users_address(rocket: Server, inbox: Inbox) -> None:
    tenant = user(rocket)
    answer = await export(rocket, tenant, {**WINDOW_BODY, "type": "email", "format": "json"})
    assert (answer.status_code, answer.json()) == (200, {"success": True})

    job = await the_job(rocket, tenant)
    [message] = await inbox.wait()
    assert message["To"] == tenant.user.email
    assert message["From"] == SENDER
    assert message["Subject"] == f"Your export room {ROOM} is ready"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_payload(decode=True) == stored(rocket, job)


async def test_type_email_for_a_user_without_an_address_is_invalid_params(
    rocket: Server,
) -> None:
    tenant = rocket.tenant(ORG, ("mail-messages",))  # no email address
    answer = await export(rocket, tenant, {**WINDOW_BODY, "type": "email", "format": "json"})
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-params"))


async def test_type_email_as_rocket_chats_clients_send_it(rocket: Server, inbox: Inbox) -> None:
    # toUsers, toEmails, subject and messages, and no format: to those people, as html.
    tenant = user(rocket)
    rocket.tenants.create_user(ORG, "bob", email="Bob@example.com")
    rocket.tenants.create_user(ORG, "carol", email="carol@example.com")
    body = {
        **WINDOW_BODY,
        "type": "email",
        "toUsers": ["bob"],
        "toEmails": ["CAROL@example.com", "bob@example.com"],
        "subject": "Room log",
        "messages": ["2", "3"],
    }
    answer = await export(rocket, tenant, body)
    assert (answer.status_code, answer.json()) == (200, {"success": True})

    job = await the_job(rocket, tenant)
    assert (job.request.format, job.request.name) == ("html", "Room log")
    assert job.request.delivery.to == ["CAROL@example.com", "bob@example.com"]
    [message] = await inbox.wait()
    assert [address.strip() for address in message["To"].split(",")] == job.request.delivery.to
    assert tenant.user.email not in message["To"]
    assert message["Subject"] == "Your export Room log is ready"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/html"
    assert attachment.get_payload(decode=True) == stored(rocket, job)


@pytest.mark.parametrize(
    ("recipients", "error_type", "named"),
    [
        ({"toUsers": ["nobody"]}, "error-invalid-recipient", "toUsers: 'nobody'"),
        ({"toUsers": ["dana"]}, "error-invalid-recipient", "toUsers: 'dana'"),  # no address
        ({"toUsers": ["twin"]}, "error-invalid-recipient", "toUsers: 'twin'"),  # two of them
        ({"toUsers": ["globex"]}, "error-invalid-recipient", "toUsers: 'globex'"),
        ({"toEmails": ["eve@evil.example"]}, "error-invalid-recipient", "toEmails: eve@"),
        ({"toEmails": ["gus@globex.example"]}, "error-invalid-recipient", "toEmails: gus@"),
        ({"toUsers": [], "toEmails": [" "]}, "error-invalid-recipient", None),
        ({"toUsers": ["bob"], "messages": []}, "error-invalid-messages", None),
        ({"toUsers": ["bob"], "format": "xlsx"}, "error-invalid-format", None),
    ],
)
async def test_type_email_to_recipients_exportd_does_not_mail_is_refused(
    rocket: Server, recipients: dict[str, Any], error_type: str, named: str | None
) -> None:
    # Only the organisation's own users are mailed, as through the native API.
    for org_id, name, email in (
        (ORG, "bob", "bob@example.com"),
        (ORG, "dana", None),
        (ORG, "twin", "twin1@example.com"),
        (ORG, "twin", "twin2@example.com"),
        (OTHER_ORG, "globex", "gus@globex.example"),
    ):
        rocket.tenants.create_user(org_id, name, email=email)
    body = {**WINDOW_BODY, "type": "email", "subject": "Logs", "messages": ["2"], **recipients}
    answer = await export(rocket, user(rocket), body)
    assert answer.status_code == 400
    got = answer.json()
    assert (got["success"], got["errorType"]) == (False, error_type)
    assert got["error"].endswith(f"[{error_type}]")
    assert named is None or named in got["error"], got
    assert (await rocket.engine.list_jobs(JobQuery(org_id=ORG))).total == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-User-Id": "nobody", "X-Auth-Token": "not-a-token"},
    ],
)
async def test_missing_or_unknown_credentials_are_unauthorized(
    rocket: Server, headers: dict[str, str]
) -> None:
    body = {**WINDOW_BODY, "type": "file", "format": "json"}
    answer = await rocket.http.post(PATH, json=body, headers=headers)
    assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED)


async def test_a_token_without_its_user_id_is_unauthorized(rocket: Server) -> None:
    tenant = user(rocket)
    body = {**WINDOW_BODY, "type": "file", "format": "json"}
    for headers in (
        {"X-Auth-Token": tenant.token},
        {"X-Auth-Token": tenant.token, "X-User-Id": ""},
        {"Authorization": f"Bearer {tenant.token}"},
        {"Authorization": f"Bearer {tenant.token}", "X-User-Id": tenant.user.id},
    ):
        answer = await rocket.http.post(PATH, json=body, headers=headers)
        assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED), headers
    assert (await rocket.engine.list_jobs(JobQuery(org_id=ORG))).total == 0


async def test_a_token_of_another_user_is_unauthorized(rocket: Server) -> None:
    tenant, other = user(rocket), user(rocket)
    headers = {"X-User-Id": other.user.id, "X-Auth-Token": tenant.token}
    body = {**WINDOW_BODY, "type": "file", "format": "json"}
    answer = await rocket.http.post(PATH, json=body, headers=headers)
    assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "file", "format": "json"},
        {"rid": "", "type": "file", "format": "json"},
        {"rid": ROOM, "format": "json"},
        {"rid": ROOM, "type": "fax", "format": "json"},
        {"rid": 42, "type": "file", "format": "json"},
        {"rid": ROOM, "type": "file", "format": "json", "dateFrom": "yesterday"},
        {"rid": ROOM, "type": "file", "format": "json", "dateTo": "2024-13-01"},
        {"rid": ROOM, "type": "file", "format": "json", "dateTo": "9999-12-31"},
        ["not", "an", "object"],
    ],
)
async def test_missing_or_malformed_params_are_invalid_params(rocket: Server, body: object) -> None:
    answer = await export(rocket, user(rocket), body)
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-params"))


async def test_a_body_that_is_not_json_is_invalid_params(rocket: Server) -> None:
    headers = {**rocket_headers(user(rocket)), "Content-Type": "application/json"}
    answer = await rocket.http.post(PATH, content=b"{rid:", headers=headers)
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-params"))


async def test_a_body_nested_too_deep_is_invalid_params(rocket: Server) -> None:
    headers = {**rocket_headers(user(rocket)), "Content-Type": "application/json"}
    body = nested_too_deep({"rid": "room", "type": "file", "format": "json"}, "dateFrom")
    answer = await rocket.http.post(PATH, content=body, headers=headers)
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-params"))


async def test_an_unknown_room_is_invalid_room(rocket: Server) -> None:
    body = {"rid": "no-such-room", "type": "file", "format": "json"}
    answer = await export(rocket, user(rocket), body)
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-room"))


async def test_another_organisations_room_is_invalid_room(rocket: Server) -> None:
    body = {"rid": FOREIGN_ROOM, "type": "file", "format": "json"}
    answer = await export(rocket, user(rocket), body)
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-room"))
    # Its own organisation may export it; nothing of ORG's leaks the other way.
    other = user(rocket, OTHER_ORG)
    answer = await export(rocket, other, body)
    assert answer.status_code == 200
    answer = await export(rocket, other, {"rid": ROOM, "type": "file", "format": "json"})
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-room"))
    assert (await rocket.engine.list_jobs(JobQuery(org_id=ORG))).total == 0


async def test_a_user_without_mail_messages_is_not_allowed(rocket: Server) -> None:
    tenant = user(rocket, permissions=("reports",))
    answer = await export(rocket, tenant, {**WINDOW_BODY, "type": "file", "format": "json"})
    assert (answer.status_code, answer.json()) == (403, rocket_error("error-not-allowed"))


async def test_an_inactive_organisation_is_not_allowed(rocket: Server) -> None:
    tenant = user(rocket)
    rocket.tenants.update_org(ORG, active=False)
    answer = await export(rocket, tenant, {**WINDOW_BODY, "type": "file", "format": "json"})
    assert (answer.status_code, answer.json()) == (403, rocket_error("error-not-allowed"))


@pytest.mark.parametrize("body", [{"type": "file"}, {"type": "file", "format": "xlsx"}])
async def test_a_missing_or_unknown_format_is_invalid_format(
    rocket: Server, body: dict[str, str]
) -> None:
    answer = await export(rocket, user(rocket), {**WINDOW_BODY, **body})
    assert (answer.status_code, answer.json()) == (400, rocket_error("error-invalid-format"))
