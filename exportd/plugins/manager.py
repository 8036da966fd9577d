"""The plugin manager: built-ins, entry-point plugins, and the names they register."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar, cast

import pluggy

from exportd.config import Settings
from exportd.errors import InvalidRequest, PluginError
from exportd.messages import Delivery
from exportd.plugins import hookspecs
from exportd.plugins.api import DeliveryMethod, Format, Source, Storage

ENTRY_POINT_GROUP = "exportd"
BUILTIN_PLUGINS = (
    "exportd.plugins.sources.rooms",
    "exportd.plugins.sources.workflows",
    "exportd.plugins.sources.qna",
    "exportd.plugins.formats.csv",
    "exportd.plugins.formats.xlsx",
    "exportd.plugins.formats.txt",
    "exportd.plugins.formats.html",
    "exportd.plugins.formats.json",
    "exportd.plugins.storages.local",
    "exportd.plugins.deliveries.email",
)
"""The built-in plugins every process loads, less those ``disable_plugins`` blocks."""
BUILTIN_ROUTE_PLUGINS = (
    "exportd.http.facades.giosg_reports",
    "exportd.http.facades.giosg_workflows",
    "exportd.http.facades.rocketchat",
    "exportd.http.facades.talkdesk",
    "exportd.http.facades.ibm_video",
)
"""The built-in plugins that add HTTP routes (the seed-compatible APIs): loaded by
:meth:`Plugins.http_routes`, where the HTTP API is built, so that a process without
one (a worker, ``exportd export``) imports no HTTP code."""

D = TypeVar("D", Source[Any], Format[Any], Storage, DeliveryMethod)
FILE_DELIVERY = "file"
"""The delivery type that sends nothing: the file waits for its download."""


@dataclass(frozen=True)
class Registered:
    """A source or format together with the plugin and package it came from."""

    name: str
    plugin: str
    package: str
    description: str


class Plugins:
    """The sources and formats of every enabled plugin, by name.

    Build it with :func:`load_plugins`; tests may build one from their own
    plugin objects with ``Plugins(extra=[...], builtins=False)``.
    """

    def __init__(
        self,
        *,
        builtins: bool = True,
        entry_points: bool = True,
        extra: Iterable[object] = (),
        blocked: Iterable[str] = (),
        settings: Settings | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for name in blocked:
            self.pm.set_blocked(name)
        self._packages: dict[str, str] = {}
        self._origins: dict[tuple[str, str], Registered] = {}
        self._builtins = builtins
        if builtins:
            self._load_builtins(BUILTIN_PLUGINS)
        if entry_points:
            self._load_entry_points()
        for plugin in extra:
            self._register(plugin, getattr(plugin, "__name__", repr(plugin)), "(registered)")
        self.sources: Mapping[str, Source[Any]] = self._collect(
            self.pm.hook.exportd_sources, "source", Source
        )
        self.formats: Mapping[str, Format[Any]] = self._collect(
            self.pm.hook.exportd_formats, "format", Format
        )
        self.storages: Mapping[str, Storage] = self._collect(
            self.pm.hook.exportd_storages, "storage", Storage, settings=settings or Settings()
        )
        self.deliveries: Mapping[str, DeliveryMethod] = self._collect(
            self.pm.hook.exportd_deliveries,
            "delivery",
            DeliveryMethod,
            settings=settings or Settings(),
        )

    def _load_builtins(self, module_names: Iterable[str]) -> None:
        """Import and register the built-in plugins ``module_names``, but those blocked
        (which are not even imported) or registered already."""
        for name in module_names:
            if not self.pm.is_blocked(name) and not self.pm.has_plugin(name):
                self._register(importlib.import_module(name), name, "exportd")

    def _register(self, plugin: object, name: str, package: str) -> None:
        if self.pm.is_blocked(name):
            return
        self.pm.register(plugin, name=name)
        self._packages[name] = package

    def _load_entry_points(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if self.pm.is_blocked(ep.name) or self.pm.has_plugin(ep.name):
                continue
            package = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from {package} failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            self._register(plugin, ep.name, package)

    def _collect(
        self, hook: pluggy.HookCaller, kind: str, expected: type, **arguments: Any
    ) -> dict[str, Any]:
        """Every plugin's descriptors from one registration hook, by name.

        Each plugin's implementation is called on its own, so that a failure,
        a wrong return value or a name clash names the plugin responsible.
        """
        found: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for impl in reversed(hook.get_hookimpls()):
            for descriptor in _descriptors(impl, hook.name, expected, arguments):
                name = descriptor.name
                if name in found:
                    raise PluginError(
                        f"{kind} {name!r} is registered by two plugins: "
                        f"{owner[name]!r} and {impl.plugin_name!r}; block one with "
                        "EXPORTD_DISABLE_PLUGINS"
                    )
                found[name] = descriptor
                owner[name] = impl.plugin_name
                self._origins[(kind, name)] = Registered(
                    name=name,
                    plugin=impl.plugin_name,
                    package=self._packages.get(impl.plugin_name, "?"),
                    description=descriptor.description,
                )
        return dict(sorted(found.items()))

    def http_routes(self, api: object) -> list[Any]:
        """Every plugin's extra HTTP routes (see ``exportd_http_routes``); a plugin that
        fails is named.  The built-in route plugins (:data:`BUILTIN_ROUTE_PLUGINS`) are
        loaded here, the first time."""
        if self._builtins:
            self._load_builtins(BUILTIN_ROUTE_PLUGINS)
        routes: list[Any] = []
        for impl in reversed(self.pm.hook.exportd_http_routes.get_hookimpls()):
            try:
                routes.extend(cast(Iterable[Any], impl.function(api=api) or ()))
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in exportd_http_routes(): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        return routes

    def source(self, name: str, field: str = "source") -> Source[Any]:
        """The source called ``name``, or an invalid-request error naming ``field``."""
        return _lookup(self.sources, name, field, "source")

    def storage(self, name: str, field: str = "storage") -> Storage:
        """The storage called ``name``, or an invalid-request error naming ``field``."""
        return _lookup(self.storages, name, field, "storage")

    def format(self, name: str, field: str = "format") -> Format[Any]:
        """The format called ``name``, or an invalid-request error naming ``field``."""
        return _lookup(self.formats, name, field, "format")

    def delivery(self, name: str, field: str = "delivery.type") -> DeliveryMethod:
        """The delivery method called ``name``, or an invalid-request error naming ``field``."""
        return _lookup(self.deliveries, name, field, "delivery method")

    def check_delivery(self, delivery: Delivery) -> None:
        """Refuse a request's ``delivery`` that its method cannot carry out (an email
        delivery with no address, say), naming the field; ``file`` needs nothing."""
        if delivery.type == FILE_DELIVERY:
            return
        if delivery.type not in self.deliveries:
            known = ", ".join([FILE_DELIVERY, *self.deliveries])
            raise InvalidRequest.field(
                "delivery.type", f"unknown delivery {delivery.type!r}; known: {known}"
            )
        self.delivery(delivery.type).validate(delivery)

    def origin(self, kind: str, name: str) -> Registered:
        """Which plugin and package registered the ``kind`` ("source", "format", "storage",
        "delivery") ``name``."""
        return self._origins[(kind, name)]


def _descriptors(
    impl: pluggy.HookImpl, hook: str, expected: type, arguments: dict[str, Any]
) -> list[Any]:
    """What one plugin's ``hook`` returns: ``expected`` instances with a name, or an error.

    The implementation gets, by keyword, the ``arguments`` it asks for.
    """
    wanted = {name: arguments[name] for name in impl.argnames}
    try:
        descriptors = list(cast(Iterable[Any], impl.function(**wanted) or ()))
    except Exception as exc:
        raise PluginError(
            f"plugin {impl.plugin_name!r} failed in {hook}(): {type(exc).__name__}: {exc}"
        ) from exc
    for descriptor in descriptors:
        if not isinstance(descriptor, expected) or not isinstance(
            getattr(descriptor, "name", None), str
        ):
            raise PluginError(
                f"plugin {impl.plugin_name!r}: {hook}() must return {expected.__name__} "
                f"instances with a name, got {descriptor!r}"
            )
    return descriptors


def _lookup(table: Mapping[str, D], name: str, field: str, kind: str) -> D:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(table) or "none"
        raise InvalidRequest.field(field, f"unknown {kind} {name!r}; known: {known}") from None


def load_plugins(settings: Settings) -> Plugins:
    """Every built-in and installed plugin, less those in ``settings.disable_plugins``."""
    return Plugins(blocked=settings.disable_plugins, settings=settings)
