"""The IBM Video-compatible Q&A exports (seed 004) over real HTTP, against the real engine
and worker: each documented field, status and error value, files read back and compared
with the data store, paging, parts, expiry, and tenant isolation."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from exportd.http.facades.ibm_video import TASK_SPAN
from tests.http.server import Server, Tenant
from tests.unit.datastore import BIG_CHANNEL, OTHER_ORG, QNA_QUESTIONS, SMALL_CHANNEL, WINDOW

START, END = int(WINDOW.start.timestamp()), int(WINDOW.end.timestamp())
DAY = 24 * 3600


def exports(channel: str = SMALL_CHANNEL) -> str:
    return f"/channels/{channel}/qna/exports.json"


def task_url(task_id: int | str, channel: str = SMALL_CHANNEL) -> str:
    return f"/channels/{channel}/qna/exports/{task_id}.json"


def ibm_error(answer: httpx.Response, status: int, value: str) -> str:
    """Check the answer is IBM's error body with ``status`` and ``value``; its description."""
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == value
    description: str = body["error_description"]
    return description


async def start(
    server: Server, tenant: Tenant, channel: str = SMALL_CHANNEL
) -> list[dict[str, Any]]:
    answer = await server.http.post(
        exports(channel), data={"start_date": START, "end_date": END}, headers=tenant.headers
    )
    assert answer.status_code == 200, answer.text
    tasks: list[dict[str, Any]] = answer.json()["exports"]
    return tasks


