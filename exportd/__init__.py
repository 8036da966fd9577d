"""exportd: a plugin-based export engine for conversation data.

This module is the public plugin API.  A plugin imports only from here::

    from exportd import Column, Format, RowWriter, Source, hookimpl
"""

from exportd.config import Settings
from exportd.errors import (
    Cancelled,
    ErrorBody,
    ExportError,
    ExportFailed,
    FieldError,
    InvalidRequest,
    NotFound,
    NotImplementedFeature,
    PluginError,
)
from exportd.plugins.api import (
    Batch,
    Column,
    ColumnType,
    DeliveryContext,
    DeliveryMethod,
    ExportInfo,
    Format,
    NoOptions,
    NoParams,
    ReadContext,
    Role,
    Row,
    RowWriter,
    Source,
    Storage,
    Undeliverable,
    Window,
)
from exportd.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Cancelled",
    "Column",
    "ColumnType",
    "DeliveryContext",
    "DeliveryMethod",
    "ErrorBody",
    "ExportError",
    "ExportFailed",
    "ExportInfo",
    "FieldError",
    "Format",
    "InvalidRequest",
    "NoOptions",
    "NoParams",
    "NotFound",
    "NotImplementedFeature",
    "PluginError",
    "ReadContext",
    "Role",
    "Row",
    "RowWriter",
    "Settings",
    "Source",
    "Storage",
    "Undeliverable",
    "Window",
    "hookimpl",
]
