"""The hooks a plugin may implement.  Every hook is optional.

Built-in sources and formats are registered through these same hooks, so
``exportd/plugins/sources`` and ``exportd/plugins/formats`` are worked examples.

The registration hooks may ask for ``config``: their plugin's settings, its
``[plugins.NAME]`` table converted into the Struct that ``exportd_plugin_config``
returns (:class:`~exportd.NoConfig` for a plugin without one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
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
def exportd_plugin_config() -> type[msgspec.Struct]:
    """Return the msgspec Struct class that this plugin's settings are checked against.

    Called once when the plugin manager starts, before the registration hooks.  The
    plugin's ``[plugins.NAME]`` table of ``exportd.toml`` and its
    ``EXPORTD_PLUGINS__NAME__KEY`` variables are converted into it, as a request's
    ``params`` are into a source's ``Params``: an unknown key or a bad value stops
    exportd with an error naming the key (``plugins.NAME.KEY``).  ``NAME`` is the last
    part of the plugin's name: its entry-point name, or a built-in's module name
    (``email``).  Declare the Struct with ``forbid_unknown_fields=True`` (a Struct
    without is refused) and a default for every key that may be left out.  The
    registration hooks then get the converted settings as ``config``; one that finds
    them wrong in a way the Struct cannot say raises :class:`~exportd.ConfigError`
    naming the key (``ConfigError.field("plugins.NAME.KEY", message)``).
    """
    raise NotImplementedError


@hookspec
def exportd_sources(config: msgspec.Struct) -> Iterable[Source[Any]]:
    """Return the sources this plugin adds, configured from ``config``.

    Called once when the plugin manager starts (CLI start, engine start,
    worker start).  Each :class:`~exportd.Source` needs a ``name`` that no
    other plugin uses; a clash is an error that names both plugins.
    """
    raise NotImplementedError


@hookspec
def exportd_formats(config: msgspec.Struct) -> Iterable[Format[Any]]:
    """Return the output formats this plugin adds, configured from ``config``.

    Called once when the plugin manager starts.  Each :class:`~exportd.Format`
    needs a ``name`` that no other plugin uses; a clash is an error that names
    both plugins.
    """
    raise NotImplementedError


@hookspec
def exportd_storages(settings: Settings, config: msgspec.Struct) -> Iterable[Storage]:
    """Return the storages this plugin adds, configured from ``config`` (and exportd's
    ``settings``).

    Called once when the plugin manager starts.  The ``storage`` setting names
    the one in use (``local``, a directory under ``EXPORTD_HOME``, is built in).
    Each needs a ``name`` that no other plugin uses.
    """
    raise NotImplementedError


@hookspec
def exportd_deliveries(settings: Settings, config: msgspec.Struct) -> Iterable[DeliveryMethod]:
    """Return the delivery methods this plugin adds, configured from ``config`` (and
    exportd's ``settings``).

    Called once when the plugin manager starts.  A request's ``delivery.type``
    names the method that sends its files once the job is done (``email``, over
    the SMTP server of ``[plugins.email]``, is built in; ``file``, the default,
    sends nothing).  Each needs a ``name`` that no other plugin uses.
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
