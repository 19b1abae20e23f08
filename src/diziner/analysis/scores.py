"""The disagreement formulas of DiZiNER, vectorised over all tokens at once.

Inputs are a tag-id matrix ``Z`` (K annotators × N tokens, see :mod:`.tags`),
annotator weights ``w`` (K, summing to 1) and, optionally, an ``answered`` mask
(K × N booleans: annotator k answered the document of token i). A document an
annotator did not answer (a failed call) is not "no entities": at each token the
weights are renormalised over the annotators who answered its document
(:func:`token_weights`). Nothing here reads files or builds dicts; every function is
arrays in, arrays out. Definitions and tie-breaks are documented in
``docs/analysis.md``.

The tag distribution ``p(τ) = Σ_k w_k·1[z_k = τ]`` is never materialised as an
N × T matrix: every quantity needed is a sum over annotator pairs, e.g.
``Σ_τ p(τ)² = Σ_k w_k · p(z_k)``. Memory is O(K·N).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIE_EPS = 1e-9  # two probabilities closer than this are a tie
ZERO_EPS = 1e-12  # scores below this are rounded to exactly 0


# --------------------------------------------------------------------------- weights


def pairwise_f1_from_counts(n_spans: np.ndarray, n_common: np.ndarray) -> np.ndarray:
    """Strict span F1 matrix from span counts and pairwise exact-match counts.

    ``F1(a, b) = 2·|A∩B| / (|A| + |B|)``. Two empty sets score **0**: agreeing on
    nothing is no evidence of agreement (a guideline under which nobody tags anything
    must not win selection). An empty set against a non-empty one scores 0. The
    diagonal is 1. ``n_spans`` is a K vector, or a K × K matrix when each pair counts
    its spans over the documents both annotators answered (row a, column b: a's spans).
    """
    n_spans = np.asarray(n_spans, dtype=np.float64)
    denom = n_spans[:, None] + n_spans[None, :] if n_spans.ndim == 1 else n_spans + n_spans.T
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2.0 * np.asarray(n_common, dtype=np.float64) / np.where(denom > 0, denom, 1), 0.0)
    np.fill_diagonal(f1, 1.0)
    return f1


def normalise(scores: np.ndarray) -> np.ndarray:
    """Scale non-negative scores to sum 1; uniform when they are all 0."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)
    total = s.sum()
    if len(s) == 0:
        return s
    if total <= ZERO_EPS:
        return np.full(len(s), 1.0 / len(s))
    return s / total


def mean_off_diagonal(m: np.ndarray, defined: np.ndarray | None = None) -> np.ndarray:
    """Row means of a square matrix without its diagonal (K=1 → [0.0]).

    With ``defined`` (K × K booleans) only the defined off-diagonal cells count; a row
    with none has mean 0.
    """
    m = np.asarray(m, dtype=np.float64)
    k = m.shape[0]
    if k < 2:
        return np.zeros(k)
    if defined is None:
        return (m.sum(axis=1) - np.diag(m)) / (k - 1)
    d = np.asarray(defined, dtype=bool) & ~np.eye(k, dtype=bool)
    cnt = d.sum(axis=1)
    tot = np.where(d, np.nan_to_num(m), 0.0).sum(axis=1)
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)


def f1_weights(f1: np.ndarray, defined: np.ndarray | None = None) -> np.ndarray:
    """``w_k ∝ mean_{j≠k} F1(k, j)``, normalised; uniform when all pairwise F1 are 0.

    ``defined`` (K × K) leaves out pairs that share no answered document.
    """
    return normalise(mean_off_diagonal(f1, defined))


def hybrid_weights(f1: np.ndarray, kappa: np.ndarray, defined: np.ndarray | None = None) -> np.ndarray:
    """``0.5·normalised mean F1 + 0.5·normalised mean Cohen κ`` (κ clipped at 0; NaN → 0)."""
    kap = np.nan_to_num(np.asarray(kappa, dtype=np.float64), nan=0.0)
    return 0.5 * f1_weights(f1, defined) + 0.5 * normalise(np.clip(mean_off_diagonal(kap, defined), 0.0, None))


