"""Which modules a process loads: a fresh Python runs some code, or an ``exportd``
command, and writes down the names in ``sys.modules`` as it exits.

The layers of ``docs/runtime.md`` hold at run time when a process of one kind loads
none of the modules that belong to another: see :func:`among`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

RECORDING = (
    "import atexit, sys\n"
    "record = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(record, 'w').write('\\n'.join(sorted(sys.modules))))\n"
)
"""Run first in the fresh Python: the names of its modules go to the file its first
argument names when it exits (however its code ends, but for a kill)."""
AS_EXPORTD = "import runpy\nrunpy.run_module('exportd', run_name='__main__', alter_sys=True)\n"
"""What ``python -m exportd`` runs, the rest of the arguments being the command's."""

HTTP = ("litestar", "uvicorn", "exportd.http")
"""The HTTP API and the framework it is built on."""
JOB_STORE = ("exportd.engine",)
"""The engine, its job store (``exportd.engine.store``) among it."""
BUS_CLIENTS = ("kombu", "aio_pika", "exportd.bus", "exportd.client")
"""What talks to RabbitMQ."""
METRICS = ("prometheus_client", "exportd.metrics")
"""Prometheus metrics: loaded only by the processes that serve them (engine, worker, serve)."""
S3_CLIENT = ("boto3", "botocore")
"""What the ``s3`` storage talks to its service with: loaded only where it is used."""


def exportd_command(argv: Iterable[str], record: Path) -> list[str]:
    """The command line that runs ``exportd ARGV...`` and writes the names of the modules
    it loaded to ``record`` as it exits."""
    return [sys.executable, "-c", RECORDING + AS_EXPORTD, str(record), *argv]


def loaded_by(code: str, record: Path, env: Mapping[str, str] | None = None) -> set[str]:
    """The modules a fresh Python loaded by running ``code``, which must succeed."""
    subprocess.run(
        [sys.executable, "-c", RECORDING + code, str(record)], check=True, timeout=60, env=env
    )
    return recorded(record)


def recorded(record: Path) -> set[str]:
    """The names of modules written to ``record``."""
    return set(record.read_text().split())


def among(modules: Iterable[str], packages: Iterable[str]) -> list[str]:
    """The ``modules`` that are one of ``packages`` or inside one, sorted."""
    prefixes = tuple(packages)
    return sorted(
        name
        for name in modules
        if any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)
    )
