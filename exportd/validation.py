"""Turn msgspec's validation errors into field errors people can act on."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from exportd.errors import FieldError, InvalidRequest

T = TypeVar("T")

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(
    r"^Object (?P<what>contains unknown|missing required) field `(?P<field>[^`]+)`$"
)


def field_error(exc: msgspec.ValidationError | str, prefix: str = "") -> FieldError:
    """The field that ``exc`` (or msgspec's message of it) is about, as a dotted name
    under ``prefix``."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["message"], (match["path"] or "").lstrip(".")
    named = _NAMED.match(message)
    if named:
        path = f"{path}.{named['field']}" if path else named["field"]
        message = (
            "unknown field" if named["what"] == "contains unknown" else "required field is missing"
        )
    name = ".".join(part for part in (prefix, path) if part) or prefix or "body"
    return FieldError(name=name.replace(".[", "["), message=message)


def convert(data: Any, type_: type[T], prefix: str = "", *, strict: bool = True) -> T:
    """``msgspec.convert`` that raises :class:`InvalidRequest` naming the field."""
    try:
        return msgspec.convert(data, type_, strict=strict)
    except msgspec.ValidationError as exc:
        error = field_error(exc, prefix)
        raise InvalidRequest(f"invalid value for {error.name}", [error]) from None


def decode_json(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON into ``type_``, raising :class:`InvalidRequest` on bad input."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        error = field_error(exc)
        raise InvalidRequest(f"invalid value for {error.name}", [error]) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest.field("body", f"not valid JSON: {exc}") from None