def elite_set(weights: np.ndarray) -> list[int]:
    """Indices of the elite annotators.

    Annotators sorted by weight (descending; ties keep input order) are added until the
    cumulative weight first reaches 0.5; the one that crosses is included.
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0:
        return []
    order = sorted(range(len(w)), key=lambda i: (-w[i], i))
    out, cum = [], 0.0
    for i in order:
        out.append(i)
        cum += w[i]
        if cum >= 0.5 - ZERO_EPS:
            break
    return out


# --------------------------------------------------------------------------- token weights


def token_weights(w: np.ndarray, answered: np.ndarray | None, n: int | None = None) -> np.ndarray:
    """Per-token weights ``W[k, i]`` (K × N): ``w`` renormalised over the annotators who
    answered the document of token i.

    ``answered=None`` means everybody answered everything (``W[k, i] = w_k``; ``n`` gives N).
    Where the answering annotators' weights sum to 0 they share the token uniformly;
    where nobody answered, every ``W[k, i]`` is 0 (no distribution, all scores 0).
    A 2-D ``w`` is taken as already per-token.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2:
        return w
    if answered is None:
        return np.repeat(w[:, None], 0 if n is None else n, axis=1)
    a = np.asarray(answered, dtype=bool)
    raw = np.where(a, w[:, None], 0.0)
    tot = raw.sum(axis=0)
    cnt = a.sum(axis=0)
    uniform = np.where(a, 1.0 / np.maximum(cnt, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > ZERO_EPS, raw / np.where(tot > ZERO_EPS, tot, 1.0), uniform)


def _per_token(Z: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w if w.ndim == 2 else np.repeat(w[:, None], Z.shape[1], axis=1)


# --------------------------------------------------------------------------- token scores


def own_tag_mass(Z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``M[k, i] = p_i(z_k,i)``: the weighted mass of the tag annotator k chose at token i.

    ``w`` is a K vector or K × N per-token weights (:func:`token_weights`).
    """
    Z = np.asarray(Z)
    W = _per_token(Z, w)
    k_n, n = Z.shape
    out = W.copy()
    for a in range(k_n):
        for b in range(a + 1, k_n):
            eq = Z[a] == Z[b]
            np.add(out[a], W[b], out=out[a], where=eq)
            np.add(out[b], W[a], out=out[b], where=eq)
    return out


def tag_distribution(Z: np.ndarray, w: np.ndarray, n_tags: int) -> np.ndarray:
    """The dense N × T matrix ``p(τ)`` (for tests and small inputs)."""
    Z = np.asarray(Z)
    W = _per_token(Z, w)
    p = np.zeros((Z.shape[1], n_tags), dtype=np.float64)
    idx = np.arange(Z.shape[1])
    for k in range(Z.shape[0]):
        np.add.at(p, (idx, Z[k]), W[k])
    return p


def consensus_from_mass(Z: np.ndarray, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax tag per token and its probability.

    Ties (within 1e-9) go to the lowest tag id — O first, then ``B-l0, I-l0, B-l1, ...``.
    """
    Z = np.asarray(Z)
    if Z.shape[1] == 0:
        return Z[0].copy() if Z.shape[0] else np.zeros(0, np.int16), np.zeros(0)
    best = mass.max(axis=0)
    cand = mass >= best - TIE_EPS
    big = np.iinfo(Z.dtype).max if np.issubdtype(Z.dtype, np.integer) else np.inf
    cons = np.where(cand, Z, big).min(axis=0).astype(Z.dtype)
    # probability of the chosen tag: the mass of any annotator who chose it
    pick = np.argmax(cand & (Z == cons[None, :]), axis=0)
    p_cons = np.clip(mass[pick, np.arange(Z.shape[1])], 0.0, 1.0)
    return cons, p_cons


@dataclass
class TokenScores:
    """Per-token results (all arrays of length N)."""

    consensus: np.ndarray  # argmax tag id
    p_consensus: np.ndarray  # p of the consensus tag
    p_o: np.ndarray
    d_conf: np.ndarray
    d_type: np.ndarray
    u_bnd: np.ndarray
    u_star: np.ndarray


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    x[x < ZERO_EPS] = 0.0
    return x


def token_scores(Z: np.ndarray, w: np.ndarray, answered: np.ndarray | None = None) -> TokenScores:
    """p-based scores of every token.

    ``w``: K weights (renormalised per token over ``answered``, see
    :func:`token_weights`) or K × N per-token weights. A token of a document answered by
    one annotator only has ``p`` = that annotator's tag: every score is 0 (no
    disagreement can be measured there).

    * ``D_conf = 1 − Σ_τ p(τ)²`` over full BIO tags;
    * ``D_type = 1 − Σ_l ((p_B-l + p_I-l) / (1 − p_O))²``, 0 where ``p_O = 1``;
    * ``U_bnd = max(4·qs·(1−qs), 4·qi·(1−qi))`` with ``qs = Σ_l p_B-l``, ``qi = Σ_l p_I-l``;
    * ``U* = max(D_conf, D_type, U_bnd)``.
    """
    Z = np.asarray(Z)
    W = token_weights(w, answered, Z.shape[1]) if answered is not None else _per_token(Z, w)
    mass = own_tag_mass(Z, W)
    sum_p2 = (W * mass).sum(axis=0)  # Σ_τ p(τ)² = Σ_k w_k p(z_k)
    answered_mass = W.sum(axis=0)  # 1, or 0 where nobody answered
    d_conf = _clean(answered_mass - sum_p2)
    lab = np.where(Z > 0, (Z - 1) // 2, -1)
    ent = lab >= 0
    is_b = ent & (Z % 2 == 1)
    is_i = ent & ~is_b
    p_o = (W * ~ent).sum(axis=0)
    qs = (W * is_b).sum(axis=0)
    qi = (W * is_i).sum(axis=0)
    # Σ_l m_l² = Σ_{k: entity} w_k · Σ_j w_j 1[lab_j = lab_k]
    k_n = Z.shape[0]
    lab_mass = np.where(ent, W, 0.0)
    for a in range(k_n):
        for b in range(a + 1, k_n):
            eq = (lab[a] == lab[b]) & ent[a]
            np.add(lab_mass[a], W[b], out=lab_mass[a], where=eq)
            np.add(lab_mass[b], W[a], out=lab_mass[b], where=eq)
    sum_m2 = (W * np.where(ent, lab_mass, 0.0)).sum(axis=0)
    e_mass = (W * ent).sum(axis=0)  # 1 − p(O) among those who answered, summed directly
    has_ent = e_mass > ZERO_EPS
    with np.errstate(invalid="ignore", divide="ignore"):
        d_type = np.where(has_ent, 1.0 - sum_m2 / np.where(has_ent, e_mass, 1.0) ** 2, 0.0)
    d_type = _clean(d_type)
    u_bnd = _clean(np.maximum(4 * qs * (1 - qs), 4 * qi * (1 - qi)))
    u_star = np.maximum(np.maximum(d_conf, d_type), u_bnd)
    cons, p_cons = consensus_from_mass(Z, mass)
    return TokenScores(cons, p_cons, _clean(p_o.astype(np.float64)), d_conf, d_type, u_bnd, u_star)


# --------------------------------------------------------------------------- hotspots


def hot_score(ts: TokenScores) -> np.ndarray:
    """The score hotspots are ranked by: ``H = max(U*, min(1, 2·D_type))``.

    For a two-way split with minority weight share q, ``U_bnd = 4q(1−q)`` (boundary or
    entity-vs-O) but ``D_type = 2q(1−q)`` (label): a type confusion is worth half a
    boundary dispute of the same split, so with discrete U* (K = 2: only 0, 0.5, 1) it
    never reached a percentile that lands on the boundary level. ``2·D_type`` puts a
    label split on the boundary scale: the same split ranks the same. ``H > 0`` exactly
    where ``U* > 0``.
    """
    return np.maximum(ts.u_star, np.minimum(1.0, 2.0 * ts.d_type))


def hotspot_threshold(u_star: np.ndarray, percentile: float = 80.0) -> float | None:
    """The ``percentile`` of a score (``H`` or U*) over tokens where it is > 0 (None when none is)."""
    pos = np.asarray(u_star)[np.asarray(u_star) > 0]
    if pos.size == 0:
        return None
    return float(np.percentile(pos, percentile))


def hot_tokens(u_star: np.ndarray, percentile: float = 80.0) -> tuple[np.ndarray, float | None]:
    """Hot tokens: ``U* ≥ threshold`` and ``U* > 0``; returns ``(mask, threshold)``."""
    u = np.asarray(u_star)
    thr = hotspot_threshold(u, percentile)
    if thr is None:
        return np.zeros(len(u), dtype=bool), None
    return (u >= thr - ZERO_EPS) & (u > 0), thr


def hotspot_runs(hot: np.ndarray, doc_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of hot tokens within documents, bridging one non-hot token between two hot ones.

    Returns ``(starts, ends)`` (global token indices, ends exclusive).
    """
    hot = np.asarray(hot, dtype=bool)
    doc_start = np.asarray(doc_start, dtype=bool)
    n = len(hot)
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy()
    b = hot.copy()
    if n >= 3:
        b[1:-1] |= ~hot[1:-1] & hot[:-2] & hot[2:] & ~doc_start[1:-1] & ~doc_start[2:]
    prev = np.r_[False, b[:-1]]
    nxt = np.r_[b[1:], False]
    next_doc_start = np.r_[doc_start[1:], True]
    starts = np.flatnonzero(b & (~prev | doc_start))
    ends = np.flatnonzero(b & (~nxt | next_doc_start)) + 1
    return starts.astype(np.int64), ends.astype(np.int64)


def range_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sum of ``values[s:e]`` for every range."""
    cs = np.zeros(len(values) + 1, dtype=np.float64)
    np.cumsum(values, out=cs[1:])
    return cs[ends] - cs[starts]


def elite_disagreement(Z: np.ndarray, elite: list[int], answered: np.ndarray | None = None) -> np.ndarray:
    """Per token: True where the elite annotators who answered do not all give the same tag."""
    Z = np.asarray(Z)
    out = np.zeros(Z.shape[1], dtype=bool)
    for i, a in enumerate(elite):
        for b in elite[i + 1 :]:
            diff = Z[a] != Z[b]
            if answered is not None:
                diff &= answered[a] & answered[b]
            out |= diff
    return out


def group_weights(w: np.ndarray, group: list[int], answered: np.ndarray | None, n: int) -> np.ndarray:
    """K × N weights of one group of annotators, renormalised per token over the group's
    annotators who answered (0 where none of them did)."""
    w = np.asarray(w, dtype=np.float64)
    k_n = len(w)
    sel = np.zeros(k_n, dtype=bool)
    sel[list(group)] = True
    a = np.ones((k_n, n), dtype=bool) if answered is None else np.asarray(answered, dtype=bool)
    a = a & sel[:, None]
    return np.where(a.any(axis=0)[None, :], token_weights(w, a), 0.0)


def elite_rest_tv(Z: np.ndarray, w: np.ndarray, elite: list[int], answered: np.ndarray | None = None) -> np.ndarray:
    """Per token: total-variation distance between the elite-weighted and rest-weighted
    tag distributions (weights renormalised within each group, over the annotators who
    answered). 0 when there is no rest, or where either group has nobody who answered.
    """
    Z = np.asarray(Z)
    w = np.asarray(w, dtype=np.float64)
    k_n, n = Z.shape
    rest = [k for k in range(k_n) if k not in set(elite)]
    if not rest or not elite or n == 0:
        return np.zeros(n)
    we = group_weights(w, elite, answered, n)
    wr = group_weights(w, rest, answered, n)
    both = (we.sum(axis=0) > ZERO_EPS) & (wr.sum(axis=0) > ZERO_EPS)
    diff = we - wr  # pE(z_k) − pR(z_k), accumulated below
    first = np.ones((k_n, n), dtype=bool)  # k is the first annotator with its tag
    for a in range(k_n):
        for b in range(a + 1, k_n):
            eq = Z[a] == Z[b]
            diff[a] += eq * (we[b] - wr[b])
            diff[b] += eq * (we[a] - wr[a])
            first[b] &= ~eq
    tv = np.clip(0.5 * (np.abs(diff) * first).sum(axis=0), 0.0, 1.0)
    return np.where(both, tv, 0.0)
