"""``analyze``: from documents and K annotators' spans to weights, elite, token scores,
hotspots with categories and error types, and per-annotator error profiles.

The numeric core (:func:`analyze_arrays`) works on the tag-id matrix only; this module
adds the projection from spans and the JSON-ready details (texts, contexts, readings).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diziner.analysis import scores as S
from diziner.analysis.agreement import (
    agreement_figures,
    annotator_span_keys,
    cohen_matrix,
    pairwise_span_f1,
)
from diziner.analysis.patterns import ERROR_NAMES, ERROR_TYPES, MATCH, TYPE, SpanSet, classify, overlap_ranges
from diziner.analysis.tags import TokenIndex, decode, project, tag_names
from diziner.corpus.model import Document, Span
from diziner.errors import InputError

CATEGORIES = ["elite_split", "systematic_bias", "both", "minor"]
BIAS_PERCENTILE = 90.0
CONTEXT_CHARS = 60
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- numeric core


@dataclass
class ArrayAnalysis:
    """Everything numeric about one analysis (arrays over the concatenated tokens)."""

    Z: np.ndarray
    doc_start: np.ndarray
    n_labels: int
    weights: np.ndarray
    pairwise_f1: np.ndarray
    cohen: np.ndarray
    elite: list[int]
    scores: S.TokenScores
    hot: np.ndarray
    threshold: float | None
    hotspot_starts: np.ndarray
    hotspot_ends: np.ndarray
    elite_consensus: np.ndarray
    hotspot_bias: np.ndarray
    hotspot_elite_split: np.ndarray
    hotspot_category: list[str]
    hotspot_mean_u: np.ndarray
    bias_threshold: float | None


def analyze_arrays(
    Z: np.ndarray,
    doc_start: np.ndarray,
    n_labels: int,
    weights: str = "f1",
    percentile: float = 80.0,
) -> ArrayAnalysis:
    """The numeric analysis of a K × N tag-id matrix (see ``docs/analysis.md``)."""
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < 1:
        raise ValueError("Z must be a K × N matrix with K ≥ 1")
    if weights not in ("f1", "hybrid"):
        raise InputError(None, None, f"unknown weights mode {weights!r} (use f1 or hybrid)")
    if not 0.0 <= percentile <= 100.0:
        raise InputError(None, None, f"percentile must be within [0, 100], got {percentile}")
    keys = annotator_span_keys(Z, doc_start, n_labels)
    f1 = pairwise_span_f1(keys)
    kap = cohen_matrix(Z)
    w = S.f1_weights(f1) if weights == "f1" else S.hybrid_weights(f1, kap)
    elite = S.elite_set(w)
    ts = S.token_scores(Z, w)
    hot, thr = S.hot_tokens(ts.u_star, percentile)
    hs, he = S.hotspot_runs(hot, doc_start)
    we = S.normalise(w[elite])
    elite_cons, _ = S.consensus_from_mass(Z[elite], S.own_tag_mass(Z[elite], we))
    # per-hotspot statistics
    split = S.range_sums(S.elite_disagreement(Z, elite).astype(np.float64), hs, he) > 0
    in_hot = np.zeros(Z.shape[1], dtype=bool)
    if len(hs):
        delta = np.zeros(Z.shape[1] + 1, dtype=np.int64)
        np.add.at(delta, hs, 1)
        np.add.at(delta, he, -1)
        in_hot = np.cumsum(delta[:-1]) > 0
    tv = np.zeros(Z.shape[1])
    if in_hot.any():
        idx = np.flatnonzero(in_hot)
        tv[idx] = S.elite_rest_tv(Z[:, idx], w, elite)
    lengths = np.maximum(he - hs, 1)
    bias = np.clip(S.range_sums(tv, hs, he) / lengths, 0.0, 1.0)
    mean_u = np.clip(S.range_sums(ts.u_star, hs, he) / lengths, 0.0, 1.0)
    bias_thr = float(np.percentile(bias, BIAS_PERCENTILE)) if len(bias) else None
    high = (bias > 0) & (bias >= (bias_thr if bias_thr is not None else np.inf) - S.ZERO_EPS)
    cats = [
        "both" if (sp and hi) else "elite_split" if sp else "systematic_bias" if hi else "minor"
        for sp, hi in zip(split.tolist(), high.tolist())
    ]
    return ArrayAnalysis(
        Z, doc_start, n_labels, w, f1, kap, elite, ts, hot, thr, hs, he, elite_cons, bias, split, cats, mean_u, bias_thr
    )


# --------------------------------------------------------------------------- helpers


def context(text: str, start: int, end: int, width: int = CONTEXT_CHARS, mark: tuple[str, str] | None = None) -> str:
    """The text around ``text[start:end]``: ±``width`` characters, cut at spaces, on one line.

    With ``mark=(left, right)`` the span itself is wrapped in those strings.
    """
    lo = max(0, start - width)
    hi = min(len(text), end + width)
    if lo > 0:
        sp = text.find(" ", lo, start)
        lo = sp + 1 if sp != -1 else lo
    if hi < len(text):
        sp = text.rfind(" ", end, hi)
        hi = sp if sp != -1 else hi
    mid = text[start:end]
    if mark:
        mid = f"{mark[0]}{mid}{mark[1]}"
    out = ("…" if lo > 0 else "") + text[lo:start] + mid + text[end:hi] + ("…" if hi < len(text) else "")
    return " ".join(out.split())


def _round(a: np.ndarray) -> list[float]:
    return np.round(np.asarray(a, dtype=np.float64), 4).tolist()


# --------------------------------------------------------------------------- result


@dataclass
class AnalysisResult:
    """The disagreement analysis of one set of documents annotated by K annotators."""

    annotators: list[str]
    labels: list[str]
    documents: list[Document]
    index: TokenIndex
    arrays: ArrayAnalysis
    weights_mode: str
    percentile: float
    examples_per_pattern: int
    problems: list[str] = field(default_factory=list)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    _hotspots: list[dict] | None = None
    _profiles: dict[str, dict] | None = None
    _agreement: dict | None = None
    _span_sets: list[SpanSet] | None = None

    # ---- simple views
    @property
    def weights(self) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.annotators, self.arrays.weights)}

    @property
    def elite(self) -> list[str]:
        return [self.annotators[i] for i in self.arrays.elite]

    @property
    def pairwise_f1(self) -> dict[str, dict[str, float]]:
        f1, names = self.arrays.pairwise_f1, self.annotators
        return {a: {b: float(f1[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}

    @property
    def mean_agreement(self) -> float | None:
        """Mean pairwise strict span F1 over annotator pairs (None with one annotator)."""
        k = len(self.annotators)
        if k < 2:
            return None
        iu = np.triu_indices(k, 1)
        return float(self.arrays.pairwise_f1[iu].mean())

    @property
    def agreement(self) -> dict:
        if self._agreement is None:
            self._agreement = agreement_figures(self.arrays.Z, self.annotators, self.arrays.pairwise_f1)
        return self._agreement

    @property
    def tags(self) -> list[str]:
        return tag_names(self.labels)

    # ---- span views
    def _spans(self) -> list[SpanSet]:
        if self._span_sets is None:
            self._span_sets = [SpanSet(*decode(z, self.index.doc_start)) for z in self.arrays.Z]
        return self._span_sets

    def _span_dict(self, s: int, e: int, lab: int) -> dict:
        d = int(self.index.doc_of_token[s])
        cs, ce = int(self.index.char_start[s]), int(self.index.char_end[e - 1])
        return {"start": cs, "end": ce, "label": self.labels[lab], "text": self.documents[d].text[cs:ce]}

    def _reading(self, s: int, e: int, lab: int) -> str:
        sd = self._span_dict(s, e, lab)
        return f"{sd['text']}/{sd['label']}"

    def consensus_spans(self, elite: bool = False) -> SpanSet:
        z = self.arrays.elite_consensus if elite else self.arrays.scores.consensus
        return SpanSet(*decode(z, self.index.doc_start))

    # ---- hotspots
    @property
    def hotspots(self) -> list[dict]:
        if self._hotspots is None:
            self._hotspots = self._build_hotspots()
        return self._hotspots

    def _build_hotspots(self) -> list[dict]:
        a, ix = self.arrays, self.index
        names = self.annotators
        ann = self._spans()
        econs = self.consensus_spans(elite=True)
        wcons = self.consensus_spans(elite=False)
        classes = [classify(sset, econs) for sset in ann]
        hs, he = a.hotspot_starts, a.hotspot_ends
        # the reading window: the hot run widened to every span that overlaps it
        ws, we = hs.copy(), he.copy()
        for sset in (*ann, econs, wcons):
            if len(sset) == 0:
                continue
            lo, hi = overlap_ranges(sset, hs, he)
            has = hi > lo
            ws[has] = np.minimum(ws[has], sset.starts[lo[has]])
            we[has] = np.maximum(we[has], sset.ends[hi[has] - 1])
        ranges = [tuple(x.tolist() for x in overlap_ranges(sset, ws, we)) for sset in ann]
        e_lo, e_hi = (x.tolist() for x in overlap_ranges(econs, ws, we))
        w_lo, w_hi = (x.tolist() for x in overlap_ranges(wcons, ws, we))
        py = [(sset.starts.tolist(), sset.ends.tolist(), sset.labels.tolist()) for sset in ann]
        codes = [cl.codes.tolist() for cl in classes]
        missed = [cl.missed.tolist() for cl in classes]
        ws_l, we_l = ws.tolist(), we.tolist()
        out: list[dict] = []
        for h, (s, e) in enumerate(zip(hs.tolist(), he.tolist())):
            d = int(ix.doc_of_token[s])
            doc = self.documents[d]
            cs, ce = int(ix.char_start[s]), int(ix.char_end[e - 1])
            readings: dict[str, list[dict]] = {}
            groups: dict[tuple, dict] = {}
            for k in range(len(ann)):
                lo, hi = ranges[k][0][h], ranges[k][1][h]
                ps, pe, pl = py[k]
                readings[names[k]] = [self._span_dict(ps[i], pe[i], pl[i]) for i in range(lo, hi)]
                cl = classes[k]
                for i in range(lo, hi):
                    code = codes[k][i]
                    if code == MATCH:
                        continue
                    key = (code, ps[i], pe[i], pl[i])
                    g = groups.get(key)
                    if g is None:
                        r = int(cl.ref_index[i])
                        g = groups[key] = {
                            "type": ERROR_NAMES[code],
                            "reading": self._reading(*key[1:]),
                            "consensus": "O"
                            if r < 0
                            else self._reading(int(econs.starts[r]), int(econs.ends[r]), int(econs.labels[r])),
                            "labels": self._pattern_labels(code, pl[i], econs, r),
                            "annotators": [],
                        }
                    g["annotators"].append(names[k])
                for r in range(e_lo[h], e_hi[h]):
                    if not missed[k][r]:
                        continue
                    key = ("missed", r)
                    g = groups.get(key)
                    if g is None:
                        g = groups[key] = {
                            "type": "missed",
                            "reading": "O",
                            "consensus": self._reading(int(econs.starts[r]), int(econs.ends[r]), int(econs.labels[r])),
                            "labels": self.labels[int(econs.labels[r])],
                            "annotators": [],
                        }
                    g["annotators"].append(names[k])
            wlo, whi, elo, ehi = w_lo[h], w_hi[h], e_lo[h], e_hi[h]
            out.append(
                {
                    "id": h,
                    "document": doc.id,
                    "token_start": int(s - ix.offsets[d]),
                    "token_end": int(e - ix.offsets[d]),
                    "char_start": cs,
                    "char_end": ce,
                    "window_char_start": int(ix.char_start[ws_l[h]]),
                    "window_char_end": int(ix.char_end[we_l[h] - 1]),
                    "text": doc.text[cs:ce],
                    "context": context(doc.text, cs, ce),
                    "category": a.hotspot_category[h],
                    "elite_agree": not bool(a.hotspot_elite_split[h]),
                    "bias": round(float(a.hotspot_bias[h]), 4),
                    "mean_u_star": round(float(a.hotspot_mean_u[h]), 4),
                    "errors": list(groups.values()),
                    "readings": readings,
                    "consensus": [
                        self._span_dict(int(wcons.starts[i]), int(wcons.ends[i]), int(wcons.labels[i]))
                        for i in range(wlo, whi)
                    ],
                    "elite_consensus": [
                        self._span_dict(int(econs.starts[i]), int(econs.ends[i]), int(econs.labels[i]))
                        for i in range(elo, ehi)
                    ],
                }
            )
        return out

    def _pattern_labels(self, code: int, label: int, ref: SpanSet, r: int) -> str:
        if code == TYPE and r >= 0:  # type confusion: consensus label → reading label
            return f"{self.labels[int(ref.labels[r])]}→{self.labels[label]}"
        return self.labels[label]

    # ---- profiles
    @property
    def profiles(self) -> dict[str, dict]:
        if self._profiles is None:
            self._profiles = self._build_profiles()
        return self._profiles

    def _example(self, s: int, e: int, lab: int, consensus: str) -> dict:
        d = int(self.index.doc_of_token[s])
        sd = self._span_dict(s, e, lab)
        return {
            "document": self.documents[d].id,
            "text": sd["text"],
            "label": sd["label"],
            "consensus": consensus,
            "context": context(self.documents[d].text, sd["start"], sd["end"], mark=("[", "]")),
        }

    def _build_profiles(self) -> dict[str, dict]:
        cons = self.consensus_spans(elite=False)
        n_ex = self.examples_per_pattern
        out: dict[str, dict] = {}
        for k, sset in enumerate(self._spans()):
            cl = classify(sset, cons)
            prof: dict[str, Any] = {"n_spans": len(sset), "matched": int((cl.codes == MATCH).sum())}
            examples: dict[str, list[dict]] = {t: [] for t in ERROR_TYPES}
            for code, name in ERROR_NAMES.items():
                idx = np.flatnonzero(cl.codes == code)
                prof[name] = len(idx)
                for i in idx[:n_ex].tolist():
                    r = int(cl.ref_index[i])
                    c = "O" if r < 0 else self._reading(int(cons.starts[r]), int(cons.ends[r]), int(cons.labels[r]))
                    examples[name].append(self._example(int(sset.starts[i]), int(sset.ends[i]), int(sset.labels[i]), c))
            midx = np.flatnonzero(cl.missed)
            prof["missed"] = len(midx)
            for r in midx[:n_ex].tolist():
                ex = self._example(int(cons.starts[r]), int(cons.ends[r]), int(cons.labels[r]), "")
                ex["consensus"] = f"{ex['text']}/{ex['label']}"
                ex["label"] = "O"
                examples["missed"].append(ex)
            prof["consensus_spans"] = len(cons)
            prof["examples"] = examples
            out[self.annotators[k]] = {
                key: prof[key]
                for key in ["spurious", "missed", "type_confusion", "boundary", "matched", "n_spans", "consensus_spans", "examples"]
            }
        return out

    # ---- summary and serialisation
    @property
    def summary(self) -> dict:
        hs = self.hotspots
        by_cat = {c: 0 for c in CATEGORIES}
        by_err = {t: 0 for t in ERROR_TYPES}
        hs_by_err = {t: 0 for t in ERROR_TYPES}
        for h in hs:
            by_cat[h["category"]] += 1
            seen = set()
            for e in h["errors"]:
                by_err[e["type"]] += 1
                seen.add(e["type"])
            for t in seen:
                hs_by_err[t] += 1
        return {
            "n_documents": len(self.documents),
            "n_tokens": self.index.n_tokens,
            "n_hot_tokens": int(self.arrays.hot.sum()),
            "n_hotspots": len(hs),
            "hotspot_threshold": self.arrays.threshold,
            "bias_threshold": self.arrays.bias_threshold,
            "by_category": by_cat,
            "by_error_type": by_err,
            "hotspots_by_error_type": hs_by_err,
        }

    def document_arrays(self, position: int) -> dict:
        """Per-token arrays of one document (JSON-ready)."""
        ix, sc = self.index, self.arrays.scores
        lo, hi = int(ix.offsets[position]), int(ix.offsets[position + 1])
        doc = self.documents[position]
        tags = self.tags
        return {
            "id": doc.id,
            "tokens": doc.token_texts,
            "consensus": [tags[t] for t in sc.consensus[lo:hi].tolist()],
            "p_consensus": _round(sc.p_consensus[lo:hi]),
            "d_conf": _round(sc.d_conf[lo:hi]),
            "d_type": _round(sc.d_type[lo:hi]),
            "u_bnd": _round(sc.u_bnd[lo:hi]),
            "u_star": _round(sc.u_star[lo:hi]),
            "hot": self.arrays.hot[lo:hi].tolist(),
        }

    def to_json(self) -> dict:
        """The ``analysis.json`` object (fields in ``docs/analysis-format.md``)."""
        return {
            "format": FORMAT_VERSION,
            "annotators": list(self.annotators),
            "labels": list(self.labels),
            "weights_mode": self.weights_mode,
            "weights": self.weights,
            "elite": self.elite,
            "pairwise_f1": self.pairwise_f1,
            "mean_pairwise_f1": self.mean_agreement,
            "agreement": self.agreement,
            "percentile": self.percentile,
            "summary": self.summary,
            "documents": [self.document_arrays(i) for i in range(len(self.documents))],
            "hotspots": self.hotspots,
            "profiles": self.profiles,
            "dropped": self.dropped,
            "problems": list(self.problems),
        }

    def to_markdown(self) -> str:
        """A report for people and for the supervisor."""
        from diziner.analysis.report import render_markdown

        return render_markdown(self)


# --------------------------------------------------------------------------- entry point


def collect_labels(annotations: dict[str, dict[str, list[Span]]]) -> list[str]:
    """Sorted labels used by any annotator."""
    return sorted({sp.label for by_doc in annotations.values() for spans in by_doc.values() for sp in spans})


def analyze(
    documents: list[Document],
    annotations: dict[str, dict[str, list[Span]]],
    labels: list[str] | None = None,
    weights: str = "f1",
    percentile: float = 80.0,
    examples_per_pattern: int = 10,
) -> AnalysisResult:
    """Analyse the disagreement of K annotators on the same documents.

    ``annotations`` maps annotator → document id → spans (character offsets). A
    document missing from an annotator's dict counts as "no entities". ``labels``
    fixes the label order (tag ids and tie-breaks); by default it is the sorted set
    of labels used. Spans with a label outside ``labels`` are dropped and counted.
    """
    if not annotations:
        raise InputError(None, None, "no annotators given")
    names = list(annotations)
    labels = list(labels) if labels is not None else collect_labels(annotations)
    if len(set(labels)) != len(labels):
        raise InputError(None, None, "labels contain duplicates")
    label_ids = {lab: i for i, lab in enumerate(labels)}
    index = TokenIndex.build(documents)
    rows, dropped, problems = [], {}, []
    for name in names:
        z, drop = project(index, annotations[name], label_ids, annotator=name)
        rows.append(z)
        dropped[name] = drop
        for why, n in drop.items():
            if n:
                problems.append(f"{name}: {n} span(s) dropped ({why.replace('_', ' ')})")
    Z = np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.int16)
    arrays = analyze_arrays(Z, index.doc_start, len(labels), weights=weights, percentile=percentile)
    return AnalysisResult(
        annotators=names,
        labels=labels,
        documents=list(documents),
        index=index,
        arrays=arrays,
        weights_mode=weights,
        percentile=float(percentile),
        examples_per_pattern=examples_per_pattern,
        problems=problems,
        dropped=dropped,
    )
