"""``GET /metrics`` of the HTTP API over real HTTP, exportd on the in-process bus (see
:mod:`tests.http.server`): how jobs are counted as users change them, and requests by
route template.  Real engine and worker processes are scraped in
``tests/integration/test_metrics.py``."""

from __future__ import annotations

from pathlib import Path

from exportd.metrics.process import CONTENT_TYPE
from tests.http.server import Server, serving
from tests.http.test_native import count, created, logs
from tests.metrics import Scrape


async def scraped(server: Server) -> Scrape:
    """The server's ``/metrics``, parsed."""
    answer = await server.http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    return Scrape.parse(answer.text)


async def test_a_repeated_idempotency_key_counts_its_job_once(server: Server) -> None:
    headers = {**server.tenant().headers, "Idempotency-Key": "k-1"}
    first = await created(server, logs(), headers)
    assert await created(server, logs(), headers) == first
    await server.wait(first)
    metrics = await scraped(server)
    assert metrics.value("exportd_jobs_created_total", source="rooms", format="csv") == 1
    ended = {"source": "rooms", "format": "csv", "status": "done"}
    assert metrics.value("exportd_jobs_finished_total", **ended) == 1
    posted = {"method": "POST", "route": "/v1/jobs", "status": "201"}
    assert metrics.value("exportd_http_requests_total", **posted) == 2


async def test_a_cancel_ends_an_attempt_and_a_restart_begins_one(
    tmp_path: Path, datastore: Path
) -> None:
    async with serving(tmp_path, datastore, toy=True, batch_size=1) as server:
        headers = server.tenant().headers
        job_id = await created(server, count(rows=1000, pause=0.01), headers)
        await server.http.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
        await server.http.post(f"/v1/jobs/{job_id}/restart", headers=headers)
        await server.http.delete(f"/v1/jobs/{job_id}", headers=headers)
        await server.http.get("/no/such/route")
        metrics = await scraped(server)
    labels = {"source": "count", "format": "lines"}
    assert metrics.value("exportd_jobs_created_total", **labels) == 2
    assert metrics.value("exportd_jobs_finished_total", **labels, status="canceled") == 1
    assert metrics.value("exportd_jobs_finished_total", **labels, status="deleted") == 1
    assert metrics.value("exportd_job_duration_seconds_count", **labels, status="canceled") == 1
    assert metrics.matching("exportd_job_rows_count") == []  # no job was done
    cancel = {"method": "POST", "route": "/v1/jobs/{job_id}/cancel", "status": "200"}
    assert metrics.value("exportd_http_requests_total", **cancel) == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert metrics.value("exportd_http_requests_total", **unmatched) == 1