async def completed(server: Server, tenant: Tenant, task_id: int, channel: str) -> dict[str, Any]:
    await server.wait(
        (await server.engine.get_by_number(task_id // TASK_SPAN)).id  # the task's export
    )
    answer = await server.http.get(task_url(task_id, channel), headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    task: dict[str, Any] = answer.json()["export"]
    return task


def questions(channel: str) -> dict[int, str]:
    """The channel's questions asked in the window, by id, from the data store's rows."""
    return {
        q["id"]: q["question"]
        for q in QNA_QUESTIONS
        if q["channel_id"] == channel
        and WINDOW.start <= datetime.fromisoformat(q["asked_at"]) < WINDOW.end
    }


async def downloaded(task: dict[str, Any]) -> dict[int, str]:
    """The questions in a completed task's file, fetched without a token."""
    async with httpx.AsyncClient() as anonymous:
        answer = await anonymous.get(task["download_url"])
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert len(answer.content) == task["file_size"]
    return {row["question_id"]: row["question"] for row in json.loads(answer.content)["rows"]}


async def test_an_export_is_started_completed_and_downloaded(server: Server) -> None:
    tenant = server.tenant()
    before = int(time.time())
    [task] = await start(server, tenant)
    assert set(task) == {
        *("id", "status", "requested_at", "expires_at", "is_expired"),
        *("start_date", "end_date", "part_count", "part"),
    }
    assert isinstance(task["id"], int) and task["id"] % TASK_SPAN == 0
    assert task["status"] in ("init", "pending")
    assert before <= task["requested_at"] <= int(time.time())
    assert task["expires_at"] == task["requested_at"] + DAY
    assert (task["is_expired"], task["start_date"], task["end_date"]) == (False, START, END)
    assert (task["part_count"], task["part"]) == (1, 1)

    done = await completed(server, tenant, task["id"], SMALL_CHANNEL)
    assert done["status"] == "completed"
    assert done["requested_at"] <= done["expires_at"] - DAY <= int(time.time())
    assert done["download_url"].startswith(server.url)
    assert await downloaded(done) == questions(SMALL_CHANNEL)


async def test_a_channel_of_more_than_25_rooms_makes_a_task_per_part(server: Server) -> None:
    tenant = server.tenant()
    tasks = await start(server, tenant, BIG_CHANNEL)
    assert [(t["part"], t["part_count"]) for t in tasks] == [(1, 3), (2, 3), (3, 3)]
    assert [t["id"] for t in tasks] == [tasks[0]["id"] + n for n in range(3)]
    found: dict[int, str] = {}
    for task in tasks:
        done = await completed(server, tenant, task["id"], BIG_CHANNEL)
        assert (done["status"], done["part"]) == ("completed", task["part"])
        part = await downloaded(done)
        assert not set(part) & set(found)
        found |= part
    assert found == questions(BIG_CHANNEL)


async def test_the_listing_is_paged_newest_export_first(server: Server) -> None:
    tenant = server.tenant()
    first = await start(server, tenant, BIG_CHANNEL)
    second = await start(server, tenant, BIG_CHANNEL)
    small = await start(server, tenant, SMALL_CHANNEL)

    page1 = await server.http.get(exports(BIG_CHANNEL) + "?pagesize=4", headers=tenant.headers)
    assert page1.status_code == 200
    body = page1.json()
    assert [t["id"] for t in body["exports"]] == [t["id"] for t in (second + first)[:4]]
    base = f"{server.url}{exports(BIG_CHANNEL)}?pagesize=4"
    assert body["paging"] == {
        "previous": None,
        "next": f"{base}&page=2",
        "page_count": 2,
        "item_count": 6,
    }
    page2 = (await server.http.get(body["paging"]["next"], headers=tenant.headers)).json()
    assert [t["id"] for t in page2["exports"]] == [t["id"] for t in first[1:]]
    assert page2["paging"] == {
        "previous": f"{base}&page=1",
        "next": None,
        "page_count": 2,
        "item_count": 6,
    }
    listed = (await server.http.get(exports(SMALL_CHANNEL), headers=tenant.headers)).json()
    assert [t["id"] for t in listed["exports"]] == [small[0]["id"]]
    assert listed["paging"]["item_count"] == 1


async def test_deleting_one_task_leaves_the_others_listed_and_downloadable(
    server: Server,
) -> None:
    tenant = server.tenant()
    tasks = await start(server, tenant, BIG_CHANNEL)
    done = [await completed(server, tenant, task["id"], BIG_CHANNEL) for task in tasks]
    first = await server.http.delete(task_url(tasks[0]["id"], BIG_CHANNEL), headers=tenant.headers)
    assert (first.status_code, first.content) == (204, b"")
    gone = await server.http.get(task_url(tasks[0]["id"], BIG_CHANNEL), headers=tenant.headers)
    ibm_error(gone, 404, "not_found")
    async with httpx.AsyncClient() as anonymous:  # its file is deleted with it
        assert (await anonymous.get(done[0]["download_url"])).status_code == 410
    listed = (await server.http.get(exports(BIG_CHANNEL), headers=tenant.headers)).json()
    assert [t["id"] for t in listed["exports"]] == [t["id"] for t in tasks[1:]]
    assert listed["paging"]["item_count"] == 2
    for task in tasks[1:]:
        again = await completed(server, tenant, task["id"], BIG_CHANNEL)
        assert again["status"] == "completed"
        assert await downloaded(again) == await downloaded(done[task["part"] - 1])
    job = await server.engine.get_by_number(tasks[0]["id"] // TASK_SPAN)
    assert job.status == "done"
    for task in tasks[1:]:
        answer = await server.http.delete(task_url(task["id"], BIG_CHANNEL), headers=tenant.headers)
        assert answer.status_code == 204
    assert (await server.engine.get(job.id)).status == "deleted"  # with its last task
    listed = (await server.http.get(exports(BIG_CHANNEL), headers=tenant.headers)).json()
    assert listed["exports"] == [] and listed["paging"]["item_count"] == 0


async def test_deleting_the_only_task_deletes_its_export(server: Server) -> None:
    tenant = server.tenant()
    [task] = await start(server, tenant)
    deleted = await server.http.delete(task_url(task["id"]), headers=tenant.headers)
    assert (deleted.status_code, deleted.content) == (204, b"")
    ibm_error(await server.http.get(task_url(task["id"]), headers=tenant.headers), 404, "not_found")
    again = await server.http.delete(task_url(task["id"]), headers=tenant.headers)
    ibm_error(again, 404, "not_found")
    listed = (await server.http.get(exports(), headers=tenant.headers)).json()
    assert listed["exports"] == [] and listed["paging"]["item_count"] == 0


async def test_an_expired_export_stays_listed_and_can_be_restarted(server: Server) -> None:
    tenant = server.tenant()
    [task] = await start(server, tenant)
    done = await completed(server, tenant, task["id"], SMALL_CHANNEL)
    restart = f"/channels/{SMALL_CHANNEL}/qna/exports/{task['id']}/restart.json"
    refused = await server.http.post(restart, headers=tenant.headers)
    assert "cannot restart a job that is done" in ibm_error(refused, 400, "bad_request")

    server.engine.store.expire_due(datetime.now(UTC) + timedelta(days=2))
    expired = (await server.http.get(task_url(task["id"]), headers=tenant.headers)).json()
    assert expired["export"]["is_expired"] is True
    assert expired["export"]["status"] == "completed"
    assert expired["export"]["expires_at"] == done["expires_at"]
    assert "download_url" not in expired["export"] and "file_size" not in expired["export"]

    again = await server.http.post(restart, headers=tenant.headers)
    assert again.status_code == 200, again.text
    assert (again.json()["export"]["id"], again.json()["export"]["is_expired"]) == (
        task["id"],
        False,
    )
    redone = await completed(server, tenant, task["id"], SMALL_CHANNEL)
    assert await downloaded(redone) == questions(SMALL_CHANNEL)


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"end_date": END}, "start_date"),
        ({"start_date": START}, "end_date"),
        ({"start_date": "yesterday", "end_date": END}, "start_date"),
        ({"start_date": START, "end_date": START}, "end_date"),
        ({"start_date": START, "end_date": 10**15}, "end_date"),
        ({"start_date": START, "end_date": END, "room": "x"}, "room"),
    ],
)
async def test_bad_dates_are_400_bad_request(
    server: Server, form: dict[str, Any], field: str
) -> None:
    answer = await server.http.post(exports(), data=form, headers=server.tenant().headers)
    assert field in ibm_error(answer, 400, "bad_request")


