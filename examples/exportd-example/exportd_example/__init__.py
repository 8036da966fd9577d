"""exportd-example: a third-party exportd plugin with one source and one format.

exportd finds this module through the ``exportd`` entry-point group declared in
``pyproject.toml`` and calls the hooks below once, when it starts: first
``exportd_plugin_config`` for the Struct its settings (``[plugins.example]``, the
entry point's name) are checked against, then the registration hooks.
"""

from __future__ import annotations

from typing import Any

from exportd import Format, Source, hookimpl
from exportd_example.markdown import MarkdownFormat
from exportd_example.weather import ExampleConfig, WeatherSource

__all__ = [
    "ExampleConfig",
    "MarkdownFormat",
    "WeatherSource",
    "exportd_formats",
    "exportd_plugin_config",
    "exportd_sources",
]


@hookimpl
def exportd_plugin_config() -> type[ExampleConfig]:
    """The settings of this plugin: which cities, how many decimals."""
    return ExampleConfig


@hookimpl
def exportd_sources(config: ExampleConfig) -> list[Source[Any]]:
    """The sources this plugin adds: ``weather``, configured from ``[plugins.example]``."""
    return [WeatherSource(config)]


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """The formats this plugin adds: ``markdown``."""
    return [MarkdownFormat()]
