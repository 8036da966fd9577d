"""Settings from defaults, exportd.toml and EXPORTD_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportd.config import Settings, load_settings
from exportd.errors import ConfigError


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings == Settings()
    assert settings.data_path == Path("var/data.db")


def test_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "exportd.toml"
    config.write_text('home = "/srv/exportd"\nbatch_size = 100\n')
    settings = load_settings(
        {"EXPORTD_CONFIG": str(config), "EXPORTD_BATCH_SIZE": "250", "PATH": "/bin"}
    )
    assert settings.home == "/srv/exportd"
    assert settings.batch_size == 250


def test_the_file_in_the_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exportd.toml").write_text('home = "elsewhere"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).home == "elsewhere"


def test_lists_come_comma_separated_from_the_environment() -> None:
    settings = load_settings({"EXPORTD_DISABLE_PLUGINS": "a, b,,c"})
    assert settings.disable_plugins == ["a", "b", "c"]


def test_an_unknown_key_in_the_file_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "exportd.toml"
    config.write_text("batch_sise = 10\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({"EXPORTD_CONFIG": str(config)})
    assert "batch_sise" in str(caught.value)
    assert caught.value.fields[0].name == "batch_sise"


def test_an_unknown_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="EXPORTD_HOEM"):
        load_settings({"EXPORTD_HOEM": "x"})


def test_an_unknown_variable_names_the_setting_it_resembles() -> None:
    with pytest.raises(
        ConfigError,
        match=r"EXPORTD_WORKER__CONCURENCY; did you mean "
        r"EXPORTD_WORKER__CONCURRENCY\?$",
    ):
        load_settings({"EXPORTD_WORKER__CONCURENCY": "2"})
    with pytest.raises(ConfigError, match=r"^unknown setting EXPORTD_ZZZ$"):
        load_settings({"EXPORTD_ZZZ": "2"})


def test_the_test_suites_variables_are_ignored() -> None:
    settings = load_settings({"EXPORTD_TEST_BROKER_URL": "x", "EXPORTD_TEST_ANYTHING": "y"})
    assert settings == load_settings({})


def test_a_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"EXPORTD_BATCH_SIZE": "0"})
    assert caught.value.fields[0].name == "batch_size"
    assert "must be at least 1" in str(caught.value)
    with pytest.raises(ConfigError, match="slices") as caught:
        load_settings({"EXPORTD_SLICES": "-1"})
    assert caught.value.fields[0].name == "slices"


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings({"EXPORTD_CONFIG": str(tmp_path / "missing.toml")})
    broken = tmp_path / "broken.toml"
    broken.write_text("home = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"EXPORTD_CONFIG": str(broken)})


def test_an_error_names_the_layer_it_comes_from(tmp_path: Path) -> None:
    config = tmp_path / "exportd.toml"
    config.write_text("batch_size = 100\n")
    with pytest.raises(ConfigError, match=r"'batch_size' \(EXPORTD_BATCH_SIZE\)"):
        load_settings({"EXPORTD_CONFIG": str(config), "EXPORTD_BATCH_SIZE": "abc"})
    config.write_text('batch_size = "many"\n')
    with pytest.raises(ConfigError, match=rf"'batch_size' \({config}\)"):
        load_settings({"EXPORTD_CONFIG": str(config)})


def test_plugin_settings_come_from_the_file_and_the_environment_key_by_key(
    tmp_path: Path,
) -> None:
    config = tmp_path / "exportd.toml"
    config.write_text(
        '[plugins.vault]\nfolder = "/srv/vault"\nlevels = 2\n[plugins.other]\nx = 1\n'
    )
    settings = load_settings(
        {
            "EXPORTD_CONFIG": str(config),
            "EXPORTD_PLUGINS__VAULT__LEVELS": "3",
            "EXPORTD_PLUGINS__VAULT__TAGS": "a,b",
            "EXPORTD_PLUGINS__NEW__KEY": "v",
        }
    )
    # Kept as given (text from variables) until the plugins load and convert them.
    assert settings.plugins == {
        "vault": {"folder": "/srv/vault", "levels": "3", "tags": "a,b"},
        "other": {"x": 1},
        "new": {"key": "v"},
    }


def test_plugin_settings_must_be_tables(tmp_path: Path) -> None:
    config = tmp_path / "exportd.toml"
    config.write_text('plugins = "vault"\n')
    with pytest.raises(ConfigError, match=r"^configuration key 'plugins' \("):
        load_settings({"EXPORTD_CONFIG": str(config)})
    for variable in ("EXPORTD_PLUGINS", "EXPORTD_PLUGINS__VAULT"):
        with pytest.raises(ConfigError) as caught:
            load_settings({variable: "x"})
        assert caught.value.message == (
            f"{variable} names a table, not a setting: set {variable}__KEY"
        )
