"""Where a process that runs exports writes files before the storage takes them.

Each worker process (and the HTTP API, for its synchronous exports) has its own
folder under ``settings.work_path`` and holds an exclusive lock on a file beside
it for as long as it lives.  The operating system drops the lock when the
process dies, however it dies, so a worker that starts on the same host removes
the folders of workers that were killed (their partial files would otherwise
stay forever).
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import uuid
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


class WorkArea:
    """One worker's folder of files in progress, locked while the worker lives."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = uuid.uuid4().hex
        self.folder = root / self.name
        self._lock: TextIO | None = None

    def open(self) -> None:
        """Take the lock, make the folder, and remove what dead workers left."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = (self.root / f"{self.name}{LOCK_SUFFIX}").open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.folder.mkdir()
        removed = sweep(self.root)
        if removed:
            log.info("removed the work folders of %d worker(s) that died", removed)

    def close(self) -> None:
        """Remove the folder, then drop the lock."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock is not None:
            (self.root / f"{self.name}{LOCK_SUFFIX}").unlink(missing_ok=True)
            self._lock.close()
            self._lock = None

    def new_path(self, name: str) -> Path:
        """A fresh path in the folder for one task's file called ``name``."""
        return self.folder / f"{uuid.uuid4().hex}-{name}"


def sweep(root: Path) -> int:
    """Remove the folders of the workers under ``root`` whose lock nobody holds; how many."""
    removed = 0
    for lock_path in root.glob(f"*{LOCK_SUFFIX}"):
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live worker's
            shutil.rmtree(root / lock_path.name.removesuffix(LOCK_SUFFIX), ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            removed += 1
    return removed