async def test_bad_paging_is_400_bad_request(server: Server) -> None:
    for query in ("page=0", "pagesize=0", "page=x"):
        answer = await server.http.get(f"{exports()}?{query}", headers=server.tenant().headers)
        assert query.split("=")[0] in ibm_error(answer, 400, "bad_request")


async def test_no_or_an_unknown_token_is_401_invalid_token(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        ibm_error(await server.http.get(exports(), headers=headers), 401, "invalid_token")
        answer = await server.http.post(exports(), data={"start_date": START}, headers=headers)
        ibm_error(answer, 401, "invalid_token")


async def test_an_org_without_the_qna_benefit_is_402_invalid_request(server: Server) -> None:
    stranger = server.tenant(OTHER_ORG)
    for answer in [
        await server.http.get(exports(), headers=stranger.headers),
        await server.http.post(exports(), data={"start_date": START}, headers=stranger.headers),
        await server.http.get(task_url(1), headers=stranger.headers),
    ]:
        assert "qna" in ibm_error(answer, 402, "invalid_request")
    server.tenants.update_org(OTHER_ORG, active=False, benefits=["qna"])
    lapsed = await server.http.get(exports(), headers=stranger.headers)
    assert "subscription" in ibm_error(lapsed, 402, "invalid_request")


async def test_another_orgs_channel_is_403_lack_of_ownership(server: Server) -> None:
    tenant = server.tenant()
    [task] = await start(server, tenant)
    server.tenants.update_org(OTHER_ORG, benefits=["qna"])
    stranger = server.tenant(OTHER_ORG)
    restart = f"/channels/{SMALL_CHANNEL}/qna/exports/{task['id']}/restart.json"
    for answer in [
        await server.http.get(exports(), headers=stranger.headers),
        await server.http.post(
            exports(), data={"start_date": START, "end_date": END}, headers=stranger.headers
        ),
        await server.http.get(task_url(task["id"]), headers=stranger.headers),
        await server.http.delete(task_url(task["id"]), headers=stranger.headers),
        await server.http.post(restart, headers=stranger.headers),
    ]:
        ibm_error(answer, 403, "lack_of_ownership")
    assert (await server.engine.get_by_number(task["id"] // TASK_SPAN)).status != "deleted"


async def test_unknown_channels_and_tasks_are_404_not_found(server: Server) -> None:
    tenant = server.tenant()
    [task] = await start(server, tenant)
    for answer in [
        await server.http.get(exports("no-such-channel"), headers=tenant.headers),
        await server.http.post(
            exports("no-such-channel"),
            data={"start_date": START, "end_date": END},
            headers=tenant.headers,
        ),
        await server.http.get(task_url(task["id"] + 1), headers=tenant.headers),
        await server.http.get(task_url(task["id"] + TASK_SPAN), headers=tenant.headers),
        await server.http.get(task_url(task["id"], BIG_CHANNEL), headers=tenant.headers),
        await server.http.get(task_url("abc"), headers=tenant.headers),
        await server.http.get(f"/channels/{SMALL_CHANNEL}/qna/exports/1", headers=tenant.headers),
        await server.http.delete(task_url(task["id"], BIG_CHANNEL), headers=tenant.headers),
    ]:
        ibm_error(answer, 404, "not_found")


async def test_a_failure_on_exportds_side_is_503(server: Server) -> None:
    tenant = server.tenant()
    server.settings.data_path.write_bytes(b"not a database")  # the data store breaks
    answer = await server.http.post(
        exports(), data={"start_date": START, "end_date": END}, headers=tenant.headers
    )
    assert "data store" in ibm_error(answer, 503, "service_unavailable")
