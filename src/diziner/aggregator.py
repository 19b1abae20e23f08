"""Fit once, aggregate per batch: the delivered annotation of a corpus too large to analyse at once.

    agg = Aggregator(labels, aggregation="consensus").fit(window_docs, window_runs)
    rows, lost = agg.predict(batch_docs, batch_runs)

``fit`` analyses a weight sample (:func:`diziner.analysis.analyze`) and keeps, as
attributes, the annotators that answered at least once (``usable_``), their weights
(``weights_``: mean pairwise strict span F1, ``f1`` or ``hybrid``) and the hotspot
threshold (``threshold_``: the ``percentile`` of the hot score over the sample's
disputed tokens; None when the sample had no disputed token, then each batch uses its
own percentile), and the sample's analysis (``analysis_``, for its report). ``predict`` aggregates one batch with those fixed quantities and
returns the delivered rows (:func:`delivered_rows`): a document some voter
answered gets its spans with support, a document nobody answered a failed row.

Both annotation engines use it: the local stream (:mod:`diziner.stream`) and the Ray
engine (:mod:`diziner.scale`), which pickles a fitted aggregator to its workers.
``state()`` / ``load_state()`` round-trip the fitted attributes through the JSON state
file of a resumable run.
"""
from __future__ import annotations

import logging
from typing import Any

from diziner.corpus.model import Document

__all__ = ["Aggregator", "delivered_rows", "delivered_spans", "failures_by_doc", "usable_annotators"]

log = logging.getLogger("diziner.aggregator")


class Aggregator:
    """Annotator weights and hotspot threshold fitted on a sample, then applied batch after batch."""

    def __init__(self, labels: list[str], *, aggregation: Any = None, weights: str = "f1", percentile: float = 80.0):
        from diziner.aggregation import Aggregation

        self.labels = list(labels)
        self.aggregation = Aggregation.parse(aggregation)
        self.weights_mode = weights
        self.percentile = percentile
        self.usable_: list[str] | None = None
        self.weights_: dict[str, float] = {}
        self.threshold_: float | None = None
        self.analysis_: Any = None  # the sample's AnalysisResult (two or more usable annotators), after fit

    # ------------------------------------------------------------------ fit
    def fit(self, documents: list[Document], runs: dict[str, Any], *, progress: Any = None,
            where: str = "the weight sample") -> "Aggregator":
        """Fit on ``documents`` annotated by ``runs`` (annotator id -> :class:`~diziner.annotate.runner.AnnotatorRun`).

        An annotator that failed on every document is dropped with a warning (through
        ``progress``); with one usable annotator the weight is 1 and there is no threshold.
        """
        from diziner.analysis import analyze
        usable = usable_annotators(runs, progress, 1, where)
        weights = {a: 1.0 / len(usable) for a in usable}
        threshold, res = None, None
        if len(usable) >= 2:
            annotations = {a: runs[a].spans_by_doc() for a in usable}
            res = analyze(documents, annotations, labels=self.labels, weights=self.weights_mode,
                          percentile=self.percentile)
            weights = res.weights
            threshold = res.arrays.threshold
        self.usable_, self.weights_, self.threshold_ = usable, dict(weights), threshold
        self.analysis_ = res
        return self

    # ------------------------------------------------------------------ predict
    def consensus(self, documents: list[Document], runs: dict[str, Any]) -> dict[str, list[dict]]:
        """Document id -> delivered spans (with support and hotspot flag) of the documents some usable annotator answered."""
        from diziner.analysis import aggregate
        from diziner.stream import batch_hotspots

        usable = self._fitted()
        if not usable:
            return {}
        annotations = {a: runs[a].spans_by_doc() for a in usable}
        hot = batch_hotspots(documents, annotations, self.weights_, self.labels, self.threshold_, self.percentile)
        return aggregate(documents, annotations, self.weights_, hotspots=hot, labels=self.labels,
                         **self.aggregation.kwargs())

    def predict(self, documents: list[Document], runs: dict[str, Any]) -> tuple[list[dict], list[dict]]:
        """(annotation rows, failed rows) of a batch, in input order (see :func:`delivered_rows`)."""
        return delivered_rows(documents, runs, self.consensus(documents, runs), self._fitted())

    # ------------------------------------------------------------------ state
    def _fitted(self) -> list[str]:
        if self.usable_ is None:
            from diziner.errors import DizinerError

            raise DizinerError("this Aggregator is not fitted; call fit() on a weight sample first")
        return self.usable_

    def state(self) -> dict[str, Any]:
        """The fitted attributes, JSON-ready (keys of the stream's state file)."""
        return {"usable": list(self._fitted()), "weights": dict(self.weights_), "threshold": self.threshold_}

    def load_state(self, state: dict[str, Any]) -> "Aggregator":
        """Take fitted attributes from :meth:`state` (e.g. read back from a state file)."""
        self.usable_ = list(state["usable"])
        self.weights_ = {a: float(w) for a, w in state["weights"].items()}
        self.threshold_ = state["threshold"]
        return self


