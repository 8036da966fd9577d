"""Turn msgspec's validation errors into field errors people can act on.

msgspec says ``Expected `int`, got `str` - at `$.params.n```; people read
``params.n: must be an integer, got text 'abc'``.  Given the type that was
expected and the data that was given, the message lists the values an enum
allows and shows the value at fault; given msgspec's message alone, it still
says in words what was expected.

A JSON body is checked for nesting before it is decoded (:func:`check_nesting`):
msgspec decodes recursively, and a body nested some thousand levels deep would
raise :class:`RecursionError` instead of an error naming the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any, TypeVar

import msgspec
from msgspec import inspect

from exportd.errors import FieldError, InvalidRequest
from exportd.messages import LABEL_KEY, MAX_LABEL_VALUE, MAX_LABELS, SCHEMA_VERSIONS

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(
    r"^Object (?P<what>contains unknown|missing required) field `(?P<field>[^`]+)`$"
)
_EXPECTED = re.compile(r"^Expected `(?P<kinds>[^`]+)`(?P<rule>.*?)(?:, got `(?P<got>[^`]+)`)?$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.+)$", re.DOTALL)
_STEP = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+|\.\.\.)\]")
_LENGTH = re.compile(r"^of length (?P<op>>=|<=) (?P<bound>\d+)$")
_BOUND = re.compile(r"^(?P<op>>=|>|<=|<) (?P<bound>\S+)$")
_LABEL_KEY = re.compile(LABEL_KEY)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_DEPTH_STEP = [{ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(b, 0) for b in range(256)]
"""What each byte does to the depth of nesting: a bracket opens or closes a level."""

KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "null": "null",
    "array": "a list",
    "object": "an object",
    "datetime": "a date-time",
    "date": "a date",
    "time": "a time",
    "duration": "a duration",
    "uuid": "a UUID",
    "decimal": "a decimal number",
    "bytes": "base64-encoded bytes",
}
BOUND_WORDS = {">=": "at least", ">": "greater than", "<=": "at most", "<": "less than"}
LENGTH_UNITS = {
    "str": ("character", "characters"),
    "array": ("item", "items"),
    "object": ("entry", "entries"),
}
MAX_NESTING = 32
"""Levels of objects and lists within one another a JSON body may have (the body's own
object is the first level)."""
VERSION_FIELD = "v"
"""The schema version of a message, at the top of its body."""
SHOWN_TEXT = 40
"""Characters of a text value that a message shows."""

_NOTHING: Any = object()
"""No data given: the message cannot show the value at fault."""


def field_error(
    exc: msgspec.ValidationError | str,
    prefix: str = "",
    *,
    type_: Any = None,
    data: Any = _NOTHING,
) -> FieldError:
    """The field that ``exc`` (or msgspec's message of it) is about, as a dotted name
    under ``prefix``, and what is wrong with it in words; ``type_`` (what was expected)
    and ``data`` (what was given) let the message name the allowed values and the value.
    A message's schema version ``v`` is said with the versions exportd speaks."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["message"], match["path"] or ""
    named = _NAMED.match(message)
    if named:
        path = f"{path}.{named['field']}"
    name = ".".join(part for part in (prefix, path.lstrip(".")) if part) or prefix or "body"
    if named:
        message = (
            "unknown field" if named["what"] == "contains unknown" else "required field is missing"
        )
    elif name == VERSION_FIELD:
        message = _version_words(message, _value_at(data, path))
    else:
        message = _in_words(message, _type_at(type_, path), _value_at(data, path))
    return FieldError(name=name.replace(".[", "["), message=message)


def convert(data: Any, type_: type[T], prefix: str = "", *, strict: bool = True) -> T:
    """``msgspec.convert`` that raises :class:`InvalidRequest` naming the field.

    Its message shows the value at fault only if ``strict``: a lenient conversion
    may have read the value (text from a variable, say) as something else first.
    """
    try:
        return msgspec.convert(data, type_, strict=strict)
    except msgspec.ValidationError as exc:
        error = field_error(exc, prefix, type_=type_, data=data if strict else _NOTHING)
        raise InvalidRequest(f"invalid value for {error.name}", [error]) from None


def validated(message: S | Mapping[str, Any], type_: type[S]) -> S:
    """``message`` checked against the schema of ``type_``, raising :class:`InvalidRequest`
    naming the field.  A Struct built in code is checked too: its constructor checks no
    types or limits."""
    data = msgspec.to_builtins(message) if isinstance(message, msgspec.Struct) else dict(message)
    return convert(data, type_)


def decode_json(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON into ``type_``, raising :class:`InvalidRequest` on bad input (nested
    deeper than :data:`MAX_NESTING` too)."""
    check_nesting(data)
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        error = field_error(exc, type_=type_, data=msgspec.json.decode(data))
        raise InvalidRequest(f"invalid value for {error.name}", [error]) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest.field("body", f"not valid JSON: {exc}") from None


def check_labels(labels: Mapping[str, str]) -> None:
    """Raise :class:`InvalidRequest` naming each bad label (``labels.<key>``) unless
    ``labels`` keep the limits of :data:`~exportd.messages.Labels`."""
    errors = []
    if len(labels) > MAX_LABELS:
        errors.append(FieldError("labels", f"at most {MAX_LABELS} labels, not {len(labels)}"))
    for key, value in labels.items():
        name = f"labels.{key[:SHOWN_TEXT]}"
        if not _LABEL_KEY.fullmatch(key):
            errors.append(
                FieldError(
                    name,
                    "a key is a lower-case letter, then up to 62 lower-case letters, "
                    "digits, '_', '.' or '-'",
                )
            )
        elif not 1 <= len(value) <= MAX_LABEL_VALUE or _CONTROL.search(value):
            errors.append(
                FieldError(
                    name,
                    f"a value is 1 to {MAX_LABEL_VALUE} characters, none a control character",
                )
            )
    if errors:
        raise InvalidRequest(f"invalid {', '.join(e.name for e in errors)}", errors)


def check_nesting(data: bytes | str) -> None:
    """Raise :class:`InvalidRequest` naming the body if JSON ``data`` nests objects and
    lists deeper than :data:`MAX_NESTING`.

    Without recursion, and in C loops only: strings are cut out, the brackets left are
    counted.  A body with no more opening brackets than the limit is not scanned at all.
    Malformed JSON passes (decoding refuses it).
    """
    raw = data.encode() if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_NESTING:
        raise InvalidRequest.field(
            "body",
            f"objects and lists are nested too deep: at most {MAX_NESTING} levels are "
            "allowed, the body's own object counting as one",
        )


def _in_words(message: str, expected: inspect.Type | None, value: Any) -> str:
    """msgspec's ``message`` about a value (``_NOTHING`` if unknown) said in words."""
    enum = _ENUM.match(message)
    if enum:
        allowed = _allowed(expected)
        given = enum["value"] if value is _NOTHING else repr(value)
        return f"must be one of {allowed}; got {given}" if allowed else f"{given} is not allowed"
    found = _EXPECTED.match(message)
    if found is None:  # Invalid RFC3339 encoded datetime, say
        said = message.replace("`", "")
        return said if value is _NOTHING else f"{said}, got {_shown(value)}"
    kinds, rule, got = found["kinds"], found["rule"].strip(), found["got"]
    if got is not None:
        given = KIND_WORDS.get(got, got) if value is _NOTHING else _shown(value)
        return f"must be {_kinds(kinds)}, got {given}"
    said = f"must {_rule(kinds, rule)}"
    return said if value is _NOTHING else f"{said}, got {_shown(value)}"


def _version_words(message: str, value: Any) -> str:
    """msgspec's ``message`` about a message's schema version ``v`` (``value``, or
    ``_NOTHING``) said in words that name the versions exportd speaks."""
    versions = " or ".join(map(str, SCHEMA_VERSIONS))
    said = f"must be {versions}, the version{'s' * (len(SCHEMA_VERSIONS) > 1)} exportd speaks"
    enum, found = _ENUM.match(message), _EXPECTED.match(message)
    if value is not _NOTHING:
        return f"{said}; got {_shown(value)}"
    if enum is not None:
        return f"{said}; got {enum['value']}"
    if found is not None and found["got"] is not None:
        return f"{said}; got {KIND_WORDS.get(found['got'], found['got'])}"
    return said


def _kinds(kinds: str) -> str:
    """``int | null`` as ``an integer or null``."""
    words = [KIND_WORDS.get(kind, kind) for kind in kinds.split(" | ")]
    return " or ".join(words)


def _rule(kind: str, rule: str) -> str:
    """What a value of ``kind`` must be, from msgspec's constraint ``rule``."""
    length = _LENGTH.match(rule)
    if length:
        count = int(length["bound"])
        one, many = LENGTH_UNITS.get(kind, LENGTH_UNITS["array"])
        units = f"{count} {one if count == 1 else many}"
        bound = BOUND_WORDS[length["op"]]
        return f"be {bound} {units} long" if kind == "str" else f"have {bound} {units}"
    limit = _BOUND.match(rule)
    if limit:
        return f"be {BOUND_WORDS[limit['op']]} {limit['bound']}"
    if rule.startswith("matching regex "):
        return f"match the pattern {rule.removeprefix('matching regex ')}"
    multiple = rule.removeprefix("that's ")  # that's a multiple of N
    if multiple != rule:
        return f"be {multiple}"
    return f"be {_kinds(kind)} {rule}".rstrip()


def _shown(value: Any) -> str:
    """A given value as a message shows it: ``text 'abc'``, ``1.5``, ``true``, ``a list``."""
    if isinstance(value, str):
        cut = value if len(value) <= SHOWN_TEXT else value[:SHOWN_TEXT] + "..."
        return f"text {cut!r}"
    if isinstance(value, bool) or value is None:
        return msgspec.json.encode(value).decode()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _allowed(expected: inspect.Type | None) -> str:
    """The values an enum or literal type allows, as ``logs, stats``; ``""`` if unknown."""
    for option in _options(expected):
        if isinstance(option, inspect.LiteralType):
            return ", ".join(str(value) for value in option.values)
        if isinstance(option, inspect.EnumType):
            return ", ".join(str(member.value) for member in option.cls)
    return ""


def _type_at(type_: Any, path: str) -> inspect.Type | None:
    """The type expected at msgspec's ``path`` (``.filters[0].property``) in ``type_``."""
    if type_ is None:
        return None
    expected: inspect.Type | None = inspect.type_info(type_)
    for step in _STEP.finditer(path):
        expected = _inner(expected, step["key"], step["index"])
    return expected


def _inner(outer: inspect.Type | None, key: str | None, index: str | None) -> inspect.Type | None:
    """The type of the field ``key`` or the item ``index`` (``...``: a dict's value) of
    ``outer``, of the first option of a union that has one."""
    for option in _options(outer):
        if key is not None and isinstance(option, inspect.StructType):
            fields = {field.encode_name: field.type for field in option.fields}
            if key in fields:
                return fields[key]
        elif index == "..." and isinstance(option, inspect.DictType):
            return option.value_type
        elif index is not None and isinstance(
            option,
            inspect.ListType | inspect.SetType | inspect.FrozenSetType | inspect.VarTupleType,
        ):
            return option.item_type
    return None


def _options(expected: inspect.Type | None) -> list[inspect.Type]:
    """The types a union allows, or the type itself."""
    if expected is None:
        return []
    return list(expected.types) if isinstance(expected, inspect.UnionType) else [expected]


def _value_at(data: Any, path: str) -> Any:
    """The value at msgspec's ``path`` in ``data``, or ``_NOTHING`` if it cannot be told."""
    for step in _STEP.finditer(path):
        key, index = step["key"], step["index"]
        if key is not None and isinstance(data, dict) and key in data:
            data = data[key]
        elif index is not None and index != "..." and isinstance(data, list | tuple):
            data = data[int(index)] if int(index) < len(data) else _NOTHING
        else:
            return _NOTHING
    return data
