"""The built-in local storage, found through the exportd_storages hook."""

from __future__ import annotations

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


def test_a_stored_key_is_replaced_and_deleted_with_its_empty_folders(tmp_path: Path) -> None:
    storage = Plugins(entry_points=False, settings=Settings(home=str(tmp_path))).storage("local")
    for content in (b"first", b"second"):
        staged = tmp_path / "staged"
        staged.write_bytes(content)
        storage.store("job-2/1/x.txt", staged)
    with storage.open("job-2/1/x.txt") as file:
        assert file.read() == b"second"
    storage.delete("job-2/1/x.txt")
    storage.delete("job-2/1/x.txt")
    assert not storage.exists("job-2/1/x.txt")
    assert list((tmp_path / "files").iterdir()) == []
    with pytest.raises(FileNotFoundError):
        storage.open("job-2/1/x.txt")


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "a/../../b", "", "."])
def test_a_key_cannot_leave_the_storage(tmp_path: Path, key: str) -> None:
    storage = Plugins(entry_points=False, settings=Settings(home=str(tmp_path))).storage("local")
    with pytest.raises(InvalidRequest) as caught:
        storage.exists(key)
    assert caught.value.fields[0].name == "key"


def test_an_unknown_storage_names_the_setting(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, settings=Settings(home=str(tmp_path)))
    with pytest.raises(InvalidRequest) as caught:
        plugins.storage("s3")
    assert caught.value.fields[0].name == "storage"
