"""Wire schemas shared by the CLI, the engine, workers and clients.

Every message carries ``v``, its schema version.  Messages that people write
(:class:`ExportRequest`) forbid unknown fields so that a typo is an error
naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

SCHEMA_VERSION = 1


class Interval(msgspec.Struct, forbid_unknown_fields=True):
    """The time range: ``start`` inclusive, ``end`` exclusive.

    Each end is ISO 8601 (``2024-05-01``, ``2024-05-01T08:00``,
    ``2024-05-01T08:00:00+02:00``, ``...Z``); a time without an offset is read
    in the request's ``timezone``.
    """

    start: str
    end: str


class Delivery(msgspec.Struct, forbid_unknown_fields=True):
    """Where the finished file goes: kept for download, or also sent by email."""

    type: Literal["file", "email"] = "file"
    to: list[str] = []


class ExportRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request for one export, as a caller writes it."""

    v: int = SCHEMA_VERSION
    source: str
    format: str = "csv"
    params: dict[str, Any] = {}
    format_options: dict[str, Any] = {}
    interval: Interval
    timezone: str = "UTC"
    delivery: Delivery = msgspec.field(default_factory=Delivery)
    org_id: str | None = None
    user_id: str | None = None
    idempotency_key: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None
    name: str | None = None


class FileInfo(msgspec.Struct, frozen=True):
    """A finished export file: its name, type, size, SHA-256 and row count."""

    key: str
    name: str
    media_type: str
    size: int
    sha256: str
    rows: int
