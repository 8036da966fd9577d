"""The ``s3`` storage: files as objects in a bucket of any S3-compatible service.

Its settings are the ``[plugins.s3]`` table (:class:`S3Config`); select it with
``storage = "s3"``.  It needs boto3: ``pip install 'exportd[s3]'``.  The client is
made on first use, so a process that loads the plugin but keeps its files elsewhere
needs neither boto3 nor a bucket.

A file is uploaded from the worker's disk: in one ``PutObject`` up to one
``chunk_size``, in a multipart upload of ``chunk_size`` parts above it,
``parallel_parts`` parts at a time (so that many chunks in memory, and one more).
Every request carries the SHA-256 of what it sends (``ChecksumSHA256``), which the
service checks; the whole file's SHA-256, the one the worker measured while writing
it, is kept as the object's ``sha256`` metadata, and what is sent is checked against
it before the upload completes.  The object is
created only if its key is free (``If-None-Match: *`` on ``PutObject`` and
``CompleteMultipartUpload``), so a stored file is never replaced; a key that holds this
very file (its ``sha256`` metadata and size), what a try after a success whose answer
was lost finds, counts as stored.  A multipart upload that fails anywhere is aborted,
so no part of a file is left behind, and the uploads of an object name left by an
earlier try (an outage) are aborted before a new one starts.

Downloads stream the object through exportd (ranged ``GetObject`` for a range
request), or, with ``redirect = true``, are redirected to a presigned URL that
expires with exportd's own link; the service then serves ranges itself.
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Literal, cast
from urllib.parse import urlsplit

import msgspec

from exportd import ConfigError, Settings, Storage, hookimpl

if TYPE_CHECKING:
    import logging
    from concurrent.futures import Future

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MiB = 1024 * 1024
MIN_CHUNK_SIZE = 5 * MiB
"""S3's smallest part of a multipart upload (but the last)."""
MAX_CHUNK_SIZE = 5 * 1024 * MiB
"""S3's largest part of a multipart upload (5 GiB)."""
MAX_PARTS = 10_000
"""S3's most parts of one multipart upload: a larger file gets larger parts."""
MAX_URL_LIFETIME = 7 * 24 * 3600
"""The longest a presigned (SigV4) URL works, in seconds."""
SHA256_METADATA = "sha256"
"""The user metadata (``x-amz-meta-sha256``) holding a stored file's SHA-256, in hex."""
INSTALL_HINT = "pip install 'exportd[s3]'"
SECRET_FIELDS = frozenset({"secret_access_key", "session_token"})
"""The settings a repr of them masks."""
PASSING_STATUSES = frozenset({429, 500, 502, 503, 504})
"""The answers another try may mend (a 501 or 505 is the service lacking a feature)."""
POOL_MARGIN = 10
"""Connections of the client's pool beside the uploads' parts: downloads, checks."""


class S3Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The bucket the ``s3`` storage keeps files in (``[plugins.s3]``), for
    ``storage = "s3"``; see ``docs/runtime.md``, "Storage"."""

    bucket: str = ""
    """The bucket's name: required when the storage is used (it must exist)."""

    prefix: str = ""
    """A folder in the bucket for exportd's files (``exports``, say); empty: the top."""

    endpoint_url: str = ""
    """The service's URL (``http://127.0.0.1:9000``, say); empty: AWS S3 itself."""

    region: str = ""
    """The bucket's region; empty: the standard AWS settings (``AWS_REGION``...)."""

    access_key_id: str = ""
    """The access key; empty: boto3's standard chain (``AWS_ACCESS_KEY_ID``, the
    shared credentials file, an instance role...)."""

    secret_access_key: str = ""
    """The secret of ``access_key_id`` (needed with it)."""

    session_token: str = ""
    """A session token, for temporary credentials."""

    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """How the bucket is named in URLs: ``path`` (``endpoint/bucket/key``, what most
    self-hosted services want), ``virtual`` (``bucket.endpoint/key``), or ``auto``."""

    chunk_size: Annotated[int, msgspec.Meta(ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)] = 8 * MiB
    """Bytes in one part of a multipart upload (5 MiB to 5 GiB, S3's limits); a file up
    to this size goes in one request."""

    parallel_parts: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    """Parts of one upload sent at once; an upload holds up to this many chunks in
    memory, and one more being read: ``(parallel_parts + 1) * chunk_size`` bytes for
    each task a worker runs at once (``worker.concurrency``)."""

    redirect: bool = False
    """Whether a download is answered with a redirect to a presigned URL of the object
    (the service serves it), instead of exportd streaming it."""

    def __repr__(self) -> str:
        """The settings, with the secret and the session token masked."""
        shown = (
            f"{name}={'***' if name in SECRET_FIELDS and value else repr(value)}"
            for name, value in ((name, getattr(self, name)) for name in self.__struct_fields__)
        )
        return f"{type(self).__name__}({', '.join(shown)})"


