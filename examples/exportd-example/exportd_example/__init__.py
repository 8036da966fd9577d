"""exportd-example: a third-party exportd plugin with one source and one format.

exportd finds this module through the ``exportd`` entry-point group declared in
``pyproject.toml`` and calls the two hooks below once, when it starts.
"""

from __future__ import annotations

from typing import Any

from exportd import Format, Source, hookimpl
from exportd_example.markdown import MarkdownFormat
from exportd_example.weather import WeatherSource

__all__ = ["MarkdownFormat", "WeatherSource", "exportd_formats", "exportd_sources"]


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    """The sources this plugin adds: ``weather``."""
    return [WeatherSource()]


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """The formats this plugin adds: ``markdown``."""
    return [MarkdownFormat()]
