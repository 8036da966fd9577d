"""Shared fixtures, and the example plugin installed before the tests are collected."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from exportd import DataStore
from exportd.kernel.datastores import PostgresStore, SqliteStore
from tests.broker import (  # noqa: F401 (the brokers' fixtures, registered once for all tests)
    OUTSIDER,
    Outsider,
    ack_timeout_broker,
    broker_url,
    outsider,
    private_broker,
    stoppable_broker,
)
from tests.http.server import Server, serving
from tests.objectstore import s3_bucket, s3_server  # noqa: F401 (registered once, as above)
from tests.postgres import DIALECTS, scratch_database
from tests.unit.datastore import TABLES, build_datastore, load_postgres

EXAMPLE_PACKAGE = Path(__file__).parent.parent / "examples" / "exportd-example"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Install examples/exportd-example (with its test extra) unless it already is.

    The tests use it as a third party would: through its ``exportd`` entry point.
    """
    if any(ep.name == "example" for ep in entry_points(group="exportd")):
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", f"{EXAMPLE_PACKAGE}[test]"],
        check=True,
    )
    importlib.invalidate_caches()


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they do
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests of the ``outsider`` fixture to the end, and open its connection to the
    shared broker now, before the first test (see :class:`tests.broker.Outsider`)."""
    witnesses = [item for item in items if "outsider" in getattr(item, "fixturenames", ())]
    if witnesses:
        items[:] = [item for item in items if item not in witnesses] + witnesses
        config.stash[OUTSIDER] = Outsider.open()


@pytest.fixture(scope="session")
def datastore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-written ``data.db`` of :mod:`tests.unit.datastore` (read it, don't change it)."""
    return build_datastore(tmp_path_factory.mktemp("datastore") / "data.db")


@pytest.fixture(scope="session")
def postgres_datastore() -> Iterator[str]:
    """The URL of a database of the session's own on the test PostgreSQL (see
    :mod:`tests.postgres`), holding the rows of :mod:`tests.unit.datastore`."""
    with scratch_database() as url:
        yield load_postgres(url, TABLES)


@pytest.fixture(scope="session", params=DIALECTS)
def store(request: pytest.FixtureRequest, datastore: Path) -> Iterator[DataStore]:
    """The rows of :mod:`tests.unit.datastore` in each data store: SQLite's ``data.db``,
    then PostgreSQL (read them, don't change them)."""
    if request.param == "sqlite":
        yield SqliteStore(datastore)
        return
    postgres = PostgresStore(request.getfixturevalue("postgres_datastore"))
    yield postgres
    postgres.close()


@pytest.fixture
async def server(tmp_path: Path, datastore: Path) -> AsyncIterator[Server]:
    """exportd with the test data store, serving HTTP on a free port (see
    :mod:`tests.http.server`)."""
    async with serving(tmp_path, datastore) as running:
        yield running
