"""The ``local`` storage: files in a directory (``EXPORTD_HOME/files`` by default).

In the distributed mode every engine and worker must see the same directory
(a shared volume), or another storage plugin must be used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from exportd import InvalidRequest, Settings, Storage, hookimpl


class LocalStorage(Storage):
    """Keeps each file at ``<root>/<key>``; a key must stay inside the root."""

    name = "local"
    description = "files in a local (or shared) directory"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Where ``key`` lives; a key that would leave the root is refused."""
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise InvalidRequest.field("key", f"{key!r} is not a relative path inside the storage")
        return self.root.joinpath(*parts)

    def store(self, key: str, path: Path) -> None:
        """Move the file in: a rename on the same file system, a copy otherwise."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except OSError:
            shutil.move(path, target)

    def open(self, key: str) -> BinaryIO:
        """The file under ``key``, opened for reading."""
        return self.path(key).open("rb")

    def delete(self, key: str) -> None:
        """Remove the file and whatever folders it leaves empty (up to the root)."""
        target = self.path(key)
        target.unlink(missing_ok=True)
        for folder in target.parents:
            if folder == self.root or not folder.is_relative_to(self.root):
                break
            try:
                folder.rmdir()
            except OSError:
                break

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file."""
        return self.path(key).is_file()


@hookimpl
def exportd_storages(settings: Settings) -> list[Storage]:
    """Register the ``local`` storage, rooted at ``settings.files_path``."""
    return [LocalStorage(settings.files_path)]