def usable_annotators(runs: dict, progress: Any, min_annotators: int, where: str) -> list[str]:
    """Annotators with at least one successful document; a completely failed one is dropped with a warning."""
    from diziner.errors import DizinerError

    usable = []
    for a, run in runs.items():
        ok = sum(1 for r in run.results.values() if r.status == "ok")
        if ok == 0:
            reasons = sorted({r.reason or "unknown" for r in run.results.values()})[:3]
            log.warning("annotator %r failed on every document in %s; dropped (%s)", a, where, "; ".join(reasons))
            if progress is not None:
                progress.print(f"[yellow]warning:[/] annotator {a!r} failed on every document in {where}; dropped ({'; '.join(reasons)})")
        else:
            usable.append(a)
    if len(usable) < min_annotators:
        raise DizinerError(
            f"only {len(usable)} annotator(s) produced output in {where}; at least {min_annotators} are needed to measure disagreement",
            hint="check the endpoints in the pool file and the failure reasons in the run's annotation files",
        )
    return usable


def failures_by_doc(runs: dict, documents: list[Document]) -> dict[str, list[dict[str, str]]]:
    """Document id -> ``[{"annotator", "reason"}]`` of the annotators whose call failed on it
    (pool order; a document missing from a run counts as failed); documents everyone answered are absent."""
    out: dict[str, list[dict[str, str]]] = {}
    for d in documents:
        who = []
        for a, run in runs.items():
            r = run.results.get(d.id)
            if r is None or r.status != "ok":
                who.append({"annotator": a, "reason": (r.reason if r is not None else None) or "no result"})
        if who:
            out[d.id] = who
    return out


def delivered_rows(documents: list[Document], runs: dict, consensus: dict[str, list[dict]],
                   voters: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(annotation rows, failed rows) of an aggregated annotation, in input order.

    A document at least one of the ``voters`` (the annotators aggregated; default: all of
    ``runs``) answered gets ``{"id","text","spans"}``, plus ``"failed": [{"annotator",
    "reason"}]`` when some annotators failed on it (its spans are the vote of those who
    answered). A document no voter answered gets no annotation row — an empty one would
    read as "no entities" — but a failed row ``{"id","text","failed"}``.
    """
    failed = failures_by_doc(runs, documents)
    voting = set(runs if voters is None else voters)
    rows: list[dict] = []
    lost: list[dict] = []
    for d in documents:
        who = failed.get(d.id, [])
        if voting <= {w["annotator"] for w in who}:
            lost.append({"id": d.id, "text": d.text, "failed": who})
            continue
        row: dict[str, Any] = {"id": d.id, "text": d.text, "spans": consensus.get(d.id, [])}
        if who:
            row["failed"] = who
        rows.append(row)
    return rows, lost


def delivered_spans(rows: list[dict]) -> dict[str, list[Any]]:
    """Document id -> :class:`~diziner.corpus.model.Span` of delivered rows (the inverse of
    :func:`delivered_rows`, for scoring what an engine wrote)."""
    from diziner.corpus.model import Span

    return {r["id"]: [Span(r["id"], sp["start"], sp["end"], sp["label"], sp.get("text", "")) for sp in r["spans"]]
            for r in rows}
