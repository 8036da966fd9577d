"""The native API, version 1: jobs, their files, synchronous exports.

Every route but the file downloads needs a token with the ``reports``
permission; a caller sees and touches only its organisation's jobs (another
organisation's answer as not found).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Response, Router, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import File

from exportd.engine.store import JobQuery
from exportd.errors import Conflict, Gone, InvalidRequest
from exportd.http.context import (
    FILE_ANSWER,
    MAX_PAGE_NUMBER,
    AnyRequest,
    HttpApi,
    api_of,
    caller_of,
    requires,
)
from exportd.messages import API_LABEL, ExportRequest, JobSnapshot
from exportd.signing import FileLink, check_expiry

PERMISSION = "reports"
URL_LIFETIMES = ("default", "file")
UrlLifetime = Annotated[
    str,
    QueryParameter(
        description="how long the download URLs work: `default`, for `http.url_lifetime` "
        "(never past the files' expiry); `file`, as long as the files live (until the "
        "job's `expires_at`)",
        enum=list(URL_LIFETIMES),
    ),
]
"""The ``url_lifetime`` query parameter of the routes that hand out download URLs (see
:func:`until_expiry`)."""


class JobResource(JobSnapshot, kw_only=True):
    """A job as the API shows it: the snapshot, its own URL, and a signed download URL
    for each file while it has files."""

    url: str
    files: list[FileLink] = msgspec.field(default_factory=list)


class JobList(msgspec.Struct, kw_only=True):
    """A page of jobs, newest first, with the total count and links to its neighbours."""

    count: int
    page: int
    page_size: int
    next: str | None
    previous: str | None
    results: list[JobResource]


class FileLinks(msgspec.Struct, kw_only=True):
    """Fresh download URLs for a job's files."""

    files: list[FileLink]


def resource(
    api: HttpApi, request: AnyRequest, job: JobSnapshot, *, until_expiry: bool = False
) -> JobResource:
    """``job`` with its URL and file links, for ``request``'s caller; the links work
    as long as the files with ``until_expiry``."""
    return JobResource(
        **msgspec.structs.asdict(job),
        url=f"{api.base_url(request)}/v1/jobs/{job.id}",
        files=api.file_links(request, job, until_expiry=until_expiry),
    )


def until_expiry(url_lifetime: str) -> bool:
    """Whether the ``url_lifetime`` query parameter asks for URLs that work until the
    files expire; a value other than ``default`` and ``file`` is a 400 naming it."""
    if url_lifetime not in URL_LIFETIMES:
        raise InvalidRequest.field(
            "url_lifetime", f"must be one of {', '.join(URL_LIFETIMES)}; got {url_lifetime!r}"
        )
    return url_lifetime == "file"


def own_request(request: AnyRequest, export: ExportRequest) -> ExportRequest:
    """``export`` as a request of the caller's org and user, with the ``Idempotency-Key``
    header, if any.  Files are sent only to the organisation's own users, so that
    exportd is nobody's mail relay."""
    caller = caller_of(request)
    for name, own in (("org_id", caller.org.id), ("user_id", caller.user.id)):
        given = getattr(export, name)
        if given is not None and given != own:
            raise InvalidRequest.field(name, "is your token's; leave it out")
    if API_LABEL in export.labels:  # a job of the native API shows in no facade's listing
        raise InvalidRequest.field(
            f"labels.{API_LABEL}", "is set by the API a job is made through; leave it out"
        )
    strangers = api_of(request).tenants.strangers(caller.org.id, export.delivery.to)
    if strangers:
        raise InvalidRequest.field(
            "delivery.to",
            f"{', '.join(strangers)}: not the address of a user of your organisation",
        )
    key = request.headers.get("idempotency-key") or export.idempotency_key
    return msgspec.structs.replace(
        export, org_id=caller.org.id, user_id=caller.user.id, idempotency_key=key
    )


def label_filter(given: list[str]) -> dict[str, str]:
    """The labels of ``?label=key:value`` parameters; a 400 naming ``label`` for one
    without a ``:``, or a key given twice."""
    labels: dict[str, str] = {}
    for text in given:
        key, colon, value = text.partition(":")
        if not colon:
            raise InvalidRequest.field("label", f"{text!r} is not key:value")
        if key in labels:
            raise InvalidRequest.field("label", f"{key!r} is given twice")
        labels[key] = value
    return labels


@post("/jobs", status_code=201, summary="Create an export job")
async def create_job(request: AnyRequest, data: JSONBody[ExportRequest]) -> JobResource:
    """Validate the request, record the job and queue it.  The same ``Idempotency-Key``
    header (or ``idempotency_key``) gives the same job; with other parameters, 409."""
    api = api_of(request)
    job = await api.engine.submit(own_request(request, data))
    return resource(api, request, job)


@get("/jobs", summary="List jobs, newest first")
async def list_jobs(
    request: AnyRequest,
    *,
    page: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_NUMBER)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
    status: FromQuery[str | None] = None,
    source: FromQuery[str | None] = None,
    user_id: Annotated[str | None, QueryParameter(description="the creator")] = None,
    label: Annotated[
        list[str] | None,
        QueryParameter(
            description="key:value, a label the jobs have; repeat it for jobs with every one"
        ),
    ] = None,
) -> JobList:
    """The caller's organisation's jobs, filtered by status, source, creator and labels."""
    api = api_of(request)
    caller = caller_of(request)
    found = await api.engine.list_jobs(
        JobQuery(
            org_id=caller.org.id,
            user_id=user_id,
            status=() if status is None else (status,),
            source=source,
            labels=label_filter(label or []),
            limit=page_size,
            offset=(page - 1) * page_size,
        )
    )
    filters = {"status": status, "source": source, "user_id": user_id}

    def link(number: int) -> str:
        query = {"page": number, "page_size": page_size, **filters}
        given = [(name, value) for name, value in query.items() if value is not None]
        given.extend(("label", value) for value in label or [])
        return f"{api.base_url(request)}/v1/jobs?{urlencode(given)}"

    return JobList(
        count=found.total,
        page=page,
        page_size=page_size,
        next=link(page + 1) if page * page_size < found.total else None,
        previous=link(page - 1) if page > 1 else None,
        results=[resource(api, request, job) for job in found.jobs],
    )


