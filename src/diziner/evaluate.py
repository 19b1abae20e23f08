"""Span-level evaluation: strict P/R/F1 (micro, macro, per label) and nervaluate-style views.

Strict scoring keys a span on ``(doc_id, start, end, label)`` (:meth:`Span.key`); gold
and predicted spans are sets (duplicates count once). On flat BIO data the micro figures
equal seqeval's default mode. Definitions: docs/evaluation.md.

Every output the project compares in one table (each annotator, the consensus, the
union, in the loop, the final step and ``diziner bench``) goes through one path,
:func:`score_outputs`: its spans are first snapped to the document's tokens with the
projection the consensus is decoded from (:func:`snap_to_tokens`), then scored with
:func:`score_spans` against gold as given.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from diziner.corpus.model import AnnotatedCorpus, Document, Span
from diziner.errors import DizinerError

VIEWS = ("strict", "exact", "partial", "type")


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    """Precision, recall and F1 from counts; 0 where undefined (seqeval's zero_division=0)."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    denom = p + r
    f = 2 * p * r / denom if denom else 0.0
    return {"precision": p, "recall": r, "f1": f}


def score_spans(gold: Iterable[Span], pred: Iterable[Span]) -> dict[str, Any]:
    """Strict span scores.

    Returns ``{"micro": {precision, recall, f1, tp, fp, fn}, "macro": {precision, recall,
    f1, labels}, "per_label": {label: {precision, recall, f1, support, tp, fp, fn}}}``.
    ``macro`` is the unweighted mean over the labels present in gold; ``per_label`` also
    lists labels that occur only in predictions (support 0).
    """
    g = {s.key() for s in gold}
    p = {s.key() for s in pred}
    tp_keys = g & p
    by_label: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp, n_pred, n_gold
    for k in tp_keys:
        by_label[k[3]][0] += 1
    for k in p:
        by_label[k[3]][1] += 1
    for k in g:
        by_label[k[3]][2] += 1
    micro: dict[str, Any] = prf(len(tp_keys), len(p), len(g))
    micro.update(tp=len(tp_keys), fp=len(p) - len(tp_keys), fn=len(g) - len(tp_keys))
    per_label: dict[str, dict[str, Any]] = {}
    for lab in sorted(by_label):
        tp, n_p, n_g = by_label[lab]
        row: dict[str, Any] = prf(tp, n_p, n_g)
        row.update(support=n_g, tp=tp, fp=n_p - tp, fn=n_g - tp)
        per_label[lab] = row
    gold_labels = [lab for lab in per_label if per_label[lab]["support"] > 0]
    macro: dict[str, Any] = {
        m: (sum(per_label[lab][m] for lab in gold_labels) / len(gold_labels) if gold_labels else 0.0)
        for m in ("precision", "recall", "f1")
    }
    macro["labels"] = len(gold_labels)
    return {"micro": micro, "macro": macro, "per_label": per_label}


# --------------------------------------------------------------------------- one path for every output


def snap_to_tokens(documents: list[Document], spans_by_doc: dict[str, list[Span]]) -> dict[str, list[Span]]:
    """The spans moved onto the tokens they overlap, as the consensus is built.

    Each span is projected on its document's tokens with the analysis's rule
    (:func:`diziner.analysis.tags.project`: a span covers every token it overlaps by a
    character; overlapping spans keep the longest; a span on whitespace only is dropped)
    and decoded back to character offsets (first token's start, last token's end). Labels
    are kept as given (an unknown label stays, to be scored as a false positive). Spans of
    documents not in ``documents`` are returned unchanged. Idempotent.
    """
    from diziner.analysis.tags import TokenIndex, decode, project

    known = {d.id for d in documents}
    inside = {d: spans for d, spans in spans_by_doc.items() if d in known}
    out: dict[str, list[Span]] = {d: list(spans) for d, spans in spans_by_doc.items() if d not in known}
    out.update({d: [] for d in inside})
    labels = sorted({s.label for spans in inside.values() for s in spans})
    if not labels:
        return out
    index = TokenIndex.build(documents)
    z, _ = project(index, inside, {lab: i for i, lab in enumerate(labels)})
    starts, ends, labs = decode(z, index.doc_start)
    for s, e, lab in zip(starts.tolist(), ends.tolist(), labs.tolist()):
        doc = documents[int(index.doc_of_token[s])]
        c0, c1 = int(index.char_start[s]), int(index.char_end[e - 1])
        out[doc.id].append(Span(doc.id, c0, c1, labels[lab], doc.text[c0:c1]))
    return out


def score_outputs(gold: dict[str, list[Span]], outputs: dict[str, dict[str, list[Span]]],
                  documents: list[Document]) -> dict[str, dict[str, Any]]:
    """:func:`score_spans` of each named output over ``documents``, on one path.

    ``outputs`` maps a name (an annotator id, ``consensus``, ``union``, ...) to its spans
    by document id. Every output is snapped with :func:`snap_to_tokens` first, so an
    annotator's raw character spans and the token-decoded consensus are scored alike;
    gold is taken as given. A document an output has no entry for (a failed call, or
    nobody answered it) counts as no prediction.
    """
    g = [s for d in documents for s in gold.get(d.id, [])]
    scores: dict[str, dict[str, Any]] = {}
    for name, pred in outputs.items():
        snapped = snap_to_tokens(documents, {d.id: list(pred.get(d.id, [])) for d in documents})
        scores[name] = score_spans(g, [s for d in documents for s in snapped.get(d.id, [])])
    return scores


# --------------------------------------------------------------------------- views


def _overlap(a: Span, b: Span) -> int:
    return max(0, min(a.end, b.end) - max(a.start, b.start))


def match_spans(gold: Iterable[Span], pred: Iterable[Span]) -> list[tuple[Span | None, Span | None]]:
    """One-to-one alignment of gold and predicted spans within each document.

    Pairs are formed greedily in this order of preference: same boundaries and label;
    same boundaries; overlapping with the same label; overlapping; within a class the
    larger character overlap first, then the earlier position. Unpaired spans come back
    as ``(gold, None)`` (missed) or ``(None, pred)`` (spurious).
    """
    gd: dict[str, list[Span]] = defaultdict(list)
    pd: dict[str, list[Span]] = defaultdict(list)
    for s in set(gold):
        gd[s.doc_id].append(s)
    for s in set(pred):
        pd[s.doc_id].append(s)
    pairs: list[tuple[Span | None, Span | None]] = []
    for doc_id in sorted(set(gd) | set(pd)):
        gs, ps = sorted(gd.get(doc_id, [])), sorted(pd.get(doc_id, []))
        cands = []
        for gi, g in enumerate(gs):
            for pi, p in enumerate(ps):
                ov = _overlap(g, p)
                if ov <= 0:
                    continue
                same_b = g.start == p.start and g.end == p.end
                same_l = g.label == p.label
                rank = 0 if (same_b and same_l) else 1 if same_b else 2 if same_l else 3
                cands.append((rank, -ov, g.start, p.start, gi, pi))
        cands.sort()
        used_g: set[int] = set()
        used_p: set[int] = set()
        for _, _, _, _, gi, pi in cands:
            if gi in used_g or pi in used_p:
                continue
            used_g.add(gi)
            used_p.add(pi)
            pairs.append((gs[gi], ps[pi]))
        pairs += [(g, None) for gi, g in enumerate(gs) if gi not in used_g]
        pairs += [(None, p) for pi, p in enumerate(ps) if pi not in used_p]
    return pairs


def score_views(gold: Iterable[Span], pred: Iterable[Span]) -> dict[str, dict[str, Any]]:
    """The four MUC/SemEval-2013 views over one alignment (:func:`match_spans`).

    For a paired (gold, pred): ``strict`` correct iff boundaries and label match;
    ``exact`` correct iff boundaries match; ``partial`` correct iff boundaries match,
    partial if they only overlap; ``type`` correct iff labels match (any overlap).
    Otherwise the pair is incorrect. Unpaired gold = missed, unpaired pred = spurious.
    Precision = (correct + 0.5 partial) / predicted, recall = (correct + 0.5 partial) / gold.
    """
    counts = {v: {"correct": 0, "incorrect": 0, "partial": 0, "missed": 0, "spurious": 0} for v in VIEWS}
    for g, p in match_spans(gold, pred):
        if p is None:
            for v in VIEWS:
                counts[v]["missed"] += 1
            continue
        if g is None:
            for v in VIEWS:
                counts[v]["spurious"] += 1
            continue
        same_b = g.start == p.start and g.end == p.end
        same_l = g.label == p.label
        counts["strict"]["correct" if same_b and same_l else "incorrect"] += 1
        counts["exact"]["correct" if same_b else "incorrect"] += 1
        counts["partial"]["correct" if same_b else "partial"] += 1
        counts["type"]["correct" if same_l else "incorrect"] += 1
    out: dict[str, dict[str, Any]] = {}
    for v, c in counts.items():
        n_gold = c["correct"] + c["incorrect"] + c["partial"] + c["missed"]
        n_pred = c["correct"] + c["incorrect"] + c["partial"] + c["spurious"]
        hit = c["correct"] + 0.5 * c["partial"]
        p_ = hit / n_pred if n_pred else 0.0
        r_ = hit / n_gold if n_gold else 0.0
        f_ = 2 * p_ * r_ / (p_ + r_) if p_ + r_ else 0.0
        out[v] = {"precision": p_, "recall": r_, "f1": f_, **c}
    return out


# --------------------------------------------------------------------------- corpora


def align_corpora(gold: AnnotatedCorpus, pred: AnnotatedCorpus, *, by: str = "auto", subset: bool = False) -> tuple[list[Span], list[Span], dict[str, Any]]:
    """Gold and predicted spans of two corpora over the same documents.

    ``by="id"`` matches documents by id; ``by="order"`` by position (for two CoNLL files
    of the same sentences; predicted spans are re-keyed to the gold ids); ``auto`` uses
    ids when the id sets agree, else order when both have the same number of documents
    with the same texts. With ``subset=True`` only the gold documents present in ``pred``
    are scored (by id). Texts of matched documents must be equal. Mismatches raise
    :class:`DizinerError`. Returns (gold spans, pred spans, info).
    """
    if by not in ("auto", "id", "order"):
        raise DizinerError(f"unknown document matching {by!r} (use auto, id or order)")
    ids = _Ids([d.id for d in gold.documents], [d.id for d in pred.documents], subset)
    by = ids.matching(by)
    used, pairs = _pairs_by_id(gold, pred, ids) if by == "id" else _pairs_by_order(gold, pred)
    pred_spans: list[Span] = []
    for gdoc, pdoc in pairs:
        if _norm(gdoc) != _norm(pdoc):
            raise DizinerError(
                f"document {gdoc.id!r} (gold) and {pdoc.id!r} (pred) have different texts: "
                + _first_difference(gdoc.text, pdoc.text),
                hint="gold and pred must annotate the same documents",
            )
        pred_spans += [Span(gdoc.id, s.start, s.end, s.label, s.text) for s in pred.spans_of(pdoc.id)]
    gold_spans = [s for d in used for s in gold.spans_of(d.id)]
    return gold_spans, pred_spans, {"matched_by": by, "documents": len(used)}


class _Ids:
    """The document ids of gold and pred, and how they can be matched."""

    def __init__(self, gold: list[str], pred: list[str], subset: bool):
        self.gold, self.pred, self.subset = gold, pred, subset
        self.gold_set, self.pred_set = set(gold), set(pred)

    def matching(self, by: str) -> str:
        """``by``, with ``auto`` resolved: ids when the sets agree, else order when the counts do."""
        if by != "auto":
            return by
        if self.gold_set == self.pred_set or (self.subset and self.pred_set <= self.gold_set):
            return "id"
        if len(self.gold) == len(self.pred) and not self.subset:
            return "order"
        raise DizinerError(self.mismatch())

    def mismatch(self) -> str:
        return _mismatch(self.gold, self.pred, self.gold_set, self.pred_set, self.subset)


def _pairs_by_id(gold: AnnotatedCorpus, pred: AnnotatedCorpus, ids: _Ids
                 ) -> tuple[list[Document], list[tuple[Document, Document]]]:
    """(gold documents scored, (gold, pred) pairs) by id."""
    extra = [i for i in ids.pred if i not in ids.gold_set]
    missing = [i for i in ids.gold if i not in ids.pred_set]
    if extra or (missing and not ids.subset):
        raise DizinerError(ids.mismatch())
    gdocs = {d.id: d for d in gold.documents}
    return [gdocs[i] for i in ids.gold if i in ids.pred_set], [(gdocs[d.id], d) for d in pred.documents]


def _pairs_by_order(gold: AnnotatedCorpus, pred: AnnotatedCorpus
                    ) -> tuple[list[Document], list[tuple[Document, Document]]]:
    if len(gold.documents) != len(pred.documents):
        raise DizinerError(
            f"gold has {len(gold.documents)} documents and pred has {len(pred.documents)}: cannot match them by order"
        )
    return list(gold.documents), list(zip(gold.documents, pred.documents))


def _norm(doc: Document) -> str:
    return doc.text


def _char_name(c: str) -> str:
    import unicodedata

    return f"U+{ord(c):04X} {unicodedata.name(c, 'control character')}"


def _first_difference(a: str, b: str, context: int = 12) -> str:
    """Where two texts that may look identical differ: the position, both readings around it,
    and the two characters by Unicode name (a no-break space, CR, a different apostrophe...)."""
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - context)

    def around(t: str) -> str:
        return ("…" if lo else "") + t[lo:i + context] + ("…" if i + context < len(t) else "")

    ca = _char_name(a[i]) if i < len(a) else "end of text"
    cb = _char_name(b[i]) if i < len(b) else "end of text"
    return (f"first difference at character {i} (gold {len(a)}, pred {len(b)} characters): "
            f"gold {around(a)!r} has {ca}, pred {around(b)!r} has {cb}")


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _mismatch(g_ids: list[str], p_ids: list[str], g_set: set[str], p_set: set[str], subset: bool) -> str:
    missing = [i for i in g_ids if i not in p_set]
    extra = [i for i in p_ids if i not in g_set]
    parts = [f"gold and pred documents do not match (gold {len(g_ids)}, pred {len(p_ids)})"]
    if missing and not subset:
        parts.append(f"{len(missing)} gold ids not in pred (first: {missing[0]!r})")
    if extra:
        parts.append(f"{len(extra)} pred ids not in gold (first: {extra[0]!r})")
    return "; ".join(parts)


