"""The giosg report exports facade (seed 000) over real HTTP: every attribute, every
listed status code, the paginated listing, and tenant isolation."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from exportd.kernel.validation import MAX_NESTING
from tests.http.server import Server, Tenant, nested_too_deep, serving
from tests.unit.datastore import (
    CONVERSATIONS,
    FOREIGN_ROOM,
    MESSAGES,
    ORG,
    OTHER_ORG,
    ROOM,
    WINDOW,
)

ATTRIBUTES = {
    "id",
    "starting_at",
    "ending_at",
    "room_id",
    "type",
    "format",
    "is_real_conversation",
    "min_message_count",
    "created_at",
    "created_by_user_id",
    "updated_at",
    "completed_at",
    "expires_at",
    "is_failed",
    "url",
}
START, END = "2024-10-26T00:00:00Z", "2024-10-29T00:00:00Z"


def manager(server: Server, org_id: str = ORG, **options: Any) -> Tenant:
    """A user with a token that has the ``settings`` permission."""
    return server.tenant(org_id, ("settings",), **options)


def auth(tenant: Tenant) -> dict[str, str]:
    """giosg's ``Authorization: Token <token>``."""
    return {"Authorization": f"Token {tenant.token}"}


def exports_path(tenant: Tenant, org_id: str | None = None, user_id: str | None = None) -> str:
    return f"/api/v5/orgs/{org_id or tenant.org.id}/users/{user_id or tenant.user.id}/reportexports"


def payload(**changes: Any) -> dict[str, Any]:
    """The test room's logs over ``WINDOW`` as csv."""
    body = {
        "starting_at": START,
        "ending_at": END,
        "room_id": ROOM,
        "type": "logs",
        "format": "csv",
        **changes,
    }
    return {name: value for name, value in body.items() if value is not None}


