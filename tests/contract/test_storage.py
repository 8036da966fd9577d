"""The storage contract (:class:`exportd.Storage`): every test runs on the ``local``
storage and on the ``s3`` one, against a real S3 API server (moto's: see
:mod:`tests.objectstore`, which says why moto), in a bucket of the test's own.

Each implementation also says how to break a store half-way (:attr:`Implementation.
break_transfer`), for the whole-or-nothing test."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from exportd import InvalidRequest, Settings, Storage
from exportd.plugins.manager import Plugins
from exportd.plugins.storages.s3 import S3Storage
from tests.objectstore import MotoServer, object_keys, uploads

Breaker = Callable[[Storage, pytest.MonkeyPatch], None]
"""Makes the storage's next store fail after it started sending the file."""


@dataclass(frozen=True)
class Implementation:
    """A storage to run the contract on, and what it has left behind (for the checks)."""

    storage: Storage
    break_transfer: Breaker
    leftovers: Callable[[], list[str]]
    """Whatever the storage holds (files, objects, uploads under way), by name."""


def _break_local_copy(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local store across file systems whose copy fails part-way."""

    def cross_device(source: str | Path, target: str | Path) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    def half_copy(source: object, target: BinaryIO, *_: object) -> None:
        target.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def half_copy_file(source: object, target: str | Path) -> None:
        Path(target).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", cross_device)
    monkeypatch.setattr(shutil, "copyfileobj", half_copy)
    monkeypatch.setattr(shutil, "copyfile", half_copy_file)


def _break_s3_part(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3 upload whose second part fails (and a single PUT that fails outright)."""
    assert isinstance(storage, S3Storage)
    client = storage.client
    real_upload_part = client.upload_part

    def failing_part(**arguments: object) -> object:
        if arguments["PartNumber"] == 2:
            raise ConnectionResetError("the connection dropped")
        return real_upload_part(**arguments)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "upload_part", failing_part)


@pytest.fixture(params=["local", "s3"])
def implementation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Implementation]:
    """Each storage implementation; the s3 one in a bucket of the test's own."""
    if request.param == "local":
        settings = Settings(home=str(tmp_path / "home"))
        storage = Plugins(entry_points=False, settings=settings).storage("local")
        files = settings.files_path

        def local_leftovers() -> list[str]:
            return sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file())

        yield Implementation(storage, _break_local_copy, local_leftovers)
        return
    server: MotoServer = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    table = server.config(bucket, chunk_size=5 * 1024 * 1024, prefix="exports")
    settings = Settings(home=str(tmp_path / "home"), storage="s3", plugins={"s3": table})
    storage = Plugins(entry_points=False, settings=settings).storage("s3")
    client = server.client()

    def s3_leftovers() -> list[str]:
        return sorted(object_keys(client, bucket) + uploads(client, bucket))

    yield Implementation(storage, _break_s3_part, s3_leftovers)


@pytest.fixture
def storage(implementation: Implementation) -> Storage:
    """The storage under test."""
    return implementation.storage


def staged(tmp_path: Path, content: bytes, name: str = "finished") -> Path:
    """A finished file to hand to the storage."""
    path = tmp_path / name
    path.write_bytes(content)
    return path


def read(storage: Storage, key: str) -> bytes:
    """What the storage keeps under ``key``."""
    with storage.open(key) as file:
        return file.read()


def test_a_file_is_stored_opened_and_deleted_by_key(storage: Storage, tmp_path: Path) -> None:
    path = staged(tmp_path, b"a,b\r\n1,2\r\n")
    assert not storage.exists("job-1/1/0/run/rooms.csv")
    storage.store("job-1/1/0/run/rooms.csv", path)
    assert not path.exists()  # the storage's now
    assert storage.exists("job-1/1/0/run/rooms.csv")
    assert read(storage, "job-1/1/0/run/rooms.csv") == b"a,b\r\n1,2\r\n"
    storage.delete("job-1/1/0/run/rooms.csv")
    storage.delete("job-1/1/0/run/rooms.csv")  # nothing there: nothing happens
    assert not storage.exists("job-1/1/0/run/rooms.csv")
    with pytest.raises(FileNotFoundError):
        storage.open("job-1/1/0/run/rooms.csv")


def test_a_file_stored_with_its_sha256_is_the_same(storage: Storage, tmp_path: Path) -> None:
    content = os.urandom(3000)
    storage.store_checked(
        "job/1/0/r/x.bin", staged(tmp_path, content), hashlib.sha256(content).hexdigest()
    )
    assert read(storage, "job/1/0/r/x.bin") == content


def test_a_stored_key_is_never_replaced(
    implementation: Implementation, storage: Storage, tmp_path: Path
) -> None:
    storage.store("job-2/1/x.txt", staged(tmp_path, b"first"))
    second = staged(tmp_path, b"second, longer", "second")
    with pytest.raises(FileExistsError, match=r"job-2/1/x\.txt"):
        storage.store("job-2/1/x.txt", second)
    assert second.read_bytes() == b"second, longer"  # refused: still the caller's
    assert read(storage, "job-2/1/x.txt") == b"first"
    assert len(implementation.leftovers()) == 1


def test_a_store_that_fails_half_way_leaves_nothing(
    implementation: Implementation,
    storage: Storage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    content = os.urandom(5 * 1024 * 1024 + 4096)  # two parts of an s3 upload
    path = staged(tmp_path, content)
    implementation.break_transfer(storage, monkeypatch)
    with pytest.raises(OSError):
        storage.store("job-3/1/x.bin", path)
    monkeypatch.undo()
    assert not storage.exists("job-3/1/x.bin")
    assert implementation.leftovers() == []
    assert path.read_bytes() == content  # still the caller's, for another try


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "a/../../b", "", "."])
def test_a_key_cannot_leave_the_storage(storage: Storage, tmp_path: Path, key: str) -> None:
    path = staged(tmp_path, b"x")
    for call in (
        lambda: storage.exists(key),
        lambda: storage.open(key),
        lambda: storage.delete(key),
        lambda: storage.store(key, path),
    ):
        with pytest.raises(InvalidRequest) as caught:
            call()
        assert caught.value.fields[0].name == "key"
    assert path.exists()


def test_a_range_is_read_from_where_it_starts(storage: Storage, tmp_path: Path) -> None:
    content = bytes(range(256)) * 40
    storage.store("job-4/1/x.bin", staged(tmp_path, content))
    with storage.open_range("job-4/1/x.bin", 1000, 1100) as file:
        assert file.read(100) == content[1000:1100]
    with storage.open_range("job-4/1/x.bin", len(content) - 1, len(content)) as file:
        assert file.read(1) == content[-1:]
