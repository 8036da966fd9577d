"""Load :class:`Settings` from ``exportd.toml`` and ``EXPORTD_*`` variables.

Precedence, lowest first: defaults, the file, the environment.  The file is
``$EXPORTD_CONFIG`` if set, else ``./exportd.toml`` if it exists.  Nested keys
use a double underscore in variables (``EXPORTD_SECTION__KEY``); list values
are comma-separated.

A plugin's settings, the ``[plugins.NAME]`` table (``EXPORTD_PLUGINS__NAME__KEY``),
are kept as they are given until the plugins load, and each is then converted
into its plugin's ``Config`` by :func:`plugin_config`.

Settings that moved keep working for a while, each with a warning naming its new
key: ``[email]`` is now ``[plugins.email]`` (``EXPORTD_EMAIL__HOST`` is
``EXPORTD_PLUGINS__EMAIL__HOST``).

Every ``EXPORTD_*`` variable must name a setting: a typo is an error that names
it, with the setting it most resembles.  The exception is the ``EXPORTD_TEST_``
prefix, which the test suite keeps for its own variables (such as
``EXPORTD_TEST_BROKER_URL``): the loader ignores them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from exportd.config.data_url import is_postgresql, url_problem
from exportd.config.settings import Settings
from exportd.errors import ConfigError, InvalidRequest
from exportd.kernel.validation import convert

PREFIX = "EXPORTD_"
CONFIG_VARIABLE = "EXPORTD_CONFIG"
TEST_PREFIX = "EXPORTD_TEST_"
"""The variables of the test suite, which are no settings."""
DEFAULT_FILE = Path("exportd.toml")
PLUGINS = "plugins"
"""The table of the plugins' own settings, one table per plugin."""
MOVED_TO_PLUGINS = ("email",)
"""Tables of built-in plugins' settings that moved under ``[plugins]``: their old keys
(``email.host``) still work, each with a warning naming its new key."""

C = TypeVar("C", bound=msgspec.Struct)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings in force, or a :class:`ConfigError` naming the bad key."""
    environ = os.environ if environ is None else environ
    path = Path(environ[CONFIG_VARIABLE]) if CONFIG_VARIABLE in environ else DEFAULT_FILE
    data = _read_file(path) if CONFIG_VARIABLE in environ or path.exists() else {}
    data = _moved(data, str(path))
    _check(data, strict=True, origin=lambda key: str(path))
    settings = _check(_merged(data, _from_environment(environ)), strict=False, origin=variable_name)
    _check_data_url(settings.data.url)
    return settings


def _check_data_url(url: str) -> None:
    """A malformed PostgreSQL ``data.url`` is a :class:`ConfigError` naming the key now,
    rather than a failing export later."""
    if is_postgresql(url) and (problem := url_problem(url)):
        raise ConfigError.field("data.url", problem)


def plugin_config(name: str, table: Mapping[str, Any], type_: type[C]) -> C:
    """The plugin settings ``table`` (``[plugins.NAME]``, its variables included) as the
    plugin's ``Config``, or a :class:`ConfigError` naming the key (``plugins.NAME.KEY``).

    The file's values and the variables' text are one table by now, so all are read as
    variables are: text converts to the number or the flag the Struct wants, and text
    where it wants a list is comma-separated.
    """
    # Most tables are empty: the fields' types, which take a while to inspect, are then
    # not needed.
    fields = {
        f.encode_name: msgspec.inspect.type_info(f.type)
        for f in (msgspec.structs.fields(type_) if table else ())
    }
    data = {
        key: _text_value(fields.get(key), value) if isinstance(value, str) else value
        for key, value in table.items()
    }
    try:
        return convert(data, type_, f"{PLUGINS}.{name}", strict=False)
    except InvalidRequest as exc:
        key = exc.fields[0].name
        setting = variable_name(key.partition("[")[0])
        raise ConfigError(
            f"configuration key {key!r} (the configuration file or {setting}): "
            f"{exc.fields[0].message}",
            exc.fields,
        ) from None


def _moved(data: dict[str, Any], path: str) -> dict[str, Any]:
    """The file's ``data`` with the tables of :data:`MOVED_TO_PLUGINS` under ``[plugins]``,
    a warning for each key moved; a key set under both names is an error."""
    for name in MOVED_TO_PLUGINS:
        old, plugins = data.get(name), data.get(PLUGINS, {})
        new = plugins.get(name, {}) if isinstance(plugins, dict) else None
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue  # not tables: the check names them
        for key in old:
            moved = f"{PLUGINS}.{name}.{key}"
            if key in new:
                raise ConfigError(f"{path}: {name}.{key} is set twice, as {moved} too", [])
            _deprecated("%s: %s.%s is deprecated: use %s", path, name, key, moved)
        rest = {key: value for key, value in data.items() if key != name}
        data = {**rest, PLUGINS: {**plugins, name: {**old, **new}}}
    return data


def _deprecated(message: str, *args: object) -> None:
    """Log the warning that a setting moved (:mod:`logging`, some 5 ms to import, is
    imported then: most commands start without one)."""
    import logging

    logging.getLogger(__name__).warning(message, *args)


def _merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the values of ``overlay`` over its own, tables merged key by key."""
    merged = dict(base)
    for key, value in overlay.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merged(below, value)
        else:
            merged[key] = value
    return merged


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
    import tomllib  # only where there is a file: some 5 ms of start-up otherwise

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
        if path[0] in MOVED_TO_PLUGINS:
            path = [PLUGINS, *path]
            moved = variable_name(".".join(path))
            if moved in environ:
                raise ConfigError(f"{variable} is set twice, as {moved} too", [])
            _deprecated("%s is deprecated: use %s", variable, moved)
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = _parse_value(path, value, variable)
    return data


@cache
def _settings_type() -> msgspec.inspect.Type:
    """The type of :class:`Settings`, inspected once (a millisecond each time)."""
    return msgspec.inspect.type_info(Settings)


def _parse_value(path: list[str], value: str, variable: str) -> Any:
    info: Any = _settings_type()
    for key in path:
        if isinstance(info, msgspec.inspect.DictType):  # a table of any keys: [plugins]
            info = info.value_type
            continue
        fields = {f.encode_name: f.type for f in getattr(info, "fields", ())}
        if key not in fields:
            raise ConfigError(f"unknown setting {variable}{_suggestion(variable)}", [])
        info = fields[key]
    if isinstance(info, msgspec.inspect.DictType):
        raise ConfigError(f"{variable} names a table, not a setting: set {variable}__KEY", [])
    return _text_value(info, value)


def _text_value(info: msgspec.inspect.Type | None, value: str) -> Any:
    """A variable's text as a setting of type ``info`` takes it: a list comma-separated,
    anything else as text (which a lenient conversion reads as a number or a flag)."""
    if isinstance(info, msgspec.inspect.ListType):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _suggestion(variable: str) -> str:
    """``; did you mean EXPORTD_X?`` naming the setting's variable most like
    ``variable``, or nothing if none is close."""
    import difflib  # for this error only: a command that starts imports none

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

    add(_settings_type(), "")
    return names
