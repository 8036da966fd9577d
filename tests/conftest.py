"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.datastore import build_datastore


@pytest.fixture(scope="session")
def datastore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-written ``data.db`` of :mod:`tests.unit.datastore` (read it, don't change it)."""
    return build_datastore(tmp_path_factory.mktemp("datastore") / "data.db")
