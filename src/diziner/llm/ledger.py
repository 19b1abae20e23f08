"""Usage ledger: one record per LLM call, sums by annotator / iteration / purpose, budget.

Time is kept in three figures: ``latency_s`` (slot to answer), ``compute_s`` (the model
computing, where the backend can tell: local models) and ``wait_s`` (waiting for a
concurrency slot, and for the model behind its other calls); summaries add up each, and
``compute_calls`` counts the calls whose compute time is known.

Cost is known only where a price is: the pool's ``price:``, else ``prices.yaml`` (or
``$DIZINER_PRICES_FILE``), and 0 for models on one's own hardware (``local``,
``vllm-engine``). An unknown price gives
``cost_usd=None``; summaries add up known costs only and count the calls whose cost is
unknown (``unknown_cost_calls``) — unknown is never shown as $0. Cache hits cost 0.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from diziner.errors import BudgetExceeded, ConfigError
from diziner.llm.pool import Price

# Models on one's own hardware (llama.cpp in-process, vLLM engines inside a Ray pipeline): no per-token bill.
FREE_BACKENDS = ("local", "vllm-engine")
_DATED = re.compile(r"^-(\d{4}-?\d{2}-?\d{2}|latest)$")


class LedgerRecord(BaseModel):
    ts: float
    annotator: str | None = None
    purpose: str = "annotate"
    iteration: int | None = None
    backend: str = ""
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0  # from the concurrency slot to the answer (a local call: including its wait for the model)
    # Seconds the model computed the answer (local models); None where the backend cannot tell (HTTP, cache hits).
    compute_s: float | None = None
    # Seconds the call waited: for a concurrency slot, and (local models) for the model, behind its other calls.
    wait_s: float = 0.0
    cached: bool = False
    cost_usd: float | None = None
    ok: bool = True
    reason: str | None = None
    kind: str | None = None
    retries: dict[str, int] = {}  # failed attempts before the outcome, by kind (http_5xx, timeout, ...)
    doc_id: str | None = None  # the document an annotation call was for (both engines; None for other calls)


@lru_cache(maxsize=8)
def _load_price_table(path: str) -> dict[str, Price]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return {str(k): Price.model_validate(v) for k, v in (data.get("models") or {}).items()}
    except Exception as e:  # a broken user table is a config error, not a crash later
        raise ConfigError(f"{path}: cannot read price table: {' '.join(str(e).split())[:200]}") from None


def price_table() -> dict[str, Price]:
    path = os.environ.get("DIZINER_PRICES_FILE") or str(Path(__file__).with_name("prices.yaml"))
    return _load_price_table(path)


def lookup_price(backend: str, model: str, override: Price | None = None) -> Price | None:
    """The price of a model, or None when unknown. Models on one's own hardware are free (``FREE_BACKENDS``)."""
    if override is not None:
        return override
    if backend in FREE_BACKENDS:
        return Price(input_per_mtok=0.0, output_per_mtok=0.0)
    table = price_table()
    name = model.rsplit("/", 1)[-1]
    if name in table:
        return table[name]
    best = None
    for key in table:
        if name.startswith(key) and _DATED.match(name[len(key):]) and (best is None or len(key) > len(best)):
            best = key
    return table[best] if best else None


def _empty() -> dict[str, Any]:
    return {"calls": 0, "ok": 0, "failed": 0, "cached": 0, "tokens_in": 0, "tokens_out": 0,
            "latency_s": 0.0, "compute_s": 0.0, "compute_calls": 0, "wait_s": 0.0, "cost_usd": 0.0, "unknown_cost_calls": 0, "retries": 0,
            "retries_by_kind": {}, "failures_by_kind": {}}


def _add(acc: dict[str, Any], r: LedgerRecord) -> None:
    acc["calls"] += 1
    acc["ok" if r.ok else "failed"] += 1
    acc["cached"] += int(r.cached)
    acc["tokens_in"] += r.tokens_in
    acc["tokens_out"] += r.tokens_out
    acc["latency_s"] += r.latency_s
    acc["wait_s"] += r.wait_s
    if r.compute_s is not None:
        acc["compute_s"] += r.compute_s
        acc["compute_calls"] += 1
    for k, n in (r.retries or {}).items():
        acc["retries"] += n
        acc["retries_by_kind"][k] = acc["retries_by_kind"].get(k, 0) + n
    if not r.ok:
        k = r.kind or "error"
        acc["failures_by_kind"][k] = acc["failures_by_kind"].get(k, 0) + 1
    if r.ok:
        if r.cost_usd is None:
            acc["unknown_cost_calls"] += 1
        else:
            acc["cost_usd"] += r.cost_usd


