"""msgspec's validation errors as people read them, in the CLI, HTTP and AMQP alike:
the field at fault, what it must be in words, the allowed values, the value given."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec
import pytest

from exportd.errors import InvalidRequest
from exportd.kernel.validation import MAX_NESTING, convert, decode_json, field_error
from exportd.messages import SCHEMA_VERSIONS, ExportRequest, JobCommand


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Filter(msgspec.Struct, forbid_unknown_fields=True):
    property: Literal["action", "visitor_id"]
    values: Annotated[list[str], msgspec.Meta(min_length=1)]


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: Literal["logs", "stats"] = "logs"
    count: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=3)] = "a"
    ratio: float = 0.0
    real: bool | None = None
    colour: Colour = Colour.RED
    filters: list[Filter] = []
    steps: Annotated[int, msgspec.Meta(multiple_of=5)] = 0


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        ({"type": "bogus"}, "params.type", "must be one of logs, stats; got 'bogus'"),
        ({"count": "abc"}, "params.count", "must be an integer, got text 'abc'"),
        ({"count": 1.5}, "params.count", "must be an integer, got 1.5"),
        ({"count": True}, "params.count", "must be an integer, got true"),
        ({"count": -1}, "params.count", "must be at least 0, got -1"),
        ({"count": 11}, "params.count", "must be at most 10, got 11"),
        ({"name": ""}, "params.name", "must be at least 1 character long, got text ''"),
        ({"name": "abcd"}, "params.name", "must be at most 3 characters long, got text 'abcd'"),
        ({"name": "x" * 50}, "params.name",
         f"must be at most 3 characters long, got text '{'x' * 40}...'"),
        ({"ratio": "half"}, "params.ratio", "must be a number, got text 'half'"),
        ({"real": "yes"}, "params.real", "must be true or false or null, got text 'yes'"),
        ({"colour": "green"}, "params.colour", "must be one of red, blue; got 'green'"),
        ({"filters": {}}, "params.filters", "must be a list, got an object"),
        ({"filters": [{"property": "page", "values": ["x"]}]}, "params.filters[0].property",
         "must be one of action, visitor_id; got 'page'"),
        ({"filters": [{"property": "action", "values": []}]}, "params.filters[0].values",
         "must have at least 1 item, got an empty list"),
        ({"filters": [{"property": "action"}]}, "params.filters[0].values",
         "required field is missing"),
        ({"steps": 7}, "params.steps", "must be a multiple of 5, got 7"),
        ({"colours": "red"}, "params.colours", "unknown field"),
        ([], "params", "must be an object, got an empty list"),
    ],
)  # fmt: skip
def test_a_bad_value_is_said_in_words(data: Any, name: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        convert(data, Params, "params")
    assert [(field.name, field.message) for field in caught.value.fields] == [(name, message)]
    assert caught.value.message == f"invalid value for {name}"


def test_a_json_body_gets_the_same_words() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_json(b'{"filters": [{"property": "referrer", "values": ["x"]}]}', Params)
    assert caught.value.fields[0].message == "must be one of action, visitor_id; got 'referrer'"


def test_without_the_type_or_the_data_the_words_say_what_was_expected() -> None:
    said = [
        field_error("Expected `int` >= 1 - at `$.batch_size`", "config"),
        field_error("Expected `int | null`, got `str` - at `$.limit`"),
        field_error("Invalid enum value 'x' - at `$.type`"),
        field_error("Expected `str` matching regex '^a' - at `$.name`"),
    ]
    assert [(error.name, error.message) for error in said] == [
        ("config.batch_size", "must be at least 1"),
        ("limit", "must be an integer or null, got text"),
        ("type", "'x' is not allowed"),
        ("name", "must match the pattern '^a'"),
    ]


def test_a_lenient_conversion_does_not_show_the_value_it_read_otherwise() -> None:
    with pytest.raises(InvalidRequest) as caught:
        convert({"count": "12"}, Params, strict=False)
    assert caught.value.fields[0].message == "must be at most 10"


def nested(depth: int, inner: str = "1") -> str:
    """``inner`` in ``depth`` lists, one within the other."""
    return "[" * depth + inner + "]" * depth


def request_with(**fields: str) -> bytes:
    """An export request whose ``fields`` are the given JSON texts."""
    given = "".join(f', "{name}": {value}' for name, value in fields.items())
    interval = '{"start": "2024-01-01", "end": "2024-01-02"}'
    return f'{{"source": "rooms", "interval": {interval}{given}}}'.encode()


@pytest.mark.parametrize(
    "body",
    [
        request_with(params=f'{{"a": {nested(1000)}}}'),
        request_with(format_options=f'{{"a": {nested(MAX_NESTING)}}}'),
        nested(100_000).encode(),  # deeper than any recursion limit
        ("{" + '"a": {' * 2000).encode(),  # unclosed: refused before it is found malformed
    ],
)
def test_a_body_nested_deeper_than_the_limit_is_refused_naming_the_body(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_json(body, ExportRequest)
    [field] = caught.value.fields
    assert field.name == "body"
    assert f"at most {MAX_NESTING} levels" in field.message


def test_a_body_at_the_nesting_limit_is_read_and_brackets_in_text_do_not_count() -> None:
    deepest = nested(MAX_NESTING - 2)  # in the body's object, in params
    text = '"' + "[{" * 1000 + '\\"[' + '"'
    request = decode_json(request_with(params=f'{{"a": {deepest}, "b": {text}}}'), ExportRequest)
    assert request.params["b"] == "[{" * 1000 + '"['
    assert decode_json(nested(MAX_NESTING, '"]]]]"'), list[Any]) is not None


@pytest.mark.parametrize(
    ("version", "given"), [("2", "2"), ("-1", "-1"), ("0", "0"), ('"1"', "text '1'")]
)
@pytest.mark.parametrize(
    ("type_", "body"),
    [(ExportRequest, request_with(v="{v}")), (JobCommand, b'{"op": "list", "v": {v}}')],
)
def test_a_request_or_command_of_a_version_exportd_does_not_speak_is_refused_naming_v(
    version: str, given: str, type_: type[Any], body: bytes
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_json(body.replace(b"{v}", version.encode()), type_)
    [field] = caught.value.fields
    assert SCHEMA_VERSIONS == (1,)
    said = f"must be 1, the version exportd speaks; got {given}"
    assert (field.name, field.message) == ("v", said)
    assert decode_json(body.replace(b"{v}", b"1"), type_).v == 1
