"""What is the ``s3`` storage's own, against a real S3 API server (moto's: see
:mod:`tests.objectstore` for why moto): multipart uploads, the SHA-256 kept and checked,
the prefix, presigned URLs, and its settings' errors."""

from __future__ import annotations

import builtins
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from exportd import ConfigError, Settings
from exportd.config.settings import WorkerSettings
from exportd.plugins.manager import Plugins
from exportd.plugins.storages.s3 import S3Config, S3Storage
from tests.objectstore import MotoServer, object_keys, uploads

CHUNK = 5 * 1024 * 1024


def s3_storage(tmp_path: Path, server: MotoServer, bucket: str, **changes: Any) -> S3Storage:
    """The s3 storage of ``bucket`` on ``server``, as the plugin manager makes it."""
    settings = Settings(
        home=str(tmp_path), storage="s3", plugins={"s3": server.config(bucket, **changes)}
    )
    storage = Plugins(entry_points=False, settings=settings).storage("s3")
    assert isinstance(storage, S3Storage)
    return storage


def test_a_file_above_one_chunk_goes_in_parts_with_its_sha256(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str
) -> None:
    storage = s3_storage(tmp_path, s3_server, s3_bucket, chunk_size=CHUNK, prefix="/exports/")
    content = os.urandom(2 * CHUNK + 1000)
    digest = hashlib.sha256(content).hexdigest()
    path = tmp_path / "big.bin"
    path.write_bytes(content)
    storage.store_checked("job/1/0/run/big.bin", path, digest)
    client = s3_server.client()
    head = client.head_object(Bucket=s3_bucket, Key="exports/job/1/0/run/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["Metadata"] == {"sha256": digest}
    with storage.open("job/1/0/run/big.bin") as file:
        assert hashlib.sha256(file.read()).hexdigest() == digest
    storage.delete("job/1/0/run/big.bin")
    assert object_keys(client, s3_bucket) == []


@pytest.mark.parametrize("size", [1000, CHUNK + 1000], ids=["one request", "in parts"])
def test_a_file_that_is_not_what_was_written_is_refused_and_leaves_nothing(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str, size: int
) -> None:
    storage = s3_storage(tmp_path, s3_server, s3_bucket, chunk_size=CHUNK)
    path = tmp_path / "x.bin"
    path.write_bytes(os.urandom(size))
    written = hashlib.sha256(b"what the worker wrote").hexdigest()
    with pytest.raises(ValueError, match=f"not {written} as written"):
        storage.store_checked("job/1/0/run/x.bin", path, written)
    client = s3_server.client()
    assert (object_keys(client, s3_bucket), uploads(client, s3_bucket)) == ([], [])
    assert path.exists()


def test_a_taken_key_is_refused_after_all_its_parts_went(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str
) -> None:
    """The conditional CompleteMultipartUpload refuses, and the upload is aborted."""
    storage = s3_storage(tmp_path, s3_server, s3_bucket, chunk_size=CHUNK)
    small = tmp_path / "small"
    small.write_bytes(b"first")
    storage.store("job/1/x", small)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(CHUNK + 10))
    with pytest.raises(FileExistsError):
        storage.store("job/1/x", big)
    client = s3_server.client()
    assert uploads(client, s3_bucket) == []
    with storage.open("job/1/x") as file:
        assert file.read() == b"first"


@pytest.mark.parametrize("size", [1000, CHUNK + 1000], ids=["one request", "in parts"])
def test_a_try_after_a_lost_success_finds_its_own_file_stored(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str, size: int
) -> None:
    """The same file again under its key (what botocore's or the worker's next try sends
    when the answer to a success was lost) is stored; another file is still refused."""
    storage = s3_storage(tmp_path, s3_server, s3_bucket, chunk_size=CHUNK)
    content = os.urandom(size)
    for again in (tmp_path / "first", tmp_path / "again"):
        again.write_bytes(content)
        storage.store("job/1/x", again)
        assert not again.exists()
    other = tmp_path / "other"
    other.write_bytes(os.urandom(size))  # the same size, another SHA-256
    with pytest.raises(FileExistsError, match="never replaced"):
        storage.store("job/1/x", other)
    client = s3_server.client()
    assert (object_keys(client, s3_bucket), uploads(client, s3_bucket)) == (["job/1/x"], [])
    with storage.open("job/1/x") as file:
        assert file.read() == content


