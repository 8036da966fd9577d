"""What every route handler works with: the engine, the tenants, the signer of
download URLs, and who is calling.  Route plugins get it as ``api``."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.response import File

from exportd.config import Settings
from exportd.engine.service import Engine
from exportd.engine.tenants import Caller, TenantStore
from exportd.errors import Unauthorized
from exportd.http.downloads import Signer
from exportd.http.sync import export_now
from exportd.messages import RequestFields
from exportd.plugins.manager import Plugins
from exportd.workers.workarea import WorkArea

AnyRequest = Request[Any, Any, State]
"""A request of any user, auth and state type."""
AnyConnection = ASGIConnection[Any, Any, Any, State]
Guard = Callable[[AnyConnection, BaseRouteHandler], None]
MAX_PAGE_NUMBER = 10**9
"""The highest page number a listing takes: pages past it hold nothing anyway."""
SECRET_FILE = "http-secret"
READ_CHUNK = 1 << 16


class HttpApi:
    """The HTTP layer's view of a running exportd, handed to every route plugin."""

    def __init__(self, engine: Engine, plugins: Plugins, settings: Settings) -> None:
        self.engine = engine
        self.plugins = plugins
        self.settings = settings
        self.storage = plugins.storage(settings.storage)
        self.tenants = TenantStore(settings.jobs_path)
        self.signer = Signer(settings.http.secret or stored_secret(settings.home_path))
        self.work_area = WorkArea(settings.work_path)
        self.work_area.open()

    def close(self) -> None:
        """Release the tenant store and the work area."""
        self.work_area.close()
        self.tenants.close()

    async def export_now(self, request: RequestFields) -> File:
        """Run a small export here and answer with its file (see :mod:`exportd.http.sync`)."""
        return await export_now(
            request,
            self.plugins,
            data_path=self.settings.data_path,
            work_area=self.work_area,
            max_rows=self.settings.http.sync_max_rows,
            batch_size=self.settings.batch_size,
        )

    async def read_file(self, key: str) -> AsyncIterator[bytes]:
        """The stored file ``key``, chunk by chunk, read in a thread."""
        file = await asyncio.to_thread(self.storage.open, key)
        try:
            while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
                yield chunk
        finally:
            file.close()

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

    def base_url(self, request: AnyRequest) -> str:
        """The API's base URL for absolute links, without a trailing slash."""
        configured = self.settings.http.public_url
        return (configured or str(request.base_url)).rstrip("/")


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


def stored_secret(home: Path) -> str:
    """The signing key kept in ``home``, made (readable by its owner only) if missing."""
    path = home / SECRET_FILE
    home.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made before, or by another process starting now
        pass
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    return path.read_text().strip()
