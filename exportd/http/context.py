"""What every route handler works with: the engine, the tenants, the signer of
download URLs, and who is calling.  Route plugins get it as ``api``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, BinaryIO
from urllib.parse import quote

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.response import File, Redirect, Stream

from exportd.config import Settings
from exportd.engine.service import Engine
from exportd.errors import Gone, Unauthorized, Unavailable
from exportd.http.ranges import ByteRange, requested_range
from exportd.http.sync import SyncExports
from exportd.http.tenants import Caller, TenantStore
from exportd.kernel.validation import check_nesting
from exportd.kernel.workarea import WorkArea
from exportd.messages import FileInfo, JobSnapshot, RequestFields
from exportd.plugins.api import PASSING_FAILURES
from exportd.plugins.manager import Plugins
from exportd.signing import FileLink, signer_for

log = logging.getLogger(__name__)

AnyRequest = Request[Any, Any, State]
"""A request of any user, auth and state type."""
AnyConnection = ASGIConnection[Any, Any, Any, State]
Guard = Callable[[AnyConnection, BaseRouteHandler], None]
MAX_PAGE_NUMBER = 10**9
"""The highest page number a listing takes: pages past it hold nothing anyway."""
READ_CHUNK = 1 << 16
STORAGE_RETRY_AFTER = 5
"""Seconds a download may be tried again after, when the storage cannot be reached."""
FILE_ANSWER = (
    "The file; 206 with one range of it for a Range header (Accept-Ranges: bytes; 416 for "
    "a range past its end); 302 to the storage's own URL of it when the storage has one"
)
"""What a file download answers, as its routes' OpenAPI says."""


class CheckedRequest(AnyRequest):
    """The request class of the app: a JSON body nested too deep is refused naming the
    body (400, in the route's error body) before it is decoded, on every route."""

    async def json(self) -> Any:
        """The decoded JSON body, once
        :func:`~exportd.kernel.validation.check_nesting` passed it."""
        check_nesting(await self.body())
        return await super().json()


