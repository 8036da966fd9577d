"""The native API over real HTTP: jobs, their files, synchronous exports, errors."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest

from exportd.bus.local import LocalBus
from exportd.engine.service import Engine
from exportd.engine.store import JobStore
from exportd.errors import ConfigError
from exportd.http.app import serving_http
from exportd.http.context import HttpApi
from exportd.kernel.validation import MAX_NESTING
from exportd.messages import ExportRequest
from exportd.plugins.manager import Plugins
from exportd.signing import Signer
from tests.http.server import Server, error_body, nested_too_deep, serving
from tests.integration.runtime import settings_in
from tests.unit import toy_plugins
from tests.unit.datastore import FOREIGN_ROOM, ORG, OTHER_ORG, ROOM, WINDOW


def logs(**changes: object) -> dict[str, object]:
    """A request body for the test room's chat logs as csv."""
    return {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        **changes,
    }


def count(**params: object) -> dict[str, object]:
    """A request body for the toy ``count`` source."""
    return {
        "source": "count",
        "format": "lines",
        "params": params,
        "interval": {"start": "2024-01-01", "end": "2024-01-02"},
    }


async def created(server: Server, body: dict[str, object], headers: dict[str, str]) -> str:
    answer = await server.http.post("/v1/jobs", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["id"]
    return job_id


async def test_a_job_is_created_finished_and_its_file_downloaded(server: Server) -> None:
    tenant = server.tenant()
    answer = await server.http.post("/v1/jobs", json=logs(), headers=tenant.headers)
    assert answer.status_code == 201
    job = answer.json()
    assert (job["status"], job["files"]) == ("created", [])
    assert job["request"]["org_id"] == ORG
    assert job["request"]["user_id"] == tenant.user.id
    assert job["url"] == f"{server.url}/v1/jobs/{job['id']}"

    await server.wait(job["id"])
    done = (await server.http.get(f"/v1/jobs/{job['id']}", headers=tenant.headers)).json()
    assert done["status"] == "done"
    [link] = done["files"]
    file = done["parts"][0]["file"]
    assert (link["name"], link["size"], link["sha256"]) == (
        file["name"],
        file["size"],
        file["sha256"],
    )

    download = await httpx.AsyncClient().get(link["url"])  # no credentials
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert download.headers["content-length"] == str(file["size"])
    assert download.headers["content-disposition"].startswith(
        f'attachment; filename="{file["name"]}"'
    )
    assert hashlib.sha256(download.content).hexdigest() == file["sha256"]
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert rows[0][0] == "conversation_id" and len(rows) - 1 == file["rows"] > 0


async def test_listing_is_newest_first_paged_and_filtered(server: Server) -> None:
    ann, bob = server.tenant(), server.tenant()
    ids = [await created(server, logs(), ann.headers) for _ in range(3)]
    ids.append(await created(server, logs(format="json"), bob.headers))
    for job_id in ids:
        await server.wait(job_id)

    first = (await server.http.get("/v1/jobs?page_size=3", headers=ann.headers)).json()
    assert [job["id"] for job in first["results"]] == ids[::-1][:3]
    assert (first["count"], first["page"], first["previous"]) == (4, 1, None)
    assert first["next"] == f"{server.url}/v1/jobs?page=2&page_size=3"
    second = (await server.http.get(first["next"], headers=ann.headers)).json()
    assert [job["id"] for job in second["results"]] == [ids[0]]
    assert (second["next"], second["previous"]) == (
        None,
        f"{server.url}/v1/jobs?page=1&page_size=3",
    )

    by_bob = await server.http.get(f"/v1/jobs?user_id={bob.user.id}", headers=ann.headers)
    assert [job["id"] for job in by_bob.json()["results"]] == [ids[3]]
    done_csv = await server.http.get("/v1/jobs?status=done&source=rooms", headers=ann.headers)
    assert done_csv.json()["count"] == 4
    none = await server.http.get("/v1/jobs?status=failed", headers=ann.headers)
    assert (none.json()["count"], none.json()["results"]) == (0, [])


async def test_a_slow_listing_or_get_does_not_hold_up_other_answers(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job store's reads run in threads of their own: while one takes a second (a
    # big listing, a disk that stalls), the event loop goes on answering.
    tenant = server.tenant()
    job_id = await created(server, logs(), tenant.headers)
    await server.wait(job_id)
    loop_thread = threading.current_thread()
    readers: list[threading.Thread] = []

    def slowly(read: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            readers.append(threading.current_thread())
            time.sleep(1.0)
            return read(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(JobStore, "list_jobs", slowly(JobStore.list_jobs))
    monkeypatch.setattr(JobStore, "get", slowly(JobStore.get))
    for path in ["/v1/jobs", f"/v1/jobs/{job_id}"]:
        slow = asyncio.create_task(server.http.get(path, headers=tenant.headers))
        await asyncio.sleep(0.2)  # the read has begun
        began = time.monotonic()
        assert (await server.http.get("/healthz")).status_code == 200
        assert time.monotonic() - began < 0.5
        assert not slow.done()
        assert (await slow).status_code == 200
    assert readers and loop_thread not in readers


async def test_the_same_idempotency_key_gives_the_same_job(server: Server) -> None:
    tenant = server.tenant()
    key = {**tenant.headers, "Idempotency-Key": "k-1"}
    first = await server.http.post("/v1/jobs", json=logs(), headers=key)
    again = await server.http.post("/v1/jobs", json=logs(), headers=key)
    assert first.json()["id"] == again.json()["id"]
    other = await server.http.post("/v1/jobs", json=logs(format="json"), headers=key)
    assert other.status_code == 409
    assert error_body(other)["fields"][0]["name"] == "idempotency_key"


async def test_cancel_restart_and_delete(tmp_path: Path, datastore: Path) -> None:
    async with serving(tmp_path, datastore, toy=True, batch_size=1) as server:
        tenant = server.tenant()
        job_id = await created(server, count(rows=1000, pause=0.01), tenant.headers)
        cancel = await server.http.post(f"/v1/jobs/{job_id}/cancel", headers=tenant.headers)
        assert (cancel.status_code, cancel.json()["status"]) == (200, "canceled")
        again = await server.http.post(f"/v1/jobs/{job_id}/cancel", headers=tenant.headers)
        assert again.status_code == 409
        assert error_body(again)["message"] == "cannot cancel a job that is canceled"

        restart = await server.http.post(f"/v1/jobs/{job_id}/restart", headers=tenant.headers)
        assert (restart.json()["status"], restart.json()["attempt"]) == ("created", 2)

        failing = await created(server, count(rows=5, explode_at=2), tenant.headers)
        assert (await server.wait(failing)).status == "failed"
        shown = (await server.http.get(f"/v1/jobs/{failing}", headers=tenant.headers)).json()
        assert "boom at 2" in shown["error"]["message"]

        deleted = await server.http.delete(f"/v1/jobs/{job_id}", headers=tenant.headers)
        assert (deleted.status_code, deleted.content) == (204, b"")
        gone = await server.http.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
        assert gone.json()["status"] == "deleted"


async def test_download_urls_expire_are_renewed_and_die_with_the_file(server: Server) -> None:
    tenant = server.tenant()
    job_id = await created(server, logs(), tenant.headers)
    running = await server.http.post(f"/v1/jobs/{job_id}/links", headers=tenant.headers)
    assert running.status_code in (200, 409)  # it may be done already
    await server.wait(job_id)
    [link] = (await server.http.post(f"/v1/jobs/{job_id}/links", headers=tenant.headers)).json()[
        "files"
    ]
    assert datetime.fromisoformat(link["url_expires_at"]) <= datetime.now(UTC) + timedelta(hours=1)
    assert (await server.http.get(link["url"])).status_code == 200

    query = parse_qs(urlsplit(link["url"]).query)
    tampered = link["url"].replace("/0?", "/1?")
    assert (await server.http.get(tampered)).status_code == 403
    past = int(datetime.now(UTC).timestamp()) - 1
    signer = Signer(server.settings.http.secret or (tmp_secret(server)))
    signature = signer.signature(job_id, 1, 0, past)
    stale = f"/v1/files/{job_id}/0?attempt=1&expires={past}&signature={signature}"
    expired = await server.http.get(stale)
    assert expired.status_code == 403
    assert "expired" in error_body(expired)["message"]
    assert query["attempt"] == ["1"]

    await server.http.delete(f"/v1/jobs/{job_id}", headers=tenant.headers)
    after = await server.http.get(link["url"])
    assert after.status_code == 410
    assert error_body(after)["code"] == "gone"
    renew = await server.http.post(f"/v1/jobs/{job_id}/links", headers=tenant.headers)
    assert renew.status_code == 410


async def test_a_url_of_an_expired_job_answers_410_though_the_url_expired_with_it(
    tmp_path: Path, datastore: Path
) -> None:
    lifetime = {"file_lifetime": 2.0, "sweep_interval": 0.1}
    async with serving(tmp_path, datastore, engine=lifetime) as server:
        tenant = server.tenant()
        job_id = await created(server, logs(), tenant.headers)
        await server.wait(job_id)
        shown = await server.http.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
        [link] = shown.json()["files"]
        url_until = datetime.fromisoformat(link["url_expires_at"])
        assert url_until <= datetime.fromisoformat(shown.json()["expires_at"])
        while (await server.engine.get(job_id)).status != "expired":
            await asyncio.sleep(0.05)
        gone = await server.http.get(link["url"])
        assert (gone.status_code, error_body(gone)["code"]) == (410, "gone")


async def test_a_short_or_half_written_signing_key_is_refused(
    tmp_path: Path, datastore: Path
) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError, match=r"http\.secret: .* at least 32 characters"):
        async with serving(tmp_path / "a", datastore, http={"secret": "short"}):
            pass
    home = tmp_path / "b"
    home.mkdir()
    (home / "http-secret").write_text("")  # a crash between creating and writing it
    with pytest.raises(ConfigError, match=r"http-secret: .* at least 32 characters"):
        async with serving(home, datastore):
            pass


def tmp_secret(server: Server) -> str:
    return (server.settings.home_path / "http-secret").read_text().strip()


async def test_a_synchronous_export_answers_with_the_file(tmp_path: Path, datastore: Path) -> None:
    async with serving(tmp_path, datastore, http={"sync_max_rows": 5}) as server:
        tenant = server.tenant()
        answer = await server.http.post("/v1/exports", json=logs(limit=5), headers=tenant.headers)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        assert "filename=" in answer.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
        assert len(rows) == 6
        too_big = await server.http.post("/v1/exports", json=logs(), headers=tenant.headers)
        assert too_big.status_code == 400
        assert error_body(too_big)["fields"][0]["name"] == "limit"
        left = server.settings.work_path.glob("*/*")  # in the folders, beside the locks
        assert not list(left)


async def test_synchronous_exports_beyond_the_concurrency_answer_503(
    tmp_path: Path, datastore: Path
) -> None:
    settings = {"http": {"sync_concurrency": 1}, "batch_size": 1}
    async with serving(tmp_path, datastore, toy=True, **settings) as server:
        tenant = server.tenant()
        slow = asyncio.create_task(
            server.http.post("/v1/exports", json=count(rows=20, pause=0.05), headers=tenant.headers)
        )
        await asyncio.sleep(0.3)
        busy = await server.http.post("/v1/exports", json=count(rows=1), headers=tenant.headers)
        assert (busy.status_code, error_body(busy)["code"]) == (503, "unavailable")
        lines = (await slow).content.splitlines()
        assert (len(lines), lines[-1]) == (22, b"-- end")  # a header, 20 rows, the end
        after = await server.http.post("/v1/exports", json=count(rows=1), headers=tenant.headers)
        assert after.status_code == 200


async def test_a_synchronous_export_whose_request_is_cancelled_leaves_nothing(
    tmp_path: Path, datastore: Path
) -> None:
    async with serving(tmp_path, datastore, toy=True, batch_size=1) as server:
        api = HttpApi(
            server.engine, Plugins(settings=server.settings, extra=[toy_plugins]), server.settings
        )
        try:
            request = msgspec.convert({**count(rows=100, pause=0.05), "org_id": ORG}, ExportRequest)
            answering = asyncio.create_task(api.export_now(request))
            await asyncio.sleep(0.3)
            answering.cancel()
            with pytest.raises(asyncio.CancelledError):
                await answering
            assert list(api.work_area.folder.iterdir()) == []
        finally:
            api.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (logs(colour="red"), "colour"),
        (logs(params={"room_id": ROOM, "type": "lgos"}), "params.type"),
        (logs(format="pdf"), "format"),
        ({"format": "csv"}, "source"),
        (logs(interval={"start": "2024-10-27"}), "interval.end"),
        (logs(org_id=OTHER_ORG), "org_id"),
        (logs(params={"room_id": FOREIGN_ROOM, "type": "logs"}), "params.room_id"),
        (logs(delivery={"type": "email", "to": []}), "delivery.type"),  # email is off here
        (logs(delivery={"type": "email", "to": ["eve@elsewhere.example"]}), "delivery.to"),
        (logs(name="n" * 201), "name"),
        (logs(delivery={"type": "fax"}), "delivery.type"),
    ],
)
async def test_a_bad_request_is_refused_naming_its_field(
    server: Server, body: dict[str, object], field: str
) -> None:
    answer = await server.http.post("/v1/jobs", json=body, headers=server.tenant().headers)
    assert answer.status_code in (400, 404)
    assert field in [f["name"] for f in error_body(answer)["fields"]]


async def test_malformed_json_unknown_paths_and_bad_paging_answer_the_error_body(
    server: Server,
) -> None:
    headers = server.tenant().headers
    malformed = await server.http.post("/v1/jobs", content=b"{nope", headers=headers)
    assert (malformed.status_code, error_body(malformed)["code"]) == (400, "invalid_request")
    assert (await server.http.get("/v1/nothing", headers=headers)).status_code == 404
    paging = await server.http.get("/v1/jobs?page=0", headers=headers)
    assert error_body(paging)["fields"][0]["name"] == "page"
    method = await server.http.put("/v1/jobs", headers=headers)
    assert (method.status_code, error_body(method)["code"]) == (405, "invalid_request")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/exports"])
@pytest.mark.parametrize("field", ["params", "format_options"])
async def test_a_body_nested_too_deep_is_400_naming_the_body(
    server: Server, path: str, field: str
) -> None:
    headers = {**server.tenant().headers, "Content-Type": "application/json"}
    answer = await server.http.post(path, content=nested_too_deep(logs(), field), headers=headers)
    assert answer.status_code == 400, answer.text
    body = error_body(answer)
    assert body["code"] == "invalid_request"
    [problem] = body["fields"]
    assert problem["name"] == "body"
    assert f"at most {MAX_NESTING} levels" in problem["message"]


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/exports"])
@pytest.mark.parametrize("version", [2, -1])
async def test_a_version_exportd_does_not_speak_is_400_naming_v(
    server: Server, path: str, version: int
) -> None:
    answer = await server.http.post(path, json=logs(v=version), headers=server.tenant().headers)
    assert answer.status_code == 400, answer.text
    said = f"must be 1, the version exportd speaks; got {version}"
    assert error_body(answer)["fields"] == [{"name": "v", "message": said}]


async def test_who_may_call(server: Server) -> None:
    async def status(headers: dict[str, str]) -> tuple[int, str]:
        answer = await server.http.post("/v1/jobs", json={}, headers=headers)
        return answer.status_code, error_body(answer)["code"]

    assert await status({}) == (401, "unauthorized")
    assert await status({"Authorization": "Bearer nope"}) == (401, "unauthorized")
    no_reports = server.tenant(permissions=("settings",))
    assert await status(no_reports.headers) == (403, "forbidden")
    server.tenants.update_org(OTHER_ORG, active=False)
    lapsed = server.tenant(OTHER_ORG)
    assert await status(lapsed.headers) == (403, "forbidden")
    tenant = server.tenant()
    as_headers = {"X-Auth-Token": tenant.token, "X-User-Id": tenant.user.id}
    listed = await server.http.get("/v1/jobs", headers=as_headers)
    assert listed.status_code == 200
    wrong_user = {"X-Auth-Token": tenant.token, "X-User-Id": "someone-else"}
    assert (await server.http.get("/v1/jobs", headers=wrong_user)).status_code == 401


async def test_health_readiness_and_the_openapi_document(server: Server) -> None:
    assert (await server.http.get("/healthz")).json() == {"status": "ok"}
    assert (await server.http.get("/readyz")).json() == {"status": "ready"}
    document = (await server.http.get("/v1/openapi/openapi.json")).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/exports"} <= set(document["paths"])
    assert "ExportRequest" in document["components"]["schemas"]
    shipped = Path(__file__).parent.parent.parent / "docs" / "schemas" / "openapi.json"
    assert document == json.loads(shipped.read_text()), "exportd schema --write docs/schemas"


async def test_readyz_answers_503_while_the_engine_does_not_run(
    tmp_path: Path, datastore: Path
) -> None:
    settings = settings_in(tmp_path, http={"listen": "127.0.0.1:0"})
    plugins = Plugins(settings=settings)
    engine = Engine(LocalBus(), plugins, settings)  # made, never run
    async with serving_http(engine, plugins, settings) as url:
        answer = await httpx.AsyncClient().get(f"{url}/readyz")
    assert (answer.status_code, error_body(answer)["code"]) == (503, "unavailable")
    engine.store.close()


async def test_stopping_cuts_a_slow_download_once_the_grace_is_over(
    tmp_path: Path, datastore: Path
) -> None:
    settings = {"http": {"shutdown_grace": 1}, "batch_size": 10_000}
    async with asyncio.timeout(60), serving(tmp_path, datastore, toy=True, **settings) as server:
        tenant = server.tenant()
        job_id = await created(server, count(rows=2_000_000), tenant.headers)
        await server.wait(job_id)
        shown = await server.http.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
        link = urlsplit(shown.json()["files"][0]["url"])
        assert shown.json()["files"][0]["size"] > 20_000_000  # far more than buffers hold
        stalled = socket.create_connection((link.hostname, link.port))  # reads no more
        request = f"GET {link.path}?{link.query} HTTP/1.1\r\nHost: {link.netloc}\r\n\r\n"
        await asyncio.to_thread(stalled.sendall, request.encode())
        assert (await asyncio.to_thread(stalled.recv, 100)).startswith(b"HTTP/1.1 200")
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping
    stalled.close()
    assert stopped_in < 1 + 5  # the grace, and the rest of the shutdown
