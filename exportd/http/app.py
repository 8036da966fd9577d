"""The HTTP application: native API, downloads, health, OpenAPI and the routes of
plugins; and serving it with uvicorn in the engine's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from exportd.bus.local import LocalBus
from exportd.config import Settings
from exportd.config.settings import host_and_port
from exportd.engine.service import Engine
from exportd.errors import ConfigError, InvalidRequest
from exportd.http import admin, native
from exportd.http.access_log import log_answer
from exportd.http.answers import watched
from exportd.http.context import AnyRequest, CheckedRequest, HttpApi, api_of
from exportd.http.deadline import HttpConfig
from exportd.http.errors import HANDLERS
from exportd.http.metrics import HttpMetrics, metrics_route
from exportd.plugins.manager import Plugins

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048
OPENAPI_PATH = "/v1/openapi"
"""The OpenAPI document is at ``/v1/openapi/openapi.json``, Swagger UI at ``/v1/openapi``."""


class Health(msgspec.Struct, kw_only=True):
    """Whether exportd answers (``/healthz``) or can take work (``/readyz``)."""

    status: str


@get("/healthz", summary="The process answers", include_in_schema=False)
async def healthz() -> Health:
    """Always ok while the server runs."""
    return Health(status="ok")


@get("/readyz", summary="The engine can take work", include_in_schema=False)
async def readyz(request: AnyRequest) -> Health:
    """Ok when the engine runs and its job store answers; 503 (or 500 when the store
    fails) with the error body otherwise."""
    await api_of(request).engine.ready()
    return Health(status="ready")


def build_app(api: HttpApi) -> Litestar:
    """The application for ``api``, with every plugin's routes."""
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics_route,
            native.jobs,
            native.files,
            admin.admin,
            *api.plugins.http_routes(api),
        ],
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        request_class=CheckedRequest,
        openapi_config=OpenAPIConfig(
            title="exportd",
            version="1",
            description="Exports of conversation data: jobs, their files, and exports "
            "answered at once.  Errors have one body: {code, message, fields}.",
            path=OPENAPI_PATH,
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(
                security_schemes={"token": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        logging_config=None,
    )
    app.state.api = api
    return app


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document the HTTP API serves at ``/v1/openapi/openapi.json``, with the
    routes of the built-in plugins only (what ``docs/schemas/openapi.json`` ships).

    It is built from an application over a scratch home, so nothing of ``settings.home``
    is opened or changed.
    """
    with tempfile.TemporaryDirectory(prefix="exportd-openapi-") as home:
        scratch = msgspec.structs.replace(settings, home=home)
        plugins = Plugins(settings=scratch, entry_points=False)
        api = HttpApi(Engine(LocalBus(), plugins, scratch), plugins, scratch)
        try:
            return build_app(api).openapi_schema.to_schema()
        finally:
            api.close()


def parse_listen(value: str, field: str = "--http") -> tuple[str, int]:
    """``HOST:PORT`` as a host and a port; :class:`InvalidRequest` naming ``field``."""
    address = host_and_port(value)
    if address is None:
        raise InvalidRequest.field(field, f"expected HOST:PORT, got {value!r}")
    return address


def listen_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port``.

    Made as an explicit TCP socket because asyncio sets ``TCP_NODELAY`` only on
    connections of such a socket; without it, every answer on a kept-alive
    connection waits about 40 ms for the client's delayed acknowledgement.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(LISTEN_BACKLOG)
    except OSError:
        listening.close()
        raise
    return listening


class QuietServer(uvicorn.Server):
    """uvicorn's server, leaving signals alone: exportd's command stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no signal handlers."""
        yield


@contextlib.asynccontextmanager
async def serving_http(
    engine: Engine, plugins: Plugins, settings: Settings
) -> AsyncIterator[str | None]:
    """Serve the API on ``http.listen`` (unless it is ``off``) while the block runs;
    yields its base URL (or None)."""
    if settings.http.listen == "off":
        yield None
        return
    host, port = parse_listen(settings.http.listen, "http.listen")
    try:
        listening = listen_tcp(host, port)
    except OSError as exc:
        raise ConfigError(f"http.listen: cannot listen on {settings.http.listen}: {exc}") from None
    api = HttpApi(engine, plugins, settings)
    config = HttpConfig(
        watched(build_app(api), log_answer, engine.metrics.process.part(HttpMetrics).observe),
        header_timeout=settings.http.header_timeout,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.http.shutdown_grace),
    )
    server = QuietServer(config)
    serving = asyncio.create_task(server.serve(sockets=[listening]), name="exportd http")
    try:
        port = listening.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("HTTP API at %s (OpenAPI: %s%s)", url, url, OPENAPI_PATH)
        yield url
    finally:
        server.should_exit = True
        await serving
        listening.close()
        api.close()
