"""Aggregation of K annotators' spans into one annotation (the final output).

Two modes:

* **consensus** (``min_support=None``): spans decoded from the weighted consensus BIO
  tags (argmax of ``p`` per token, ties to O);
* **span vote** (``min_support=x``): every distinct span proposed by some annotator
  (on the BIO projection) gets the summed weight of its proposers; spans with weight
  ``≥ x`` are kept (0 = union, 0.5 = weighted majority). Overlapping kept spans are
  resolved greedily: higher support first, then longer, then earlier, then lower label
  index.

Every output span carries ``support = {annotators, weight, token_support}`` —
annotators whose own span matches it exactly, the sum of their weights, and the mean
over its tokens of ``p`` of the span's tag (B on the first token, I after) — and
``hotspot``: whether it overlaps a hotspot.
"""
from __future__ import annotations

import numpy as np

from diziner.analysis import scores as S
from diziner.analysis.core import collect_labels
from diziner.analysis.tags import TokenIndex, decode, encode, project, span_keys
from diziner.corpus.model import Document, Span
from diziner.errors import InputError


def _hot_mask_from_dicts(index: TokenIndex, hotspots: list[dict]) -> np.ndarray:
    delta = np.zeros(index.n_tokens + 1, dtype=np.int64)
    for h in hotspots:
        d = index.position.get(str(h.get("document")))
        if d is None:
            continue
        base = int(index.offsets[d])
        s = base + int(h["token_start"])
        e = min(base + int(h["token_end"]), int(index.offsets[d + 1]))
        if e > s:
            delta[s] += 1
            delta[e] -= 1
    return np.cumsum(delta[:-1]) > 0


def aggregate(
    documents: list[Document],
    annotations: dict[str, dict[str, list[Span]]],
    weights: dict[str, float],
    min_support: float | None = None,
    hotspots: list[dict] | None = None,
    labels: list[str] | None = None,
    percentile: float = 80.0,
) -> dict[str, list[dict]]:
    """Aggregate annotations; returns document id → spans (sorted by start).

    ``weights`` (annotator → weight) are normalised to sum 1 (uniform if all are 0).
    ``hotspots`` is a list of hotspot dicts (``document``, ``token_start``,
    ``token_end``) such as :attr:`AnalysisResult.hotspots`; when None, hotspots are
    computed on these documents with ``percentile``.
    """
    if not annotations:
        raise InputError(None, None, "no annotators given")
    names = list(annotations)
    missing = [n for n in names if n not in weights]
    if missing:
        raise InputError(None, None, f"no weight given for annotator(s) {', '.join(missing)}")
    if min_support is not None and not 0.0 <= min_support <= 1.0:
        raise InputError(None, None, f"min_support must be within [0, 1], got {min_support}")
    w = S.normalise(np.array([float(weights[n]) for n in names]))
    labels = list(labels) if labels is not None else collect_labels(annotations)
    label_ids = {lab: i for i, lab in enumerate(labels)}
    index = TokenIndex.build(documents)
    n = index.n_tokens
    Z = np.vstack([project(index, annotations[nm], label_ids, annotator=nm)[0] for nm in names])
    ts = S.token_scores(Z, w)
    n_lab = len(labels)

    per_ann = [decode(Z[k], index.doc_start) for k in range(len(names))]
    keys_k = [span_keys(*sp, n, n_lab) for sp in per_ann]
    if min_support is None:
        starts, ends, labs = decode(ts.consensus, index.doc_start)
        # a lone I tag in the consensus is decoded as a span: give it a B tag
        z_sel = encode(starts, ends, labs, n, dtype=Z.dtype)
    else:
        all_s = np.concatenate([sp[0] for sp in per_ann])
        all_e = np.concatenate([sp[1] for sp in per_ann])
        all_l = np.concatenate([sp[2] for sp in per_ann])
        all_k = np.concatenate(keys_k)
        owner_w = np.concatenate([np.full(len(keys_k[k]), w[k]) for k in range(len(names))])
        uniq, first, inv = np.unique(all_k, return_index=True, return_inverse=True)
        support = np.zeros(len(uniq))
        np.add.at(support, inv, owner_w)
        cs, ce, cl = all_s[first], all_e[first], all_l[first]
        ok = support >= min_support - S.TIE_EPS
        cs, ce, cl, support = cs[ok], ce[ok], cl[ok], support[ok]
        order = np.lexsort((cl, cs, -(ce - cs), -np.round(support, 9)))
        taken = np.zeros(n, dtype=bool)
        keep = []
        for i in order.tolist():
            if not taken[cs[i] : ce[i]].any():
                taken[cs[i] : ce[i]] = True
                keep.append(i)
        keep_a = np.array(sorted(keep, key=lambda i: cs[i]), dtype=np.int64)
        starts, ends, labs = cs[keep_a], ce[keep_a], cl[keep_a]
        z_sel = encode(starts, ends, labs, n, dtype=Z.dtype)

    # token support: p of the selected tag at each token
    p_sel = (w[:, None] * (Z == z_sel[None, :])).sum(axis=0) if n else np.zeros(0)
    lengths = np.maximum(ends - starts, 1)
    tok_support = np.clip(S.range_sums(p_sel, starts, ends) / lengths, 0.0, 1.0)
    sel_keys = span_keys(starts, ends, labs, n, n_lab)
    match = np.vstack([np.isin(sel_keys, keys_k[k]) for k in range(len(names))]) if len(names) else None
    if hotspots is None:
        hot, _ = S.hot_tokens(ts.u_star, percentile)
        hs, he = S.hotspot_runs(hot, index.doc_start)
        delta = np.zeros(n + 1, dtype=np.int64)
        np.add.at(delta, hs, 1)
        np.add.at(delta, he, -1)
        in_hot = np.cumsum(delta[:-1]) > 0
    else:
        in_hot = _hot_mask_from_dicts(index, hotspots)
    span_hot = S.range_sums(in_hot.astype(np.float64), starts, ends) > 0

    out: dict[str, list[dict]] = {d.id: [] for d in documents}
    wl = w.tolist()
    rows = match.T.tolist() if match is not None else [[] for _ in range(len(starts))]
    doc_of = index.doc_of_token[starts].tolist()
    c0s = index.char_start[starts].tolist()
    c1s = index.char_end[np.maximum(ends - 1, 0)].tolist()
    for i, (d, c0, c1, lab, row, ts_i, hot_i) in enumerate(
        zip(doc_of, c0s, c1s, labs.tolist(), rows, tok_support.tolist(), span_hot.tolist())
    ):
        doc = documents[d]
        who = [k for k, m in enumerate(row) if m]
        out[doc.id].append(
            {
                "start": c0,
                "end": c1,
                "label": labels[lab],
                "text": doc.text[c0:c1],
                "support": {
                    "annotators": [names[k] for k in who],
                    "weight": round(sum(wl[k] for k in who), 6),
                    "token_support": round(ts_i, 4),
                },
                "hotspot": hot_i,
            }
        )
    return out
