"""The consensus: a selection among the spans the annotators proposed (vectorised).

Both the analysis (the weighted and the elite consensus that hotspots, error types and
profiles are measured against) and :func:`diziner.analysis.aggregate` (the delivered
annotation) use :func:`select_spans`, so the supervisor is shown the same consensus
that is delivered, and no consensus span was proposed by nobody: every selected span is
some annotator's own span (on the BIO projection), with its extent and label.

Per-token weights ``W`` (K × N, :func:`diziner.analysis.scores.token_weights`) are the
annotator weights renormalised over the annotators who answered each document. For a
candidate span c = (start, end, label):

* **span support** ``S(c)`` = Σ of ``W`` of the annotators whose own span is exactly c;
* **token support** ``T(c)`` = mean over c's tokens of p(c's tag) (B-label on the first
  token, I-label after);
* **entity support** ``E(c)`` = mean over c's tokens of p(any entity tag) = 1 − p(O).

Eligible candidates: in consensus mode (``min_support=None``) ``E(c) > 0.5`` — more
weight says "an entity here" than "nothing here"; a tie goes to nothing, as the token
argmax sends ties to O; in span-vote mode ``S(c) ≥ min_support``.

Overlapping eligible candidates are resolved greedily in this order (the tie rule):
higher ``S``, then higher ``T``, then more tokens, then earlier start, then lower label
index (the label order: the ``labels`` given, else the sorted labels used). The rule is
symmetric in the annotators: reordering them never changes the consensus.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diziner.analysis.scores import TIE_EPS
from diziner.analysis.tags import decode, encode, span_keys


@dataclass
class SpanChoice:
    """Selected spans (global token indices, ends exclusive, sorted by start)."""

    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray
    support: np.ndarray  # S(c): weight of the annotators who proposed exactly this span
    token_support: np.ndarray  # T(c)
    proposers: np.ndarray  # K × C booleans
    posterior: np.ndarray | None = None  # P(true) under fitted reliabilities (reliability mode only)

    def tags(self, n: int, dtype=np.int16) -> np.ndarray:
        return encode(self.starts, self.ends, self.labels, n, dtype=dtype)


def _expand(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token positions of every span, the owning span index and whether it is the first token."""
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(starts)), lengths)
    offset = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offset, owner, offset == 0


def _resolve_overlaps(cs: np.ndarray, ce: np.ndarray, cl: np.ndarray, token_support: np.ndarray, rank: np.ndarray,
                      n: int) -> np.ndarray:
    """Which candidates to keep. They are sorted by key = (start, end, label): a candidate
    overlapping no other is kept without a contest; the rest are resolved greedily by the tie rule."""
    keep = np.ones(len(cs), dtype=bool)
    if len(cs) > 1:
        prev_max = np.maximum.accumulate(ce)
        new_run = np.r_[True, cs[1:] >= prev_max[:-1]]  # overlaps no earlier candidate
        run = np.cumsum(new_run)
        contested = np.bincount(run)[run] > 1
        cidx = np.flatnonzero(contested)
        if len(cidx):
            keep[cidx] = False
            order = cidx[np.lexsort((cl[cidx], cs[cidx], -(ce[cidx] - cs[cidx]),
                                     -np.round(token_support[cidx], 9), -np.round(rank[cidx], 9)))]
            taken = np.zeros(n, dtype=bool)
            for i in order.tolist():
                if not taken[cs[i] : ce[i]].any():
                    taken[cs[i] : ce[i]] = True
                    keep[i] = True
    return keep


def select_spans(
    Z: np.ndarray,
    W: np.ndarray,
    doc_start: np.ndarray,
    n_labels: int,
    min_support: float | None = None,
    reliability: str | None = None,
    answered: np.ndarray | None = None,
) -> SpanChoice:
    """Select a flat set of proposed spans (see the module docstring for the rule).

    ``Z``: K × N tag ids; ``W``: K × N per-token weights (0 where an annotator did not
    answer); ``min_support``: None for the consensus, a number for the span vote.
    ``reliability`` (``"annotator"`` or ``"label"``): keep the candidates whose posterior
    under annotator reliabilities fitted without gold (:mod:`diziner.analysis.reliability`,
    rates per annotator or per annotator and label) exceeds 0.5, and rank overlaps by
    that posterior; ``answered`` (K × N booleans, default ``W > 0``) says who answered.
    """
    Z = np.asarray(Z)
    W = np.asarray(W, dtype=np.float64)
    k_n, n = Z.shape
    empty = np.zeros(0, dtype=np.int64)
    per = [decode(Z[k], doc_start) for k in range(k_n)]
    keys = [span_keys(*p, n, n_labels) for p in per]
    all_k = np.concatenate(keys) if keys else empty
    if len(all_k) == 0:
        return SpanChoice(empty, empty.copy(), empty.copy(), np.zeros(0), np.zeros(0), np.zeros((k_n, 0), dtype=bool))
    uniq, first, inv = np.unique(all_k, return_index=True, return_inverse=True)
    cs = np.concatenate([p[0] for p in per])[first]
    ce = np.concatenate([p[1] for p in per])[first]
    cl = np.concatenate([p[2] for p in per])[first]
    owner = np.concatenate([np.full(len(keys[k]), k) for k in range(k_n)])
    proposers = np.zeros((k_n, len(uniq)), dtype=bool)
    proposers[owner, inv.ravel()] = True
    support = (proposers * W[:, cs]).sum(axis=0)
    lengths = ce - cs
    pos, own, is_first = _expand(cs, lengths)
    tag = np.where(is_first, 2 * cl[own] + 1, 2 * cl[own] + 2)
    Wp, Zp = W[:, pos], Z[:, pos]
    p_tag = (Wp * (Zp == tag[None, :])).sum(axis=0)
    p_ent = (Wp * (Zp != 0)).sum(axis=0)
    token_support = np.bincount(own, weights=p_tag, minlength=len(cs)) / lengths
    entity_support = np.bincount(own, weights=p_ent, minlength=len(cs)) / lengths
    if reliability is not None:
        from diziner.analysis.reliability import estimate

        if reliability not in ("annotator", "label"):
            raise ValueError(f"reliability must be 'annotator' or 'label', got {reliability!r}")
        ans = (W > 0) if answered is None else np.asarray(answered, dtype=bool)
        rel = estimate(proposers, ans[:, cs], support, cl, n_labels, per_label=reliability == "label")
        posterior = rel.posterior
        ok = posterior > 0.5 + TIE_EPS
    elif min_support is None:
        ok = entity_support > 0.5 + TIE_EPS
    else:
        ok = support >= min_support - TIE_EPS
    idx = np.flatnonzero(ok)
    cs, ce, cl, support, token_support, proposers = (
        cs[idx], ce[idx], cl[idx], support[idx], token_support[idx], proposers[:, idx])
    rank = support if reliability is None else posterior[idx]  # what overlaps are resolved by first
    sel = np.flatnonzero(_resolve_overlaps(cs, ce, cl, token_support, rank, n))  # already sorted by start
    return SpanChoice(cs[sel], ce[sel], cl[sel], support[sel], token_support[sel], proposers[:, sel],
                      None if reliability is None else rank[sel])
