"""What the giosg-compatible APIs share: organisation access and giosg's error bodies.

giosg's pages document status codes but no error bodies (except the workflow
download's 400), so both facades answer as giosg's Django REST Framework
backend does:

* 400: ``{"<field>": ["<message>", ...], ...}``, one key per bad field, named
  as the giosg payload names it (``starting_at``, ``filters[0].property``);
  a 400 about the body as a whole (malformed JSON, not an object) is
  ``{"detail": "<message>"}``;
* 401, 403, 404, 406 (and any other error): ``{"detail": "<message>"}``; a 401
  also carries ``WWW-Authenticate: Token``.

The body is exportd's own error (:mod:`exportd.http.errors`) reshaped, so the
status of every error is the one the native API gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from litestar import Response
from litestar.handlers import BaseRouteHandler

from exportd.errors import ErrorBody, FieldError, Forbidden
from exportd.http.context import AnyConnection, AnyRequest, caller_of
from exportd.http.errors import HANDLERS, native_error
from exportd.http.facades.common import renamed

GiosgBody = dict[str, Any]
"""A giosg error body: ``{"detail": ...}`` or ``{"<field>": [messages]}``."""
ExceptionHandler = Callable[[AnyRequest, Any], Response[GiosgBody]]


def same_org(connection: AnyConnection, _: BaseRouteHandler) -> None:
    """A route guard, after :func:`~exportd.http.context.requires`: the path's
    ``organization_id`` must be the caller's organisation (403 otherwise)."""
    org_id = connection.path_params["organization_id"]
    if org_id != caller_of(connection).org.id:
        raise Forbidden(f"you do not have access to the organization {org_id}")


def giosg_name(name: str, renames: Mapping[str, str]) -> str:
    """exportd's name of a field (``params.room_id``, ``interval.start``) as the giosg
    payload names it: the source's ``params.`` prefix dropped, then ``renames`` applied."""
    name = name.removeprefix("params.")
    return renames.get(name, name)


def giosg_body(status: int, error: ErrorBody, renames: Mapping[str, str]) -> GiosgBody:
    """exportd's error body in giosg's shape (see the module docstring)."""
    fields = [
        FieldError(giosg_name(f.name, renames), renamed(f.message, renames)) for f in error.fields
    ]
    if status == 400 and any(field.name != "body" for field in fields):
        body: GiosgBody = {}
        for field in fields:
            body.setdefault(field.name, []).append(field.message)
        return body
    detail = renamed(error.message, renames)
    extra = [f"{f.name}: {f.message}" for f in fields if f.message != detail]
    return {"detail": "; ".join([detail, *extra])}


def giosg_errors(renames: Mapping[str, str]) -> dict[type[Exception], ExceptionHandler]:
    """Exception handlers for a giosg router: exportd's handlers, their bodies
    reshaped by :func:`giosg_body` with ``renames`` (exportd field name -> giosg's)."""

    def handle(request: AnyRequest, exc: Exception) -> Response[GiosgBody]:
        native = native_error(request, exc)
        status = native.status_code or 500
        headers = {"WWW-Authenticate": "Token"} if status == 401 else None
        return Response(
            giosg_body(status, native.content, renames),
            status_code=status,
            media_type="application/json",
            headers=headers,
        )

    return dict.fromkeys(HANDLERS, handle)
