"""Every error the HTTP API answers with has one body: ``{code, message, fields}``.

exportd's own errors map to a status by their code; the framework's (a
malformed body, an unknown path, a wrong method) are rewritten into the same
body, naming the field where there is one.  An unexpected exception is logged
and answers 500 without its details.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from litestar import Response
from litestar.exceptions import HTTPException, ValidationException

from exportd.errors import ErrorBody, ExportError, FieldError, InternalError, Unavailable
from exportd.http.context import AnyRequest
from exportd.http.ranges import RangeNotSatisfiable
from exportd.kernel.validation import field_error

log = logging.getLogger(__name__)

STATUS_OF_CODE = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "not_implemented": 406,
    "conflict": 409,
    "gone": 410,
    "range_not_satisfiable": 416,
    "unavailable": 503,
}
CODE_OF_STATUS = {status: code for code, status in STATUS_OF_CODE.items()}


def error_response(status: int, body: ErrorBody) -> Response[ErrorBody]:
    """The answer for an error."""
    return Response(body, status_code=status, media_type="application/json")


def on_export_error(request: AnyRequest, exc: ExportError) -> Response[ErrorBody]:
    """exportd's errors, with the status their code stands for (and, for a range past a
    file's end, its ``Content-Range``; for a 503 that knows when to try again, its
    ``Retry-After``)."""
    answer = error_response(STATUS_OF_CODE.get(exc.code, 500), exc.body())
    if isinstance(exc, RangeNotSatisfiable):
        answer.headers["Content-Range"] = exc.content_range()
    if isinstance(exc, Unavailable) and exc.retry_after is not None:
        answer.headers["Retry-After"] = str(exc.retry_after)
    return answer


def on_validation_error(request: AnyRequest, exc: ValidationException) -> Response[ErrorBody]:
    """A body, query or path value the framework refused, naming each field."""
    fields = []
    for problem in exc.extra if isinstance(exc.extra, list) else []:
        key = str(problem.get("key", "")) if isinstance(problem, dict) else ""
        prefix = "" if key == "data" else key.replace("[...]", "")
        message = str(problem.get("message", "")) if isinstance(problem, dict) else str(problem)
        fields.append(field_error(message, prefix))
    if not fields:
        fields = [FieldError("body", str(exc.detail))]
    message = f"invalid value for {', '.join(field.name for field in fields)}"
    return error_response(400, ErrorBody("invalid_request", message, fields))


def on_http_error(request: AnyRequest, exc: HTTPException) -> Response[ErrorBody]:
    """The framework's other refusals (malformed JSON, no such path or method)."""
    status = exc.status_code
    code = CODE_OF_STATUS.get(status, "invalid_request" if status < 500 else "internal_error")
    fields = [FieldError("body", str(exc.detail))] if status == 400 else []
    return error_response(status, ErrorBody(code, str(exc.detail), fields))


def on_unexpected_error(request: AnyRequest, exc: Exception) -> Response[ErrorBody]:
    """A bug: logged with its traceback, answered without it."""
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, InternalError("exportd failed to answer; see its log").body())


Handler = Callable[[AnyRequest, Any], Response[ErrorBody]]

HANDLERS: dict[type[Exception], Handler] = {
    ExportError: on_export_error,
    ValidationException: on_validation_error,
    HTTPException: on_http_error,
    Exception: on_unexpected_error,
}
"""Exception handlers for the app, most specific first."""


def native_error(request: AnyRequest, exc: Exception) -> Response[ErrorBody]:
    """The native API's answer to ``exc``, for an API with a body of its own to reshape
    (the seed-compatible APIs)."""
    handler = next(handle for kind, handle in HANDLERS.items() if isinstance(exc, kind))
    return handler(request, exc)
