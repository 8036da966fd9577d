"""Run a plugin's code so that its unexpected exception fails the export, not the process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from exportd.errors import ExportError, ExportFailed

T = TypeVar("T")


def call_plugin(what: str, step: Callable[[], T]) -> T:
    """``step()``; an exception other than :class:`ExportError` becomes :class:`ExportFailed`.

    ``what`` names the plugin in the message, e.g. ``"source 'rooms'"``.
    """
    try:
        return step()
    except ExportError:
        raise
    except Exception as exc:
        raise ExportFailed(f"{what} failed: {type(exc).__name__}: {exc}") from exc
