"""The giosg workflow source data download (seed ``002_ab66a50b4034a1aa``): the
events behind one step of a workflow, as a csv or xlsx file in the answer itself.

``POST /api/reporting/workflow/v1/orgs/{organization_id}/workflows/{workflow_id}
/step/{step_index}/download/`` with ``filters``, ``interval`` ``{start, end}``,
``step_data``, ``target``, ``format`` and ``limit`` runs a synchronous export of
the ``workflows`` source (at most ``http.sync_max_rows`` rows) and answers 200
with the file: ``Content-Type`` ``text/csv`` or the xlsx type, and its name in
``Content-Disposition``.

A caller authenticates with ``Authorization: Bearer <token>`` (or ``Token``); the
token needs the ``reports`` permission and an active subscription, and the URL's
organisation must be the caller's (403).  A workflow or step that does not
exist, or another organisation's workflow, is a 404; a filter on a property
the source does not implement is a 406.  Error bodies are giosg's (see
:mod:`exportd.http.facades.giosg_common`): a wrong ``format`` answers exactly the
documented ``{"format": ["Format must be 'xlsx' or 'csv'. Change the value or omit
the field from payload."]}``, other bad fields the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from litestar import Router, post
from litestar.params import FromPath, JSONBody
from litestar.response import File

from exportd.errors import InvalidRequest
from exportd.http.context import AnyRequest, HttpApi, api_of, caller_of, requires
from exportd.http.facades.giosg_common import giosg_errors, same_org
from exportd.messages import ExportRequest, Interval
from exportd.plugins.hookspecs import hookimpl

PERMISSION = "reports"
SOURCE = "workflows"
MEDIA_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
"""The formats the download offers and the ``Content-Type`` the seed gives each."""
FORMAT_MESSAGE = "Format must be 'xlsx' or 'csv'. Change the value or omit the field from payload."
PATH = (
    "/api/reporting/workflow/v1/orgs/{organization_id:str}/workflows/{workflow_id:str}"
    "/step/{step_index:str}/download"
)


class DownloadPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What to download.  ``filters`` and ``step_data`` items, ``target`` and ``limit``
    are the ``workflows`` source's parameters, which it checks itself."""

    filters: list[Any]
    interval: Interval
    step_data: list[Any] | None = None
    target: str = "default"
    format: str = "csv"
    limit: int | None = None

    def request(
        self, org_id: str, user_id: str, workflow_id: str, step_index: str
    ) -> ExportRequest:
        """The export for ``user_id`` of ``org_id`` this payload asks for; :class:`InvalidRequest`
        naming ``format`` or ``step_index`` if either is wrong."""
        if self.format not in MEDIA_TYPES:
            raise InvalidRequest.field("format", FORMAT_MESSAGE)
        if not step_index.isdecimal():
            raise InvalidRequest.field("step_index", "must be a whole number, 0 or more")
        params = {
            "workflow_id": workflow_id,
            "step_index": int(step_index),
            "filters": self.filters,
            "step_data": self.step_data,
            "target": self.target,
            "limit": self.limit,
        }
        return ExportRequest(
            source=SOURCE,
            format=self.format,
            params={name: value for name, value in params.items() if value is not None},
            interval=self.interval,
            org_id=org_id,
            user_id=user_id,
        )


@post("/", status_code=200, summary="Download a workflow step's source data")
async def download_step(
    request: AnyRequest,
    workflow_id: FromPath[str],
    step_index: FromPath[str],
    data: JSONBody[DownloadPayload],
) -> File:
    """The step's events as a csv or xlsx file."""
    caller = caller_of(request)
    export = data.request(caller.org.id, caller.user.id, workflow_id, step_index)
    response = await api_of(request).export_now(export)
    response.headers["Content-Type"] = MEDIA_TYPES[export.format]
    return response


@hookimpl
def exportd_http_routes(api: HttpApi) -> Iterable[Router]:
    """The workflow download route."""
    return [
        Router(
            PATH,
            route_handlers=[download_step],
            guards=[requires(PERMISSION), same_org],
            exception_handlers=giosg_errors({}),  # type: ignore[arg-type]
            tags=["giosg workflow download"],
            security=[{"token": []}],
        )
    ]