def _finish(acc: dict[str, Any]) -> dict[str, Any]:
    acc["latency_s"] = round(acc["latency_s"], 6)
    acc["compute_s"] = round(acc["compute_s"], 6)
    acc["wait_s"] = round(acc["wait_s"], 6)
    acc["cost_usd"] = round(acc["cost_usd"], 10)
    acc["retries_by_kind"] = dict(sorted(acc["retries_by_kind"].items()))
    acc["failures_by_kind"] = dict(sorted(acc["failures_by_kind"].items()))
    # Only unknown prices: the total is unknown, not 0.
    if acc["unknown_cost_calls"] and acc["unknown_cost_calls"] == acc["ok"] - acc["cached"]:
        acc["cost_usd"] = None
    acc["cost_complete"] = acc["unknown_cost_calls"] == 0
    return acc


class RunningSummary:
    """Running totals of records (what :func:`summarise` computes), O(groups) memory."""

    def __init__(self) -> None:
        self.total = _empty()
        self.groups: dict[str, dict[str, dict[str, Any]]] = {"by_annotator": {}, "by_iteration": {}, "by_purpose": {}}

    def add(self, r: LedgerRecord) -> None:
        _add(self.total, r)
        for name, key in (("by_annotator", r.annotator or "-"),
                          ("by_iteration", "-" if r.iteration is None else str(r.iteration)),
                          ("by_purpose", r.purpose)):
            _add(self.groups[name].setdefault(key, _empty()), r)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": _finish(dict(self.total))}
        for name, g in self.groups.items():
            out[name] = {k: _finish(dict(v)) for k, v in sorted(g.items())}
        return out


def summarise(records: Iterable[LedgerRecord]) -> dict[str, Any]:
    acc = RunningSummary()
    for r in records:
        acc.add(r)
    return acc.result()


class Ledger:
    """Collects call records; appends each to a JSONL file (flushed per line) when given a path.

    ``keep_records=False`` keeps only running totals in memory (for huge streamed runs):
    ``records`` stays empty, ``summary()`` is still complete, and the file gets every record.
    """

    def __init__(self, path: str | Path | None = None, *, keep_records: bool = True):
        self.path = Path(path) if path is not None else None
        self.keep_records = keep_records
        self.records: list[LedgerRecord] = []
        self._running: RunningSummary | None = None if keep_records else RunningSummary()
        self._lock = threading.Lock()
        self._fh = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")

    def record(self, rec: LedgerRecord | None = None, **fields: Any) -> LedgerRecord:
        if rec is None:
            fields.setdefault("ts", time.time())
            rec = LedgerRecord(**fields)
        line = json.dumps(rec.model_dump(), ensure_ascii=False)
        with self._lock:
            if self._running is not None:
                self._running.add(rec)
            else:
                self.records.append(rec)
            if self._fh is not None:
                self._fh.write(line + "\n")
                self._fh.flush()
        return rec

    def summary(self) -> dict[str, Any]:
        with self._lock:
            if self._running is not None:
                return self._running.result()
            recs = list(self.records)
        return summarise(recs)

    @staticmethod
    def iter_file(path: str | Path) -> Iterator[LedgerRecord]:
        """Records of a ledger file, one at a time (a torn last line, from a killed process, is skipped)."""
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield LedgerRecord.model_validate_json(line)
                except ValueError:
                    continue

    @staticmethod
    def read(path: str | Path) -> list[LedgerRecord]:
        """Records of a ledger file (see :meth:`iter_file`)."""
        return list(Ledger.iter_file(path))

    def run_summary(self) -> dict[str, Any]:
        """Usage of the whole run, every resume included: the ledger file when there is one (a
        resumed process has only its own calls in memory; the file is read as a stream), else
        this process's records."""
        if self.path is not None and self.path.exists():
            return summarise(Ledger.iter_file(self.path))  # the ledger flushes every line
        return self.summary()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Budget:
    """Stops new calls once the known spend reaches ``limit_usd``; calls in flight finish."""

    def __init__(self, limit_usd: float):
        if limit_usd < 0:
            raise ConfigError(f"budget must be >= 0 (got {limit_usd})")
        self.limit_usd = float(limit_usd)
        self.spent_usd = 0.0
        self.unknown_cost_calls = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.spent_usd >= self.limit_usd:
            raise BudgetExceeded(
                f"budget of ${self.limit_usd:.4f} reached (spent ${self.spent_usd:.4f}); no new LLM calls are made",
                hint="raise --budget or rerun: finished calls come from the cache",
            )

    def add(self, cost_usd: float | None) -> None:
        with self._lock:
            if cost_usd is None:
                self.unknown_cost_calls += 1
            else:
                self.spent_usd += cost_usd

    @property
    def exceeded(self) -> bool:
        return self.spent_usd >= self.limit_usd


__all__ = ["Ledger", "LedgerRecord", "RunningSummary", "Budget", "lookup_price", "price_table", "summarise"]
