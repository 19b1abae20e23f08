"""Agreement figures over token tags and spans (vectorised).

* strict span F1 between annotators (spans are (start, end, label) on the BIO projection),
  each pair over the documents both answered;
* Cohen's κ per pair of annotators over token tags — the same formula as
  ``sklearn.metrics.cohen_kappa_score`` (the tests check equality);
* Fleiss' κ over token tags — the same formula as
  ``statsmodels.stats.inter_rater.fleiss_kappa`` (checked in tests);
* Krippendorff's α, nominal, over token tags — the same as the ``krippendorff``
  package (checked in tests).

The three κ/α figures are computed here from tag counts, not by calling those libraries:
the libraries need an N × categories table (hundreds of MB for a million tokens) or
are slow on large inputs. Degenerate inputs — every token gets the same tag from every
annotator, so chance agreement is 1 — give ``None`` (the libraries give NaN).

With an ``answered`` mask (K × N booleans, see :mod:`.scores`): Cohen's κ of a pair uses
the tokens of the documents both answered; Fleiss' κ (which needs the same raters on
every item) the tokens of the documents every annotator answered; Krippendorff's α
treats the unanswered values as missing, as the ``krippendorff`` package does.
"""
from __future__ import annotations

import numpy as np

from diziner.analysis.scores import pairwise_f1_from_counts
from diziner.analysis.tags import decode, span_keys


def annotator_span_keys(Z: np.ndarray, doc_start: np.ndarray, n_labels: int) -> list[np.ndarray]:
    """Sorted span keys of every annotator (one int64 per span)."""
    n = Z.shape[1]
    out = []
    for k in range(Z.shape[0]):
        s, e, lab = decode(Z[k], doc_start)
        out.append(np.sort(span_keys(s, e, lab, n, n_labels)))
    return out


def token_documents(doc_start: np.ndarray) -> np.ndarray:
    """Per token: the index of its document among the documents that have tokens."""
    return np.cumsum(np.asarray(doc_start, dtype=bool)) - 1


def answered_documents(answered: np.ndarray, doc_start: np.ndarray) -> np.ndarray:
    """K × D' booleans (D' documents with tokens) from a K × N token mask."""
    return np.asarray(answered, dtype=bool)[:, np.flatnonzero(doc_start)]


def pairwise_span_f1(
    keys: list[np.ndarray],
    span_docs: list[np.ndarray] | None = None,
    doc_answered: np.ndarray | None = None,
) -> np.ndarray:
    """K × K strict span F1 matrix from per-annotator span keys.

    With ``span_docs`` (per annotator, the document index of each key) and
    ``doc_answered`` (K × D booleans), each pair is scored over the documents both
    annotators answered.
    """
    return pairwise_span_f1_counts(keys, span_docs, doc_answered)[0]


def pairwise_span_f1_counts(
    keys: list[np.ndarray],
    span_docs: list[np.ndarray] | None = None,
    doc_answered: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(F1 matrix, shared-document counts)``; counts are None without ``doc_answered``."""
    k_n = len(keys)
    counts = np.zeros((k_n, k_n), dtype=np.int64)
    common = np.zeros((k_n, k_n), dtype=np.int64)
    shared = None
    if doc_answered is not None:
        da = np.asarray(doc_answered, dtype=bool)
        shared = (da[:, None, :] & da[None, :, :]).sum(axis=2)
    for a in range(k_n):
        counts[a, a] = common[a, a] = len(keys[a])
        for b in range(a + 1, k_n):
            ka, kb = keys[a], keys[b]
            if doc_answered is not None and span_docs is not None:
                both = da[a] & da[b]
                ka = ka[both[span_docs[a]]]
                kb = kb[both[span_docs[b]]]
            counts[a, b], counts[b, a] = len(ka), len(kb)
            c = len(np.intersect1d(ka, kb, assume_unique=True))
            common[a, b] = common[b, a] = c
    return pairwise_f1_from_counts(counts, common), shared


def label_pairwise_means(
    keys: list[np.ndarray],
    span_docs: list[np.ndarray],
    doc_answered: np.ndarray | None,
    n_labels: int,
) -> np.ndarray:
    """Per label id, the mean pairwise strict span F1 over that label's spans alone (NaN with
    fewer than two annotators). A label no annotator tags scores 0, as two empty sets do."""
    out = np.full(n_labels, np.nan)
    if len(keys) < 2:
        return out
    width = max(n_labels, 1)
    for lab in range(n_labels):
        masks = [k % width == lab for k in keys]
        f1, shared = pairwise_span_f1_counts([k[m] for k, m in zip(keys, masks)],
                                             [d[m] for d, m in zip(span_docs, masks)], doc_answered)
        out[lab] = mean_pairwise(f1, shared)
    return out


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's κ of two tag sequences; None when chance agreement is 1 (or no tokens)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    n = len(a)
    if n == 0:
        return None
    t = int(max(a.max(), b.max())) + 1
    ca = np.bincount(a, minlength=t) / n
    cb = np.bincount(b, minlength=t) / n
    po = float(np.mean(a == b))
    pe = float(ca @ cb)
    if pe >= 1.0 - 1e-12:
        return None
    return (po - pe) / (1.0 - pe)


def cohen_matrix(Z: np.ndarray, answered: np.ndarray | None = None) -> np.ndarray:
    """K × K matrix of pairwise Cohen κ (NaN where undefined; diagonal 1).

    With ``answered``, a pair is compared on the tokens both answered.
    """
    k_n = Z.shape[0]
    m = np.eye(k_n)
    for a in range(k_n):
        for b in range(a + 1, k_n):
            if answered is None:
                v = cohen_kappa(Z[a], Z[b])
            else:
                both = answered[a] & answered[b]
                v = cohen_kappa(Z[a][both], Z[b][both])
            m[a, b] = m[b, a] = np.nan if v is None else v
    return m


def _category_stats(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token Σ_c n_ic² (n_ic = annotators giving tag c) and per-tag totals."""
    Z = np.asarray(Z)
    k_n, n = Z.shape
    sq = np.full(n, float(k_n))  # self pairs
    for a in range(k_n):
        for b in range(a + 1, k_n):
            sq += 2.0 * (Z[a] == Z[b])
    totals = np.bincount(Z.astype(np.int64).ravel(), minlength=1).astype(np.float64)
    return sq, totals


