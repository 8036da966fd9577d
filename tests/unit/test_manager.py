"""The plugin manager: registration, name clashes, blocking, failing entry points, and
the built-in route plugins, loaded only for the HTTP API."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest

from exportd import (
    ConfigError,
    DeliveryContext,
    DeliveryMethod,
    InvalidRequest,
    JobSnapshot,
    NoConfig,
    PluginError,
    Settings,
    Storage,
    hookimpl,
)
from exportd.cli import main
from exportd.plugins import manager
from exportd.plugins.manager import EntryPoint, Plugins
from exportd.plugins.storages.local import LocalStorage
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
    broken = EntryPoint(name="broken", value="exportd_no_such_module_xyz", package="broken 1.0")
    monkeypatch.setattr(manager, "entry_points", lambda group: [broken])
    with pytest.raises(PluginError) as caught:
        Plugins(builtins=False)
    assert "plugin 'broken'" in str(caught.value)
    assert "ModuleNotFoundError" in str(caught.value)
    assert "exportd_no_such_module_xyz" not in sys.modules


def test_a_blocked_entry_point_is_not_even_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint(name="broken", value="exportd_no_such_module_xyz", package="broken 1.0")
    monkeypatch.setattr(manager, "entry_points", lambda group: [broken])
    plugins = Plugins(builtins=False, blocked=["broken"])
    assert not plugins.formats


def installed(folder: Path, dist: str, entry_points: str) -> None:
    """A distribution ``dist`` (``name-version``) in ``folder``, with ``entry_points``."""
    info = folder / f"{dist}.dist-info"
    info.mkdir(parents=True)
    name, _, version = dist.partition("-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_the_entry_points_found_are_those_importlib_metadata_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    installed(
        first, "exportd_one-1.0", "[exportd]\none = exportd_one\n[console_scripts]\nx = y:z\n"
    )
    installed(first, "exportd_two-2.0", "[exportd]\ntwo = exportd_two\n")
    # The same distribution further down the path, with an entry point of its own: shadowed.
    installed(second, "exportd_Two-1.0", "[exportd]\ntwo = old_two\nold = old_two\n")
    installed(second, "spaced-1.0", "[ exportd ]\nnot_ours = spaced\n[[exportd]]\nours = spaced\n")
    installed(second, "mention-1.0", "[other]\nsays = mention:at [exportd]\n")
    installed(second, "empty-1.0", "")
    monkeypatch.syspath_prepend(second)
    monkeypatch.syspath_prepend(first)
    expected = metadata.entry_points(group="exportd")
    assert {"one", "two", "ours"} <= set(expected.names)
    assert "old" not in expected.names
    assert manager.entry_points("exportd") == [
        EntryPoint(ep.name, ep.value, f"{ep.dist.metadata['Name']} {ep.dist.metadata['Version']}")
        for ep in expected
        if ep.dist is not None
    ]


def test_an_entry_point_loads_the_attribute_it_names() -> None:
    assert EntryPoint("x", "tests.unit.toy_plugins", "toy 1").load() is toy_plugins
    nested = EntryPoint("x", "exportd.plugins.manager : Plugins.http_routes [extra]", "toy 1")
    assert nested.load() is Plugins.http_routes
    with pytest.raises(ValueError, match="names no module"):
        EntryPoint("x", "not a module", "toy 1").load()


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


def test_a_module_s_hooks_are_found_whatever_holds_them() -> None:
    class Counting:
        @hookimpl
        def exportd_sources(self) -> list[Any]:
            return [toy_plugins.CountSource()]

        @hookimpl
        @staticmethod
        def exportd_formats() -> list[Any]:
            return [toy_plugins.LinesFormat()]

    mixed = types.ModuleType("mixed_plugin")
    mixed.exportd_sources = Counting().exportd_sources  # type: ignore[attr-defined]
    mixed.exportd_formats = Counting.__dict__["exportd_formats"]  # type: ignore[attr-defined]
    mixed.exportd_storages = {"exportd_impl": {}}  # type: ignore[attr-defined]  # no hook
    plugins = Plugins(builtins=False, entry_points=False, extra=[mixed])
    assert list(plugins.sources) == ["count"]
    assert list(plugins.formats) == ["lines"]
    assert not plugins.storages


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
    installed = EntryPoint(name="typo", value="exportd_typo_plugin", package="exportd_typo_plugin")
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
    installed = EntryPoint(name="typo", value="exportd_typo_plugin", package="exportd_typo_plugin")
    monkeypatch.setattr(manager, "entry_points", lambda group: [installed])
    assert main(["plugins"]) == 1
    assert capsys.readouterr().err == (
        "exportd: error: plugin 'typo' from exportd_typo_plugin implements a hook exportd "
        "does not have: exportd_source() (did you mean exportd_sources()?)\n"
    )


class VaultConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The settings of the vault plugin below."""

    folder: str
    levels: Annotated[int, msgspec.Meta(ge=1)] = 2
    tags: list[str] = []


class VaultStorage(LocalStorage):
    """The local storage, in a folder of its settings."""

    name = "vault"

    def __init__(self, config: VaultConfig) -> None:
        super().__init__(Path(config.folder))
        self.config = config


