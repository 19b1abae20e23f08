"""Aggregation of K annotators' spans into one annotation (the final output).

The result is always a **selection among the spans the annotators proposed** (on the BIO
projection, :mod:`diziner.analysis.consensus`): it never holds a span that no annotator
proposed with that extent and label. Two modes:

* **consensus** (``min_support=None``): a proposed span is eligible when, on average
  over its tokens, more weight says "an entity here" than "nothing here" (ties go to
  nothing); the analysis shows the supervisor this same consensus;
* **span vote** (``min_support=x``): a proposed span is eligible when the summed weight
  of the annotators who proposed exactly it is ``≥ x`` (0 = union, 0.5 = weighted
  majority).

Overlapping eligible spans are resolved by one documented tie rule: higher span support,
then higher token support, then more tokens, then earlier start, then lower label index
in the label order (``labels``, else the sorted labels used — the same default as
:func:`diziner.analysis.analyze`).

Only documents at least one annotator **answered** (a key of its dict) are in the result;
a document nobody answered is absent. Weights are renormalised per document over the
annotators who answered it, so a document some annotators failed on gets the vote of
those who answered.

Every output span (:class:`~diziner.analysis.records.AggregatedSpan`) carries ``support
= {annotators, weight, token_support}`` — annotators whose own span matches it exactly,
the sum of their (renormalised) weights, and the mean over its tokens of ``p`` of the
span's tag (B on the first token, I after) — and ``hotspot``: whether it overlaps a
hotspot. :func:`aggregate_spans` returns the records, :func:`aggregate` their JSON.
"""
from __future__ import annotations

import numpy as np

from diziner.analysis import scores as S
from diziner.analysis.consensus import select_spans
from diziner.analysis.core import answered_matrix, collect_labels
from diziner.aggregation import DEFAULT_AGGREGATION, Aggregation  # noqa: F401  (re-exported)
from diziner.analysis.records import AggregatedSpan, HotRun, Hotspot, hot_runs_of
from diziner.analysis.tags import TokenIndex, project
from diziner.corpus.model import Document, Span
from diziner.errors import InputError


def _hot_mask(index: TokenIndex, hotspots: list[HotRun | Hotspot]) -> np.ndarray:
    delta = np.zeros(index.n_tokens + 1, dtype=np.int64)
    for h in hotspots:
        d = index.position.get(h.document)
        if d is None or h.token_start is None or h.token_end is None:
            continue
        base = int(index.offsets[d])
        s = base + h.token_start
        e = min(base + h.token_end, int(index.offsets[d + 1]))
        if e > s:
            delta[s] += 1
            delta[e] -= 1
    return np.cumsum(delta[:-1]) > 0


def _check(annotations: dict, weights: dict[str, float], min_support: float | None) -> list[str]:
    """The annotator names, after checking that each has a weight and ``min_support`` is within [0, 1]."""
    if not annotations:
        raise InputError(None, None, "no annotators given")
    names = list(annotations)
    missing = [n for n in names if n not in weights]
    if missing:
        raise InputError(None, None, f"no weight given for annotator(s) {', '.join(missing)}")
    if min_support is not None and not 0.0 <= min_support <= 1.0:
        raise InputError(None, None, f"min_support must be within [0, 1], got {min_support}")
    return names


def _own_hot_mask(index: TokenIndex, Z: np.ndarray, W: np.ndarray, percentile: float) -> np.ndarray:
    """Tokens in the hotspots of these documents alone (their own ``percentile``)."""
    hot, _ = S.hot_tokens(S.hot_score(S.token_scores(Z, W)), percentile)
    hs, he = S.hotspot_runs(hot, index.doc_start)
    delta = np.zeros(index.n_tokens + 1, dtype=np.int64)
    np.add.at(delta, hs, 1)
    np.add.at(delta, he, -1)
    return np.cumsum(delta[:-1]) > 0


