"""Download URLs: signed with HMAC-SHA256, expiring, and needing no other credential.

A URL names a job, its attempt, a part and when it stops working; its
signature covers all four, so it cannot be bent to another file or made to
last longer.  A URL works while it has not expired, and only while its file
lives: once the job expired or was deleted (or was run again), it answers 410.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import msgspec

from exportd.errors import Forbidden
from exportd.messages import JobSnapshot


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

    def check(
        self,
        job_id: str,
        attempt: int,
        part: int,
        *,
        expires: int,
        signature: str,
        now: datetime,
    ) -> None:
        """Raise :class:`Forbidden` unless ``signature`` is right and ``expires`` to come."""
        expected = self.signature(job_id, attempt, part, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("the download URL is not valid: ask for a new one")
        if expires <= now.timestamp():
            raise Forbidden("the download URL has expired: ask for a new one")

    def links(
        self, job: JobSnapshot, base_url: str, *, lifetime: timedelta, now: datetime | None = None
    ) -> list[FileLink]:
        """A signed URL for each file a job has now (none unless it is done), working
        for ``lifetime`` but never past the job's ``expires_at``."""
        if job.status != "done":
            return []
        moment = now or datetime.now(UTC)
        until = moment + lifetime
        if job.expires_at is not None:
            until = min(until, job.expires_at)
        expires = int(until.timestamp())
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