class VaultDelivery(DeliveryMethod):
    """A delivery that remembers its settings and delivers nothing."""

    name = "vault"

    def __init__(self, config: VaultConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings

    def deliver(self, job: JobSnapshot, ctx: DeliveryContext) -> None:
        """Nothing to do."""


def vault_plugin(name: str = "exportd_vault") -> types.ModuleType:
    """A plugin with settings of its own, a storage and a delivery built from them."""
    vault = types.ModuleType(name)

    @hookimpl
    def exportd_plugin_config() -> type[VaultConfig]:
        return VaultConfig

    @hookimpl
    def exportd_storages(config: VaultConfig) -> list[Storage]:
        return [VaultStorage(config)]

    @hookimpl
    def exportd_deliveries(settings: Settings, config: VaultConfig) -> list[DeliveryMethod]:
        return [VaultDelivery(config, settings)]

    vault.exportd_plugin_config = exportd_plugin_config  # type: ignore[attr-defined]
    vault.exportd_storages = exportd_storages  # type: ignore[attr-defined]
    vault.exportd_deliveries = exportd_deliveries  # type: ignore[attr-defined]
    return vault


def test_storages_and_deliveries_get_their_plugins_settings() -> None:
    settings = Settings(
        home="elsewhere", plugins={"exportd_vault": {"folder": "/srv/vault", "levels": 3}}
    )
    plugins = Plugins(builtins=False, entry_points=False, extra=[vault_plugin()], settings=settings)
    storage = plugins.storage("vault")
    assert isinstance(storage, VaultStorage)
    assert storage.config == VaultConfig(folder="/srv/vault", levels=3)
    assert storage.root == Path("/srv/vault")
    delivery = plugins.delivery("vault")
    assert isinstance(delivery, VaultDelivery)
    assert delivery.config is storage.config
    assert delivery.settings.home == "elsewhere"


def test_a_plugin_is_configured_by_the_last_part_of_its_name() -> None:
    settings = Settings(plugins={"vault": {"folder": "/srv/v"}})
    extra = [vault_plugin("acme.exportd.vault")]
    plugins = Plugins(builtins=False, entry_points=False, extra=extra, settings=settings)
    assert plugins.storage("vault").root == Path("/srv/v")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "configuration key 'plugins.exportd_vault.folder' "),
        ({"folder": "/v", "levels": 0}, "'plugins.exportd_vault.levels' "),
        ({"folder": "/v", "level": 3}, "'plugins.exportd_vault.level' "),
        ({"folder": "/v", "tags": [1]}, "'plugins.exportd_vault.tags[0]' "),
    ],
)
def test_bad_plugin_settings_are_an_error_naming_the_key(
    table: dict[str, Any], message: str
) -> None:
    settings = Settings(plugins={"exportd_vault": table})
    with pytest.raises(ConfigError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[vault_plugin()], settings=settings)
    assert message in str(caught.value)
    assert "EXPORTD_PLUGINS__EXPORTD_VAULT__" in str(caught.value)


def test_a_plugin_without_settings_takes_no_keys() -> None:
    settings = Settings(plugins={"toy_plugins": {"rows": 3}})
    with pytest.raises(ConfigError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[toy_plugins], settings=settings)
    assert caught.value.fields[0].name == "plugins.toy_plugins.rows"
    assert caught.value.fields[0].message == "unknown field"


class LaxConfig(msgspec.Struct):
    """Settings that would let a misspelt key pass."""

    folder: str = ""


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        (LaxConfig, "its settings LaxConfig must be declared with forbid_unknown_fields=True"),
        (LaxConfig(), "exportd_plugin_config() must return a msgspec Struct class"),
        (dict, "exportd_plugin_config() must return a msgspec Struct class, got <class 'dict'>"),
        (RuntimeError("no"), "failed in exportd_plugin_config(): RuntimeError: no"),
    ],
)
def test_a_plugin_config_hook_returning_junk_is_an_error_naming_the_plugin(
    returns: Any, message: str
) -> None:
    lax = types.ModuleType("lax")

    @hookimpl
    def exportd_plugin_config() -> Any:
        if isinstance(returns, Exception):
            raise returns
        return returns

    lax.exportd_plugin_config = exportd_plugin_config  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[lax])
    assert str(caught.value).startswith("plugin 'lax'")
    assert message in str(caught.value)


def test_two_plugins_of_one_settings_name_are_an_error_naming_both() -> None:
    with pytest.raises(PluginError) as caught:
        Plugins(
            builtins=False,
            entry_points=False,
            extra=[vault_plugin("a.vault"), vault_plugin("b.vault")],
        )
    assert str(caught.value).startswith(
        "plugins 'a.vault' and 'b.vault' would share the settings [plugins.vault]"
    )


def test_a_hook_may_refuse_its_settings_naming_the_key() -> None:
    picky = types.ModuleType("picky")

    @hookimpl
    def exportd_formats(config: NoConfig) -> list[Any]:
        raise ConfigError.field("plugins.picky.mode", "must be set on Tuesdays")

    picky.exportd_formats = exportd_formats  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as caught:
        Plugins(builtins=False, entry_points=False, extra=[picky])
    assert caught.value.message == "configuration key 'plugins.picky.mode': must be set on Tuesdays"


def test_two_plugins_of_one_settings_name_without_settings_live_side_by_side() -> None:
    """A third-party plugin named as a built-in (an entry point ``csv``) is no clash while
    neither takes settings: there is no table to share."""
    first, second = types.ModuleType("a.plain"), types.ModuleType("b.plain")
    plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins, first, second])
    assert "count" in plugins.sources