@pytest.mark.parametrize(
    "lost",
    [(1000, "put_object"), (CHUNK + 1000, "complete_multipart_upload")],
    ids=["one request", "in parts"],
)
def test_the_worker_s_try_after_a_lost_answer_finds_the_file_stored(
    tmp_path: Path,
    s3_server: MotoServer,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    lost: tuple[int, str],
) -> None:
    """The request that creates the object succeeds, but its answer is lost: a passing
    failure; the worker's next try (``_store_again``) then finds this very file."""
    size, call = lost
    storage = s3_storage(tmp_path, s3_server, s3_bucket, chunk_size=CHUNK)
    client = storage.client
    creating = getattr(client, call)

    def answer_lost(**arguments: object) -> object:
        creating(**arguments)
        monkeypatch.undo()  # the next try gets its answer
        raise EndpointConnectionError(endpoint_url=s3_server.url)

    monkeypatch.setattr(client, call, answer_lost)
    path = tmp_path / "x"
    content = os.urandom(size)
    path.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    with pytest.raises(ConnectionError):
        storage.store_checked("job/1/x", path, digest)
    storage.store_checked("job/1/x", path, digest)
    assert not path.exists()
    s3 = s3_server.client()
    assert (object_keys(s3, s3_bucket), uploads(s3, s3_bucket)) == (["job/1/x"], [])


def test_the_uploads_an_earlier_try_left_are_aborted_before_a_new_one(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str
) -> None:
    storage = s3_storage(tmp_path, s3_server, s3_bucket, chunk_size=CHUNK)
    client = s3_server.client()
    for name in ("job/1/x", "job/1/x2"):  # x2 shares the prefix, but is another object
        client.create_multipart_upload(Bucket=s3_bucket, Key=name)
    path = tmp_path / "x"
    path.write_bytes(os.urandom(CHUNK + 10))
    storage.store("job/1/x", path)
    assert uploads(client, s3_bucket) == ["job/1/x2"]


