"""A PostgreSQL data store that goes away while an export reads it: the export starts
again once it is back, and the job is done once, with every row once.

The data are the demo data in a database of the test's own on this machine's PostgreSQL,
reached through a TCP relay of the test's (:mod:`tests.relay`), which drops every
connection and refuses new ones while the store is "down": the shared server is not the
test's to stop.  The engine and a worker run in the test's process, over the in-process
bus.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from exportd.bus.local import LocalBus
from exportd.data.demo import DemoData, load_demo_data
from tests.integration.runtime import running, settings_in
from tests.postgres import scratch_database
from tests.relay import Relay

DOWN_FOR = 2.0
"""Seconds the store stays away once the export has begun."""


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoData]:
    """The demo data in a PostgreSQL database of the module's own."""
    with scratch_database("outage") as url:
        yield load_demo_data(url, messages=20_000)


async def test_an_export_that_loses_its_store_starts_again_once_it_is_back(
    tmp_path: Path, demo: DemoData
) -> None:
    server = urlsplit(demo.url)
    assert server.port is not None
    relay = Relay(server.port)
    await relay.up()
    through_relay = server._replace(netloc=f"{server.username}@127.0.0.1:{relay.port}").geturl()
    settings = settings_in(
        tmp_path,
        batch_size=20,
        data={"url": through_relay},
        worker={"progress_interval": 0.05, "heartbeat_interval": 0.5},
    )
    async with running(LocalBus(), settings) as runtime:
        job = await runtime.submit(
            source="rooms",
            format="csv",
            params={"room_id": demo.room_id, "type": "logs"},
            interval={"start": demo.start.isoformat(), "end": demo.end.isoformat()},
            org_id=demo.org_id,
        )
        async with asyncio.timeout(30):
            while (await runtime.engine.get(job.id)).progress.rows == 0:
                await asyncio.sleep(0.01)
        await relay.down()
        relay.cut()
        await asyncio.sleep(DOWN_FOR)
        away = await runtime.engine.get(job.id)
        assert away.status == "processing", away
        await relay.up()
        done = await runtime.events.wait_for(job.id, "job.done", timeout=60)
        assert done.job is not None
        runtime.check_files(done.job)
        [content] = runtime.file_bytes(done.job)
        await asyncio.sleep(0.5)  # time for a second done event, were there one
        types = [event.type for event in runtime.events.of(job.id)]
    await relay.down()
    assert types.count("job.done") == 1
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(rows) == done.job.progress.rows == done.job.progress.total
    assert len({row["message_id"] for row in rows}) == len(rows)  # each row once
