"""The giosg workflow step download facade (seed 002) over real HTTP: the file itself
(csv and xlsx, read back and compared with the data store), every payload attribute,
every listed status code, and tenant isolation."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from exportd.kernel.validation import MAX_NESTING
from tests.http.server import Server, Tenant, nested_too_deep, serving
from tests.unit.datastore import (
    INTERACTION_WORKFLOW,
    ORG,
    OTHER_ORG,
    SHOP,
    VOICE_WORKFLOW,
    WEB_WORKFLOW,
    WINDOW,
    WORKFLOW_EVENTS,
)

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMAT_ERROR = {
    "format": ["Format must be 'xlsx' or 'csv'. Change the value or omit the field from payload."]
}
INTERVAL = {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()}


def analyst(server: Server, org_id: str = ORG) -> Tenant:
    """A user with a token that has the ``reports`` permission."""
    return server.tenant(org_id, ("reports",))


def download_path(
    workflow_id: str = WEB_WORKFLOW, step_index: int | str = 1, org_id: str = ORG
) -> str:
    return (
        f"/api/reporting/workflow/v1/orgs/{org_id}/workflows/{workflow_id}"
        f"/step/{step_index}/download/"
    )


def payload(**changes: Any) -> dict[str, Any]:
    """No filters over ``WINDOW``; attributes set to None are left out."""
    body = {"filters": [], "interval": INTERVAL, **changes}
    return {name: value for name, value in body.items() if value is not None}


def expected_ids(
    workflow_id: str, step_index: int, keep: Callable[[dict[str, Any]], bool] = lambda e: True
) -> list[int]:
    """The ids of a step's events in WINDOW that ``keep`` keeps, in time order (then id),
    from the data store's rows."""
    events = [
        event
        for event in WORKFLOW_EVENTS
        if event["workflow_id"] == workflow_id
        and event["step_index"] == step_index
        and WINDOW.start <= datetime.fromisoformat(event["occurred_at"]) < WINDOW.end
        and keep(event)
    ]
    return [e["id"] for e in sorted(events, key=lambda e: (e["occurred_at"], e["id"]))]


async def fetch(
    server: Server, tenant: Tenant, body: dict[str, Any], path: str | None = None
) -> httpx.Response:
    return await server.http.post(path or download_path(), json=body, headers=tenant.headers)