def test_an_abort_that_fails_is_logged_with_its_upload_id(
    tmp_path: Path,
    s3_server: MotoServer,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first failure is the one raised; the upload left is named, for its clean-up."""
    storage = s3_storage(tmp_path, s3_server, s3_bucket, chunk_size=CHUNK)
    client = storage.client

    def failing(**_: object) -> object:
        raise ConnectionResetError("the connection dropped")

    monkeypatch.setattr(client, "upload_part", failing)
    monkeypatch.setattr(client, "abort_multipart_upload", failing)
    path = tmp_path / "x"
    path.write_bytes(os.urandom(CHUNK + 10))
    with pytest.raises(ConnectionResetError):
        storage.store("job/1/x", path)
    s3 = s3_server.client()
    (upload,) = s3.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
    assert f"could not abort the upload {upload['UploadId']} of 'job/1/x'" in caplog.text


def failing_with(status: int, code: str) -> ClientError:
    """The error botocore raises for an answer of ``status`` with the error ``code``."""
    return ClientError(
        {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    "answer",
    [
        (500, "InternalError", True),
        (502, "BadGateway", True),
        (503, "SlowDown", True),
        (504, "GatewayTimeout", True),
        (429, "TooManyRequests", True),
        (409, "ConditionalRequestConflict", True),
        (409, "OperationAborted", False),
        (501, "NotImplemented", False),
        (505, "HTTPVersionNotSupported", False),
        (403, "AccessDenied", False),
    ],
)
def test_only_a_failure_another_try_may_mend_is_a_connection_error(
    tmp_path: Path,
    s3_server: MotoServer,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    answer: tuple[int, str, bool],
) -> None:
    """A 501 is a service without conditional writes or checksums: no try mends it."""
    status, code, passing = answer
    storage = s3_storage(tmp_path, s3_server, s3_bucket)

    def failing(**_: object) -> object:
        raise failing_with(status, code)

    monkeypatch.setattr(storage.client, "put_object", failing)
    path = tmp_path / "x"
    path.write_bytes(b"x")
    with pytest.raises(ConnectionError if passing else ClientError):
        storage.store("job/1/x", path)
    assert path.exists()


def test_the_connection_pool_holds_every_part_of_every_task(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str
) -> None:
    settings = Settings(
        home=str(tmp_path),
        storage="s3",
        worker=WorkerSettings(concurrency=8),
        plugins={"s3": s3_server.config(s3_bucket, parallel_parts=6)},
    )
    storage = Plugins(entry_points=False, settings=settings).storage("s3")
    assert isinstance(storage, S3Storage)
    assert storage.client.meta.config.max_pool_connections >= 6 * 8 + 1


def test_a_presigned_url_serves_the_file_and_its_ranges_until_it_expires(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str
) -> None:
    plain = s3_storage(tmp_path, s3_server, s3_bucket)
    storage = s3_storage(tmp_path, s3_server, s3_bucket, redirect=True)
    content = os.urandom(10_000)
    path = tmp_path / "x"
    path.write_bytes(content)
    storage.store("job/1/x.bin", path)
    expires_at = datetime.now(UTC) + timedelta(minutes=5)
    answered = {"media_type": "text/csv", "disposition": 'attachment; filename="r.csv"'}
    assert plain.url("job/1/x.bin", expires_at, **answered) is None  # exportd streams
    url = storage.url("job/1/x.bin", expires_at, **answered)
    assert url is not None
    assert 298 <= int(httpx.URL(url).params["X-Amz-Expires"]) <= 299  # ends first
    whole = httpx.get(url)
    assert whole.content == content
    assert whole.headers["content-type"] == "text/csv"
    assert whole.headers["content-disposition"] == 'attachment; filename="r.csv"'
    ranged = httpx.get(url, headers={"Range": "bytes=-100"})
    assert (ranged.status_code, ranged.content) == (206, content[-100:])


def test_a_link_about_to_expire_is_streamed_not_redirected(
    tmp_path: Path, s3_server: MotoServer, s3_bucket: str
) -> None:
    """A presigned URL never outlives exportd's link: with under two seconds left there
    is no whole second to give it."""
    storage = s3_storage(tmp_path, s3_server, s3_bucket, redirect=True)
    answered = {"media_type": "text/csv", "disposition": "attachment"}
    now = datetime.now(UTC)
    assert storage.url("job/1/x", now + timedelta(seconds=1.9), **answered) is None
    assert storage.url("job/1/x", now - timedelta(seconds=5), **answered) is None
    url = storage.url("job/1/x", now + timedelta(seconds=3.5), **answered)
    assert url is not None
    assert int(httpx.URL(url).params["X-Amz-Expires"]) in (1, 2)


def test_the_bucket_is_required_once_the_storage_is_used(tmp_path: Path) -> None:
    Plugins(entry_points=False, settings=Settings(home=str(tmp_path)))  # not used: fine
    with pytest.raises(ConfigError) as refused:
        Plugins(entry_points=False, settings=Settings(home=str(tmp_path), storage="s3"))
    assert refused.value.fields[0].name == "plugins.s3.bucket"


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"bucket": "b", "chunk_size": 1024}, "plugins.s3.chunk_size"),
        ({"bucket": "b", "prefix": "a/../b"}, "plugins.s3.prefix"),
        ({"bucket": "b", "access_key_id": "id"}, "plugins.s3.secret_access_key"),
        ({"bucket": "b", "addressing_style": "sideways"}, "plugins.s3.addressing_style"),
        ({"bucket": "b", "buckett": "c"}, "plugins.s3.buckett"),
        ({"bucket": "b", "chunk_size": 5 * 1024**3 + 1}, "plugins.s3.chunk_size"),
        ({"bucket": "b", "endpoint_url": "127.0.0.1:9000"}, "plugins.s3.endpoint_url"),
        ({"bucket": "b", "endpoint_url": "ftp://s3.internal"}, "plugins.s3.endpoint_url"),
        ({"bucket": "b", "endpoint_url": "http://"}, "plugins.s3.endpoint_url"),
        ({"bucket": "b", "session_token": "t"}, "plugins.s3.session_token"),
        ({"bucket": "b", "redirect": True}, "plugins.s3.region"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, table: dict[str, Any], field: str) -> None:
    settings = Settings(home=str(tmp_path), storage="s3", plugins={"s3": table})
    with pytest.raises(ConfigError) as refused:
        Plugins(entry_points=False, settings=settings)
    assert refused.value.fields[0].name == field


def test_the_settings_repr_masks_the_secrets() -> None:
    config = S3Config(
        bucket="b", access_key_id="AKIA1", secret_access_key="hush", session_token="s-99"
    )
    shown = repr(config)
    assert "hush" not in shown
    assert "s-99" not in shown
    assert "secret_access_key=***" in shown
    assert "access_key_id='AKIA1'" in shown
    assert "session_token=''" in repr(S3Config())  # nothing to mask


def test_without_boto3_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_boto3(name: str, *arguments: Any, **keywords: Any) -> Any:
        if name.partition(".")[0] in ("boto3", "botocore"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *arguments, **keywords)

    monkeypatch.setattr(builtins, "__import__", no_boto3)
    settings = Settings(home=str(tmp_path), storage="s3", plugins={"s3": {"bucket": "b"}})
    with pytest.raises(ConfigError, match=r"pip install 'exportd\[s3\]'"):
        Plugins(entry_points=False, settings=settings)


def test_a_service_that_cannot_be_reached_is_a_connection_error(tmp_path: Path) -> None:
    """What the worker takes for a passing failure, and tries again (see the worker)."""
    down = MotoServer()  # never started: nothing listens on its port
    storage = s3_storage(tmp_path, down, "exportd-unreachable")
    path = tmp_path / "x"
    path.write_bytes(b"x")
    with pytest.raises(ConnectionError, match="the s3 service failed"):
        storage.store("job/1/x", path)
    assert path.exists()
