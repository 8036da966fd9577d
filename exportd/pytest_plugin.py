"""The fixtures of :mod:`exportd.testing`, registered with pytest as the plugin ``exportd``.

pytest loads this module at the start of every test run in an environment where
exportd is installed, so it imports nothing but pytest: each fixture imports the
kit when a test first asks for it.  It lives outside :mod:`exportd.testing` so that
loading it does not load the kit.  ``pytest -p no:exportd`` leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from exportd.data.demo import DemoSummary
    from exportd.testing import PluginSet, Service

DEMO_MESSAGES = 2000
"""The messages in the ``exportd_demo`` store: enough for every source to have rows."""


@pytest.fixture(scope="session")
def exportd_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """A small demo data store (``exportd demo-data --messages 2000``), made once per test
    run; its summary names the store's ``path``, its ``start`` and ``end`` and ids to
    export (``room_id``, ``workflow_id``, ``channel_id``, ``org_id``).  Read it, don't
    change it: every test shares it."""
    from exportd.testing import generate_demo_data

    return generate_demo_data(
        tmp_path_factory.mktemp("exportd-demo") / "data.db", messages=DEMO_MESSAGES
    )


@pytest.fixture
def exportd_plugins() -> PluginSet:
    """The plugins that ``exportd_service`` loads: the built-ins and the installed plugin
    packages.  Override this fixture to choose others, e.g. ``PluginSet(my_module)``."""
    from exportd.testing import PluginSet

    return PluginSet()


@pytest.fixture
def exportd_service(
    tmp_path: Path, exportd_demo: DemoSummary, exportd_plugins: PluginSet
) -> Iterator[Service]:
    """An embedded exportd (engine, job store and a worker) running on a copy of the
    ``exportd_demo`` store with the ``exportd_plugins``, stopped after the test."""
    from exportd.testing import serve

    with serve(tmp_path / "exportd", data=exportd_demo.path, plugins=exportd_plugins) as service:
        yield service
