"""The plugin manager: registration, name clashes, blocking, failing entry points, and
the built-in route plugins, loaded only for the HTTP API."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from exportd import InvalidRequest, PluginError, hookimpl
from exportd.plugins import manager
from exportd.plugins.manager import Plugins
from tests.unit import toy_plugins


def test_a_registered_plugin_provides_its_sources_and_formats() -> None:
    plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins])
    assert list(plugins.sources) == ["count"]
    assert list(plugins.formats) == ["lines"]
    origin = plugins.origin("source", "count")
    assert origin.plugin == "tests.unit.toy_plugins"
    assert origin.description == "counts"


def test_unknown_names_are_errors_naming_the_field_and_the_choices() -> None:
    plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins])
    with pytest.raises(InvalidRequest) as caught:
        plugins.format("nope")
    assert caught.value.fields[0].name == "format"
    assert "unknown format 'nope'; known: lines" in caught.value.fields[0].message


def test_two_plugins_registering_one_name_is_an_error_naming_both() -> None:
    twin = types.ModuleType("twin_plugin")

    @hookimpl
    def exportd_formats() -> list[Any]:
        return [toy_plugins.LinesFormat()]

    twin.exportd_formats = exportd_formats  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[toy_plugins, twin])
    message = str(caught.value)
    assert "format 'lines'" in message
    assert "tests.unit.toy_plugins" in message
    assert "twin_plugin" in message


def test_a_blocked_plugin_is_not_loaded() -> None:
    plugins = Plugins(
        builtins=False, entry_points=False, extra=[toy_plugins], blocked=["tests.unit.toy_plugins"]
    )
    assert not plugins.sources


def test_an_entry_point_that_fails_to_import_names_the_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = EntryPoint(name="broken", value="exportd_no_such_module_xyz", group="exportd")
    monkeypatch.setattr(manager, "entry_points", lambda group: [broken])
    with pytest.raises(PluginError) as caught:
        Plugins(builtins=False)
    assert "plugin 'broken'" in str(caught.value)
    assert "ModuleNotFoundError" in str(caught.value)
    assert "exportd_no_such_module_xyz" not in sys.modules


def test_a_blocked_entry_point_is_not_even_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint(name="broken", value="exportd_no_such_module_xyz", group="exportd")
    monkeypatch.setattr(manager, "entry_points", lambda group: [broken])
    plugins = Plugins(builtins=False, blocked=["broken"])
    assert not plugins.formats


def test_the_built_in_route_plugins_load_when_the_routes_are_asked_for_once() -> None:
    plugins = Plugins(entry_points=False)
    assert not any(plugins.pm.has_plugin(name) for name in manager.BUILTIN_ROUTE_PLUGINS)
    routes = plugins.http_routes(api=None)
    assert all(plugins.pm.has_plugin(name) for name in manager.BUILTIN_ROUTE_PLUGINS)
    assert len(routes) == len(manager.BUILTIN_ROUTE_PLUGINS)  # one Router each
    assert len(plugins.http_routes(api=None)) == len(routes)


def test_a_blocked_route_plugin_adds_no_routes_nor_do_the_built_ins_when_left_out() -> None:
    blocked = manager.BUILTIN_ROUTE_PLUGINS[0]
    plugins = Plugins(entry_points=False, blocked=[blocked])
    assert len(plugins.http_routes(api=None)) == len(manager.BUILTIN_ROUTE_PLUGINS) - 1
    assert not plugins.pm.has_plugin(blocked)
    assert Plugins(builtins=False, entry_points=False).http_routes(api=None) == []


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        (RuntimeError("boom"), "plugin 'sloppy' failed in exportd_formats(): RuntimeError: boom"),
        ([object()], "plugin 'sloppy': exportd_formats() must return Format instances"),
        (toy_plugins.LinesFormat(), "plugin 'sloppy' failed in exportd_formats(): TypeError"),
    ],
)
def test_a_hook_that_fails_or_returns_junk_is_an_error_naming_the_plugin(
    returns: Any, message: str
) -> None:
    sloppy = types.ModuleType("sloppy")

    @hookimpl
    def exportd_formats() -> Any:
        if isinstance(returns, Exception):
            raise returns
        return returns

    sloppy.exportd_formats = exportd_formats  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[sloppy])
    assert message in str(caught.value)
