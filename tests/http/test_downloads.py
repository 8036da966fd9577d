"""File downloads on both storages: streamed through exportd (local, s3) with single
range requests, or, for s3 with ``redirect = true``, redirected to a presigned URL that
serves ranges itself; each download checked against the job's SHA-256.  The s3 ones
run against moto's S3 server (see :mod:`tests.objectstore`), in a bucket of their own.
And the engine's deletes (the job's ``delete``, the expiry sweep) remove the object."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.server import Server, error_body, serving
from tests.objectstore import MotoServer, object_keys
from tests.relay import Relay

ROWS = 600_000
"""Rows of the toy count export, in two parts: the first's file, of about 8 MiB, is
above one 5 MiB s3 chunk."""
CHUNK = 5 * 1024 * 1024


def count(rows: int = ROWS) -> dict[str, object]:
    """A request body for the toy ``count`` source."""
    return {
        "source": "count",
        "format": "lines",
        "params": {"rows": rows},
        "interval": {"start": "2024-01-01", "end": "2024-01-02"},
    }


@asynccontextmanager
async def exportd_on(
    tmp_path: Path, datastore: Path, storage: str, request: pytest.FixtureRequest, **s3: Any
) -> AsyncIterator[Server]:
    """exportd with the toy plugins on ``storage`` (s3: a bucket of the test's own)."""
    changes: dict[str, Any] = {}
    if storage == "s3":
        server: MotoServer = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        changes = {
            "storage": "s3",
            "plugins": {"s3": server.config(bucket, chunk_size=CHUNK, **s3)},
        }
    async with serving(tmp_path, datastore, toy=True, **changes) as running:
        yield running


@asynccontextmanager
async def behind_a_relay(
    tmp_path: Path, datastore: Path, request: pytest.FixtureRequest, s3_server: MotoServer
) -> AsyncIterator[tuple[Server, Relay]]:
    """exportd on the s3 storage, reaching the S3 server through a relay (up at first)
    that the test takes down and up; the relay is down at the end."""
    relay = Relay(s3_server.port)
    await relay.up()
    endpoint = f"http://127.0.0.1:{relay.port}"
    try:
        async with exportd_on(tmp_path, datastore, "s3", request, endpoint_url=endpoint) as server:
            yield server, relay
    finally:
        await relay.down()


async def finished_file(server: Server, rows: int = ROWS) -> tuple[str, dict[str, Any]]:
    """A done job's id and its first file's link (and its ``sha256`` and ``size``)."""
    tenant = server.tenant()
    answer = await server.http.post("/v1/jobs", json=count(rows), headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    job = await server.wait(answer.json()["id"], timeout=60)
    assert job.status == "done", job
    shown = await server.http.get(f"/v1/jobs/{job.id}", headers=tenant.headers)
    link = shown.json()["files"][0]
    part = job.parts[0]
    assert part.file is not None
    return job.id, {**link, "sha256": part.file.sha256, "size": part.file.size}


@pytest.mark.parametrize("storage", ["local", "s3"])
async def test_a_streamed_download_serves_the_file_and_single_ranges(
    tmp_path: Path, datastore: Path, request: pytest.FixtureRequest, storage: str
) -> None:
    async with exportd_on(tmp_path, datastore, storage, request) as server:
        _, link = await finished_file(server)
        size = link["size"]
        assert size > CHUNK
        whole = await server.http.get(link["url"])
        assert whole.status_code == 200
        assert whole.headers["accept-ranges"] == "bytes"
        assert hashlib.sha256(whole.content).hexdigest() == link["sha256"]
        content = whole.content
        for header, start, stop in [
            ("bytes=0-99", 0, 100),
            (f"bytes={CHUNK - 10}-{CHUNK + 9}", CHUNK - 10, CHUNK + 10),  # across a part
            (f"bytes={size - 50}-", size - 50, size),
            ("bytes=-30", size - 30, size),
            ("Bytes=0-99", 0, 100),  # the unit in any case
            (f"bytes=10-{size + 1000}", 10, size),  # the end past the file's: up to it
        ]:
            part = await server.http.get(link["url"], headers={"Range": header})
            assert part.status_code == 206, header
            assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
            assert part.headers["content-length"] == str(stop - start)
            assert part.content == content[start:stop], header
        past = await server.http.get(link["url"], headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{size}"
        assert error_body(past)["code"] == "range_not_satisfiable"
        for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3", f"bytes={'9' * 5000}-"):
            full = await server.http.get(link["url"], headers={"Range": ignored})
            assert (full.status_code, len(full.content)) == (200, size), ignored


async def test_a_redirected_download_goes_to_a_presigned_url_that_serves_ranges(
    tmp_path: Path, datastore: Path, request: pytest.FixtureRequest
) -> None:
    async with exportd_on(tmp_path, datastore, "s3", request, redirect=True) as server:
        _, link = await finished_file(server)
        answer = await server.http.get(link["url"])
        assert answer.status_code == 302
        presigned = answer.headers["location"]
        seconds = int(httpx.URL(presigned).params["X-Amz-Expires"])
        link_expiry = datetime.fromisoformat(link["url_expires_at"])
        assert seconds <= (link_expiry - datetime.now(UTC)).total_seconds() + 1
        async with httpx.AsyncClient() as direct:
            whole = await direct.get(presigned)
            assert hashlib.sha256(whole.content).hexdigest() == link["sha256"]
            assert whole.headers["content-type"].startswith("text/plain")  # the lines format
            assert whole.headers["content-disposition"].startswith("attachment; filename=")
            ranged = await direct.get(presigned, headers={"Range": "bytes=100-199"})
        assert (ranged.status_code, ranged.content) == (206, whole.content[100:200])
        assert ranged.headers["content-range"] == f"bytes 100-199/{link['size']}"


async def test_a_download_while_the_object_storage_is_down_is_a_503_to_try_again(
    tmp_path: Path,
    datastore: Path,
    request: pytest.FixtureRequest,
    s3_server: MotoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with behind_a_relay(tmp_path, datastore, request, s3_server) as (server, relay):
        _, link = await finished_file(server, rows=1000)
        await relay.down()
        refused = await server.http.get(link["url"])
        assert refused.status_code == 503
        assert error_body(refused)["code"] == "unavailable"
        assert error_body(refused)["message"] == "the s3 storage cannot be reached; try again"
        assert refused.headers["retry-after"] == "5"
        assert str(relay.port) not in refused.text
        assert f"127.0.0.1:{relay.port}" in caplog.text  # the detail: logged, not answered
        await relay.up()
        served = await server.http.get(link["url"], headers={"Range": "bytes=0-9"})
        assert served.status_code == 206


async def test_a_job_deleted_while_the_object_storage_is_down_is_deleted_and_its_object_stays(
    tmp_path: Path,
    datastore: Path,
    request: pytest.FixtureRequest,
    s3_server: MotoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with behind_a_relay(tmp_path, datastore, request, s3_server) as (server, relay):
        job_id, _ = await finished_file(server, rows=1000)
        await relay.down()
        tenant = server.tenant()
        deleted = await server.http.delete(f"/v1/jobs/{job_id}", headers=tenant.headers)
        assert deleted.status_code in (200, 204), deleted.text
        assert (await server.engine.get(job_id)).status == "deleted"
    bucket: str = request.getfixturevalue("s3_bucket")  # the one exportd_on made
    assert len(object_keys(s3_server.client(), bucket)) == 2  # both parts' files stay
    assert "deleting it failed" in caplog.text


async def test_a_download_of_a_file_gone_from_the_storage_is_a_410(
    tmp_path: Path, datastore: Path, request: pytest.FixtureRequest
) -> None:
    async with exportd_on(tmp_path, datastore, "local", request) as server:
        _, link = await finished_file(server, rows=1000)
        for stored in (tmp_path / "files").rglob("*"):
            if stored.is_file():
                stored.unlink()
        gone = await server.http.get(link["url"])
    assert gone.status_code == 410
    assert error_body(gone)["message"] == "the file is no longer stored"


async def test_the_object_goes_when_its_job_is_deleted_or_expires(
    tmp_path: Path, datastore: Path, request: pytest.FixtureRequest
) -> None:
    server_s3: MotoServer = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    client = server_s3.client()
    settings = {
        "storage": "s3",
        "plugins": {"s3": server_s3.config(bucket, prefix="exports")},
        "engine": {"file_lifetime": 2.0, "sweep_interval": 0.1},
    }
    async with serving(tmp_path, datastore, toy=True, **settings) as server:
        deleted, _ = await finished_file(server, rows=5)
        expiring, _ = await finished_file(server, rows=5)
        keys = object_keys(client, bucket)
        assert len(keys) == 2
        assert all(key.startswith("exports/") for key in keys)
        tenant = server.tenant()
        gone = await server.http.delete(f"/v1/jobs/{deleted}", headers=tenant.headers)
        assert gone.status_code in (200, 204)
        async with asyncio.timeout(30):
            while (await server.engine.get(expiring)).status != "expired":
                await asyncio.sleep(0.05)
            # The engine deletes a job's files once its change is recorded.
            while object_keys(client, bucket):
                await asyncio.sleep(0.05)