def csv_rows(answer: httpx.Response) -> list[dict[str, str]]:
    """The csv file of a successful answer, as rows."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CSV
    return list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))


def ids(rows: list[dict[str, str]]) -> list[int]:
    return [int(row["event_id"]) for row in rows]


def error(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The giosg error body of an answer with ``status``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return body


# -- 200: the file ------------------------------------------------------------------------------


async def test_csv_is_the_default_and_holds_the_steps_events(server: Server) -> None:
    answer = await fetch(server, analyst(server), payload())
    rows = csv_rows(answer)
    assert ids(rows) == expected_ids(WEB_WORKFLOW, 1)
    by_id = {e["id"]: e for e in WORKFLOW_EVENTS}
    for row in rows:
        event = by_id[int(row["event_id"])]
        assert (row["action"], row["visitor_id"], row["session_id"], row["page_url"]) == (
            event["action"],
            event["visitor_id"],
            event["session_id"],
            event["page_url"],
        )
        assert datetime.fromisoformat(row["occurred_at"]) == datetime.fromisoformat(
            event["occurred_at"]
        )
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and ".csv" in disposition


async def test_xlsx_is_a_workbook_of_the_steps_events(server: Server) -> None:
    answer = await fetch(server, analyst(server), payload(format="xlsx"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == XLSX
    assert ".xlsx" in answer.headers["content-disposition"].split("filename=")[1]
    sheet = openpyxl.load_workbook(io.BytesIO(answer.content), read_only=True).active
    assert sheet is not None
    header, *rows = list(sheet.iter_rows(values_only=True))
    assert header[:4] == ("event_id", "occurred_at", "step_index", "action")
    assert [row[0] for row in rows] == expected_ids(WEB_WORKFLOW, 1)
    assert {row[2] for row in rows} == {1}


async def test_the_seeds_example_payload(server: Server) -> None:
    body = {
        "filters": [{"property": "action", "values": ["User dialed"]}],
        "step_data": [{}, {"actions": ["User dialed", "Visitor dialed"]}],
        "interval": {"start": "2024-10-27T00:00:00+00:00", "end": "2024-10-28T00:00:00+00:00"},
        "format": "xlsx",
    }
    answer = await fetch(server, analyst(server), body, download_path(VOICE_WORKFLOW))
    assert answer.status_code == 200, answer.text
    sheet = openpyxl.load_workbook(io.BytesIO(answer.content), read_only=True).active
    assert sheet is not None
    _, *rows = list(sheet.iter_rows(values_only=True))
    assert [(row[0], row[3]) for row in rows] == [(11, "User dialed")]


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ([{"property": "action", "values": ["page_view"]}], lambda e: e["action"] == "page_view"),
        ([{"property": "visitor_id", "values": ["v2", "v3"]}], lambda e: e["visitor_id"] in "v2v3"),
        ([{"property": "session_id", "values": ["s1"]}], lambda e: e["session_id"] == "s1"),
        (
            [
                {"property": "page_url", "values": [f"{SHOP}/tents"]},
                {"property": "visitor_id", "values": ["v1", "v4"]},
            ],
            lambda e: e["page_url"] == f"{SHOP}/tents" and e["visitor_id"] in ("v1", "v4"),
        ),
        ([{"property": "action", "values": ["nothing"]}], lambda e: False),
    ],
)
async def test_filters_keep_the_matching_events(
    server: Server, filters: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
) -> None:
    rows = csv_rows(await fetch(server, analyst(server), payload(filters=filters)))
    assert ids(rows) == expected_ids(WEB_WORKFLOW, 1, keep)


async def test_step_data_picks_the_steps_actions(server: Server) -> None:
    tenant = analyst(server)
    tents = [{}, {"actions": [f"{SHOP}/tents"]}]
    web = csv_rows(await fetch(server, tenant, payload(step_data=tents)))
    assert ids(web) == expected_ids(WEB_WORKFLOW, 1, lambda e: e["page_url"] == f"{SHOP}/tents")
    assert ids(web) != expected_ids(WEB_WORKFLOW, 1)

    views = [{}, {"actions": ["view-b"]}]
    interaction = csv_rows(
        await fetch(server, tenant, payload(step_data=views), download_path(INTERACTION_WORKFLOW))
    )
    assert ids(interaction) == expected_ids(
        INTERACTION_WORKFLOW, 1, lambda e: e["view_uid"] == "view-b"
    )

    # Voice & video workflows ignore step_data.
    voice = csv_rows(
        await fetch(
            server,
            tenant,
            payload(step_data=[{}, {"actions": ["x"]}]),
            download_path(VOICE_WORKFLOW),
        )
    )
    assert ids(voice) == expected_ids(VOICE_WORKFLOW, 1) != []


async def test_target_triggered_goal_keeps_the_goal_events(server: Server) -> None:
    tenant = analyst(server)
    goal = csv_rows(await fetch(server, tenant, payload(target="triggered_goal")))
    assert ids(goal) == expected_ids(WEB_WORKFLOW, 1, lambda e: e["goal_triggered"] == 1)
    assert all(row["goal_triggered"].lower() == "true" for row in goal)
    default = csv_rows(await fetch(server, tenant, payload(target="default")))
    assert ids(default) == expected_ids(WEB_WORKFLOW, 1)


async def test_limit_caps_the_rows(server: Server) -> None:
    rows = csv_rows(await fetch(server, analyst(server), payload(limit=2)))
    assert ids(rows) == expected_ids(WEB_WORKFLOW, 1)[:2]


async def test_the_source_step_is_step_0_and_the_path_works_without_its_slash(
    server: Server,
) -> None:
    rows = csv_rows(
        await fetch(server, analyst(server), payload(), download_path(step_index=0).rstrip("/"))
    )
    assert ids(rows) == expected_ids(WEB_WORKFLOW, 0) != []


async def test_more_rows_than_a_synchronous_export_holds_is_400(
    tmp_path: Path, datastore: Path
) -> None:
    async with serving(tmp_path, datastore, http={"sync_max_rows": 2}) as server:
        answer = await fetch(server, analyst(server), payload())
        assert list(error(answer, 400)) == ["limit"]
        assert csv_rows(await fetch(server, analyst(server), payload(limit=2)))


# -- 400 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("format_", ["totally-not-valid-format", "json", "XLSX", ""])
async def test_a_wrong_format_is_400_with_the_documented_body(server: Server, format_: str) -> None:
    answer = await fetch(server, analyst(server), payload(format=format_))
    assert error(answer, 400) == FORMAT_ERROR


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"filters": None}, "filters"),
        ({"filters": "action"}, "filters"),
        ({"filters": [{"property": "action"}]}, "filters[0].values"),
        ({"filters": [{"values": ["a"]}]}, "filters[0].property"),
        ({"filters": [{"property": "action", "values": "a"}]}, "filters[0].values"),
        ({"interval": None}, "interval"),
        ({"interval": {"start": INTERVAL["start"]}}, "interval.end"),
        ({"interval": {**INTERVAL, "start": "soon"}}, "interval.start"),
        ({"interval": {**INTERVAL, "end": INTERVAL["start"]}}, "interval.end"),
        ({"step_data": {"actions": []}}, "step_data"),
        ({"step_data": [{}, {"actions": "a"}]}, "step_data[1].actions"),
        ({"target": "goal"}, "target"),
        ({"limit": 0}, "limit"),
        ({"limit": -3}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_a_bad_attribute_is_400_naming_it(
    server: Server, changes: dict[str, Any], field: str
) -> None:
    answer = await fetch(server, analyst(server), payload(**changes))
    body = error(answer, 400)
    assert list(body) == [field], body
    assert all(isinstance(message, str) and message for message in body[field])


@pytest.mark.parametrize("step_index", ["x", "-1", "1.5"])
async def test_a_step_index_that_is_not_a_whole_number_is_400(
    server: Server, step_index: str
) -> None:
    answer = await fetch(server, analyst(server), payload(), download_path(step_index=step_index))
    assert list(error(answer, 400)) == ["step_index"]


async def test_a_body_that_is_not_json_is_400(server: Server) -> None:
    tenant = analyst(server)
    answer = await server.http.post(
        download_path(),
        content=b"{not json",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert set(error(answer, 400)) == {"detail"}


async def test_a_body_nested_too_deep_is_400(server: Server) -> None:
    tenant = analyst(server)
    answer = await server.http.post(
        download_path(),
        content=nested_too_deep(payload(), "filters"),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert f"at most {MAX_NESTING} levels" in error(answer, 400)["detail"]


# -- 401, 403, 404, 406 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}]
)
async def test_not_authenticated_is_401(server: Server, headers: dict[str, str]) -> None:
    answer = await server.http.post(download_path(), json=payload(), headers=headers)
    assert set(error(answer, 401)) == {"detail"}


async def test_token_authorization_works_too(server: Server) -> None:
    tenant = analyst(server)
    answer = await server.http.post(
        download_path(), json=payload(), headers={"Authorization": f"Token {tenant.token}"}
    )
    assert ids(csv_rows(answer)) == expected_ids(WEB_WORKFLOW, 1)


async def test_no_active_subscription_is_403(server: Server) -> None:
    tenant = analyst(server)
    server.tenants.update_org(ORG, active=False)
    assert "subscription" in error(await fetch(server, tenant, payload()), 403)["detail"]


async def test_another_organization_in_the_url_is_403(server: Server) -> None:
    tenant = analyst(server)
    answer = await fetch(server, tenant, payload(), download_path(org_id=OTHER_ORG))
    assert OTHER_ORG in error(answer, 403)["detail"]


async def test_no_reports_permission_is_403(server: Server) -> None:
    tenant = server.tenant(ORG, ("settings", "data-reports:read"))
    assert "reports" in error(await fetch(server, tenant, payload()), 403)["detail"]


@pytest.mark.parametrize(
    ("workflow_id", "step_index"),
    [("2c000000-0000-4000-8000-0000000000ff", 1), (WEB_WORKFLOW, 3), (VOICE_WORKFLOW, 2)],
)
async def test_an_unknown_workflow_or_step_is_404(
    server: Server, workflow_id: str, step_index: int
) -> None:
    answer = await fetch(server, analyst(server), payload(), download_path(workflow_id, step_index))
    assert set(error(answer, 404)) == {"detail"}


async def test_another_organizations_workflow_is_404(server: Server) -> None:
    stranger = analyst(server, OTHER_ORG)
    answer = await fetch(server, stranger, payload(), download_path(org_id=OTHER_ORG))
    assert WEB_WORKFLOW in error(answer, 404)["detail"]


async def test_filtering_with_something_not_implemented_is_406(server: Server) -> None:
    filters = [
        {"property": "action", "values": ["page_view"]},
        {"property": "device", "values": ["mobile"]},
    ]
    answer = await fetch(server, analyst(server), payload(filters=filters))
    detail = error(answer, 406)["detail"]
    assert "filters[1].property" in detail and "'device'" in detail


async def test_an_unexpected_error_with_the_query_is_500(server: Server) -> None:
    server.settings.data_path.write_bytes(b"not a database")  # the data store breaks
    answer = await fetch(server, analyst(server), payload())
    assert "data store" in error(answer, 500)["detail"]
