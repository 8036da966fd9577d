"""The plugin manager: built-ins, entry-point plugins, and the names they register."""

from __future__ import annotations

import importlib
import os
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgspec
import pluggy

from exportd.config import Settings, plugin_config
from exportd.errors import ConfigError, InvalidRequest, PluginError
from exportd.messages import Delivery
from exportd.plugins import hookspecs
from exportd.plugins.api import DeliveryMethod, Format, NoConfig, Source, Storage

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
    "exportd.plugins.storages.s3",
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

    Each plugin's settings (``settings.plugins[NAME]``, see :func:`settings_table`) are
    converted into its ``Config`` before its registration hooks run, which get them as
    ``config``.  With every plugin loaded (built-ins and entry points), settings for a
    plugin that is neither loaded nor blocked are an error naming it.
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
        blocked = tuple(blocked)
        self.pm = _PluginManager(hookspecs.PROJECT)
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
        self._check_hooks()
        settings = settings or Settings()
        if builtins and entry_points:
            _check_tables(settings, self._packages, blocked)
        configs = self._configs(settings)
        self.sources: Mapping[str, Source[Any]] = self._collect(
            self.pm.hook.exportd_sources, "source", Source, configs
        )
        self.formats: Mapping[str, Format[Any]] = self._collect(
            self.pm.hook.exportd_formats, "format", Format, configs
        )
        self.storages: Mapping[str, Storage] = self._collect(
            self.pm.hook.exportd_storages, "storage", Storage, configs, settings=settings
        )
        self.deliveries: Mapping[str, DeliveryMethod] = self._collect(
            self.pm.hook.exportd_deliveries, "delivery", DeliveryMethod, configs, settings=settings
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
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from {ep.package} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self._register(plugin, ep.name, ep.package)

    def _configs(self, settings: Settings) -> dict[str, msgspec.Struct]:
        """Every loaded plugin's settings, converted into its ``Config``, by plugin."""
        types: dict[str, type[msgspec.Struct]] = {}
        for impl in self.pm.hook.exportd_plugin_config.get_hookimpls():
            types[impl.plugin_name] = _config_type(impl)
        owners: dict[str, str] = {}
        for plugin in self._packages:
            table = settings_table(plugin)
            other = owners.setdefault(table, plugin)
            # Two plugins of one name (an entry point "csv" beside the built-in) are fine
            # as long as neither takes settings, and none are given.
            if other != plugin and (types.keys() & {plugin, other} or table in settings.plugins):
                raise PluginError(
                    f"plugins {other!r} and {plugin!r} would share the settings "
                    f"[plugins.{table}]; block one with EXPORTD_DISABLE_PLUGINS"
                )
        return {
            plugin: plugin_config(
                table, settings.plugins.get(table, {}), types.get(plugin, NoConfig)
            )
            for plugin, table in ((plugin, settings_table(plugin)) for plugin in self._packages)
        }

    def _collect(
        self,
        hook: pluggy.HookCaller,
        kind: str,
        expected: type,
        configs: Mapping[str, msgspec.Struct],
        **arguments: Any,
    ) -> dict[str, Any]:
        """Every plugin's descriptors from one registration hook, by name; each plugin's
        implementation gets its own settings from ``configs`` as ``config``.

        Each plugin's implementation is called on its own, so that a failure,
        a wrong return value or a name clash names the plugin responsible.
        """
        found: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for impl in reversed(hook.get_hookimpls()):
            given = {**arguments, "config": configs[impl.plugin_name]}
            for descriptor in _descriptors(impl, hook.name, expected, given):
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
        fails is named.  The built-in route plugins (:data:`BUILTIN_ROUTE_PLUGINS`) are
        loaded here, the first time."""
        if self._builtins:
            self._load_builtins(BUILTIN_ROUTE_PLUGINS)
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


HOOKABLE = (types.FunctionType, types.MethodType, staticmethod, classmethod)
"""What pluggy takes for a hook implementation: anything else is none."""


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, quicker to register a module: each of its names is looked up in
    its namespace, not through :func:`inspect.getattr_static` (some 10 us a name, and a
    built-in plugin module has 50 names: its imports and constants)."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """The hook options of ``plugin``'s ``name``, or ``None`` if it is no hook."""
        # A plain module's attributes are its namespace; what is not hookable there
        # is not a hook (getattr_static finds the same value, and nothing hookable on
        # the module type).
        if type(plugin) is types.ModuleType and not isinstance(vars(plugin).get(name), HOOKABLE):
            return None
        return super().parse_hookimpl_opts(plugin, name)


def _descriptors(
    impl: pluggy.HookImpl, hook: str, expected: type, arguments: dict[str, Any]
) -> list[Any]:
    """What one plugin's ``hook`` returns: ``expected`` instances with a name, or an error.

    The implementation gets, by keyword, the ``arguments`` it asks for.
    """
    wanted = {name: arguments[name] for name in impl.argnames}
    try:
        descriptors = list(cast(Iterable[Any], impl.function(**wanted) or ()))
    except ConfigError:  # about the plugin's own settings, naming the key
        raise
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


@dataclass(frozen=True)
class EntryPoint:
    """An entry point an installed distribution declares: its name, the object it names
    (``module`` or ``module:attribute``) and the distribution's name and version."""

    name: str
    value: str
    package: str

    def load(self) -> Any:
        """The object the entry point names, its module imported (as importlib.metadata's
        ``EntryPoint.load`` does)."""
        found = _OBJECT_REFERENCE.match(self.value)
        if found is None:
            raise ValueError(f"{self.value!r} names no module (module or module:attribute)")
        loaded: Any = importlib.import_module(found["module"])
        for attribute in filter(None, (found["attr"] or "").split(".")):
            loaded = getattr(loaded, attribute)
        return loaded


_OBJECT_REFERENCE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?(\[.*\]\s*)?$")
"""An entry point's value, as importlib.metadata reads it (extras, in brackets, ignored)."""
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group``, the ones ``importlib.metadata.entry_points(
    group=group)`` finds in the folders of ``sys.path`` (the first distribution of each
    name on the path counts), found without importing importlib.metadata, which with
    what it imports (the email package's parser, zipfile...) is 8-10 ms of every
    command's start-up; of the other distributions only ``entry_points.txt`` is read
    (150 of them: some 4 ms).  A zip file on the path, which importlib.metadata reads
    too, is passed over: plugins are installed into folders."""
    section = f"[{group}]"  # in any line that importlib.metadata reads as the group's
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for folder in sys.path:
        try:
            children = os.listdir(folder or ".")
        except OSError:  # a zip file, or a folder that is not there
            continue
        for child in children:
            stem, suffix = os.path.splitext(child)
            if suffix.lower() not in _METADATA_SUFFIXES:
                continue
            name = _normalized(stem.partition("-")[0])
            if name in seen:
                continue
            seen.add(name)
            info = os.path.join(folder, child)
            text = _read(info, "entry_points.txt")
            if text is not None and section in text:
                package = _package(info)
                found.extend(
                    EntryPoint(key, value, package) for key, value in _section(text, group)
                )
    return found


def _normalized(name: str) -> str:
    """A distribution's name as importlib.metadata tells distributions apart by."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _read(info: str, name: str) -> str | None:
    """The text of the file ``name`` of the metadata folder ``info``, if it has one."""
    try:
        with open(os.path.join(info, name), encoding="utf-8") as file:
            return file.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of the section ``[group]`` of an ``entry_points.txt``,
    read as importlib.metadata reads them (lines stripped, blank and ``#`` lines
    skipped, a line in brackets starts the section its text without the brackets
    names)."""
    pairs = []
    current = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line.strip("[]")
        elif current == group:
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def _package(info: str) -> str:
    """``NAME VERSION`` of the distribution whose metadata folder is ``info``, from its
    ``METADATA`` (``PKG-INFO`` for an egg) headers."""
    text = _read(info, "METADATA") or _read(info, "PKG-INFO") or ""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line
        key, colon, value = line.partition(":")
        if colon and not key[:1].isspace():
            headers.setdefault(key.lower(), value.strip())
    return f"{headers.get('name')} {headers.get('version')}"


def settings_table(plugin: str) -> str:
    """The name of a plugin's settings table, ``[plugins.NAME]``: the last part of the
    plugin's name (``email`` for the built-in ``exportd.plugins.deliveries.email``, the
    entry-point name of an installed plugin)."""
    return plugin.rpartition(".")[2]


def _config_type(impl: pluggy.HookImpl) -> type[msgspec.Struct]:
    """The Struct one plugin's ``exportd_plugin_config()`` returns, or an error naming
    the plugin."""
    try:
        found = impl.function()
    except Exception as exc:
        raise PluginError(
            f"plugin {impl.plugin_name!r} failed in exportd_plugin_config(): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(found, type) and issubclass(found, msgspec.Struct)):
        raise PluginError(
            f"plugin {impl.plugin_name!r}: exportd_plugin_config() must return a msgspec "
            f"Struct class, got {found!r}"
        )
    if not found.__struct_config__.forbid_unknown_fields:
        raise PluginError(
            f"plugin {impl.plugin_name!r}: its settings {found.__name__} must be declared "
            "with forbid_unknown_fields=True, so that a misspelt key is an error"
        )
    return found


def _check_tables(settings: Settings, loaded: Iterable[str], blocked: Iterable[str]) -> None:
    """Refuse settings for a plugin that is not loaded, unless it is blocked (absent on
    purpose): a misspelt or a missing plugin's settings would go unused."""
    known = {settings_table(plugin) for plugin in loaded}
    absent = {settings_table(plugin) for plugin in blocked}
    for table in settings.plugins:
        if table in known or table in absent:
            continue
        import difflib  # for this error only: a command that starts imports none

        close = difflib.get_close_matches(table, sorted(known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"configuration key 'plugins.{table}': no plugin {table!r} is loaded; {hint}"
            "install it, or block it with EXPORTD_DISABLE_PLUGINS where it is absent on "
            "purpose",
            [],
        )


def _suggestion(hook: str, hooks: list[str]) -> str:
    """`` (did you mean exportd_sources()?)`` naming the hook most like ``hook``, if one is."""
    import difflib

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