@get("/jobs/{job_id:str}", summary="Get a job")
async def get_job(
    request: AnyRequest, job_id: FromPath[str], url_lifetime: UrlLifetime = "default"
) -> JobResource:
    """One job of the caller's organisation, with download URLs once it is done."""
    api = api_of(request)
    caller = caller_of(request)
    job = await api.engine.get(job_id, caller.org.id)  # another org's is 404, first
    return resource(api, request, job, until_expiry=until_expiry(url_lifetime))


@post("/jobs/{job_id:str}/cancel", status_code=200, summary="Cancel a job")
async def cancel_job(request: AnyRequest, job_id: FromPath[str]) -> JobResource:
    """Stop a created or running job; its workers stop within a second."""
    api = api_of(request)
    caller = caller_of(request)
    return resource(api, request, await api.engine.cancel(job_id, caller.org.id))


@post("/jobs/{job_id:str}/restart", status_code=200, summary="Restart a job")
async def restart_job(request: AnyRequest, job_id: FromPath[str]) -> JobResource:
    """Run a failed, canceled or expired job again, as a new attempt."""
    api = api_of(request)
    caller = caller_of(request)
    return resource(api, request, await api.engine.restart(job_id, caller.org.id))


@delete("/jobs/{job_id:str}", status_code=204, summary="Delete a job")
async def delete_job(request: AnyRequest, job_id: FromPath[str]) -> None:
    """Delete a job and its files at once."""
    api = api_of(request)
    caller = caller_of(request)
    await api.engine.delete(job_id, caller.org.id)


@post("/jobs/{job_id:str}/links", status_code=200, summary="New download URLs")
async def new_links(
    request: AnyRequest, job_id: FromPath[str], url_lifetime: UrlLifetime = "default"
) -> FileLinks:
    """Fresh signed URLs for a done job's files; 409 while it runs, 410 once its files
    are gone."""
    api = api_of(request)
    caller = caller_of(request)
    job = await api.engine.get(job_id, caller.org.id)  # another org's is 404, first
    lasting = until_expiry(url_lifetime)
    check_downloadable(job, job.attempt, datetime.now(UTC))
    return FileLinks(files=api.file_links(request, job, until_expiry=lasting))


@post("/exports", status_code=200, summary="Export now: the file is the answer")
async def export_now(request: AnyRequest, data: JSONBody[ExportRequest]) -> File:
    """Run a small export while the caller waits and answer with the file (at most
    ``http.sync_max_rows`` rows; more is a 400 naming ``limit``)."""
    api = api_of(request)
    return await api.export_now(own_request(request, data))


def check_downloadable(job: JobSnapshot, attempt: int, now: datetime) -> None:
    """Raise :class:`Gone` if the job's files (of ``attempt``) are no more, or their
    expiry has come (``now``) though the sweeper has not yet deleted them, and
    :class:`Conflict` if it has none yet."""
    if job.status in ("expired", "deleted") or attempt != job.attempt:
        raise Gone(f"the files of job {job.id} are gone: it is {job.status}")
    if job.expires_at is not None and job.expires_at <= now:
        raise Gone(f"the files of job {job.id} expired at {job.expires_at.isoformat()}")
    if job.status != "done":
        raise Conflict(f"job {job.id} has no files yet: it is {job.status}")


@get(
    "/files/{job_id:str}/{part:int}",
    summary="Download a file (signed URL)",
    response_description=FILE_ANSWER,
)
async def download(
    request: AnyRequest,
    job_id: FromPath[str],
    part: FromPath[int],
    *,
    attempt: FromQuery[int],
    expires: FromQuery[int],
    signature: FromQuery[str],
) -> Response[Any]:
    """The file of a part, to the holder of a signed URL (no other credential): 403 for
    a bad signature, 410 once the file is gone (even if the URL expired with it),
    403 for a URL that expired while the file lives."""
    api = api_of(request)
    api.signer.check_signature(job_id, attempt, part, expires=expires, signature=signature)
    job = await api.engine.get(job_id)
    moment = datetime.now(UTC)
    check_downloadable(job, attempt, moment)
    check_expiry(expires, moment)
    file = next((p.file for p in job.parts if p.part == part), None)
    if file is None:
        raise Gone(f"job {job_id} has no file for part {part}")
    link_expiry = datetime.fromtimestamp(expires, UTC)
    if job.expires_at is not None:
        link_expiry = min(link_expiry, job.expires_at)
    return await api.file_answer(request, file, link_expiry)


jobs = Router(
    "/v1",
    route_handlers=[
        create_job,
        list_jobs,
        get_job,
        cancel_job,
        restart_job,
        delete_job,
        new_links,
        export_now,
    ],
    guards=[requires(PERMISSION)],
    tags=["jobs"],
    security=[{"token": []}],
)
"""The native API's routes for callers with a token."""

files = Router("/v1", route_handlers=[download], tags=["files"])
"""Downloads, which need only a signed URL."""
