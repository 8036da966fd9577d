"""What the seed-compatible facades share, whatever API they imitate."""

from __future__ import annotations

from collections.abc import Mapping

from exportd.messages import API_LABEL, JobSnapshot


def renamed(text: str, names: Mapping[str, str]) -> str:
    """``text`` with each of exportd's field names in ``names`` replaced by the facade's,
    in the order of ``names`` (so that a longer name is replaced before a name it holds)."""
    for exportd_name, name in names.items():
        text = text.replace(exportd_name, name)
    return text


def made_through(job: JobSnapshot, api: str) -> bool:
    """Whether ``job`` was made through the facade whose :data:`API_LABEL` is ``api``."""
    return job.request.labels.get(API_LABEL) == api
