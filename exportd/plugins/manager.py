"""The plugin manager: built-ins, entry-point plugins, and the names they register."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pluggy

from exportd.config import Settings
from exportd.errors import InvalidRequest, PluginError
from exportd.messages import Delivery
from exportd.plugins import hookspecs
from exportd.plugins.api import DeliveryMethod, Format, Source, Storage

if TYPE_CHECKING:  # the HTTP layer is imported only where the HTTP API is built
    from litestar.types import ControllerRouterHandler

    from exportd.http.context import HttpApi

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
    "exportd.http.facades.giosg_reports",
    "exportd.http.facades.giosg_workflows",
    "exportd.http.facades.rocketchat",
    "exportd.http.facades.talkdesk",
    "exportd.http.facades.ibm_video",
)

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
        if builtins:
            for module_name in BUILTIN_PLUGINS:
                self._register(importlib.import_module(module_name), module_name, "exportd")
        if entry_points:
            self._load_entry_points()
        for plugin in extra:
            self._register(plugin, getattr(plugin, "__name__", repr(plugin)), "(registered)")
        self._check_hooks()
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

    def _register(self, plugin: object, name: str, package: str) -> None:
        if self.pm.is_blocked(name):
            return
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            # pluggy's message repeats the plugin's name on its first line.
            said = "; ".join(str(exc).splitlines()[1:])
            raise PluginError(f"plugin {name!r} from {package} is invalid: {said}") from None
        self._packages[name] = package

    def _check_hooks(self) -> None:
        """Refuse a plugin that implements a hook exportd does not have (a misspelt
        ``exportd_source``), naming the plugin and the hook."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            unknown = [
                caller.name
                for caller in self.pm.get_hookcallers(exc.plugin) or []
                if not caller.has_spec()
            ]
            hooks = [hook for hook in dir(hookspecs) if hook.startswith(f"{hookspecs.PROJECT}_")]
            said = "; ".join(f"{hook}(){_suggestion(hook, hooks)}" for hook in unknown)
            raise PluginError(
                f"plugin {name!r} from {self._packages.get(name, '?')} implements a hook "
                f"exportd does not have: {said}"
            ) from None

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

    def http_routes(self, api: HttpApi) -> list[ControllerRouterHandler]:
        """Every plugin's extra HTTP routes (see ``exportd_http_routes``); a plugin that
        fails is named."""
        routes: list[ControllerRouterHandler] = []
        for impl in reversed(self.pm.hook.exportd_http_routes.get_hookimpls()):
            try:
                found = impl.function(api=api) or ()
                routes.extend(cast("Iterable[ControllerRouterHandler]", found))
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


def _suggestion(hook: str, hooks: list[str]) -> str:
    """`` (did you mean exportd_sources()?)`` naming the hook most like ``hook``, if one is."""
    close = difflib.get_close_matches(hook, hooks, n=1)
    return f" (did you mean {close[0]}()?)" if close else ""


def _lookup(table: Mapping[str, D], name: str, field: str, kind: str) -> D:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(table) or "none"
        raise InvalidRequest.field(field, f"unknown {kind} {name!r}; known: {known}") from None


def load_plugins(settings: Settings) -> Plugins:
    """Every built-in and installed plugin, less those in ``settings.disable_plugins``."""
    return Plugins(blocked=settings.disable_plugins, settings=settings)
