"""exportd: a plugin-based export engine for conversation data.

This module is the public plugin API.  A plugin imports only from here::

    from exportd import Column, Format, RowWriter, Source, hookimpl

It holds every type that a hook or a descriptor's method takes or returns.
:class:`HttpApi`, which only route plugins use, is imported on first use: it brings
the HTTP framework, which workers and ``exportd export`` never load.
"""

from typing import TYPE_CHECKING

from exportd.config import Settings
from exportd.errors import (
    Cancelled,
    ConfigError,
    ErrorBody,
    ExportError,
    ExportFailed,
    FieldError,
    InvalidRequest,
    NotFound,
    NotImplementedFeature,
    PluginError,
)
from exportd.messages import (
    Delivery,
    FileInfo,
    Interval,
    JobSnapshot,
    JobStatus,
    PartSnapshot,
    PartStatus,
    Progress,
    RequestFields,
)
from exportd.plugins.api import (
    Batch,
    Column,
    ColumnType,
    DataStore,
    DeliveryContext,
    DeliveryMethod,
    Dialect,
    ExportInfo,
    Form,
    Format,
    NoConfig,
    NoOptions,
    NoParams,
    Piece,
    ReadContext,
    Role,
    Row,
    RowWriter,
    Source,
    Storage,
    Undeliverable,
    Window,
    arrow_batch,
    arrow_schema,
    arrow_type,
)
from exportd.plugins.hookspecs import hookimpl
from exportd.version import __version__ as __version__

__all__ = [
    "Batch",
    "Cancelled",
    "Column",
    "ColumnType",
    "ConfigError",
    "DataStore",
    "Delivery",
    "DeliveryContext",
    "DeliveryMethod",
    "Dialect",
    "ErrorBody",
    "ExportError",
    "ExportFailed",
    "ExportInfo",
    "FieldError",
    "FileInfo",
    "Form",
    "Format",
    "HttpApi",
    "Interval",
    "InvalidRequest",
    "JobSnapshot",
    "JobStatus",
    "NoConfig",
    "NoOptions",
    "NoParams",
    "NotFound",
    "NotImplementedFeature",
    "PartSnapshot",
    "PartStatus",
    "Piece",
    "PluginError",
    "Progress",
    "ReadContext",
    "RequestFields",
    "Role",
    "Row",
    "RowWriter",
    "Settings",
    "Source",
    "Storage",
    "Undeliverable",
    "Window",
    "arrow_batch",
    "arrow_schema",
    "arrow_type",
    "hookimpl",
]

if TYPE_CHECKING:
    from exportd.http.context import HttpApi
else:  # hidden from type checkers, which would take any unknown name for HttpApi

    def __getattr__(name: str) -> object:
        """:class:`HttpApi`, imported when first asked for."""
        if name == "HttpApi":
            from exportd.http.context import HttpApi

            return HttpApi
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
