"""docs/operations.md, "Metrics": its table names every metric exportd's processes
define (and no other), and its sample alert rules parse and name only those metrics."""

from __future__ import annotations

import re
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from exportd.deliveries.metrics import DeliveryMetrics
from exportd.engine.metrics import EngineMetrics
from exportd.http.metrics import HttpMetrics
from exportd.metrics.process import ProcessMetrics
from exportd.workers.metrics import WorkerMetrics

OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```$", re.DOTALL | re.MULTILINE)
TABLE_NAME = re.compile(r"^\| `(exportd_\w+)` \| (\w+) \|", re.MULTILINE)
METRIC_NAME = re.compile(r"\bexportd_\w+")


def metrics_section() -> str:
    """The section "Metrics", to the next section of its level."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index("## Metrics")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


def defined() -> dict[str, str]:
    """Every metric family the processes define, by its exposed name, and its type."""
    process = ProcessMetrics()
    for part in (EngineMetrics, WorkerMetrics, HttpMetrics, DeliveryMetrics):
        process.part(part)
    families = process.registry.collect()
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in families
    }


def test_the_table_names_every_metric_with_its_type() -> None:
    documented = dict(TABLE_NAME.findall(metrics_section()))
    assert documented == defined()


def test_the_alert_rules_parse_and_name_only_metrics_that_exist() -> None:
    blocks = [yaml.safe_load(block) for block in YAML_BLOCK.findall(metrics_section())]
    rules = [
        rule for block in blocks for group in block.get("groups", []) for rule in group["rules"]
    ]
    assert {"ExportdNoWorkerAlive", "ExportdOutboxGrowing", "ExportdDeadLettersGrowing"} <= {
        rule["alert"] for rule in rules
    }
    known = defined().keys()
    for rule in rules:
        named = set(METRIC_NAME.findall(rule["expr"]))
        assert named <= known, (rule["alert"], named - known)
    scraped = [block for block in blocks if "scrape_configs" in block]
    assert [job["metrics_path"] for job in scraped[0]["scrape_configs"]] == ["/metrics"] * 2
