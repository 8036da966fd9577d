"""JSON Schema of every wire message, generated from the msgspec Structs.

Producers and subscribers in other languages validate against these;
``exportd schema`` prints them and ``docs/schemas/`` ships them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from exportd.messages import (
    CancelSignal,
    ExportRequest,
    ExportTask,
    JobCommand,
    JobEvent,
    RequestReply,
    StatusUpdate,
    WorkerHeartbeat,
)

MESSAGES: dict[str, type[msgspec.Struct]] = {
    "ExportRequest": ExportRequest,
    "JobCommand": JobCommand,
    "RequestReply": RequestReply,
    "ExportTask": ExportTask,
    "StatusUpdate": StatusUpdate,
    "CancelSignal": CancelSignal,
    "JobEvent": JobEvent,
    "WorkerHeartbeat": WorkerHeartbeat,
}


def message_schema(name: str) -> dict[str, Any]:
    """A standalone JSON Schema (draft 2020-12) of the message called ``name``."""
    (schema,), components = msgspec.json.schema_components(
        [MESSAGES[name]], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://exportd.invalid/schemas/{name}.json",
        **schema,
        "$defs": components,
    }
