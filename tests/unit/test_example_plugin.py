"""exportd finds the example third-party plugin (examples/exportd-example) through its
entry point, blocks it by that name, and configures it from ``[plugins.example]``.

The package is installed into the test environment (tests/conftest.py).  Its own
tests, written with the test kit alone, are in examples/exportd-example/tests.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import msgspec
import pytest
from exportd_example.weather import ExampleConfig, WeatherSource

from exportd import ConfigError, NotFound
from exportd.cli import main
from exportd.config import load_settings
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.messages import ExportRequest
from exportd.plugins.manager import Plugins, load_plugins

NOWHERE = SqliteStore(Path("unused.db"))
"""A data store the toy plugins never read."""


def request(source: str, params: dict[str, Any], format_: str, **fields: Any) -> ExportRequest:
    data = {
        "source": source,
        "params": params,
        "format": format_,
        "interval": {"start": "2024-03-30", "end": "2024-04-01"},
        "timezone": "Europe/Helsinki",
        **fields,
    }
    return msgspec.convert(data, ExportRequest)


def export(plan: ExportPlan, path: Path) -> Path:
    run_export(plan, path, batch_size=7)
    return path


def test_the_plugin_is_found_through_its_entry_point_beside_the_built_ins() -> None:
    plugins = Plugins()
    assert {"weather", "rooms"} <= set(plugins.sources)
    assert {"markdown", "csv"} <= set(plugins.formats)
    for kind, name in (("source", "weather"), ("format", "markdown")):
        origin = plugins.origin(kind, name)
        assert (origin.plugin, origin.package) == ("example", "exportd-example 0.1.0")


def test_blocking_the_plugin_by_its_entry_point_name_removes_it() -> None:
    plugins = Plugins(builtins=False, blocked=["example"])
    assert "weather" not in plugins.sources
    assert "markdown" not in plugins.formats


def configured(tmp_path: Path, toml: str, **variables: str) -> Plugins:
    """Every plugin, configured as exportd would be from ``toml`` and ``variables``."""
    config = tmp_path / "exportd.toml"
    config.write_text(toml)
    return load_plugins(load_settings({"EXPORTD_CONFIG": str(config), **variables}))


def test_the_plugin_is_configured_from_exportd_toml(tmp_path: Path) -> None:
    plugins = configured(
        tmp_path, '[plugins.example]\ncities = ["lisbon", "tokyo"]\ndecimals = 0\n'
    )
    weather = plugins.source("weather")
    assert isinstance(weather, WeatherSource)
    assert weather.config == ExampleConfig(cities=["lisbon", "tokyo"], decimals=0)
    with pytest.raises(NotFound) as refused:
        plan_export(request("weather", {"city": "Helsinki"}, "csv"), plugins, NOWHERE)
    assert refused.value.fields[0].message == "unknown city 'Helsinki'; known: lisbon, tokyo"
    plan = plan_export(request("weather", {"city": "Tokyo"}, "csv", limit=24), plugins, NOWHERE)
    with export(plan, tmp_path / "tokyo.csv").open(newline="", encoding="utf-8") as file:
        temperatures = [row[2] for row in list(csv.reader(file))[1:]]
    assert len(temperatures) == 24
    assert all(float(value).is_integer() for value in temperatures)  # no decimals
    assert len(set(temperatures)) > 1


def test_the_environment_configures_the_plugin_over_exportd_toml(tmp_path: Path) -> None:
    plugins = configured(
        tmp_path,
        '[plugins.example]\ncities = ["lisbon"]\ndecimals = 0\n',
        EXPORTD_PLUGINS__EXAMPLE__CITIES="nairobi, sydney",
    )
    weather = plugins.source("weather")
    assert isinstance(weather, WeatherSource)
    assert weather.config == ExampleConfig(cities=["nairobi", "sydney"], decimals=0)
    only_variables = configured(tmp_path, "", EXPORTD_PLUGINS__EXAMPLE__DECIMALS="3")
    assert only_variables.source("weather").config.decimals == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("toml", "variables", "message"),
    [
        (
            "",
            {"EXPORTD_PLUGINS__EXAMPLE__DECIMALS": "9"},
            "configuration key 'plugins.example.decimals' (the configuration file or "
            "EXPORTD_PLUGINS__EXAMPLE__DECIMALS): must be at most 3",
        ),
        (
            "[plugins.example]\ndecimals = 'two'\n",
            {},
            "configuration key 'plugins.example.decimals' (the configuration file or "
            "EXPORTD_PLUGINS__EXAMPLE__DECIMALS): must be an integer, got text",
        ),
        (
            "",
            {"EXPORTD_PLUGINS__EXAMPLE__DECIMAL": "2"},
            "configuration key 'plugins.example.decimal' (the configuration file or "
            "EXPORTD_PLUGINS__EXAMPLE__DECIMAL): unknown field",
        ),
        (
            "[plugins.example]\ncities = ['lisbon', 'paris']\n",
            {},
            "configuration key 'plugins.example.cities[1]': unknown city 'paris'; known: "
            "helsinki, lisbon, nairobi, reykjavik, sydney, tokyo",
        ),
        (
            "",
            {"EXPORTD_PLUGINS__EXAMPEL__DECIMALS": "2"},
            "configuration key 'plugins.exampel': no plugin 'exampel' is loaded; did you mean "
            "'example'? install it, or block it with EXPORTD_DISABLE_PLUGINS where it is "
            "absent on purpose",
        ),
        (
            "[plugins.azure]\nbucket = 'exports'\n",
            {},
            "configuration key 'plugins.azure': no plugin 'azure' is loaded; install it",
        ),
    ],
)
def test_bad_plugin_settings_stop_exportd_naming_the_key(
    tmp_path: Path, toml: str, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        configured(tmp_path, toml, **variables)
    assert refused.value.message.startswith(message)


def test_the_settings_of_a_blocked_plugin_are_no_error(tmp_path: Path) -> None:
    plugins = configured(
        tmp_path,
        '[plugins.azure]\nbucket = "exports"\n[plugins.example]\ndecimals = 9\n',
        EXPORTD_DISABLE_PLUGINS="azure,example",
    )
    assert "weather" not in plugins.sources


def test_a_bad_plugin_setting_is_one_line_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPORTD_PLUGINS__EXAMPLE__CITIES", "lisbon,atlantis")
    assert main(["plugins"]) == 1
    assert capsys.readouterr().err == (
        "exportd: error: configuration key 'plugins.example.cities[1]': unknown city "
        "'atlantis'; known: helsinki, lisbon, nairobi, reykjavik, sydney, tokyo\n"
    )