def fleiss_kappa(Z: np.ndarray, answered: np.ndarray | None = None) -> float | None:
    """Fleiss' κ with K raters per token; None for K < 2, no tokens, or P_e = 1.

    With ``answered``, only the tokens every annotator answered are used.
    """
    Z = np.asarray(Z)
    if answered is not None:
        Z = Z[:, np.asarray(answered, dtype=bool).all(axis=0)]
    k_n, n = Z.shape
    if k_n < 2 or n == 0:
        return None
    sq, totals = _category_stats(Z)
    p_i = (sq - k_n) / (k_n * (k_n - 1))
    p_bar = float(p_i.mean())
    p_j = totals / (n * k_n)
    p_e = float((p_j**2).sum())
    if p_e >= 1.0 - 1e-12:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def krippendorff_alpha(Z: np.ndarray, answered: np.ndarray | None = None) -> float | None:
    """Krippendorff's α (nominal); None for K < 2 or a single value overall.

    With ``answered``, unanswered values are missing: a token counts with the m ≥ 2
    annotators who answered it (pairable values), as in the ``krippendorff`` package.
    """
    Z = np.asarray(Z)
    k_n, n = Z.shape
    if k_n < 2 or n == 0:
        return None
    if answered is None:
        sq, totals = _category_stats(Z)
        m = np.full(n, float(k_n))
    else:
        A = np.asarray(answered, dtype=bool)
        m = A.sum(axis=0).astype(np.float64)
        keep = m >= 2
        Z, A, m = Z[:, keep], A[:, keep], m[keep]
        if Z.shape[1] == 0:
            return None
        sq = m.copy()
        for a in range(k_n):
            for b in range(a + 1, k_n):
                sq += 2.0 * ((Z[a] == Z[b]) & A[a] & A[b])
        totals = np.bincount(Z.astype(np.int64)[A], minlength=1).astype(np.float64)
    n_pairable = float(m.sum())
    observed = float(((m**2 - sq) / (m - 1)).sum())  # Σ_{c≠k} o_ck
    expected = n_pairable**2 - float((totals**2).sum())  # Σ_{c≠k} n_c n_k
    if expected <= 1e-12:
        return None
    return 1.0 - (n_pairable - 1.0) * observed / expected


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def mean_pairwise(f1: np.ndarray, shared: np.ndarray | None = None) -> float | None:
    """Mean of the upper triangle over pairs that share ≥ 1 answered document.

    None with fewer than two annotators; 0.0 when no pair shares a document.
    """
    k_n = f1.shape[0]
    if k_n < 2:
        return None
    iu = np.triu_indices(k_n, 1)
    vals = f1[iu]
    if shared is not None:
        vals = vals[shared[iu] > 0]
    return float(vals.mean()) if len(vals) else 0.0


def agreement_figures(
    Z: np.ndarray,
    names: list[str],
    f1: np.ndarray,
    answered: np.ndarray | None = None,
    shared: np.ndarray | None = None,
) -> dict:
    """All agreement figures as a JSON-ready dict (None where undefined).

    ``shared`` (K × K) is the number of documents each pair both answered: pairs with
    none are left out of the means.
    """
    k_n = len(names)
    kap = cohen_matrix(Z, answered)
    pairs_k = [kap[a, b] for a in range(k_n) for b in range(a + 1, k_n) if np.isfinite(kap[a, b])]
    n_docs = shared if shared is not None else np.zeros((k_n, k_n), dtype=np.int64)
    return {
        "span_f1": {
            "pairwise": {names[a]: {names[b]: float(f1[a, b]) for b in range(k_n)} for a in range(k_n)},
            "mean": mean_pairwise(f1, shared),
            "documents": {names[a]: {names[b]: int(n_docs[a, b]) for b in range(k_n)} for a in range(k_n)},
        },
        "cohen_kappa": {
            "pairwise": {names[a]: {names[b]: _none_if_nan(kap[a, b]) for b in range(k_n)} for a in range(k_n)},
            "mean": float(np.mean(pairs_k)) if pairs_k else None,
        },
        "fleiss_kappa": fleiss_kappa(Z, answered),
        "krippendorff_alpha": krippendorff_alpha(Z, answered),
    }
