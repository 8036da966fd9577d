"""The plugin manager: registration, name clashes, blocking, failing entry points."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from exportd import InvalidRequest, PluginError, hookimpl
from exportd.cli import main
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


def test_a_misspelt_hook_is_an_error_naming_the_plugin_and_the_hook() -> None:
    typo = types.ModuleType("typo_plugin")

    @hookimpl
    def exportd_source() -> list[Any]:
        return [toy_plugins.CountSource()]

    typo.exportd_source = exportd_source  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[typo])
    assert str(caught.value) == (
        "plugin 'typo_plugin' from (registered) implements a hook exportd does not have: "
        "exportd_source() (did you mean exportd_sources()?)"
    )


def test_a_misspelt_hook_of_an_installed_plugin_names_its_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typo = types.ModuleType("exportd_typo_plugin")

    @hookimpl
    def exportd_formats_list() -> list[Any]:
        return []

    typo.exportd_formats_list = exportd_formats_list  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "exportd_typo_plugin", typo)
    installed = EntryPoint(name="typo", value="exportd_typo_plugin", group="exportd")
    monkeypatch.setattr(manager, "entry_points", lambda group: [installed])
    with pytest.raises(PluginError, match=r"^plugin 'typo' from exportd_typo_plugin implements"):
        Plugins(builtins=False)


def test_a_hook_taking_an_argument_the_hook_lacks_is_a_one_line_plugin_error() -> None:
    wrong = types.ModuleType("wrong_plugin")

    @hookimpl
    def exportd_storages(setings: object) -> list[Any]:
        return []

    wrong.exportd_storages = exportd_storages  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[wrong])
    message = str(caught.value)
    assert message.startswith("plugin 'wrong_plugin' from (registered) is invalid: ")
    assert "exportd_storages(setings: 'object')" in message
    assert "Argument(s) {'setings'} are declared in the hookimpl" in message
    assert "\n" not in message


def test_the_cli_reports_a_misspelt_hook_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = types.ModuleType("exportd_typo_plugin")

    @hookimpl
    def exportd_source() -> list[Any]:
        return []

    typo.exportd_source = exportd_source  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "exportd_typo_plugin", typo)
    installed = EntryPoint(name="typo", value="exportd_typo_plugin", group="exportd")
    monkeypatch.setattr(manager, "entry_points", lambda group: [installed])
    assert main(["plugins"]) == 1
    assert capsys.readouterr().err == (
        "exportd: error: plugin 'typo' from exportd_typo_plugin implements a hook exportd "
        "does not have: exportd_source() (did you mean exportd_sources()?)\n"
    )