class S3Storage(Storage):
    """Keeps each file as the object ``<prefix>/<key>`` of one bucket."""

    name = "s3"
    description = "objects in a bucket of any S3-compatible service"

    def __init__(self, config: S3Config, uploads: int = 1) -> None:
        """The storage of ``config``, for ``uploads`` files sent at once (the worker's
        concurrency), which sizes the client's connection pool."""
        self.config = config
        self.prefix = "/".join(_prefix_parts(config.prefix))
        self.pool_size = config.parallel_parts * uploads + POOL_MARGIN
        self._making_client = threading.Lock()
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        """The S3 client, made on first use (once, whichever thread comes first: a
        client is thread-safe, making one from a shared session is not)."""
        if self._client is not None:
            return self._client
        with self._making_client:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> S3Client:
        config = self.config
        boto3, botocore_config = _boto3()
        return cast(
            "S3Client",
            boto3.session.Session().client(
                "s3",
                endpoint_url=config.endpoint_url or None,
                region_name=config.region or None,
                aws_access_key_id=config.access_key_id or None,
                aws_secret_access_key=config.secret_access_key or None,
                aws_session_token=config.session_token or None,
                config=botocore_config(
                    signature_version="s3v4",  # presigned URLs too (boto3 would sign v2)
                    s3={"addressing_style": config.addressing_style},
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=10,
                    read_timeout=60,
                    max_pool_connections=self.pool_size,
                ),
            ),
        )

    def object_key(self, key: str) -> str:
        """The object that keeps ``key``; a key that would leave the prefix is refused."""
        return "/".join((*((self.prefix,) if self.prefix else ()), *self.key_parts(key)))

    def store(self, key: str, path: Path) -> None:
        """:meth:`store_checked`, with the SHA-256 of the file at ``path``."""
        with path.open("rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        self.store_checked(key, path, sha256)

    def store_checked(self, key: str, path: Path, sha256: str) -> None:
        """Upload the file at ``path`` as the object of ``key``, if none is there yet
        (:class:`FileExistsError` otherwise), with ``sha256`` as its metadata; what is
        sent must have that SHA-256 (:class:`ValueError` otherwise, and no object).  A
        key that holds this very file (its SHA-256 and size) counts as stored: a try after
        a success whose answer was lost.  ``path`` is removed once the object is there.
        A service unreachable, timing out or failing on its side (500, 502, 503, 504,
        429, a conditional write conflicting with another) is a
        :class:`ConnectionError`: the worker tries again."""
        name = self.object_key(key)
        size = path.stat().st_size
        chunk_size = max(self.config.chunk_size, -(-size // MAX_PARTS))
        with _passing_failures_as_connection_errors(), path.open("rb") as file:
            if size <= chunk_size:
                self._put(key, name, file.read(), sha256)
            else:
                self._put_in_parts(key, name, file, chunk_size, sha256=sha256, size=size)
        path.unlink()

    def _put(self, key: str, name: str, data: bytes, sha256: str) -> None:
        digest = hashlib.sha256(data)
        _check_sha256(key, digest.hexdigest(), sha256)
        self._create_if_free(
            key,
            name,
            len(data),
            sha256,
            lambda: self.client.put_object(
                Bucket=self.config.bucket,
                Key=name,
                Body=data,
                ChecksumSHA256=_base64(digest),
                Metadata={SHA256_METADATA: sha256},
                IfNoneMatch="*",
            ),
        )

    def _create_if_free(
        self, key: str, name: str, size: int, sha256: str, create: Callable[[], object]
    ) -> bool:
        """Whether ``create`` (a conditional write of the object ``name``) made it:
        ``False`` when S3 refused it (412) because the object is this very file already
        (its ``sha256`` metadata and size), :class:`FileExistsError` if it is another."""
        try:
            create()
        except Exception as exc:
            if _status(exc) != 412:
                raise
            held = self.client.head_object(Bucket=self.config.bucket, Key=name)
            stored = held.get("Metadata", {}).get(SHA256_METADATA, "")
            if stored.lower() == sha256.lower() and held["ContentLength"] == size:
                _log().info("the s3 storage holds %r already, this very file: stored", key)
                return False
            raise FileExistsError(
                f"the storage already holds {key!r}: a stored file is never replaced"
            ) from None
        return True

    def _put_in_parts(
        self, key: str, name: str, file: BinaryIO, chunk_size: int, *, sha256: str, size: int
    ) -> None:
        bucket = self.config.bucket
        self._abort_stale_uploads(name)
        upload = self.client.create_multipart_upload(
            Bucket=bucket,
            Key=name,
            ChecksumAlgorithm="SHA256",
            Metadata={SHA256_METADATA: sha256},
        )
        upload_id = upload["UploadId"]
        try:
            whole = hashlib.sha256()
            parts: list[CompletedPartTypeDef] = []
            from concurrent.futures import ThreadPoolExecutor

            sending: deque[Future[CompletedPartTypeDef]] = deque()
            with ThreadPoolExecutor(self.config.parallel_parts, "s3-part") as senders:
                while chunk := file.read(chunk_size):
                    whole.update(chunk)
                    number = len(parts) + len(sending) + 1
                    sending.append(senders.submit(self._part, name, upload_id, number, chunk))
                    if len(sending) == self.config.parallel_parts:  # one chunk more at most
                        parts.append(sending.popleft().result())
                parts.extend(part.result() for part in sending)
            _check_sha256(key, whole.hexdigest(), sha256)
            created = self._create_if_free(
                key,
                name,
                size,
                sha256,
                lambda: self.client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                ),
            )
        except BaseException:
            self._abort(name, upload_id)
            raise
        if not created:  # the file was there already: this upload's parts are not needed
            self._abort(name, upload_id)

    def _abort(self, name: str, upload_id: str) -> None:
        """Abort an upload, logging (not raising) a failure: the first failure is the one
        to tell, and the bucket's lifecycle rule for incomplete uploads (docs/runtime.md)
        removes the parts of one whose abort failed."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.config.bucket, Key=name, UploadId=upload_id
            )
        except Exception as exc:
            if _status(exc) != 404:  # gone already (completed by a lost success)
                _log().warning(
                    "the s3 storage could not abort the upload %s of %r (%s: %s); the "
                    "bucket's lifecycle rule must remove its parts",
                    *(upload_id, name, type(exc).__name__, exc),
                )

    def _abort_stale_uploads(self, name: str) -> None:
        """Abort the uploads of the object ``name`` an earlier try left under way (a
        store is the only writer of its key, so none is another's)."""
        listed = self.client.list_multipart_uploads(Bucket=self.config.bucket, Prefix=name)
        for upload in listed.get("Uploads", []):
            if upload.get("Key") == name and "UploadId" in upload:
                self._abort(name, upload["UploadId"])

    def _part(self, name: str, upload_id: str, number: int, chunk: bytes) -> CompletedPartTypeDef:
        """Send part ``number`` of an upload, with its SHA-256."""
        checksum = _base64(hashlib.sha256(chunk))
        answer = self.client.upload_part(
            Bucket=self.config.bucket,
            Key=name,
            UploadId=upload_id,
            PartNumber=number,
            Body=chunk,
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

    def open(self, key: str) -> BinaryIO:
        """The object of ``key``, streamed as it is read."""
        return self._get(key)

    def open_range(self, key: str, start: int, stop: int) -> BinaryIO:
        """Bytes ``start`` to ``stop`` (exclusive) of the object of ``key``: a ranged GET."""
        return self._get(key, Range=f"bytes={start}-{stop - 1}")

    def _get(self, key: str, **arguments: Any) -> BinaryIO:
        name = self.object_key(key)
        try:
            with _passing_failures_as_connection_errors():
                answer = self.client.get_object(Bucket=self.config.bucket, Key=name, **arguments)
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"the s3 storage holds no {key!r}") from None
        return cast(BinaryIO, answer["Body"])  # botocore's StreamingBody, an io.IOBase

    def delete(self, key: str) -> None:
        """Delete the object of ``key`` (nothing happens if there is none)."""
        with _passing_failures_as_connection_errors():
            self.client.delete_object(Bucket=self.config.bucket, Key=self.object_key(key))

    def exists(self, key: str) -> bool:
        """Whether the object of ``key`` exists."""
        try:
            with _passing_failures_as_connection_errors():
                self.client.head_object(Bucket=self.config.bucket, Key=self.object_key(key))
        except self.client.exceptions.ClientError as exc:
            if _status(exc) == 404:
                return False
            raise
        return True

    def url(
        self, key: str, expires_at: datetime, *, media_type: str, disposition: str
    ) -> str | None:
        """With ``redirect = true``, a presigned URL of the object of ``key`` that ends
        before ``expires_at`` (whole seconds, one to spare; at most a week, SigV4's
        limit), answered with ``media_type`` and ``disposition`` (S3's
        ``response-content-*`` overrides); else ``None``, and ``None`` too when less
        than two seconds are left (exportd streams the file: no URL outlives its own
        link)."""
        if not self.config.redirect:
            return None
        seconds = math.floor((expires_at - datetime.now(UTC)).total_seconds()) - 1
        if seconds < 1:
            return None
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.config.bucket,
                "Key": self.object_key(key),
                "ResponseContentType": media_type,
                "ResponseContentDisposition": disposition,
            },
            ExpiresIn=min(seconds, MAX_URL_LIFETIME),
        )


def _prefix_parts(prefix: str) -> tuple[str, ...]:
    """The folders of ``prefix``, which must be a relative path without ``..``."""
    parts = tuple(part for part in prefix.split("/") if part)
    if ".." in parts or "." in parts:
        raise ConfigError.field("plugins.s3.prefix", f"{prefix!r} must be a path without . or ..")
    return parts


def _check_connection(config: S3Config) -> None:
    """Refuse, naming the setting, an endpoint that is no http(s) URL of a host, half a
    key pair, a session token without keys, and presigned AWS URLs of no region."""
    if config.endpoint_url:
        endpoint = urlsplit(config.endpoint_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise ConfigError.field(
                "plugins.s3.endpoint_url",
                f"{config.endpoint_url!r} must be an http:// or https:// URL with a host",
            )
    if bool(config.access_key_id) != bool(config.secret_access_key):
        missing = "secret_access_key" if config.access_key_id else "access_key_id"
        raise ConfigError.field(f"plugins.s3.{missing}", "needed with the other one")
    if config.session_token and not config.access_key_id:
        raise ConfigError.field(
            "plugins.s3.session_token", "needs access_key_id and secret_access_key"
        )
    if config.redirect and not config.endpoint_url and not config.region:
        raise ConfigError.field(
            "plugins.s3.region", "needed for redirects to AWS S3 (presigned URLs name it)"
        )


def _check_sha256(key: str, sent: str, expected: str) -> None:
    if sent != expected.lower():
        raise ValueError(
            f"the file for {key!r} has SHA-256 {sent}, not {expected} as written: not stored"
        )


def _log() -> logging.Logger:
    """The storage's logger; :mod:`logging` (and :mod:`concurrent.futures`) are imported
    where the storage is used, as boto3 is: every process loads this plugin."""
    import logging

    return logging.getLogger(__name__)


def _base64(digest: hashlib._Hash) -> str:
    return base64.b64encode(digest.digest()).decode("ascii")


@contextmanager
def _passing_failures_as_connection_errors() -> Iterator[None]:
    """Raise botocore's errors that another try may mend (the service unreachable, a
    timeout, a connection dropped, a 500, 502, 503, 504 or 429 answer, a 409
    ``ConditionalRequestConflict``) as :class:`ConnectionError`, what the storage
    contract says of a passing failure."""
    try:
        yield
    except Exception as exc:
        if _passing(exc):
            raise ConnectionError(f"the s3 service failed: {exc}") from exc
        raise


def _passing(exc: Exception) -> bool:
    """Whether another try may mend the botocore error ``exc``."""
    from botocore.exceptions import ConnectionError as Unreachable
    from botocore.exceptions import HTTPClientError

    status = _status(exc)
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return (
        isinstance(exc, Unreachable | HTTPClientError)
        or status in PASSING_STATUSES
        or (status == 409 and code == "ConditionalRequestConflict")
    )


def _status(exc: Exception) -> int | None:
    """The HTTP status of a botocore ``ClientError`` (``None`` for another error)."""
    status: int | None = (
        getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    )
    return status


def _boto3() -> tuple[Any, Any]:
    """boto3 and botocore's ``Config``, or an error saying how to install them."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError.field(
            "storage", f"the s3 storage needs boto3, which is not installed: {INSTALL_HINT}"
        ) from None
    return boto3, Config


@hookimpl
def exportd_plugin_config() -> type[S3Config]:
    """The bucket and how to reach it: ``[plugins.s3]``."""
    return S3Config


@hookimpl
def exportd_storages(settings: Settings, config: S3Config) -> Iterable[Storage]:
    """The ``s3`` storage; when it is the one used (``storage = "s3"``), its bucket must
    be set and boto3 installed."""
    storage = S3Storage(config, settings.worker.concurrency)
    if settings.storage == S3Storage.name:
        if not config.bucket:
            raise ConfigError.field("plugins.s3.bucket", "the s3 storage needs a bucket name")
        _check_connection(config)
        _boto3()
    return [storage]