class HttpApi:
    """The HTTP layer's view of a running exportd, handed to every route plugin."""

    def __init__(self, engine: Engine, plugins: Plugins, settings: Settings) -> None:
        self.engine = engine
        self.plugins = plugins
        self.settings = settings
        self.storage = plugins.storage(settings.storage)
        self.tenants = TenantStore(settings.jobs_path)
        self.signer = signer_for(settings)
        self.work_area = WorkArea(settings.work_path)
        self.work_area.open()
        self.sync_exports = SyncExports(plugins, settings, self.work_area)

    def close(self) -> None:
        """Release the synchronous exports' threads, the work area and the tenant store."""
        self.sync_exports.close()
        self.work_area.close()
        self.tenants.close()

    async def export_now(self, request: RequestFields) -> File:
        """Run a small export here and answer with its file (see :mod:`exportd.http.sync`)."""
        return await self.sync_exports.answer(request)

    def file_links(
        self, request: AnyConnection, job: JobSnapshot, *, until_expiry: bool = False
    ) -> list[FileLink]:
        """Signed download URLs of ``job``'s files, at the URL ``request`` came to,
        working for ``http.url_lifetime``, or with ``until_expiry`` as long as the files
        live (until the job's ``expires_at``): what the seed-compatible APIs hand out,
        whose pages promise a URL that works until the export expires."""
        lifetime = None if until_expiry else timedelta(seconds=self.settings.http.url_lifetime)
        return self.signer.links(job, self.base_url(request), lifetime=lifetime)

    async def file_answer(
        self, request: AnyConnection, file: FileInfo, expires_at: datetime
    ) -> Response[Any]:
        """An answer with a stored file: a redirect to the storage's own URL of it, if
        it has one (:meth:`Storage.url`, working until ``expires_at``), or the file
        streamed, with its type, length and name, all of it or the one range the
        request asks for (:mod:`exportd.http.ranges`)."""
        disposition = content_disposition(file.name)
        url = await asyncio.to_thread(
            partial(
                self.storage.url,
                file.key,
                expires_at,
                media_type=file.media_type,
                disposition=disposition,
            )
        )
        if url is not None:
            return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})
        wanted = requested_range(
            request.headers.get("range"), request.headers.get("if-range"), file.size
        )
        headers = {
            "Content-Type": file.media_type,
            "Content-Disposition": disposition,
            "Accept-Ranges": "bytes",
        }
        stored = await self.open_stored(file.key, wanted)
        if wanted is None:
            headers["Content-Length"] = str(file.size)
            return Stream(chunks_of(stored, None), headers=headers)
        headers["Content-Length"] = str(wanted.length)
        headers["Content-Range"] = wanted.content_range()
        return Stream(chunks_of(stored, wanted.length), status_code=206, headers=headers)

    def link_expiry(self, job: JobSnapshot, now: datetime) -> datetime:
        """When a download answered now, through no signed link (a facade's route behind
        a token), may work until: ``http.url_lifetime`` from ``now``, never past the
        files' expiry."""
        until = now + timedelta(seconds=self.settings.http.url_lifetime)
        return min(until, job.expires_at) if job.expires_at is not None else until

    async def open_stored(self, key: str, wanted: ByteRange | None) -> BinaryIO:
        """The stored file ``key`` (from the start of the range ``wanted``), opened before
        the answer starts, so that a storage whose server is down is a ``503`` the client
        may try again (after ``Retry-After``), not a download cut short.  The answer
        names no endpoint, bucket nor key: the storage's own message is logged."""
        try:
            if wanted is None:
                return await asyncio.to_thread(self.storage.open, key)
            return await asyncio.to_thread(self.storage.open_range, key, wanted.start, wanted.stop)
        except FileNotFoundError:
            raise Gone("the file is no longer stored") from None
        except PASSING_FAILURES as exc:
            log.warning(
                "the %s storage cannot be reached for %r: %s: %s",
                *(self.storage.name, key, type(exc).__name__, exc),
            )
            raise Unavailable(
                f"the {self.storage.name} storage cannot be reached; try again",
                retry_after=STORAGE_RETRY_AFTER,
            ) from exc

    def caller(self, request: AnyConnection, permission: str) -> Caller:
        """Who sent ``request``, if their token allows ``permission`` in an active
        organisation; :class:`Unauthorized` or :class:`Forbidden` otherwise.

        The token comes as ``Authorization: Bearer <token>`` (or ``Token <token>``),
        or as ``X-Auth-Token`` with ``X-User-Id`` naming its user.
        """
        caller = self.identify(request)
        caller.require(permission)
        return caller

    def identify(self, request: AnyConnection) -> Caller:
        """Who sent ``request``, whatever they may do; :class:`Unauthorized` if unknown."""
        token, user_id = credentials(request)
        caller = self.tenants.authenticate(token)
        if user_id is not None and user_id != caller.user.id:
            raise Unauthorized("X-User-Id does not match the token's user")
        return caller

    def base_url(self, request: AnyConnection) -> str:
        """The API's base URL for absolute links, without a trailing slash."""
        configured = self.settings.http.public_url
        return (configured or str(request.base_url)).rstrip("/")


def content_disposition(name: str) -> str:
    """An attachment header for ``name``, safe for any name (RFC 6266)."""
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def api_of(connection: AnyConnection) -> HttpApi:
    """The running exportd a request reaches."""
    api: HttpApi = connection.app.state.api
    return api


def requires(permission: str) -> Guard:
    """A route guard: the caller must have ``permission`` in an active organisation.
    It runs before the body is read, so a stranger learns nothing from a 400; the
    handler finds the caller with :func:`caller_of`."""

    def guard(connection: AnyConnection, _: BaseRouteHandler) -> None:
        connection.state.caller = api_of(connection).caller(connection, permission)

    return guard


def caller_of(connection: AnyConnection) -> Caller:
    """The caller a :func:`requires` guard let through."""
    caller: Caller = connection.state.caller
    return caller


def credentials(request: AnyConnection) -> tuple[str, str | None]:
    """The token a request carries and the user id it claims, if any."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip():
        return token.strip(), request.headers.get("x-user-id")
    token = request.headers.get("x-auth-token", "").strip()
    if token:
        return token, request.headers.get("x-user-id")
    raise Unauthorized("no token: send Authorization: Bearer <token>")


async def chunks_of(file: BinaryIO, left: int | None) -> AsyncIterator[bytes]:
    """What ``file`` holds (at most ``left`` bytes, if given), chunk by chunk, read in a
    thread; the file is closed at the end."""
    try:
        while left is None or left > 0:
            size = READ_CHUNK if left is None else min(READ_CHUNK, left)
            chunk = await asyncio.to_thread(file.read, size)
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        file.close()
