"""Load :class:`Settings` from ``exportd.toml`` and ``EXPORTD_*`` variables.

Precedence, lowest first: defaults, the file, the environment.  The file is
``$EXPORTD_CONFIG`` if set, else ``./exportd.toml`` if it exists.  Nested keys
use a double underscore in variables (``EXPORTD_SECTION__KEY``); list values
are comma-separated.

Every ``EXPORTD_*`` variable must name a setting: a typo is an error that names
it, with the setting it most resembles.  The exception is the ``EXPORTD_TEST_``
prefix, which the test suite keeps for its own variables (such as
``EXPORTD_TEST_BROKER_URL``): the loader ignores them.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from exportd.config.settings import Settings
from exportd.errors import ConfigError, InvalidRequest
from exportd.kernel.validation import convert

PREFIX = "EXPORTD_"
CONFIG_VARIABLE = "EXPORTD_CONFIG"
TEST_PREFIX = "EXPORTD_TEST_"
"""The variables of the test suite, which are no settings."""
DEFAULT_FILE = Path("exportd.toml")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings in force, or a :class:`ConfigError` naming the bad key."""
    environ = os.environ if environ is None else environ
    path = Path(environ[CONFIG_VARIABLE]) if CONFIG_VARIABLE in environ else DEFAULT_FILE
    data = _read_file(path) if CONFIG_VARIABLE in environ or path.exists() else {}
    _check(data, strict=True, origin=lambda key: str(path))
    for key, value in _from_environment(environ).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return _check(data, strict=False, origin=variable_name)


def _check(data: dict[str, Any], *, strict: bool, origin: Callable[[str], str]) -> Settings:
    """``data`` as settings; an error names the bad key and ``origin(key)``, where it is set."""
    try:
        return convert(data, Settings, strict=strict)
    except InvalidRequest as exc:
        key = exc.fields[0].name
        raise ConfigError(
            f"configuration key {key!r} ({origin(key)}): {exc.fields[0].message}", exc.fields
        ) from None


def variable_name(key: str) -> str:
    """The environment variable that sets ``key``: ``a.b_c`` is ``EXPORTD_A__B_C``."""
    return PREFIX + key.upper().replace(".", "__")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for variable, value in environ.items():
        if (
            not variable.startswith(PREFIX)
            or variable.startswith(TEST_PREFIX)
            or variable == CONFIG_VARIABLE
        ):
            continue
        path = variable[len(PREFIX) :].lower().split("__")
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = _parse_value(path, value, variable)
    return data


def _parse_value(path: list[str], value: str, variable: str) -> Any:
    info: Any = msgspec.inspect.type_info(Settings)
    for key in path:
        fields = {f.encode_name: f.type for f in getattr(info, "fields", ())}
        if key not in fields:
            raise ConfigError(f"unknown setting {variable}{_suggestion(variable)}", [])
        info = fields[key]
    if isinstance(info, msgspec.inspect.ListType):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _suggestion(variable: str) -> str:
    """``; did you mean EXPORTD_X?`` naming the setting's variable most like
    ``variable``, or nothing if none is close."""
    # Compared without the prefix, which every name shares and would make all look alike.
    names = [name.removeprefix(PREFIX) for name in _setting_variables()]
    close = difflib.get_close_matches(variable.removeprefix(PREFIX), names, n=1)
    return f"; did you mean {PREFIX}{close[0]}?" if close else ""


def _setting_variables() -> list[str]:
    """The variable of every setting, sections' keys included."""
    names: list[str] = []

    def add(info: Any, key: str) -> None:
        fields = getattr(info, "fields", None)
        if fields is None:
            names.append(variable_name(key))
            return
        for field in fields:
            add(field.type, f"{key}.{field.encode_name}" if key else field.encode_name)

    add(msgspec.inspect.type_info(Settings), "")
    return names
