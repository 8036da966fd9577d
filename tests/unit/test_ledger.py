"""The deliveries ledger on its own: what it keeps, and what it forgets."""

from __future__ import annotations

import time
from pathlib import Path

from exportd.deliveries.ledger import Ledger, Pending


def next_due(ledger: Ledger) -> Pending:
    pending = ledger.due(time.time() + 1)
    assert pending is not None
    return pending


def test_prune_forgets_closed_deliveries_only_and_only_those_closed_before(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "deliveries.db")
    for job in ("a", "b", "c"):
        assert ledger.add(job, 1, "email")
    sent = next_due(ledger)
    ledger.finish(sent, "sent")
    given_up = next_due(ledger)
    ledger.finish(given_up, "given_up", "no such mailbox")
    waiting = next_due(ledger)

    assert ledger.prune(time.time() - 60) == 0  # closed just now: kept
    assert ledger.prune(time.time() + 1) == 2
    assert ledger.status(sent.job_id, 1) is None
    assert ledger.status(given_up.job_id, 1) is None
    assert ledger.status(waiting.job_id, 1) == "pending"
    assert not ledger.add(waiting.job_id, 1, "email")  # still recorded: not made twice
    ledger.close()


def test_forget_forgets_every_delivery_of_the_jobs_named_only(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "deliveries.db")
    for job, attempt in (("a", 1), ("a", 2), ("b", 1), ("c", 1)):
        assert ledger.add(job, attempt, "email")
    ledger.finish(Pending("a", 1, "email", 0), "sent")

    ledger.forget(["a", "b"])
    ledger.forget([])

    assert [ledger.status(job, attempt) for job, attempt in (("a", 1), ("a", 2), ("b", 1))] == [
        None,
        None,
        None,
    ]
    assert ledger.status("c", 1) == "pending"
    ledger.close()