def evaluate_corpora(
    gold: AnnotatedCorpus,
    pred: AnnotatedCorpus,
    *,
    by: str = "auto",
    subset: bool = False,
    views: bool = False,
    snap: bool = False,
) -> dict[str, Any]:
    """Score ``pred`` against ``gold``: :func:`score_spans` plus ``documents``,
    ``matched_by`` and, with ``views=True``, ``views`` (:func:`score_views`).

    ``snap=True`` first snaps the predicted spans to the gold documents' tokens
    (:func:`snap_to_tokens`), the path every figure of a refine run or a bench row uses;
    by default the raw character spans are scored."""
    g, p, info = align_corpora(gold, pred, by=by, subset=subset)
    if snap:
        scored = {s.doc_id for s in g} | {s.doc_id for s in p}
        docs = [d for d in gold.documents if d.id in scored]
        by_doc: dict[str, list[Span]] = defaultdict(list)
        for s in p:
            by_doc[s.doc_id].append(s)
        snapped = snap_to_tokens(docs, dict(by_doc))
        p = [s for spans in snapped.values() for s in spans]
    info["snapped_to_tokens"] = snap
    result = score_spans(g, p)
    result.update(info)
    if views:
        result["views"] = score_views(g, p)
    return result


__all__ = ["VIEWS", "align_corpora", "evaluate_corpora", "match_spans", "prf", "score_outputs", "score_spans",
           "score_views", "snap_to_tokens"]
