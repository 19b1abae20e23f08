"""Faults met and survived in a run: failed documents by kind, unreadable answers, grounding,
and the ledger's retries and failed calls by kind.

:class:`FaultTally` adds annotation lines (``DocResult`` JSON) one at a time, in O(kinds)
memory, so the streamed engine can count a corpus of any size; :func:`fault_summary` is
the same over a list.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["FaultTally", "failure_kind", "fault_summary"]

_COUNTS = (("parse_failures", "parse_failures"), ("truncated_answers", "truncated"), ("dropped_labels", "dropped_labels"))


def failure_kind(reason: str | None) -> str:
    """The kind of a failed document's reason: the LLMCallError kind, or ``unreadable_answer``."""
    r = (reason or "").strip()
    if r.startswith("unreadable answer"):
        return "unreadable_answer"
    head = r.split(":", 1)[0].strip()
    return head if head and " " not in head else "other"


class FaultTally:
    """Running counts over annotation lines."""

    def __init__(self) -> None:
        self.counts: dict[str, Any] = {"documents": 0, "ok": 0, "failed": 0, "failed_by_kind": {}, "parse_failures": 0,
                                       "truncated_answers": 0, "ungrounded_mentions": 0, "fuzzy_mentions": 0,
                                       "dropped_labels": 0}

    def add(self, row: dict[str, Any]) -> None:
        """Count one annotation line (an annotator's result on one document)."""
        c = self.counts
        c["documents"] += 1
        if row.get("status", "ok") == "ok":
            c["ok"] += 1
        else:
            c["failed"] += 1
            k = failure_kind(row.get("reason"))
            c["failed_by_kind"][k] = c["failed_by_kind"].get(k, 0) + 1
        for key, field in _COUNTS:
            c[key] += int(row.get(field, 0) or 0)
        g = row.get("grounding") or {}
        c["ungrounded_mentions"] += int(g.get("ungrounded", 0) or 0)
        c["fuzzy_mentions"] += int(g.get("fuzzy", 0) or 0)

    def merge(self, counts: dict[str, Any]) -> None:
        """Add the ``counts`` of another tally (e.g. a shard's, read back from its stats file)."""
        for k, v in counts.items():
            if k == "failed_by_kind":
                for kind, n in v.items():
                    self.counts[k][kind] = self.counts[k].get(kind, 0) + n
            elif k in self.counts:
                self.counts[k] += v

    def result(self, ledger_total: dict[str, Any] | None = None) -> dict[str, Any]:
        """The counts, plus the calls, retries and failed calls of a ledger summary's ``total`` when given."""
        out = {**self.counts, "failed_by_kind": dict(self.counts["failed_by_kind"])}
        if ledger_total is not None:
            out["calls"] = {k: ledger_total[k] for k in ("calls", "ok", "failed", "cached")}
            out["retries"] = ledger_total.get("retries", 0)
            out["retries_by_kind"] = ledger_total.get("retries_by_kind", {})
            out["failed_calls_by_kind"] = ledger_total.get("failures_by_kind", {})
        return out


def fault_summary(rows: Iterable[dict[str, Any]], ledger_records: Iterable | None = None) -> dict[str, Any]:
    """:class:`FaultTally` over ``rows`` and the summary of ``ledger_records`` (when given)."""
    tally = FaultTally()
    for r in rows:
        tally.add(r)
    total = None
    if ledger_records is not None:
        from diziner.llm.ledger import summarise

        total = summarise(ledger_records)["total"]
    return tally.result(total)
