"""``analyze``: from documents and K annotators' spans to weights, elite, token scores,
hotspots with categories and error types, and per-annotator error profiles.

The numeric core (:func:`analyze_arrays`) works on the tag-id matrix only; this module
adds the projection from spans and the JSON-ready details (texts, contexts, readings).

A document absent from an annotator's dict was not answered by it (a failed call), which
is not "no entities" (an answered document without entities is an empty list). Every
figure uses only what was answered: a pair's agreement is measured over the documents
both answered, ``p`` at a token over the annotators who answered its document, and an
annotator's errors over the documents it answered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diziner.analysis import scores as S
from diziner.analysis.agreement import (
    agreement_figures,
    answered_documents,
    cohen_matrix,
    label_pairwise_means,
    mean_pairwise,
    pairwise_span_f1_counts,
    token_documents,
)
from diziner.analysis.consensus import select_spans
from diziner.analysis.error_types import ERROR_NAMES, ERROR_TYPES, MATCH, TYPE, SpanSet, classify, overlap_ranges
from diziner.analysis.records import ErrorProfile, HotRun, Hotspot, hotspots_of, profiles_of
from diziner.analysis.tags import TokenIndex, decode, project, span_keys, tag_names
from diziner.corpus.model import Document, Span
from diziner.errors import InputError
from diziner.options import DEFAULTS

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
    answered: np.ndarray | None = None  # K × N: annotator k answered the document of token i
    shared_documents: np.ndarray | None = None  # K × K: documents both answered
    consensus: np.ndarray | None = None  # weighted consensus tags (a selection of proposed spans)
    p_consensus: np.ndarray | None = None  # p of the consensus tag
    token_weights: np.ndarray | None = None  # K × N weights renormalised over who answered
    label_agreement: np.ndarray | None = None  # per label id: mean pairwise strict span F1 of that label


def analyze_arrays(
    Z: np.ndarray,
    doc_start: np.ndarray,
    n_labels: int,
    weights: str = DEFAULTS.analysis.weights,
    percentile: float = DEFAULTS.analysis.percentile,
    answered: np.ndarray | None = None,
) -> ArrayAnalysis:
    """The numeric analysis of a K × N tag-id matrix (see ``docs/analysis.md``).

    ``answered`` (K × N booleans, constant within a document; default: all True) says
    which annotator answered the document of each token.
    """
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < 1:
        raise ValueError("Z must be a K × N matrix with K ≥ 1")
    if weights not in ("f1", "hybrid"):
        raise InputError(None, None, f"unknown weights mode {weights!r} (use f1 or hybrid)")
    if not 0.0 <= percentile <= 100.0:
        raise InputError(None, None, f"percentile must be within [0, 100], got {percentile}")
    k_n, n = Z.shape
    A = np.ones((k_n, n), dtype=bool) if answered is None else np.asarray(answered, dtype=bool)
    if A.shape != Z.shape:
        raise ValueError("answered must have the shape of Z")
    doc_start = np.asarray(doc_start, dtype=bool)
    tok_doc = token_documents(doc_start)
    doc_ans = answered_documents(A, doc_start)
    keys, span_docs = [], []
    for k in range(k_n):
        s, e, lab = decode(Z[k], doc_start)
        kk = span_keys(s, e, lab, n, n_labels)
        order = np.argsort(kk)
        keys.append(kk[order])
        span_docs.append(tok_doc[s[order]] if len(s) else np.zeros(0, dtype=np.int64))
    f1, shared = pairwise_span_f1_counts(keys, span_docs, doc_ans)
    by_label = label_pairwise_means(keys, span_docs, doc_ans, n_labels)
    defined = shared > 0
    kap = cohen_matrix(Z, A)
    w = S.f1_weights(f1, defined) if weights == "f1" else S.hybrid_weights(f1, kap, defined)
    elite = S.elite_set(w)
    W = S.token_weights(w, A)
    ts = S.token_scores(Z, W)
    hot, thr = S.hot_tokens(S.hot_score(ts), percentile)
    hs, he = S.hotspot_runs(hot, doc_start)
    # the weighted consensus and the elite consensus: selections among proposed spans;
    # where no elite annotator answered, the elite consensus is the weighted one
    cons_choice = select_spans(Z, W, doc_start, n_labels)
    cons = cons_choice.tags(n, dtype=Z.dtype)
    p_cons = np.clip((W * (Z == cons[None, :])).sum(axis=0), 0.0, 1.0)
    We = S.group_weights(w, elite, A, n)
    We = np.where(We.sum(axis=0)[None, :] > S.ZERO_EPS, We, W)
    elite_cons = select_spans(Z, We, doc_start, n_labels).tags(n, dtype=Z.dtype)
    # per-hotspot statistics
    split = S.range_sums(S.elite_disagreement(Z, elite, A).astype(np.float64), hs, he) > 0
    in_hot = np.zeros(n, dtype=bool)
    if len(hs):
        delta = np.zeros(n + 1, dtype=np.int64)
        np.add.at(delta, hs, 1)
        np.add.at(delta, he, -1)
        in_hot = np.cumsum(delta[:-1]) > 0
    tv = np.zeros(n)
    if in_hot.any():
        idx = np.flatnonzero(in_hot)
        tv[idx] = S.elite_rest_tv(Z[:, idx], w, elite, A[:, idx])
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
        Z, doc_start, n_labels, w, f1, kap, elite, ts, hot, thr, hs, he, elite_cons, bias, split, cats, mean_u,
        bias_thr, A, shared, cons, p_cons, W, by_label,
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
    doc_answered: np.ndarray | None = None  # K × D booleans (document positions); None: all
    _hotspots: list[dict] | None = None
    _hotspot_records: list[Hotspot] | None = None
    _profiles: dict[str, dict] | None = None
    _profile_records: dict[str, ErrorProfile] | None = None
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
        """Mean pairwise strict span F1 over annotator pairs that share an answered
        document (None with one annotator; 0.0 when no pair shares one)."""
        return mean_pairwise(self.arrays.pairwise_f1, self.arrays.shared_documents)

    @property
    def agreement_by_label(self) -> dict[str, float] | None:
        """Per label: mean pairwise strict span F1 over that label's spans (None with one annotator)."""
        la = self.arrays.label_agreement
        if la is None or np.isnan(la).all():
            return None
        return {lab: float(la[i]) for i, lab in enumerate(self.labels)}

    @property
    def label_macro_f1(self) -> float | None:
        """The per-label agreement averaged over the schema's labels: a label the pool
        abandons (tags nowhere, or only one annotator tags) counts 0."""
        by = self.agreement_by_label
        return sum(by.values()) / len(by) if by else None

    @property
    def agreement(self) -> dict:
        if self._agreement is None:
            a = self.arrays
            self._agreement = agreement_figures(a.Z, self.annotators, a.pairwise_f1, a.answered, a.shared_documents)
        return self._agreement

    def _answered(self) -> np.ndarray:
        if self.doc_answered is None:
            return np.ones((len(self.annotators), len(self.documents)), dtype=bool)
        return self.doc_answered

    @property
    def answered(self) -> dict[str, int]:
        """Number of documents each annotator answered."""
        return {n: int(row.sum()) for n, row in zip(self.annotators, self._answered())}

    @property
    def unanswered(self) -> dict[str, list[str]]:
        """Ids of the documents each annotator did not answer (failed calls)."""
        ids = [d.id for d in self.documents]
        return {n: [ids[i] for i in np.flatnonzero(~row).tolist()] for n, row in zip(self.annotators, self._answered())}

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
        """The weighted (or elite) consensus: a selection among proposed spans."""
        a = self.arrays
        z = a.elite_consensus if elite else (a.consensus if a.consensus is not None else a.scores.consensus)
        return SpanSet(*decode(z, self.index.doc_start))

    # ---- hotspots
    @property
    def hotspot_records(self) -> list[Hotspot]:
        """The hotspots as typed records (:class:`~diziner.analysis.records.Hotspot`), parsed
        from :attr:`hotspots` when first asked for (the JSON is what large runs write)."""
        if self._hotspot_records is None:
            self._hotspot_records = hotspots_of(self.hotspots)
        return self._hotspot_records

    @property
    def hotspots(self) -> list[dict]:
        """The hotspots as ``analysis.json`` holds them."""
        if self._hotspots is None:
            self._hotspots = self._build_hotspots()
        return self._hotspots

    def _build_hotspots(self) -> list[dict]:
        return _Hotspots(self).build()

    def _pattern_labels(self, code: int, label: int, ref: SpanSet, r: int) -> str:
        if code == TYPE and r >= 0:  # type confusion: consensus label → reading label
            return f"{self.labels[int(ref.labels[r])]}→{self.labels[label]}"
        return self.labels[label]

    # ---- profiles
    @property
    def profile_records(self) -> dict[str, ErrorProfile]:
        """Per annotator, its error profile as a typed record (parsed from :attr:`profiles`)."""
        if self._profile_records is None:
            self._profile_records = profiles_of({"profiles": self.profiles})
        return self._profile_records

    @property
    def profiles(self) -> dict[str, dict]:
        """The error profiles as ``analysis.json`` holds them."""
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
        all_cons = self.consensus_spans(elite=False)
        cons_doc = self.index.doc_of_token[all_cons.starts] if len(all_cons) else np.zeros(0, dtype=np.int64)
        answered = self._answered()
        n_ex = self.examples_per_pattern
        out: dict[str, dict] = {}
        for k, sset in enumerate(self._spans()):
            # against the consensus of the documents this annotator answered
            mine = answered[k, cons_doc]
            cons = SpanSet(all_cons.starts[mine], all_cons.ends[mine], all_cons.labels[mine])
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
            prof["documents"] = int(answered[k].sum())
            prof["examples"] = examples
            out[self.annotators[k]] = {
                key: prof[key]
                for key in ["spurious", "missed", "type_confusion", "boundary", "matched", "n_spans", "consensus_spans",
                            "documents", "examples"]
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
        ix, a = self.index, self.arrays
        sc = a.scores
        cons = a.consensus if a.consensus is not None else sc.consensus
        p_cons = a.p_consensus if a.p_consensus is not None else sc.p_consensus
        lo, hi = int(ix.offsets[position]), int(ix.offsets[position + 1])
        doc = self.documents[position]
        tags = self.tags
        answered = self._answered()[:, position]
        return {
            "id": doc.id,
            "tokens": doc.token_texts,
            "annotators": [n for n, ok in zip(self.annotators, answered.tolist()) if ok],
            "consensus": [tags[t] for t in cons[lo:hi].tolist()],
            "p_consensus": _round(p_cons[lo:hi]),
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
            "agreement_by_label": self.agreement_by_label,
            "label_macro_f1": self.label_macro_f1,
            "agreement": self.agreement,
            "answered": self.answered,
            "unanswered": self.unanswered,
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
        from diziner.analysis.markdown import render_markdown

        return render_markdown(self)


# --------------------------------------------------------------------------- entry point


class _Hotspots:
    """The hotspot records of an analysis: each hot run widened to a reading window (every
    span that overlaps it), with each answered annotator's reading there, the errors against
    the elite consensus grouped by reading, and both consensus readings. The numpy arrays
    are turned into lists once, so each hotspot is plain indexing."""

    def __init__(self, res: AnalysisResult):
        self.res = res
        a = res.arrays
        ann = res._spans()
        self.econs = res.consensus_spans(elite=True)
        self.wcons = res.consensus_spans(elite=False)
        self.classes = [classify(sset, self.econs) for sset in ann]
        self.answered = res._answered()
        self.hs, self.he = a.hotspot_starts, a.hotspot_ends
        ws, we = self._windows(ann)
        self.ranges = [tuple(x.tolist() for x in overlap_ranges(sset, ws, we)) for sset in ann]
        self.e_lo, self.e_hi = (x.tolist() for x in overlap_ranges(self.econs, ws, we))
        self.w_lo, self.w_hi = (x.tolist() for x in overlap_ranges(self.wcons, ws, we))
        self.py = [(sset.starts.tolist(), sset.ends.tolist(), sset.labels.tolist()) for sset in ann]
        self.codes = [cl.codes.tolist() for cl in self.classes]
        self.missed = [cl.missed.tolist() for cl in self.classes]
        self.ws, self.we = ws.tolist(), we.tolist()

    def _windows(self, ann: list[SpanSet]) -> tuple[np.ndarray, np.ndarray]:
        """The reading window: the hot run widened to every span that overlaps it."""
        ws, we = self.hs.copy(), self.he.copy()
        for sset in (*ann, self.econs, self.wcons):
            if len(sset) == 0:
                continue
            lo, hi = overlap_ranges(sset, self.hs, self.he)
            has = hi > lo
            ws[has] = np.minimum(ws[has], sset.starts[lo[has]])
            we[has] = np.maximum(we[has], sset.ends[hi[has] - 1])
        return ws, we

    def build(self) -> list[dict]:
        return [self.hotspot(h, s, e) for h, (s, e) in enumerate(zip(self.hs.tolist(), self.he.tolist()))]

    def hotspot(self, h: int, s: int, e: int) -> dict:
        res, a, ix = self.res, self.res.arrays, self.res.index
        names = res.annotators
        d = int(ix.doc_of_token[s])
        doc = res.documents[d]
        cs, ce = int(ix.char_start[s]), int(ix.char_end[e - 1])
        readings: dict[str, list[dict]] = {}
        groups: dict[tuple, dict] = {}
        for k in range(len(self.py)):
            if not self.answered[k, d]:
                continue  # no reading from an annotator that did not answer this document
            lo, hi = self.ranges[k][0][h], self.ranges[k][1][h]
            ps, pe, pl = self.py[k]
            readings[names[k]] = [res._span_dict(ps[i], pe[i], pl[i]) for i in range(lo, hi)]
            self._errors(k, range(lo, hi), groups)
            self._misses(k, range(self.e_lo[h], self.e_hi[h]), groups)
        return {
            "id": h,
            "document": doc.id,
            "token_start": int(s - ix.offsets[d]),
            "token_end": int(e - ix.offsets[d]),
            "char_start": cs,
            "char_end": ce,
            "window_char_start": int(ix.char_start[self.ws[h]]),
            "window_char_end": int(ix.char_end[self.we[h] - 1]),
            "text": doc.text[cs:ce],
            "context": context(doc.text, cs, ce),
            "category": a.hotspot_category[h],
            "elite_agree": not bool(a.hotspot_elite_split[h]),
            "bias": round(float(a.hotspot_bias[h]), 4),
            "mean_u_star": round(float(a.hotspot_mean_u[h]), 4),
            "errors": list(groups.values()),
            "readings": readings,
            "unanswered": [names[k] for k in range(len(self.py)) if not self.answered[k, d]],
            "consensus": self._span_dicts(self.wcons, range(self.w_lo[h], self.w_hi[h])),
            "elite_consensus": self._span_dicts(self.econs, range(self.e_lo[h], self.e_hi[h])),
        }

    def _span_dicts(self, sset: SpanSet, idx: range) -> list[dict]:
        return [self.res._span_dict(int(sset.starts[i]), int(sset.ends[i]), int(sset.labels[i])) for i in idx]

    def _elite_reading(self, r: int) -> str:
        econs = self.econs
        return self.res._reading(int(econs.starts[r]), int(econs.ends[r]), int(econs.labels[r]))

    def _errors(self, k: int, spans: range, groups: dict[tuple, dict]) -> None:
        """Annotator ``k``'s spans in the window that do not match the elite consensus, into ``groups``."""
        ps, pe, pl = self.py[k]
        cl = self.classes[k]
        for i in spans:
            code = self.codes[k][i]
            if code == MATCH:
                continue
            key = (code, ps[i], pe[i], pl[i])
            g = groups.get(key)
            if g is None:
                r = int(cl.ref_index[i])
                g = groups[key] = {
                    "type": ERROR_NAMES[code],
                    "reading": self.res._reading(*key[1:]),
                    "consensus": "O" if r < 0 else self._elite_reading(r),
                    "labels": self.res._pattern_labels(code, pl[i], self.econs, r),
                    "annotators": [],
                }
            g["annotators"].append(self.res.annotators[k])

    def _misses(self, k: int, elite_spans: range, groups: dict[tuple, dict]) -> None:
        """The elite-consensus spans in the window that annotator ``k`` missed, into ``groups``."""
        for r in elite_spans:
            if not self.missed[k][r]:
                continue
            key = ("missed", r)
            g = groups.get(key)
            if g is None:
                g = groups[key] = {
                    "type": "missed",
                    "reading": "O",
                    "consensus": self._elite_reading(r),
                    "labels": self.res.labels[int(self.econs.labels[r])],
                    "annotators": [],
                }
            g["annotators"].append(self.res.annotators[k])


def collect_labels(annotations: dict[str, dict[str, list[Span]]]) -> list[str]:
    """Sorted labels used by any annotator: the default label order of both
    :func:`analyze` and :func:`diziner.analysis.aggregate` (callers that know the schema
    pass its label order explicitly to both)."""
    return sorted({sp.label for by_doc in annotations.values() for spans in by_doc.values() for sp in spans})


def answered_matrix(documents: list[Document], annotations: dict[str, dict[str, list[Span]]], names: list[str]) -> np.ndarray:
    """K × D booleans: annotator k answered document d (its id is a key of its dict)."""
    ids = [d.id for d in documents]
    return np.array([[i in annotations[nm] for i in ids] for nm in names], dtype=bool).reshape(len(names), len(ids))


def hot_runs(
    documents: list[Document],
    annotations: dict[str, dict[str, list[Span]]],
    weights: dict[str, float],
    labels: list[str],
    threshold: float | None = None,
    percentile: float = DEFAULTS.analysis.percentile,
) -> list[HotRun]:
    """Hotspot runs of some documents with fixed weights and, optionally, a fixed threshold.

    The rule of :func:`analyze`: a token is hot when its hot score ``H`` (see
    :func:`diziner.analysis.scores.hot_score`) is ``≥ threshold`` and > 0, with ``p``
    over the annotators who answered each document; ``threshold=None`` uses these
    documents' own ``percentile``. Only annotators with a weight take part; fewer than
    two give no hotspots. Returns :class:`~diziner.analysis.records.HotRun` records (token
    indices within the document), as :func:`diziner.analysis.aggregate` takes them.
    """
    names = [a for a in annotations if a in weights]
    if len(names) < 2 or not documents:
        return []
    label_ids = {lab: i for i, lab in enumerate(labels)}
    index = TokenIndex.build(documents)
    if index.n_tokens == 0:
        return []
    Z = np.vstack([project(index, annotations[a], label_ids, annotator=a)[0] for a in names])
    A = answered_matrix(documents, annotations, names)[:, index.doc_of_token]
    w = S.normalise(np.array([float(weights[a]) for a in names]))
    h = S.hot_score(S.token_scores(Z, w, A))
    if threshold is None:
        hot, _ = S.hot_tokens(h, percentile)
    else:
        hot = (h >= threshold - S.ZERO_EPS) & (h > 0)
    hs, he = S.hotspot_runs(hot, index.doc_start)
    out = []
    for s, e in zip(hs.tolist(), he.tolist()):
        d = int(index.doc_of_token[s])
        base = int(index.offsets[d])
        out.append(HotRun(document=documents[d].id, token_start=s - base, token_end=e - base))
    return out


def analyze(
    documents: list[Document],
    annotations: dict[str, dict[str, list[Span]]],
    labels: list[str] | None = None,
    weights: str = DEFAULTS.analysis.weights,
    percentile: float = DEFAULTS.analysis.percentile,
    examples_per_pattern: int = DEFAULTS.analysis.examples_per_pattern,
) -> AnalysisResult:
    """Analyse the disagreement of K annotators on the same documents.

    ``annotations`` maps annotator → document id → spans (character offsets) for the
    documents that annotator **answered**; a document missing from its dict was not
    answered (a failed call) and is left out of everything measured about that
    annotator — it is not "no entities" (that is an empty list). ``labels`` fixes the
    label order (tag ids and tie-breaks); by default it is the sorted set of labels
    used (:func:`collect_labels`, the same default as :func:`aggregate`). Spans with a
    label outside ``labels`` are dropped and counted.
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
    doc_answered = answered_matrix(documents, annotations, names)
    arrays = analyze_arrays(Z, index.doc_start, len(labels), weights=weights, percentile=percentile,
                            answered=doc_answered[:, index.doc_of_token])
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
        doc_answered=doc_answered,
    )
