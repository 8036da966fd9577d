"""The HTTP API on the data store ``data.url`` names: a job and a synchronous export
read PostgreSQL as they read ``data.db``, and an unreachable server is a clear 503
(try again later) that leaves no job behind."""

from __future__ import annotations

from pathlib import Path

from tests.http.server import error_body, serving
from tests.http.test_native import logs


async def test_jobs_and_synchronous_exports_read_postgresql_as_sqlite(
    tmp_path: Path, datastore: Path, postgres_datastore: str
) -> None:
    files: list[str] = []
    for name, url in (("sqlite", ""), ("postgresql", postgres_datastore)):
        home = tmp_path / name
        home.mkdir()
        async with serving(home, datastore, data={"url": url}) as server:
            tenant = server.tenant()
            created = await server.http.post("/v1/jobs", json=logs(), headers=tenant.headers)
            assert created.status_code == 201, created.text
            job = await server.wait(created.json()["id"])
            assert job.status == "done", job
            [part] = job.parts
            assert part.file is not None
            files.append(part.file.sha256)
            answer = await server.http.post("/v1/exports", json=logs(), headers=tenant.headers)
            assert answer.status_code == 200, answer.text
            files.append(answer.text)
    assert files[:2] == files[2:]


async def test_an_unreachable_postgresql_is_unavailable_naming_data_url(
    tmp_path: Path, datastore: Path
) -> None:
    unreachable = "postgresql://postgres:secret@127.0.0.1:1/exportd"
    async with serving(tmp_path, datastore, data={"url": unreachable}) as server:
        tenant = server.tenant()
        answer = await server.http.post("/v1/jobs", json=logs(), headers=tenant.headers)
        body = error_body(answer)
        assert (answer.status_code, body["code"]) == (503, "unavailable")
        assert "data.url postgresql://postgres:***@127.0.0.1:1/exportd" in body["message"]
        assert "secret" not in answer.text and "Traceback" not in answer.text
        listed = await server.http.get("/v1/jobs", headers=tenant.headers)
        assert listed.json()["count"] == 0
