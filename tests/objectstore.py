"""The S3-compatible server the tests talk to: moto's standalone server.

moto (``moto_server``, from the ``moto[server]`` test dependency) is used because no
real S3-compatible server installs from this machine's package registries: PyPI's
``minio`` is only a client, and Debian's radosgw needs a whole Ceph cluster.  It
speaks the S3 REST API over real HTTP (multipart uploads, ``If-None-Match``
conditional writes, ranged GETs, presigned URLs), so the ``s3`` storage is tested
through boto3 exactly as against any S3 service; what moto does not do (it does not
check a part's ``ChecksumSHA256``) the storage checks itself.

:func:`s3_server` starts one server for the session on a free port of 127.0.0.1;
:func:`s3_bucket` makes a bucket of the test's own and empties and deletes it after.
A server that cannot start skips the test, except under ``CI=true``, where it fails.
A test that stops the server (:meth:`MotoServer.stop`) has one of its own.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from tests.needs import missing
from tests.ports import free_port

if TYPE_CHECKING:  # the stubs are a dev tool, not a test dependency
    from mypy_boto3_s3 import S3Client

STARTUP_TIMEOUT = 30.0
"""Seconds the server may take to answer."""
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
"""What the tests sign with (moto takes any)."""
REGION = "us-east-1"


@dataclass
class MotoServer:
    """A ``moto_server`` process on ``port`` of 127.0.0.1; :meth:`start` it."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers (a test failure or skip if not)."""
        command = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if command is None:
            missing("moto_server is not installed (the moto[server] test dependency)")
        self.process = subprocess.Popen(
            [command, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.1)
        self.stop()
        missing(f"moto_server did not start on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """Stop the server (what it held is gone: moto keeps everything in memory)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self) -> S3Client:
        """A boto3 client of the server."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["access_key_id"],
            aws_secret_access_key=CREDENTIALS["secret_access_key"],
        )

    def config(self, bucket: str, **changes: Any) -> dict[str, Any]:
        """The ``[plugins.s3]`` table for ``bucket`` on this server."""
        return {
            "endpoint_url": self.url,
            "region": REGION,
            "bucket": bucket,
            "addressing_style": "path",
            **CREDENTIALS,
            **changes,
        }

    def new_bucket(self) -> str:
        """A bucket of a new, unique name."""
        name = f"exportd-test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def remove_bucket(self, bucket: str) -> None:
        """Abort the bucket's uploads, delete its objects, then the bucket."""
        client = self.client()
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for listed in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=listed["Key"])
        client.delete_bucket(Bucket=bucket)


def object_keys(client: S3Client, bucket: str) -> list[str]:
    """The keys of every object in ``bucket``."""
    return [listed["Key"] for listed in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(client: S3Client, bucket: str) -> list[str]:
    """The keys of the multipart uploads under way (not completed nor aborted) in ``bucket``."""
    return [
        upload["Key"] for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """The session's S3 server, stopped at its end."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoServer) -> Iterator[str]:
    """A bucket of the test's own on :func:`s3_server`, removed after the test."""
    bucket = s3_server.new_bucket()
    try:
        yield bucket
    finally:
        s3_server.remove_bucket(bucket)