async def create(server: Server, tenant: Tenant, **changes: Any) -> dict[str, Any]:
    answer = await server.http.post(
        exports_path(tenant), json=payload(**changes), headers=auth(tenant)
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def finished(server: Server, tenant: Tenant, report_id: str) -> dict[str, Any]:
    """The report export once its job is finished, as the API shows it."""
    await server.wait(report_id)
    answer = await server.http.get(f"{exports_path(tenant)}/{report_id}", headers=auth(tenant))
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


async def download(url: str) -> httpx.Response:
    """The file at a report's ``url``, fetched with no credentials."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    return answer


def expected_message_ids(real: bool | None = None, min_count: int = 0) -> list[int]:
    """The ids of the test room's messages in WINDOW that the logs filters keep, from the
    data store's rows."""
    actual = {
        c["id"]: sum(
            1
            for m in MESSAGES
            if m["conversation_id"] == c["id"] and m["sender_type"] in ("visitor", "operator")
        )
        for c in CONVERSATIONS
    }
    kept = {
        c["id"]
        for c in CONVERSATIONS
        if c["room_id"] == ROOM
        and (real is None or c["is_real"] == real)
        and actual[c["id"]] >= min_count
    }
    return sorted(
        m["id"]
        for m in MESSAGES
        if m["conversation_id"] in kept
        and WINDOW.start <= datetime.fromisoformat(m["sent_at"]) < WINDOW.end
    )


def error(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The giosg error body of an answer with ``status``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return body


# -- 201 and the attributes --------------------------------------------------------------


async def test_create_answers_201_with_every_attribute_in_progress(server: Server) -> None:
    tenant = manager(server)
    answer = await server.http.post(exports_path(tenant), json=payload(), headers=auth(tenant))
    assert answer.status_code == 201
    report = answer.json()
    assert set(report) == ATTRIBUTES
    assert report["starting_at"] == START and report["ending_at"] == END
    assert (report["room_id"], report["type"], report["format"]) == (ROOM, "logs", "csv")
    assert (report["is_real_conversation"], report["min_message_count"]) == (None, 0)
    assert report["created_by_user_id"] == tenant.user.id
    assert report["created_at"] == report["updated_at"]
    assert (report["completed_at"], report["expires_at"]) == (None, None)
    assert (report["is_failed"], report["url"]) == (None, None)
    job = await server.engine.get(report["id"])
    assert job.request.source == "rooms" and job.request.org_id == ORG


async def test_a_done_logs_report_has_its_url_and_the_filtered_messages(server: Server) -> None:
    tenant = manager(server)
    created = await create(server, tenant, is_real_conversation=True, min_message_count=2)
    assert (created["is_real_conversation"], created["min_message_count"]) == (True, 2)
    report = await finished(server, tenant, created["id"])
    assert report["is_failed"] is False
    completed = datetime.fromisoformat(report["completed_at"])
    lifetime = timedelta(seconds=server.settings.engine.file_lifetime)
    assert datetime.fromisoformat(report["expires_at"]) == completed + lifetime
    assert datetime.fromisoformat(report["updated_at"]) >= datetime.fromisoformat(
        report["created_at"]
    )
    assert report["url"].startswith(f"{server.url}/")

    file = await download(report["url"])
    rows = list(csv.DictReader(io.StringIO(file.content.decode("utf-8-sig"))))
    assert [int(row["message_id"]) for row in rows] == expected_message_ids(True, 2)
    assert all(row["is_real_conversation"].lower() == "true" for row in rows)


async def test_logs_filtering_non_real_conversations(server: Server) -> None:
    tenant = manager(server)
    report = await finished(
        server, tenant, (await create(server, tenant, is_real_conversation=False))["id"]
    )
    file = await download(report["url"])
    rows = list(csv.DictReader(io.StringIO(file.content.decode("utf-8-sig"))))
    assert [int(row["message_id"]) for row in rows] == expected_message_ids(False) != []


async def test_stats_as_xlsx_have_a_row_per_day(server: Server) -> None:
    tenant = manager(server)
    created = await create(server, tenant, type="stats", format="xlsx")
    assert (created["type"], created["format"]) == ("stats", "xlsx")
    assert (created["is_real_conversation"], created["min_message_count"]) == (None, None)
    report = await finished(server, tenant, created["id"])
    file = await download(report["url"])
    assert file.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(file.content), read_only=True).active
    assert sheet is not None
    header, *rows = list(sheet.iter_rows(values_only=True))
    chats = {row[0]: row[header.index("chats")] for row in rows}
    started = [
        datetime.fromisoformat(c["started_at"]).date()
        for c in CONVERSATIONS
        if c["room_id"] == ROOM and WINDOW.start <= datetime.fromisoformat(c["started_at"])
    ]
    days = [WINDOW.start.date() + timedelta(days=n) for n in range(3)]
    assert [str(day)[:10] for day in chats] == [str(day) for day in days]
    assert list(chats.values()) == [started.count(day) for day in days]


async def test_logs_as_txt(server: Server) -> None:
    tenant = manager(server)
    report = await finished(server, tenant, (await create(server, tenant, format="txt"))["id"])
    assert report["format"] == "txt"
    file = await download(report["url"])
    assert file.headers["content-type"].startswith("text/plain")
    assert "It ships today." in file.content.decode("utf-8-sig")


async def test_a_failed_report_is_failed_with_no_url_nor_expiry(server: Server) -> None:
    # The storage cannot keep the file: its directory is a plain file.
    shutil.rmtree(server.settings.files_path, ignore_errors=True)
    server.settings.files_path.write_text("in the way")
    tenant = manager(server)
    report = await finished(server, tenant, (await create(server, tenant))["id"])
    assert report["is_failed"] is True
    assert report["completed_at"] is not None
    assert (report["expires_at"], report["url"]) == (None, None)


async def test_an_expired_report_has_no_url(tmp_path: Path, datastore: Path) -> None:
    async with serving(
        tmp_path, datastore, engine={"file_lifetime": 0.3, "sweep_interval": 0.1}
    ) as server:
        tenant = manager(server)
        created = await create(server, tenant)
        async with asyncio.timeout(10):
            while (await server.engine.get(created["id"])).status != "expired":
                await asyncio.sleep(0.05)
        answer = await server.http.get(
            f"{exports_path(tenant)}/{created['id']}", headers=auth(tenant)
        )
        report = answer.json()
        assert (report["is_failed"], report["url"]) == (False, None)
        assert report["expires_at"] is not None


@pytest.mark.parametrize(
    "changes", [{"is_real_conversation": True, "min_message_count": 2}, {"type": "stats"}]
)
async def test_a_report_export_posted_back_starts_the_same_export(
    server: Server, changes: dict[str, Any]
) -> None:
    # A client that posts back a report export it read: its read-only attributes (all
    # set, once it is done; null logs-only ones for stats) are ignored.
    tenant = manager(server)
    read = await finished(server, tenant, (await create(server, tenant, **changes))["id"])
    assert read["url"] is not None and read["completed_at"] is not None
    posted = {**read, "created_by_user_id": "someone-else", "is_failed": True}
    answer = await server.http.post(exports_path(tenant), json=posted, headers=auth(tenant))
    assert answer.status_code == 201, answer.text
    again = answer.json()
    assert again["id"] != read["id"]
    assert again["created_by_user_id"] == tenant.user.id
    assert (again["completed_at"], again["is_failed"], again["url"]) == (None, None, None)
    editable = ("starting_at", "ending_at", "room_id", "type", "format")
    editable += ("is_real_conversation", "min_message_count")
    assert {name: again[name] for name in editable} == {name: read[name] for name in editable}
    first, second = [await server.engine.get(report["id"]) for report in (read, again)]
    assert second.request.params == first.request.params


async def test_an_undocumented_attribute_beside_read_only_ones_is_400(server: Server) -> None:
    tenant = manager(server)
    created = await create(server, tenant)
    answer = await server.http.post(
        exports_path(tenant), json={**created, "colour": "blue"}, headers=auth(tenant)
    )
    assert list(error(answer, 400)) == ["colour"]


async def test_bearer_works_as_well_as_token(server: Server) -> None:
    tenant = manager(server)
    answer = await server.http.get(exports_path(tenant), headers=tenant.headers)
    assert answer.status_code == 200


# -- 400 ----------------------------------------------------------------------------------


async def test_missing_required_attributes_are_each_named(server: Server) -> None:
    tenant = manager(server)
    answer = await server.http.post(exports_path(tenant), json={}, headers=auth(tenant))
    assert error(answer, 400) == {
        name: ["This field is required."]
        for name in ("starting_at", "ending_at", "room_id", "type", "format")
    }
    partial = await server.http.post(
        exports_path(tenant), json=payload(room_id=None), headers=auth(tenant)
    )
    assert error(partial, 400) == {"room_id": ["This field is required."]}


@pytest.mark.parametrize(
    ("type_", "format_"),
    [("logs", "json"), ("logs", "html"), ("stats", "txt"), ("stats", "pdf")],
)
async def test_a_format_the_type_does_not_allow_is_400(
    server: Server, type_: str, format_: str
) -> None:
    tenant = manager(server)
    answer = await server.http.post(
        exports_path(tenant), json=payload(type=type_, format=format_), headers=auth(tenant)
    )
    [message] = error(answer, 400)["format"]
    assert format_ in message and "csv or xlsx" in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"starting_at": 20241026}, "starting_at"),
        ({"starting_at": "yesterday"}, "starting_at"),
        ({"ending_at": "2024-13-01"}, "ending_at"),
        ({"ending_at": START}, "ending_at"),
        ({"room_id": ["a"]}, "room_id"),
        ({"type": "graphs"}, "type"),
        ({"is_real_conversation": "yes"}, "is_real_conversation"),
        ({"min_message_count": -1}, "min_message_count"),
        ({"min_message_count": "many"}, "min_message_count"),
        ({"type": "stats", "is_real_conversation": True}, "is_real_conversation"),
        ({"type": "stats", "min_message_count": 3}, "min_message_count"),
        ({"colour": "blue"}, "colour"),
        ({"room_id": "no-such-room"}, "room_id"),
    ],
)
async def test_a_payload_in_wrong_format_is_400_naming_the_attribute(
    server: Server, changes: dict[str, Any], field: str
) -> None:
    tenant = manager(server)
    answer = await server.http.post(
        exports_path(tenant), json=payload(**changes), headers=auth(tenant)
    )
    body = error(answer, 400)
    assert list(body) == [field], body
    assert all(isinstance(message, str) and message for message in body[field])
    assert "interval" not in str(body)


