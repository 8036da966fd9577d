"""The native API fuzzed from its own OpenAPI document, over real HTTP.

schemathesis turns the document the running server publishes into Hypothesis
strategies, valid requests and invalid ones (``GenerationMode.NEGATIVE``), for
each operation of the native API.  Each request goes with ORG's token, another
organisation's token or no token at all, and the answer must hold to the API's
promises whatever was sent:

* never a 5xx;
* every 4xx has the one error body ``{code, message, fields: [{name, message}]}``,
  with the code its status stands for;
* without a token, a route that needs one answers 401 before it reads anything;
* another organisation never sees ORG's job, and a download URL is never
  accepted without its signature;
* a 2xx answer matches the document's schema for it.

Hypothesis drives a synchronous ``httpx.Client`` in a thread while the server,
engine and worker run in the test's event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.http.server import Server, error_body
from tests.http.test_native import created, logs
from tests.unit.datastore import OTHER_ORG

OPERATIONS = [
    "GET /v1/jobs",
    "POST /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "DELETE /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "POST /v1/jobs/{job_id}/restart",
    "POST /v1/jobs/{job_id}/links",
    "POST /v1/exports",
    "GET /v1/files/{job_id}/{part}",
]
"""Every operation of the native API (the document must have these and no others)."""
NATIVE = r"^/v1/(jobs|exports|files)"
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
AnyCase = Case[Operation]
"""An operation of the document, and a request generated for one."""
EXAMPLES = 50
"""Examples per operation: enough to find the usual crashes in a few seconds."""
CODE_OF_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    410: "gone",
}
"""The error code each client-error status goes with."""
CALLERS = ["org", "org", "org", "other", "nobody"]
"""Who sends a request: mostly ORG's user, sometimes another org's, or nobody."""


def body_on_valid(body: Any, pick: int | None) -> Any:
    """``body``, or with ``pick``, a valid request with one of ``body``'s fields (the
    ``pick``-th, round the sorted names) put in: so that fuzzing also reaches the checks
    behind the first refusal, and requests that are accepted."""
    if pick is None or not isinstance(body, dict) or not body:
        return body
    name = sorted(body)[pick % len(body)]
    return {**logs(), name: body[name]}


def answer_to(
    client: httpx.Client, case: AnyCase, caller: str, tokens: dict[str, str], *, pick: int | None
) -> httpx.Response:
    """Send ``case`` as ``caller`` (``nobody`` sends no credentials at all)."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    headers = {
        name: value
        for name, value in kwargs["headers"].items()
        # httpx measures the body it sends: a generated Content-Length would not fit it.
        if name.lower() not in ("authorization", "x-auth-token", "x-user-id", "content-length")
    }
    if caller != "nobody":
        headers["Authorization"] = f"Bearer {tokens[caller]}"
    if "json" in kwargs:
        content = {"json": body_on_valid(kwargs["json"], pick)}
    else:
        content = {"content": kwargs.get("data")}
    return client.request(
        kwargs["method"], kwargs["url"], headers=headers, params=kwargs.get("params"), **content
    )


def check(case: AnyCase, answer: httpx.Response, caller: str, job_id: str) -> None:
    """The promises every answer keeps (see the module's docstring)."""
    reproduce = f"{case.method} {answer.request.url} as {caller}: {answer.status_code}"
    assert answer.status_code < 500, f"{reproduce} {answer.text}"
    if answer.status_code >= 400:
        body = error_body(answer)
        assert body["code"] == CODE_OF_STATUS.get(answer.status_code), f"{reproduce} {body}"
        assert body["message"], reproduce
    needs_token = not case.path.startswith("/v1/files/")
    if caller == "nobody" and needs_token:
        assert answer.status_code == 401, f"{reproduce} {answer.text}"
    if caller == "other" and answer.is_success:
        assert job_id not in answer.text, f"{reproduce} shows ORG's job"
    if caller == "other" and needs_token and (case.path_parameters or {}).get("job_id") == job_id:
        assert answer.status_code == 404, f"{reproduce}: ORG's job is not another org's"
    if not needs_token:
        assert answer.status_code >= 400, f"{reproduce}: a file without a valid signature"
    if answer.is_success and answer.headers.get("content-type", "").startswith("application/json"):
        case.validate_response(
            answer, checks=[response_schema_conformance, content_type_conformance]
        )


def fuzz(server_url: str, operation: Operation, job_id: str, tokens: dict[str, str]) -> None:
    """Run the examples for ``operation`` against the server at ``server_url``."""
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    strategies = [operation.as_strategy(generation_mode=mode) for mode in modes]
    if "{job_id}" in operation.path:  # ORG's real, finished job too, not only strangers
        strategies += [
            operation.as_strategy(generation_mode=mode, path_parameters={"job_id": job_id})
            for mode in modes
        ]
    with httpx.Client(base_url=server_url, timeout=30) as client:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: the message has the request
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(
            case=st.one_of(strategies),
            caller=st.sampled_from(CALLERS),
            pick=st.none() | st.integers(min_value=0, max_value=31),
        )
        def examples(case: AnyCase, caller: str, pick: int | None) -> None:
            """One request, and the promises its answer keeps."""
            answer = answer_to(client, case, caller, tokens, pick=pick)
            check(case, answer, caller, job_id)

        examples()


async def document_of(server: Server) -> schemathesis.BaseSchema:
    """The server's OpenAPI document, restricted to the native API."""
    answer = await server.http.get("/v1/openapi/openapi.json")
    assert answer.status_code == 200
    return schemathesis.openapi.from_dict(answer.json()).include(path_regex=NATIVE)


async def test_the_document_lists_the_native_operations(server: Server) -> None:
    schema = await document_of(server)
    labels = [result.ok().label for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert sorted(labels) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
async def test_no_request_crashes_and_every_error_has_the_body(server: Server, label: str) -> None:
    org, other = server.tenant(), server.tenant(OTHER_ORG)
    job_id = await created(server, logs(), org.headers)
    assert (await server.wait(job_id)).status == "done"
    schema = await document_of(server)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    tokens = {"org": org.token, "other": other.token}
    await asyncio.to_thread(fuzz, server.url, operation, job_id, tokens)


@pytest.mark.parametrize(
    "page",
    [
        "461168601842738792",  # (page - 1) * page_size is past SQLite's 64-bit integers
        "9223372036854775808",  # itself past them
    ],
)
async def test_a_page_far_past_the_last_is_empty_or_refused(server: Server, page: str) -> None:
    answer = await server.http.get(f"/v1/jobs?page={page}", headers=server.tenant().headers)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert [field["name"] for field in error_body(answer)["fields"]] == ["page"]
    else:
        assert answer.json()["results"] == []


async def test_a_signature_that_is_not_ascii_is_refused(server: Server) -> None:
    job_id = await created(server, logs(), server.tenant().headers)
    await server.wait(job_id)
    answer = await server.http.get(f"/v1/files/{job_id}/0?attempt=1&expires=1&signature=%C3%A9")
    assert (answer.status_code, error_body(answer)["code"]) == (403, "forbidden")
