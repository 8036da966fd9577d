"""The hooks a plugin may implement.  Every hook is optional.

Built-in sources and formats are registered through these same hooks, so
``exportd/plugins/sources`` and ``exportd/plugins/formats`` are worked examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from exportd.config import Settings
from exportd.plugins.api import DeliveryMethod, Format, Source, Storage

if TYPE_CHECKING:  # the HTTP layer is imported only where the HTTP API is built
    from litestar.types import ControllerRouterHandler

    from exportd.http.context import HttpApi

PROJECT = "exportd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def exportd_sources() -> Iterable[Source[Any]]:
    """Return the sources this plugin adds.

    Called once when the plugin manager starts (CLI start, engine start,
    worker start).  Each :class:`~exportd.Source` needs a ``name`` that no
    other plugin uses; a clash is an error that names both plugins.
    """
    raise NotImplementedError


@hookspec
def exportd_formats() -> Iterable[Format[Any]]:
    """Return the output formats this plugin adds.

    Called once when the plugin manager starts.  Each :class:`~exportd.Format`
    needs a ``name`` that no other plugin uses; a clash is an error that names
    both plugins.
    """
    raise NotImplementedError


@hookspec
def exportd_storages(settings: Settings) -> Iterable[Storage]:
    """Return the storages this plugin adds, configured from ``settings``.

    Called once when the plugin manager starts.  The ``storage`` setting names
    the one in use (``local``, a directory under ``EXPORTD_HOME``, is built in).
    Each needs a ``name`` that no other plugin uses.
    """
    raise NotImplementedError


@hookspec
def exportd_deliveries(settings: Settings) -> Iterable[DeliveryMethod]:
    """Return the delivery methods this plugin adds, configured from ``settings``.

    Called once when the plugin manager starts.  A request's ``delivery.type``
    names the method that sends its files once the job is done (``email``, over
    the ``[email]`` SMTP server, is built in; ``file``, the default, sends
    nothing).  Each needs a ``name`` that no other plugin uses.
    """
    raise NotImplementedError


@hookspec
def exportd_http_routes(api: HttpApi) -> Iterable[ControllerRouterHandler]:
    """Return HTTP routes to add to the API: Litestar route handlers, controllers or
    ``Router`` s.

    Called once when the HTTP API starts (``exportd serve``, ``exportd engine``),
    with ``api``, an :class:`~exportd.HttpApi`: the engine's Python API
    (``api.engine``), who is calling (``api.caller(request, permission)``),
    download URLs (``api.signer``) and the settings.  The seed-compatible APIs in
    ``exportd/http/facades`` are worked examples.  A route whose path another
    plugin already uses is an error that the framework reports at start.
    """
    raise NotImplementedError