async def test_a_body_that_is_not_json_is_400(server: Server) -> None:
    tenant = manager(server)
    answer = await server.http.post(
        exports_path(tenant),
        content=b"{not json",
        headers={**auth(tenant), "Content-Type": "application/json"},
    )
    assert "JSON" in error(answer, 400)["detail"]


async def test_a_body_nested_too_deep_is_400(server: Server) -> None:
    tenant = manager(server)
    answer = await server.http.post(
        exports_path(tenant),
        content=nested_too_deep(payload(), "room_id"),
        headers={**auth(tenant), "Content-Type": "application/json"},
    )
    assert f"at most {MAX_NESTING} levels" in error(answer, 400)["detail"]


# -- 401, 403, 404 ---------------------------------------------------------------------------


async def test_not_authenticated_is_401_on_every_route(server: Server) -> None:
    tenant = manager(server)
    report = await create(server, tenant)
    for method, path in [
        ("POST", exports_path(tenant)),
        ("GET", exports_path(tenant)),
        ("GET", f"{exports_path(tenant)}/{report['id']}"),
    ]:
        for headers in ({}, {"Authorization": "Token not-a-token"}):
            answer = await server.http.request(method, path, json=payload(), headers=headers)
            assert set(error(answer, 401)) == {"detail"}
            assert answer.headers["www-authenticate"] == "Token"


