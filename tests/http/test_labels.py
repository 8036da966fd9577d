"""Labels over real HTTP: each API labels the jobs made through it, lists and reads only
those, and the native API lists jobs by label (``?label=key:value``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.http.server import Server, Tenant, error_body
from tests.unit.datastore import ORG, ROOM, SMALL_CHANNEL, WINDOW

PERMISSIONS = ("reports", "settings", "mail-messages", "data-reports:read")
START, END = WINDOW.start.isoformat(), WINDOW.end.isoformat()


def everyone(server: Server) -> Tenant:
    """A user with an email address whose token may call every API."""
    made = server.tenants.create_user(ORG, "Ann", email="ann@example.com")
    return server.tenant(ORG, PERMISSIONS, user_id=made.id)


def native(**changes: Any) -> dict[str, Any]:
    """A native request: the test room's logs as json, a format giosg does not allow."""
    return {
        "source": "rooms",
        "format": "json",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": START, "end": END},
        **changes,
    }


async def made_everywhere(server: Server, tenant: Tenant) -> dict[str, str]:
    """A job made through each API by ``tenant``, by the API's label."""
    http, headers = server.http, tenant.headers
    giosg = f"/api/v5/orgs/{ORG}/users/{tenant.user.id}/reportexports"
    body = {"starting_at": START, "ending_at": END, "room_id": ROOM, "type": "logs"}
    answers = {
        "native": await http.post("/v1/jobs", json=native(), headers=headers),
        "giosg-reports": await http.post(giosg, json={**body, "format": "csv"}, headers=headers),
        "talkdesk": await http.post(
            "/data/reports/chat_logs/jobs",
            json={"name": "logs", "timespan": {"from": START, "to": END}, "room_id": ROOM},
            headers=headers,
        ),
        "ibm-video": await http.post(
            f"/channels/{SMALL_CHANNEL}/qna/exports.json",
            data={
                "start_date": int(WINDOW.start.timestamp()),
                "end_date": int(WINDOW.end.timestamp()),
            },
            headers=headers,
        ),
    }
    assert all(answer.status_code in (200, 201) for answer in answers.values()), answers
    rocket = await http.post(
        "/api/v1/rooms.export",
        json={"rid": ROOM, "type": "file", "format": "html", "dateFrom": START, "dateTo": END},
        headers={"X-User-Id": tenant.user.id, "X-Auth-Token": tenant.token},
    )
    assert rocket.status_code == 200, rocket.text
    ids = {api: answer.json().get("id") for api, answer in answers.items()}
    ids["talkdesk"] = answers["talkdesk"].json()["job"]["id"]
    ids["ibm-video"] = answers["ibm-video"].json()["exports"][0]["id"]
    listed = await http.get("/v1/jobs", params={"label": "api:rocketchat"}, headers=headers)
    [rocket_job] = listed.json()["results"]
    ids["rocketchat"] = rocket_job["id"]
    return ids


async def test_each_api_lists_and_reads_only_the_jobs_made_through_it(server: Server) -> None:
    tenant = everyone(server)
    ids = await made_everywhere(server, tenant)
    http, headers = server.http, tenant.headers
    giosg = f"/api/v5/orgs/{ORG}/users/{tenant.user.id}/reportexports"

    listed = (await http.get(giosg, headers=headers)).json()["results"]
    assert [(export["id"], export["format"]) for export in listed] == [
        (ids["giosg-reports"], "csv")
    ]
    for api in ("native", "talkdesk", "rocketchat"):
        assert (await http.get(f"{giosg}/{ids[api]}", headers=headers)).status_code == 404

    own = await http.get(f"/data/reports/chat_logs/jobs/{ids['talkdesk']}", headers=headers)
    assert own.status_code in (200, 300)
    for api in ("native", "giosg-reports", "rocketchat"):
        answer = await http.get(f"/data/reports/chat_logs/jobs/{ids[api]}", headers=headers)
        assert answer.status_code == 404, api
    other_type = f"/data/reports/chat_stats/jobs/{ids['talkdesk']}"
    assert (await http.get(other_type, headers=headers)).status_code == 404

    # A native job of the same channel is no IBM task.
    qna = {"source": "qna", "format": "json", "params": {"channel_id": SMALL_CHANNEL}}
    made = await http.post("/v1/jobs", json={**native(), **qna}, headers=headers)
    assert made.status_code == 201, made.text
    tasks = (await http.get(f"/channels/{SMALL_CHANNEL}/qna/exports.json", headers=headers)).json()
    assert [task["id"] for task in tasks["exports"]] == [ids["ibm-video"]]
    assert tasks["paging"]["item_count"] == 1


async def test_the_native_api_lists_jobs_by_label(server: Server) -> None:
    tenant = everyone(server)
    ids = await made_everywhere(server, tenant)
    http, headers = server.http, tenant.headers
    labelled = await http.post(
        "/v1/jobs", json=native(labels={"team": "support", "week": "42"}), headers=headers
    )
    assert labelled.status_code == 201, labelled.text
    assert labelled.json()["request"]["labels"] == {"team": "support", "week": "42"}

    async def listed(*labels: str) -> list[str]:
        answer = await http.get(
            "/v1/jobs", params=[("label", label) for label in labels], headers=headers
        )
        assert answer.status_code == 200, answer.text
        return [job["id"] for job in answer.json()["results"]]

    assert len(await listed()) == 6
    assert await listed("api:talkdesk") == [ids["talkdesk"]]
    assert await listed("team:support", "week:42") == [labelled.json()["id"]]
    assert await listed("team:support", "week:43") == []
    page = await http.get(
        "/v1/jobs",
        params=[("label", "team:support"), ("label", "week:42"), ("page_size", "1")],
        headers=headers,
    )
    assert page.json()["previous"] is None
    talkdesk = (await http.get(f"/v1/jobs/{ids['talkdesk']}", headers=headers)).json()
    assert talkdesk["request"]["labels"] == {"api": "talkdesk", "report_type": "chat_logs"}


@pytest.mark.parametrize(
    ("labels", "field"),
    [(["api"], "label"), (["api:a", "api:b"], "label")],
)
async def test_a_bad_label_filter_is_400_naming_label(
    server: Server, labels: list[str], field: str
) -> None:
    tenant = server.tenant()
    answer = await server.http.get(
        "/v1/jobs", params=[("label", label) for label in labels], headers=tenant.headers
    )
    assert answer.status_code == 400
    assert [f["name"] for f in error_body(answer)["fields"]] == [field]


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ({"Team": "a"}, "labels.Team"),
        ({"team": ""}, "labels.team"),
        ({"team": "a" * 201}, "labels.team"),
        ({"team": "a\nb"}, "labels.team"),
        ({f"k{n}": "v" for n in range(17)}, "labels"),
        # a native job may not pass for a facade's, in that facade's listings
        ({"api": "giosg-reports"}, "labels.api"),
    ],
)
async def test_a_bad_label_is_400_naming_it(
    server: Server, labels: dict[str, str], field: str
) -> None:
    tenant = server.tenant()
    answer: httpx.Response = await server.http.post(
        "/v1/jobs", json=native(labels=labels), headers=tenant.headers
    )
    assert answer.status_code == 400, answer.text
    assert [f["name"] for f in error_body(answer)["fields"]] == [field]
