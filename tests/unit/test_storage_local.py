"""What is the local storage's own (where files lie, hard links, copies across file
systems); the contract every storage keeps is tested in tests/contract/test_storage.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from exportd import InvalidRequest, Settings
from exportd.plugins.manager import Plugins


def test_files_are_kept_under_their_key_in_the_files_folder(tmp_path: Path) -> None:
    storage = Plugins(entry_points=False, settings=Settings(home=str(tmp_path))).storage("local")
    finished = tmp_path / "finished.csv"
    finished.write_bytes(b"a,b\r\n1,2\r\n")
    storage.store("job-1/1/rooms.csv", finished)
    assert not finished.exists()
    assert storage.exists("job-1/1/rooms.csv")
    assert (tmp_path / "files" / "job-1" / "1" / "rooms.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    with storage.open("job-1/1/rooms.csv") as file:
        assert file.read() == b"a,b\r\n1,2\r\n"


def test_a_stored_key_is_never_replaced(tmp_path: Path) -> None:
    storage = Plugins(entry_points=False, settings=Settings(home=str(tmp_path))).storage("local")
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first")
    second.write_bytes(b"second, longer")
    storage.store("job-2/1/x.txt", first)
    kept = (tmp_path / "files" / "job-2" / "1" / "x.txt").stat()
    with pytest.raises(FileExistsError, match=r"job-2/1/x\.txt"):
        storage.store("job-2/1/x.txt", second)
    assert second.read_bytes() == b"second, longer"  # refused: still the caller's
    with storage.open("job-2/1/x.txt") as file:
        assert file.read() == b"first"
    assert (tmp_path / "files" / "job-2" / "1" / "x.txt").stat().st_ino == kept.st_ino


def test_across_file_systems_a_file_is_copied_in_and_never_over_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Plugins(entry_points=False, settings=Settings(home=str(tmp_path))).storage("local")
    real_link = os.link

    def cross_device(source: str | Path, target: str | Path) -> None:
        if Path(source).parent == tmp_path:  # the staged file: "on another file system"
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_link(source, target)

    monkeypatch.setattr(os, "link", cross_device)
    for content in (b"first", b"second"):
        staged = tmp_path / "staged"
        staged.write_bytes(content)
        if content == b"first":
            storage.store("job-3/1/x.txt", staged)
            assert not staged.exists()
        else:
            with pytest.raises(FileExistsError):
                storage.store("job-3/1/x.txt", staged)
    with storage.open("job-3/1/x.txt") as file:
        assert file.read() == b"first"
    assert sorted(path.name for path in (tmp_path / "files" / "job-3" / "1").iterdir()) == [
        "x.txt"
    ]  # no copy left half-way


def test_a_deleted_key_takes_its_empty_folders_with_it(tmp_path: Path) -> None:
    storage = Plugins(entry_points=False, settings=Settings(home=str(tmp_path))).storage("local")
    staged = tmp_path / "staged"
    staged.write_bytes(b"content")
    storage.store("job-2/1/0/run-a/x.txt", staged)
    storage.delete("job-2/1/0/run-a/x.txt")
    storage.delete("job-2/1/0/run-a/x.txt")
    assert not storage.exists("job-2/1/0/run-a/x.txt")
    assert list((tmp_path / "files").iterdir()) == []
    with pytest.raises(FileNotFoundError):
        storage.open("job-2/1/0/run-a/x.txt")


def test_an_unknown_storage_names_the_setting(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, settings=Settings(home=str(tmp_path)))
    with pytest.raises(InvalidRequest) as caught:
        plugins.storage("gcs")
    assert caught.value.fields[0].name == "storage"