async def test_no_active_subscription_is_403(server: Server) -> None:
    tenant = manager(server)
    report = await create(server, tenant)
    server.tenants.update_org(ORG, active=False)
    for answer in [
        await server.http.post(exports_path(tenant), json=payload(), headers=auth(tenant)),
        await server.http.get(exports_path(tenant), headers=auth(tenant)),
        await server.http.get(f"{exports_path(tenant)}/{report['id']}", headers=auth(tenant)),
    ]:
        assert "subscription" in error(answer, 403)["detail"]


async def test_another_organization_in_the_url_is_403(server: Server) -> None:
    tenant = manager(server)
    stranger = manager(server, OTHER_ORG)
    report = await create(server, stranger, room_id=FOREIGN_ROOM)
    path = exports_path(tenant, org_id=OTHER_ORG, user_id=stranger.user.id)
    for answer in [
        await server.http.post(path, json=payload(room_id=FOREIGN_ROOM), headers=auth(tenant)),
        await server.http.get(path, headers=auth(tenant)),
        await server.http.get(f"{path}/{report['id']}", headers=auth(tenant)),
    ]:
        assert OTHER_ORG in error(answer, 403)["detail"]


async def test_no_settings_permission_is_403(server: Server) -> None:
    tenant = server.tenant(ORG, ("reports", "mail-messages"))
    for answer in [
        await server.http.post(exports_path(tenant), json=payload(), headers=auth(tenant)),
        await server.http.get(exports_path(tenant), headers=auth(tenant)),
    ]:
        assert "settings" in error(answer, 403)["detail"]


async def test_a_user_of_another_organization_is_403(server: Server) -> None:
    tenant = manager(server)
    stranger = manager(server, OTHER_ORG)
    path = exports_path(tenant, user_id=stranger.user.id)
    for answer in [
        await server.http.post(path, json=payload(), headers=auth(tenant)),
        await server.http.get(path, headers=auth(tenant)),
        await server.http.get(f"{path}/whatever", headers=auth(tenant)),
    ]:
        assert stranger.user.id in error(answer, 403)["detail"]


