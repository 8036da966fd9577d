"""``exportd`` commands as real processes, for the tests that run exportd as its users
do: :class:`Process` (one running command, its output collected line by line) and
:class:`Deployment` (an EXPORTD_HOME and a topology of its own on the test broker, with
the commands run on them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from exportd.bus.topology import Topology
from exportd.client import Client
from exportd.messages import JobSnapshot
from tests.broker import delete_topology
from tests.loaded import exportd_command

WAIT = 30.0
"""The most seconds any one thing may take to happen."""
# A test runner may have been started with SIGINT ignored, which a child inherits.
WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class Process:
    """A running ``exportd`` command; threads collect its stdout and stderr lines.

    ``wrapper`` goes before the command: a program that runs it (in a namespace of its
    own, say) by ``exec``, so that the process is the command's."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        *,
        ctrl_c: bool = False,
        record: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.argv = argv
        if record is None:
            command = [sys.executable, "-m", "exportd", *argv]
        else:
            command = exportd_command(argv, record)
        if ctrl_c:
            command = [sys.executable, "-c", WITH_CTRL_C, *command]
        self.popen = subprocess.Popen(
            [*wrapper, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(pipe, name), daemon=True)
            for pipe, name in ((self.popen.stdout, "stdout"), (self.popen.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: IO[str], name: str) -> None:
        for line in iter(pipe.readline, ""):
            with self._changed:
                self.lines[name].append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, *, stream: str = "stderr", timeout: float = WAIT) -> str:
        """The first line of ``stream`` containing ``text``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[stream]:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {text!r} from exportd {self.argv}: {self.lines}"
                self._changed.wait(remaining)

    def stop(self, number: signal.Signals = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Send ``number``; the exit status, once the process and its output ended."""
        self.popen.send_signal(number)
        status = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return status

    def text(self, stream: str = "stderr") -> str:
        """What ``stream`` said so far."""
        with self._changed:
            return "\n".join(self.lines[stream])


def done_over_http(http: httpx.Client, request: Any) -> dict[str, Any]:
    """The job ``request`` (JSON) makes through ``POST /v1/jobs`` on ``http``, as
    ``GET /v1/jobs/ID`` shows it once it is done."""
    created = http.post("/v1/jobs", json=request)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    deadline = time.monotonic() + WAIT
    while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] != "done":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return dict(job)


def run_exportd(
    argv: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``exportd ARGV...`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "exportd", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=WAIT * 2,
        check=False,
    )


class Deployment:
    """An EXPORTD_HOME, a topology on the test broker, and the commands run on them.

    The topology is a new one, deleted at :meth:`close`, unless ``topology`` names one
    that another deployment owns (hosts of one deployment); ``wrapper`` goes before every
    command started (see :class:`Process`)."""

    def __init__(
        self,
        home: Path,
        broker_url: str,
        *,
        topology: Topology | None = None,
        wrapper: Sequence[str] = (),
        **variables: str,
    ) -> None:
        self.home = home
        self.broker_url = broker_url
        self.owns_topology = topology is None
        self.topology = topology or Topology(prefix=f"test-{uuid.uuid4().hex[:12]}.")
        self.wrapper = wrapper
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
        self.env = {
            **inherited,
            "EXPORTD_HOME": str(home),
            "EXPORTD_BROKER__URL": broker_url,
            "EXPORTD_BROKER__PREFIX": self.topology.prefix,
            "EXPORTD_HTTP__LISTEN": "127.0.0.1:0",  # a free port: engines may run side by side
            **variables,
        }
        self.processes: list[Process] = []

    def start(
        self,
        *argv: str,
        ready: str | None = None,
        ctrl_c: bool = False,
        record: Path | None = None,
    ) -> Process:
        """Start ``exportd ARGV...``; with ``ready``, wait for that text on its stderr;
        with ``ctrl_c``, have SIGINT raise KeyboardInterrupt in it, as on a terminal;
        with ``record``, it writes the names of the modules it loaded there as it exits
        (see :mod:`tests.loaded`)."""
        process = Process(
            list(argv), self.env, self.home, ctrl_c=ctrl_c, record=record, wrapper=self.wrapper
        )
        self.processes.append(process)
        if ready is not None:
            process.wait_for(ready)
        return process

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``exportd ARGV...`` to its end."""
        return run_exportd(list(argv), self.env, self.home)

    def engine(self) -> Process:
        """A started ``exportd engine``."""
        return self.start("engine", ready="engine running")

    def worker(self) -> Process:
        """A started ``exportd worker``."""
        return self.start("worker", ready="taking tasks")

    def client(self) -> Client:
        """A client of this deployment's engine."""
        return Client(self.broker_url, topology=self.topology, timeout=WAIT)

    def stored(self, job: JobSnapshot) -> list[bytes]:
        """The content of the job's files in the local storage."""
        keys = [part.file.key for part in job.parts if part.file is not None]
        return [(self.home / "files" / key).read_bytes() for key in keys]

    def close(self) -> None:
        """Kill what still runs; delete the topology if it is this deployment's."""
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait(WAIT)
        if self.owns_topology:
            asyncio.run(delete_topology(self.broker_url, self.topology))


def make_deployment(home: Path, broker_url: str, **variables: str) -> Iterator[Deployment]:
    """A :class:`Deployment` for a fixture, closed after the test."""
    deployment = Deployment(home, broker_url, **variables)
    try:
        yield deployment
    finally:
        deployment.close()