def aggregate(
    documents: list[Document],
    annotations: dict[str, dict[str, list[Span]]],
    weights: dict[str, float],
    min_support: float | None = None,
    hotspots: list[dict] | list[HotRun] | list[Hotspot] | None = None,
    labels: list[str] | None = None,
    percentile: float = 80.0,
    reliability: str | None = None,
) -> dict[str, list[dict]]:
    """:func:`aggregate_spans` as JSON: document id → span dicts (``{start, end, label,
    text, support, hotspot}``, sorted by start)."""
    return _aggregate_json(documents, annotations, weights, min_support, hotspots, labels, percentile, reliability)


def aggregate_spans(
    documents: list[Document],
    annotations: dict[str, dict[str, list[Span]]],
    weights: dict[str, float],
    min_support: float | None = None,
    hotspots: list[dict] | list[HotRun] | list[Hotspot] | None = None,
    labels: list[str] | None = None,
    percentile: float = 80.0,
    reliability: str | None = None,
) -> dict[str, list[AggregatedSpan]]:
    """Aggregate annotations; returns document id → spans (sorted by start).

    ``annotations[a]`` holds the documents annotator ``a`` answered (see
    :func:`diziner.analysis.analyze`); only documents someone answered are in the result.
    ``weights`` (annotator → weight) are normalised to sum 1 (uniform if all are 0), then
    renormalised per document over the annotators who answered it. ``labels`` fixes
    the label order of the tie rule (pass the schema's, as to ``analyze``).
    ``hotspots`` is a list of hotspot records or dicts (``document``, ``token_start``,
    ``token_end``) such as :attr:`AnalysisResult.hotspots`; when None, hotspots
    are computed on these documents with ``percentile``.
    """
    out = _aggregate_json(documents, annotations, weights, min_support, hotspots, labels, percentile, reliability)
    return {d: [AggregatedSpan.model_validate(x) for x in rows] for d, rows in out.items()}


def _aggregate_json(documents, annotations, weights, min_support, hotspots, labels, percentile, reliability
                    ) -> dict[str, list[dict]]:
    """The aggregation itself, as JSON rows (large corpora stay cheap: no record per span)."""
    names = _check(annotations, weights, min_support)
    w = S.normalise(np.array([float(weights[n]) for n in names]))
    labels = list(labels) if labels is not None else collect_labels(annotations)
    label_ids = {lab: i for i, lab in enumerate(labels)}
    index = TokenIndex.build(documents)
    Z = np.vstack([project(index, annotations[nm], label_ids, annotator=nm)[0] for nm in names])
    doc_answered = answered_matrix(documents, annotations, names)
    A = doc_answered[:, index.doc_of_token]
    W = S.token_weights(w, A)
    n_lab = len(labels)

    choice = select_spans(Z, W, index.doc_start, n_lab, min_support=min_support, reliability=reliability, answered=A)
    starts, ends, labs = choice.starts, choice.ends, choice.labels
    in_hot = _own_hot_mask(index, Z, W, percentile) if hotspots is None else _hot_mask(index, hot_runs_of(hotspots))
    span_hot = S.range_sums(in_hot.astype(np.float64), starts, ends) > 0

    answered_any = doc_answered.any(axis=0).tolist()
    out: dict[str, list[dict]] = {d.id: [] for d, ok in zip(documents, answered_any) if ok}
    rows = choice.proposers.T.tolist()
    doc_of = index.doc_of_token[starts].tolist()
    c0s = index.char_start[starts].tolist()
    c1s = index.char_end[np.maximum(ends - 1, 0)].tolist()
    post = choice.posterior.tolist() if choice.posterior is not None else [None] * len(rows)
    for d, c0, c1, lab, row, sup_i, ts_i, hot_i, post_i in zip(
        doc_of, c0s, c1s, labs.tolist(), rows, choice.support.tolist(), np.clip(choice.token_support, 0.0, 1.0).tolist(),
        span_hot.tolist(), post
    ):
        doc = documents[d]
        who = [k for k, m in enumerate(row) if m]
        support = {"annotators": [names[k] for k in who], "weight": round(sup_i, 6), "token_support": round(ts_i, 4)}
        if post_i is not None:
            support["posterior"] = round(post_i, 4)
        out[doc.id].append({"start": c0, "end": c1, "label": labels[lab], "text": doc.text[c0:c1], "support": support,
                            "hotspot": hot_i})
    return out
