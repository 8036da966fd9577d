"""Tenant isolation of the native API, over real HTTP.

ORG has a finished job.  A user of OTHER_ORG, with a good token of its own,
tries every route of the native API on it: each answers exactly as it does for a
job that does not exist (404 with the error body, not 403), nothing of ORG's
shows in OTHER_ORG's listing, OTHER_ORG cannot export ORG's room, and a download
URL bent to ORG's job fails its signature exactly as one bent to no job at all.
Afterwards ORG's job is as it was: done, listed, and its file downloadable.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from exportd.signing import Signer
from tests.http.server import Server, Tenant, error_body
from tests.http.test_native import created, logs
from tests.unit.datastore import FOREIGN_ROOM, OTHER_ORG, ROOM

ORGS_KEY = {"Idempotency-Key": "orgs-key"}
"""The idempotency key ORG's job was created with."""


@dataclass
class Scene:
    """A server where ORG's ``owner`` has the finished job ``job`` and OTHER_ORG has
    the user ``stranger``."""

    server: Server
    owner: Tenant
    stranger: Tenant
    job: dict[str, Any]

    @property
    def job_id(self) -> str:
        """The id of ORG's job."""
        job_id: str = self.job["id"]
        return job_id


@pytest.fixture
async def scene(server: Server) -> AsyncIterator[Scene]:
    """ORG's finished job, and a user of OTHER_ORG (see :class:`Scene`); ORG's job is
    checked to be intact when the test is over."""
    owner, stranger = server.tenant(), server.tenant(OTHER_ORG)
    job_id = await created(server, logs(), {**owner.headers, **ORGS_KEY})
    assert (await server.wait(job_id)).status == "done"
    job = (await server.http.get(f"/v1/jobs/{job_id}", headers=owner.headers)).json()
    made = Scene(server, owner, stranger, job)
    yield made
    await still_intact(made)


async def still_intact(scene: Scene) -> None:
    """ORG's job is done, on the same attempt, in ORG's listing, and its file (through
    the link it had from the start) is the same bytes."""
    server, headers = scene.server, scene.owner.headers
    now = (await server.http.get(f"/v1/jobs/{scene.job_id}", headers=headers)).json()
    assert (now["status"], now["attempt"]) == ("done", scene.job["attempt"])
    assert now["parts"] == scene.job["parts"]
    listed = (await server.http.get("/v1/jobs", headers=headers)).json()
    assert [job["id"] for job in listed["results"]] == [scene.job_id]
    [link] = scene.job["files"]
    download = await server.http.get(link["url"])
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == link["sha256"]


def without(answer: httpx.Response, job_id: str) -> tuple[int, str]:
    """The answer's status and error body, with ``job_id`` written as ``<id>``."""
    return answer.status_code, str(error_body(answer)).replace(job_id, "<id>")


ROUTES = [
    ("GET", "/v1/jobs/{}"),
    ("POST", "/v1/jobs/{}/cancel"),
    ("POST", "/v1/jobs/{}/restart"),
    ("POST", "/v1/jobs/{}/links"),
    ("DELETE", "/v1/jobs/{}"),
]
"""Every native route that names a job."""


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[" ".join(route) for route in ROUTES])
async def test_another_orgs_job_is_not_found(scene: Scene, method: str, path: str) -> None:
    http, headers = scene.server.http, scene.stranger.headers
    theirs = await http.request(method, path.format(scene.job_id), headers=headers)
    assert theirs.status_code == 404, theirs.text
    assert error_body(theirs)["code"] == "not_found"
    nobodys_id = str(uuid.uuid4())
    nobodys = await http.request(method, path.format(nobodys_id), headers=headers)
    assert without(theirs, scene.job_id) == without(nobodys, nobodys_id)


async def test_another_orgs_listing_shows_nothing_of_org(scene: Scene) -> None:
    http, headers = scene.server.http, scene.stranger.headers
    queries = ["", f"?user_id={scene.owner.user.id}", "?status=done", "?source=rooms"]
    for query in queries:
        listed = await http.get(f"/v1/jobs{query}", headers=headers)
        assert listed.status_code == 200
        assert (listed.json()["count"], listed.json()["results"]) == (0, []), query
        assert scene.job_id not in listed.text


async def test_the_user_id_header_cannot_borrow_a_user_of_org(scene: Scene) -> None:
    borrowed = {"X-Auth-Token": scene.stranger.token, "X-User-Id": scene.owner.user.id}
    answer = await scene.server.http.get(f"/v1/jobs/{scene.job_id}", headers=borrowed)
    assert (answer.status_code, error_body(answer)["code"]) == (401, "unauthorized")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/exports"])
async def test_another_org_cannot_export_orgs_room(scene: Scene, path: str) -> None:
    http, headers = scene.server.http, scene.stranger.headers
    answer = await http.post(path, json=logs(), headers=headers)
    assert answer.status_code == 404, answer.text
    assert [field["name"] for field in error_body(answer)["fields"]] == ["params.room_id"]
    nowhere = str(uuid.uuid4())
    no_room = await http.post(
        path, json=logs(params={"room_id": nowhere, "type": "logs"}), headers=headers
    )
    assert without(answer, ROOM) == without(no_room, nowhere)
    listed = (await http.get("/v1/jobs", headers=headers)).json()
    assert listed["count"] == 0


async def test_orgs_idempotency_key_in_another_org_makes_its_own_job(scene: Scene) -> None:
    http, headers = scene.server.http, {**scene.stranger.headers, **ORGS_KEY}
    theirs = await http.post("/v1/jobs", json=foreign_logs(), headers=headers)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != scene.job_id
    assert theirs.json()["request"]["org_id"] == OTHER_ORG
    await scene.server.wait(theirs.json()["id"])


async def test_a_download_url_bent_to_orgs_job_fails_as_for_no_job(scene: Scene) -> None:
    server = scene.server
    theirs = await created(server, foreign_logs(), scene.stranger.headers)
    assert (await server.wait(theirs)).status == "done"
    shown = await server.http.get(f"/v1/jobs/{theirs}", headers=scene.stranger.headers)
    [link] = shown.json()["files"]
    own = urlsplit(link["url"])
    assert (await server.http.get(link["url"])).status_code == 200

    def bent(job_id: str) -> str:
        """OTHER_ORG's own signed URL, with ``job_id`` in place of its job's id."""
        return f"{own.path.replace(theirs, job_id)}?{own.query}"

    def forged(job_id: str) -> str:
        """A URL for ``job_id`` signed with a guessed key."""
        expires = int(datetime.now(UTC).timestamp()) + 3600
        signature = Signer("a guessed secret").signature(job_id, 1, 0, expires)
        return f"/v1/files/{job_id}/0?attempt=1&expires={expires}&signature={signature}"

    nobodys = str(uuid.uuid4())
    for url_for in (bent, forged):
        orgs = await server.http.get(url_for(scene.job_id))
        assert (orgs.status_code, error_body(orgs)["code"]) == (403, "forbidden")
        no_job = await server.http.get(url_for(nobodys))
        assert without(orgs, scene.job_id) == without(no_job, nobodys)


def foreign_logs() -> dict[str, object]:
    """A request body for OTHER_ORG's own room's chat logs."""
    return logs(params={"room_id": FOREIGN_ROOM, "type": "logs"})
