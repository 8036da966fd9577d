"""What a process of each kind loads, each run in a fresh Python: the command line
and ``exportd export`` load no HTTP framework, job store, RabbitMQ client or
Prometheus client, a worker no HTTP framework and no job store, and a blocked
built-in plugin is not imported at all.  A csv export loads no library that only
another format, another storage or a delivery uses, since start-up is most of a
small export's time.  (A real ``exportd worker`` that ran an export is checked in
``tests/integration/test_cli_runtime.py``.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.loaded import (
    BUS_CLIENTS,
    HTTP,
    JOB_STORE,
    METRICS,
    S3_CLIENT,
    among,
    exportd_command,
    loaded_by,
    recorded,
)
from tests.unit.datastore import ROOM, WINDOW

WORKER = """
from exportd.bus.local import LocalBus
from exportd.cli import build_parser
from exportd.config import load_settings
from exportd.plugins.manager import load_plugins
from exportd.workers.worker import Worker

args = build_parser(["worker"]).parse_args(["worker"])
settings = load_settings()
Worker(LocalBus(), load_plugins(settings), settings, name="test")
"""
"""What ``exportd worker`` builds before it connects: its command's module, the
plugins, and a worker (here on the in-process bus)."""


def exportd_env(home: Path) -> dict[str, str]:
    """The environment of a test's ``exportd``: no EXPORTD_* variable from outside."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    return {**inherited, "EXPORTD_HOME": str(home)}


def test_the_command_line_loads_only_what_its_command_needs(tmp_path: Path) -> None:
    modules = loaded_by("import exportd.cli", tmp_path / "modules")
    heavy = (
        *HTTP,
        *JOB_STORE,
        *BUS_CLIENTS,
        *METRICS,
        "asyncio",
        "sqlite_utils",
        "exportd.workers",
    )
    assert among(modules, heavy) == []


def test_a_local_export_loads_no_http_job_store_or_bus_client(
    tmp_path: Path, datastore: Path
) -> None:
    shutil.copy(datastore, tmp_path / "data.db")
    argv = ["export", "rooms", "-p", f"room_id={ROOM}", "-p", "type=logs", "-f", "xlsx"]
    argv += ["--start", WINDOW.start.isoformat(), "--end", WINDOW.end.isoformat()]
    command = exportd_command([*argv, "-o", str(tmp_path / "logs.xlsx")], tmp_path / "modules")
    subprocess.run(command, check=True, timeout=60, env=exportd_env(tmp_path), cwd=tmp_path)
    assert (tmp_path / "logs.xlsx").exists()
    loaded = recorded(tmp_path / "modules")
    assert among(loaded, (*HTTP, *JOB_STORE, *BUS_CLIENTS, *S3_CLIENT, *METRICS)) == []


UNUSED_BY_A_CSV_EXPORT = ("email_validator", "smtplib", "ssl", *S3_CLIENT)
"""What the plugins that every process loads use only when they work: the email
delivery's address checks and SMTP client, the s3 storage's client (and the TLS it
talks with)."""
START_UP_CUTS = (
    "adbc_driver_manager.dbapi",
    "pyarrow.dataset",
    "polars",
    "pyarrow.compute",
    "importlib.metadata",
    "importlib.resources",
)
"""What a small export's start-up does without (issue 15: bench/startup.py): ADBC's DB-API
module, which loads pyarrow.dataset and polars when it is installed (about 100 ms);
pyarrow.compute, which makes a wrapper of every compute function as it loads
(exportd.plugins.formats.compute makes those called); importlib.metadata, where the
entry points are found (exportd.plugins.manager.entry_points), and importlib.resources,
where ADBC's SQLite driver library is."""


def csv_export(tmp_path: Path, datastore: Path) -> set[str]:
    """The modules a small csv export loaded, run as ``exportd export`` in a fresh Python."""
    shutil.copy(datastore, tmp_path / "data.db")
    argv = ["export", "rooms", "-p", f"room_id={ROOM}", "-p", "type=logs", "-f", "csv"]
    argv += ["--start", WINDOW.start.isoformat(), "--end", WINDOW.end.isoformat()]
    argv += ["--limit", "10", "-o", str(tmp_path / "logs.csv")]
    command = exportd_command(argv, tmp_path / "modules")
    subprocess.run(command, check=True, timeout=60, env=exportd_env(tmp_path), cwd=tmp_path)
    assert (tmp_path / "logs.csv").exists()
    return recorded(tmp_path / "modules")


def test_a_csv_export_loads_no_library_that_only_other_plugins_use(
    tmp_path: Path, datastore: Path
) -> None:
    loaded = csv_export(tmp_path, datastore)
    unused = (*UNUSED_BY_A_CSV_EXPORT, *HTTP, *JOB_STORE, *BUS_CLIENTS)
    assert among(loaded, unused) == []
    assert "tomllib" not in loaded  # there is no exportd.toml to read


def test_a_csv_export_loads_no_xlsx_library(tmp_path: Path, datastore: Path) -> None:
    assert among(csv_export(tmp_path, datastore), ("openpyxl",)) == []


def test_a_csv_export_loads_nothing_its_start_up_was_cut_of(
    tmp_path: Path, datastore: Path
) -> None:
    assert among(csv_export(tmp_path, datastore), START_UP_CUTS) == []


def test_every_format_plugin_loads_without_pyarrow_compute(tmp_path: Path) -> None:
    code = (
        "from exportd.plugins.manager import Plugins\n"
        "assert {'csv', 'xlsx', 'txt', 'html', 'json', 'json_bulk'} <= set(Plugins().formats)\n"
    )
    assert among(loaded_by(code, tmp_path / "modules"), START_UP_CUTS) == []


def test_a_worker_loads_no_http_nor_job_store(tmp_path: Path) -> None:
    modules = loaded_by(WORKER, tmp_path / "modules", exportd_env(tmp_path))
    assert "exportd.workers.worker" in modules
    assert among(modules, (*HTTP, *JOB_STORE, *S3_CLIENT)) == []  # local storage: no boto3


def test_a_blocked_built_in_plugin_is_not_even_imported(tmp_path: Path) -> None:
    code = (
        "from exportd.plugins.manager import Plugins\n"
        "plugins = Plugins(entry_points=False, blocked=['exportd.plugins.formats.xlsx'])\n"
        "assert 'xlsx' not in plugins.formats and 'csv' in plugins.formats\n"
    )
    modules = loaded_by(code, tmp_path / "modules")
    assert among(modules, ("exportd.plugins.formats.xlsx", "openpyxl")) == []


def test_the_jobs_commands_talk_to_an_engine_and_load_no_job_store(tmp_path: Path) -> None:
    modules = loaded_by("import exportd.cli.jobs", tmp_path / "modules")
    assert among(modules, (*HTTP, *JOB_STORE, *METRICS, "sqlite_utils")) == []
