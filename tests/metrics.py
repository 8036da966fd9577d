"""exportd's metrics as Prometheus reads them: the text of a ``/metrics`` answer parsed
with prometheus-client's own parser, and its samples looked up by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exportd.metrics.process import CONTENT_TYPE

TIMEOUT = 10.0


@dataclass(frozen=True)
class Scrape:
    """The samples of one exposition."""

    samples: tuple[Sample, ...]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """The samples of Prometheus's text format ``text``."""
        families = text_string_to_metric_families(text)
        return cls(tuple(sample for family in families for sample in family.samples))

    def matching(self, name: str, **labels: str) -> list[Sample]:
        """The samples called ``name`` whose labels include ``labels``."""
        return [
            sample
            for sample in self.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample called ``name`` with exactly ``labels``; None if
        there is none."""
        found = [s for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, found
        return found[0].value if found else None

    def names(self) -> set[str]:
        """The names of every sample."""
        return {sample.name for sample in self.samples}


def scrape(base_url: str) -> Scrape:
    """``GET base_url/metrics``, parsed; it must answer 200 in Prometheus's text format."""
    answer = httpx.get(f"{base_url}/metrics", timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE
    return Scrape.parse(answer.text)
