"""The ``local`` storage: files in a directory (``EXPORTD_HOME/files`` by default).

In the distributed mode every engine and worker must see the same directory
(a shared volume), or another storage plugin must be used.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from exportd import Settings, Storage, hookimpl


class LocalStorage(Storage):
    """Keeps each file at ``<root>/<key>``; a key must stay inside the root."""

    name = "local"
    description = "files in a local (or shared) directory"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Where ``key`` lives; a key that would leave the root is refused."""
        return self.root.joinpath(*self.key_parts(key))

    def store(self, key: str, path: Path) -> None:
        """Move the file in under ``key``, never over a file ``key`` holds
        (:class:`FileExistsError`, and ``path`` stays as it was).

        On the same file system the file is hard-linked in, which fails if the target
        exists, and its old name removed; from another, it is copied beside the target
        under a hidden name first and linked in from there.  Either way the file appears
        whole, at once, or not at all.
        """
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except FileExistsError:
            raise _refused(key) from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # another file system
                self._copy_in(key, path, target)
            else:  # a file system without hard links
                _create_from(key, path, target)
        path.unlink()

    def _copy_in(self, key: str, path: Path, target: Path) -> None:
        """Copy ``path`` to ``target``, which must not exist, through a staged copy beside it."""
        # What secrets.token_hex(4) is, without importing secrets (and base64, hmac,
        # random) into every process that loads the plugin.
        staged = target.with_name(f".{target.name}.{os.urandom(4).hex()}.partial")
        try:
            shutil.copyfile(path, staged)
            try:
                os.link(staged, target)
            except FileExistsError:
                raise _refused(key) from None
            except OSError:  # no hard links there
                _create_from(key, staged, target)
        finally:
            staged.unlink(missing_ok=True)

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


def _create_from(key: str, source_path: Path, target: Path) -> None:
    """Create ``target``, which must not exist, and copy ``source_path`` into it; a copy
    that fails removes it again, so that no file is ever half there."""
    with source_path.open("rb") as source:
        try:
            copy = target.open("xb")
        except FileExistsError:
            raise _refused(key) from None
        try:
            with copy:
                shutil.copyfileobj(source, copy)
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def _refused(key: str) -> FileExistsError:
    return FileExistsError(f"the storage already holds {key!r}: a stored file is never replaced")


@hookimpl
def exportd_storages(settings: Settings) -> list[Storage]:
    """Register the ``local`` storage, rooted at ``settings.files_path``."""
    return [LocalStorage(settings.files_path)]
