"""The one error model of exportd: a code, a message and the fields at fault.

Every failure a user can cause is raised as an :class:`ExportError` subclass;
HTTP answers, AMQP replies and the CLI all render it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class FieldError(msgspec.Struct, frozen=True):
    """One field that is wrong, with why (``name`` is a dotted path)."""

    name: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    """The wire form of an error: ``{code, message, fields: [{name, message}]}``."""

    code: str
    message: str
    fields: list[FieldError] = []


class ExportError(Exception):
    """Base class of every error exportd reports to a user."""

    code = "error"

    def __init__(self, message: str, fields: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.fields = list(fields)

    def body(self) -> ErrorBody:
        """The error as its wire form."""
        return ErrorBody(code=self.code, message=self.message, fields=self.fields)

    def __str__(self) -> str:
        if not self.fields:
            return self.message
        details = "; ".join(f"{f.name}: {f.message}" for f in self.fields)
        return f"{self.message} ({details})"


class InvalidRequest(ExportError):
    """The request (or a parameter of it) is malformed; nothing was started."""

    code = "invalid_request"

    @classmethod
    def field(cls, name: str, message: str) -> InvalidRequest:
        """An invalid request with exactly one bad field."""
        return cls(f"invalid value for {name}", [FieldError(name, message)])


class NotFound(ExportError):
    """Something the request names (a room, a workflow, a channel) does not exist."""

    code = "not_found"

    @classmethod
    def field(cls, name: str, message: str) -> NotFound:
        """A not-found error about exactly one field."""
        return cls(message, [FieldError(name, message)])


class Unauthorized(ExportError):
    """No credentials, or credentials exportd does not know (HTTP 401)."""

    code = "unauthorized"


class Forbidden(ExportError):
    """Known credentials that do not allow this: a missing permission, an inactive
    subscription, a missing benefit (HTTP 403)."""

    code = "forbidden"


class Unavailable(ExportError):
    """exportd cannot take this now (too much at once); the same request may work
    shortly (HTTP 503), after ``retry_after`` seconds if given (``Retry-After``)."""

    code = "unavailable"

    def __init__(
        self, message: str, fields: Sequence[FieldError] = (), *, retry_after: int | None = None
    ) -> None:
        super().__init__(message, fields)
        self.retry_after = retry_after


class Gone(ExportError):
    """The file asked for existed but does no more: the job expired or was deleted
    (HTTP 410)."""

    code = "gone"


class Conflict(ExportError):
    """The request clashes with what exists: an operation a job's status does not allow
    (restarting a job that is done), or an idempotency key reused for another request."""

    code = "conflict"


class NotImplementedFeature(ExportError):
    """The request asks for something valid that this source does not support yet."""

    code = "not_implemented"


class ExportFailed(ExportError):
    """A source or format failed while the export ran."""

    code = "export_failed"


class Cancelled(ExportError):
    """The export was canceled before it finished; its partial file is gone."""

    code = "canceled"


class InternalError(ExportError):
    """exportd failed on its side (a bug, a failing job store): the details, a traceback
    among them, are in its log, not in the answer (HTTP 500)."""

    code = "internal_error"


class PluginError(ExportError):
    """A plugin could not be loaded, or two plugins claim the same name."""

    code = "plugin_error"


class ConfigError(ExportError):
    """The configuration file or an ``EXPORTD_*`` variable is wrong."""

    code = "config_error"

    @classmethod
    def field(cls, name: str, message: str) -> ConfigError:
        """A configuration error about exactly one key (``plugins.email.sender``)."""
        return cls(f"configuration key {name!r}: {message}", [FieldError(name, message)])


def from_body(body: ErrorBody) -> ExportError:
    """The error a wire :class:`ErrorBody` describes, as the subclass of its ``code``
    (an unknown code, from a newer exportd, keeps its code on a plain ExportError)."""
    classes = {cls.code: cls for cls in _subclasses(ExportError)}
    error = classes.get(body.code, ExportError)(body.message, body.fields)
    error.code = body.code
    return error


def _subclasses(cls: type[ExportError]) -> list[type[ExportError]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def error_line(error: ErrorBody) -> str:
    """An error in one line: the fields at fault if it names any, else its message."""
    if not error.fields:
        return error.message
    return "; ".join(f"{field.name}: {field.message}" for field in error.fields)
