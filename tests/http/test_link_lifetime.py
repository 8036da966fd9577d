"""Download URLs that live as long as the file, over real HTTP: the ones the giosg and
IBM facades hand out (their pages promise a URL that downloads the file until the
export expires) and the native API's ``url_lifetime=file``.  Each outlives
``http.url_lifetime``, stops working once its job expired or was deleted, and cannot
be made to last longer by editing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from exportd.http.facades.ibm_video import TASK_SPAN
from tests.http.server import Server, Tenant, error_body, serving
from tests.unit.datastore import ORG, ROOM, SMALL_CHANNEL, WINDOW

URL_LIFETIME = 1.0
"""Seconds a URL of the default lifetime works, in these tests."""
FILE_LIFETIME = 6.0
"""Seconds a finished job's files live, in these tests: long enough to outlive a URL
of the default lifetime twice, and the requests between, on a loaded machine (at 4 s,
one of these tests failed once while other tests loaded the machine), short enough to
wait for."""


@asynccontextmanager
async def short_lived(tmp_path: Path, datastore: Path) -> AsyncIterator[Server]:
    """exportd whose URLs work for :data:`URL_LIFETIME` and files live for
    :data:`FILE_LIFETIME`, swept at once."""
    async with serving(
        tmp_path,
        datastore,
        http={"url_lifetime": URL_LIFETIME},
        engine={"file_lifetime": FILE_LIFETIME, "sweep_interval": 0.1},
    ) as server:
        yield server


def expiry_of(url: str) -> int:
    """The ``expires`` (Unix seconds) a signed URL carries."""
    return int(parse_qs(urlsplit(url).query)["expires"][0])


def with_expiry(url: str, expires: int) -> str:
    """``url`` with another ``expires``, its signature left as it was."""
    return url.replace(f"expires={expiry_of(url)}", f"expires={expires}")


async def fetch(url: str) -> httpx.Response:
    """``url`` fetched with no credential, as a client that stored it would."""
    async with httpx.AsyncClient() as anonymous:
        return await anonymous.get(url)


async def native_job(server: Server, tenant: Tenant) -> str:
    """The id of a done native job of the test room's chat logs, made by ``tenant``."""
    body = {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
    }
    created = await server.http.post("/v1/jobs", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    job_id: str = created.json()["id"]
    assert (await server.wait(job_id)).status == "done"
    return job_id


async def outlive_the_url_lifetime() -> None:
    """Wait until a URL of the default lifetime handed out before has expired."""
    await asyncio.sleep(URL_LIFETIME + 0.2)


async def expired(server: Server, job_id: str) -> None:
    """Wait until the sweeper expired the job."""
    async with asyncio.timeout(FILE_LIFETIME + 10):
        while (await server.engine.get(job_id)).status != "expired":
            await asyncio.sleep(0.05)


async def assert_lasts_as_the_file(server: Server, job_id: str, url: str) -> None:
    """``url`` downloads after ``http.url_lifetime``, is refused with a longer expiry,
    and answers 410 once the job expired."""
    await outlive_the_url_lifetime()
    assert (await fetch(url)).status_code == 200
    longer = await fetch(with_expiry(url, expiry_of(url) + 3600))
    assert (longer.status_code, error_body(longer)["code"]) == (403, "forbidden")
    await expired(server, job_id)
    gone = await fetch(url)
    assert (gone.status_code, error_body(gone)["code"]) == (410, "gone")


async def test_a_giosg_report_url_downloads_until_the_report_expires(
    tmp_path: Path, datastore: Path
) -> None:
    async with short_lived(tmp_path, datastore) as server:
        tenant = server.tenant(ORG, ("settings",))
        path = f"/api/v5/orgs/{ORG}/users/{tenant.user.id}/reportexports"
        body = {
            "starting_at": WINDOW.start.isoformat(),
            "ending_at": WINDOW.end.isoformat(),
            "room_id": ROOM,
            "type": "logs",
            "format": "csv",
        }
        created = await server.http.post(path, json=body, headers=tenant.headers)
        assert created.status_code == 201, created.text
        report_id = created.json()["id"]
        await server.wait(report_id)
        report = (await server.http.get(f"{path}/{report_id}", headers=tenant.headers)).json()
        expires_at = datetime.fromisoformat(report["expires_at"])
        assert expiry_of(report["url"]) == int(expires_at.timestamp())

        await assert_lasts_as_the_file(server, report_id, report["url"])
        after = (await server.http.get(f"{path}/{report_id}", headers=tenant.headers)).json()
        assert after["url"] is None


async def test_an_ibm_download_url_works_while_the_task_is_not_expired(
    tmp_path: Path, datastore: Path
) -> None:
    async with short_lived(tmp_path, datastore) as server:
        tenant = server.tenant()
        exports = f"/channels/{SMALL_CHANNEL}/qna/exports.json"
        window = {
            "start_date": int(WINDOW.start.timestamp()),
            "end_date": int(WINDOW.end.timestamp()),
        }
        started = await server.http.post(exports, data=window, headers=tenant.headers)
        assert started.status_code == 200, started.text
        [task] = started.json()["exports"]
        job = await server.engine.get_by_number(task["id"] // TASK_SPAN)
        await server.wait(job.id)
        task_path = f"/channels/{SMALL_CHANNEL}/qna/exports/{task['id']}.json"
        done = (await server.http.get(task_path, headers=tenant.headers)).json()["export"]
        assert (done["status"], done["is_expired"]) == ("completed", False)
        assert expiry_of(done["download_url"]) == done["expires_at"]

        await assert_lasts_as_the_file(server, job.id, done["download_url"])
        after = (await server.http.get(task_path, headers=tenant.headers)).json()["export"]
        assert (after["is_expired"], after.get("download_url")) == (True, None)


async def test_the_native_api_gives_urls_that_last_as_the_file_when_asked(
    tmp_path: Path, datastore: Path
) -> None:
    async with short_lived(tmp_path, datastore) as server:
        tenant = server.tenant()
        job_id = await native_job(server, tenant)
        job = await server.engine.get(job_id)
        assert job.expires_at is not None
        until = int(job.expires_at.timestamp())

        shown = await server.http.get(
            f"/v1/jobs/{job_id}", params={"url_lifetime": "file"}, headers=tenant.headers
        )
        [lasting] = shown.json()["files"]
        renewed = await server.http.post(
            f"/v1/jobs/{job_id}/links", params={"url_lifetime": "file"}, headers=tenant.headers
        )
        [renewed_link] = renewed.json()["files"]
        default = await server.http.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
        [short] = default.json()["files"]
        assert expiry_of(lasting["url"]) == expiry_of(renewed_link["url"]) == until
        assert datetime.fromisoformat(lasting["url_expires_at"]).timestamp() == until
        assert expiry_of(short["url"]) < until

        await outlive_the_url_lifetime()
        assert (await fetch(short["url"])).status_code == 403
        assert (await fetch(renewed_link["url"])).status_code == 200
        await assert_lasts_as_the_file(server, job_id, lasting["url"])


async def test_a_lasting_native_url_stops_working_once_its_job_is_deleted(
    tmp_path: Path, datastore: Path
) -> None:
    async with short_lived(tmp_path, datastore) as server:
        tenant = server.tenant()
        job_id = await native_job(server, tenant)
        links = await server.http.post(
            f"/v1/jobs/{job_id}/links", params={"url_lifetime": "file"}, headers=tenant.headers
        )
        [link] = links.json()["files"]
        await outlive_the_url_lifetime()
        assert (await fetch(link["url"])).status_code == 200
        await server.http.delete(f"/v1/jobs/{job_id}", headers=tenant.headers)
        gone = await fetch(link["url"])
        assert (gone.status_code, error_body(gone)["code"]) == (410, "gone")


async def test_an_unknown_url_lifetime_is_a_400_naming_it(server: Server) -> None:
    tenant = server.tenant()
    job_id = await native_job(server, tenant)
    for method, path in (("GET", f"/v1/jobs/{job_id}"), ("POST", f"/v1/jobs/{job_id}/links")):
        answer = await server.http.request(
            method, path, params={"url_lifetime": "forever"}, headers=tenant.headers
        )
        assert answer.status_code == 400, answer.text
        [field] = error_body(answer)["fields"]
        assert field == {
            "name": "url_lifetime",
            "message": "must be one of default, file; got 'forever'",
        }


async def test_files_past_their_expiry_are_gone_before_the_sweeper_deletes_them(
    tmp_path: Path, datastore: Path
) -> None:
    """The files live for FILE_LIFETIME (long enough to ask for a link on a loaded
    machine), and the sweeper does not come in the test's time."""
    async with serving(
        tmp_path, datastore, engine={"file_lifetime": FILE_LIFETIME, "sweep_interval": 600.0}
    ) as server:
        tenant = server.tenant()
        job_id = await native_job(server, tenant)
        links = f"/v1/jobs/{job_id}/links"
        [link] = (await server.http.post(links, headers=tenant.headers)).json()["files"]
        expires_at = (await server.engine.get(job_id)).expires_at
        assert expires_at is not None
        await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.2)
        assert (await server.engine.get(job_id)).status == "done"  # not swept yet
        for answer in (
            await fetch(link["url"]),
            await server.http.post(links, params={"url_lifetime": "file"}, headers=tenant.headers),
        ):
            assert (answer.status_code, error_body(answer)["code"]) == (410, "gone")
