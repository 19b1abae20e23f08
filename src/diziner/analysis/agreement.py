"""Agreement figures over token tags and spans (vectorised).

* strict span F1 between annotators (spans are (start, end, label) on the BIO projection);
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


def pairwise_span_f1(keys: list[np.ndarray]) -> np.ndarray:
    """K × K strict span F1 matrix from per-annotator span keys."""
    k_n = len(keys)
    counts = np.array([len(k) for k in keys], dtype=np.int64)
    common = np.zeros((k_n, k_n), dtype=np.int64)
    for a in range(k_n):
        common[a, a] = counts[a]
        for b in range(a + 1, k_n):
            c = len(np.intersect1d(keys[a], keys[b], assume_unique=True))
            common[a, b] = common[b, a] = c
    return pairwise_f1_from_counts(counts, common)


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


def cohen_matrix(Z: np.ndarray) -> np.ndarray:
    """K × K matrix of pairwise Cohen κ (NaN where undefined; diagonal 1)."""
    k_n = Z.shape[0]
    m = np.eye(k_n)
    for a in range(k_n):
        for b in range(a + 1, k_n):
            v = cohen_kappa(Z[a], Z[b])
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


def fleiss_kappa(Z: np.ndarray) -> float | None:
    """Fleiss' κ with K raters per token; None for K < 2, no tokens, or P_e = 1."""
    Z = np.asarray(Z)
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


def krippendorff_alpha(Z: np.ndarray) -> float | None:
    """Krippendorff's α (nominal, no missing values); None for K < 2 or a single value overall."""
    Z = np.asarray(Z)
    k_n, n = Z.shape
    if k_n < 2 or n == 0:
        return None
    sq, totals = _category_stats(Z)
    n_pairable = float(n * k_n)
    observed = float(((k_n**2 - sq) / (k_n - 1)).sum())  # Σ_{c≠k} o_ck
    expected = n_pairable**2 - float((totals**2).sum())  # Σ_{c≠k} n_c n_k
    if expected <= 1e-12:
        return None
    return 1.0 - (n_pairable - 1.0) * observed / expected


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def agreement_figures(Z: np.ndarray, names: list[str], f1: np.ndarray) -> dict:
    """All agreement figures as a JSON-ready dict (None where undefined)."""
    k_n = len(names)
    kap = cohen_matrix(Z)
    pairs_f1 = [f1[a, b] for a in range(k_n) for b in range(a + 1, k_n)]
    pairs_k = [kap[a, b] for a in range(k_n) for b in range(a + 1, k_n) if np.isfinite(kap[a, b])]
    return {
        "span_f1": {
            "pairwise": {names[a]: {names[b]: float(f1[a, b]) for b in range(k_n)} for a in range(k_n)},
            "mean": float(np.mean(pairs_f1)) if pairs_f1 else None,
        },
        "cohen_kappa": {
            "pairwise": {names[a]: {names[b]: _none_if_nan(kap[a, b]) for b in range(k_n)} for a in range(k_n)},
            "mean": float(np.mean(pairs_k)) if pairs_k else None,
        },
        "fleiss_kappa": fleiss_kappa(Z),
        "krippendorff_alpha": krippendorff_alpha(Z),
    }
