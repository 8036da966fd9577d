"""Download URLs: signed with HMAC-SHA256, expiring, and needing no other credential.

A URL names a job, its attempt, a part and when it stops working; its
signature covers all four, so it cannot be bent to another file or made to
last longer.  A URL works until it expires, which is never after its file's
expiry (a URL may be made to last exactly as long as the file), and only while
its file lives: once the job expired or was deleted (or was run again), it
answers 410.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from exportd.config import Settings
from exportd.errors import ConfigError, Forbidden
from exportd.messages import JobSnapshot

SECRET_FILE = "http-secret"
MIN_SECRET_LENGTH = 32


class FileLink(msgspec.Struct, frozen=True, kw_only=True):
    """A finished part's file and a signed URL to download it."""

    part: int
    name: str
    media_type: str
    size: int
    sha256: str
    rows: int
    url: str
    url_expires_at: datetime


class Signer:
    """Signs and checks download URLs with one secret key."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def signature(self, job_id: str, attempt: int, part: int, expires: int) -> str:
        """The signature of a URL for that file until ``expires`` (Unix seconds)."""
        message = f"{job_id}:{attempt}:{part}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def check_signature(
        self, job_id: str, attempt: int, part: int, *, expires: int, signature: str
    ) -> None:
        """Raise :class:`Forbidden` unless ``signature`` is the URL's (whether or not
        it has expired: see :func:`check_expiry`)."""
        expected = self.signature(job_id, attempt, part, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("the download URL is not valid: ask for a new one")

    def links(
        self,
        job: JobSnapshot,
        base_url: str,
        *,
        lifetime: timedelta | None,
        now: datetime | None = None,
    ) -> list[FileLink]:
        """A signed URL for each file a job has now (none unless it is done and its
        ``expires_at`` is to come), working for ``lifetime`` but never past
        ``expires_at``; with ``lifetime`` None, until ``expires_at``: as long as the
        files live."""
        if job.status != "done" or job.expires_at is None:
            return []
        moment = now or datetime.now(UTC)
        until = job.expires_at if lifetime is None else min(moment + lifetime, job.expires_at)
        expires = int(until.timestamp())
        if expires <= moment.timestamp():  # the files' time is over; the sweeper is due
            return []
        links = []
        for part in job.parts:
            if part.file is None:
                continue
            signature = self.signature(job.id, job.attempt, part.part, expires)
            query = f"attempt={job.attempt}&expires={expires}&signature={signature}"
            links.append(
                FileLink(
                    part=part.part,
                    name=part.file.name,
                    media_type=part.file.media_type,
                    size=part.file.size,
                    sha256=part.file.sha256,
                    rows=part.file.rows,
                    url=f"{base_url}/v1/files/{job.id}/{part.part}?{query}",
                    url_expires_at=datetime.fromtimestamp(expires, UTC),
                )
            )
        return links


def check_expiry(expires: int, now: datetime) -> None:
    """Raise :class:`Forbidden` if a URL working until ``expires`` has run out."""
    if expires <= now.timestamp():
        raise Forbidden("the download URL has expired: ask for a new one")


def signer_for(settings: Settings) -> Signer:
    """The signer with ``http.secret``, or with the key kept in ``EXPORTD_HOME``.

    Raises :class:`ConfigError` for a key shorter than :data:`MIN_SECRET_LENGTH`:
    a short key would let anyone who knows a job id forge its URLs.
    """
    if settings.http.secret:
        secret, origin = settings.http.secret, "http.secret"
    else:
        secret, origin = stored_secret(settings.home_path), str(settings.home_path / SECRET_FILE)
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{origin}: the key that signs download URLs must have at least "
            f"{MIN_SECRET_LENGTH} characters"
        )
    return Signer(secret)


def stored_secret(home: Path) -> str:
    """The signing key kept in ``home``, made (readable by its owner only) if missing.

    It is written whole to a file of its own, then linked into place, so that no
    process ever reads a half-written key, and two that start at once agree.
    """
    path = home / SECRET_FILE
    home.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        descriptor, draft = tempfile.mkstemp(dir=home, prefix=f".{SECRET_FILE}.")
        try:
            with os.fdopen(descriptor, "w") as file:  # mkstemp makes it 0600
                file.write(secrets.token_hex(32))
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(draft, path)
        finally:
            os.unlink(draft)
    return path.read_text().strip()
