"""The ``server`` fixture: exportd serving HTTP (see :mod:`tests.http.server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.http.server import Server, serving


@pytest.fixture
async def server(tmp_path: Path, datastore: Path) -> AsyncIterator[Server]:
    """exportd with the test data store, serving HTTP on a free port."""
    async with serving(tmp_path, datastore) as running:
        yield running