async def test_an_unknown_user_is_404(server: Server) -> None:
    tenant = manager(server)
    path = exports_path(tenant, user_id="0f000000-0000-4000-8000-00000000dead")
    for answer in [
        await server.http.post(path, json=payload(), headers=auth(tenant)),
        await server.http.get(path, headers=auth(tenant)),
    ]:
        assert set(error(answer, 404)) == {"detail"}


async def test_a_colleague_may_be_exported_for_and_owns_the_report(server: Server) -> None:
    tenant = manager(server)
    colleague = manager(server)
    path = exports_path(tenant, user_id=colleague.user.id)
    answer = await server.http.post(path, json=payload(), headers=auth(tenant))
    assert answer.status_code == 201
    assert answer.json()["created_by_user_id"] == colleague.user.id
    listed = await server.http.get(exports_path(colleague), headers=auth(colleague))
    assert [r["id"] for r in listed.json()["results"]] == [answer.json()["id"]]


# -- retrieve and list: isolation and paging --------------------------------------------------


async def test_another_organizations_or_users_report_is_404(server: Server) -> None:
    tenant = manager(server)
    colleague = manager(server)
    stranger = manager(server, OTHER_ORG)
    theirs = await create(server, stranger, room_id=FOREIGN_ROOM)
    colleagues = await create(server, colleague)
    for report_id in (theirs["id"], colleagues["id"], "no-such-report"):
        answer = await server.http.get(f"{exports_path(tenant)}/{report_id}", headers=auth(tenant))
        assert set(error(answer, 404)) == {"detail"}
    own = await server.http.get(
        f"{exports_path(colleague)}/{colleagues['id']}", headers=auth(colleague)
    )
    assert own.status_code == 200 and own.json()["id"] == colleagues["id"]


async def test_another_organizations_room_is_400(server: Server) -> None:
    tenant = manager(server)
    answer = await server.http.post(
        exports_path(tenant), json=payload(room_id=FOREIGN_ROOM), headers=auth(tenant)
    )
    assert list(error(answer, 400)) == ["room_id"]


async def test_listing_is_newest_first_and_paginated(server: Server) -> None:
    tenant = manager(server)
    ids = [(await create(server, tenant, format=f))["id"] for f in ("csv", "xlsx", "txt")]
    await create(server, manager(server))  # a colleague's
    await create(server, manager(server, OTHER_ORG), room_id=FOREIGN_ROOM)
    path = exports_path(tenant)

    first = await server.http.get(f"{path}?page_size=2", headers=auth(tenant))
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"next", "previous", "results"}
    assert [r["id"] for r in body["results"]] == ids[::-1][:2]
    assert all(set(r) == ATTRIBUTES for r in body["results"])
    created = [r["created_at"] for r in body["results"]]
    assert created == sorted(created, reverse=True)
    assert body["previous"] is None
    assert body["next"] == f"{server.url}{path}?page=2&page_size=2"

    second = (await server.http.get(body["next"], headers=auth(tenant))).json()
    assert [r["id"] for r in second["results"]] == [ids[0]]
    assert second["next"] is None
    assert second["previous"] == f"{server.url}{path}?page=1&page_size=2"

    everything = (await server.http.get(path, headers=auth(tenant))).json()
    assert [r["id"] for r in everything["results"]] == ids[::-1]
    assert (everything["next"], everything["previous"]) == (None, None)


@pytest.mark.parametrize("query", ["page=0", "page=x", "page_size=0", "page_size=1001"])
async def test_bad_paging_is_400_naming_the_parameter(server: Server, query: str) -> None:
    tenant = manager(server)
    answer = await server.http.get(f"{exports_path(tenant)}?{query}", headers=auth(tenant))
    assert list(error(answer, 400)) == [query.split("=", maxsplit=1)[0]]
