"""Annotator reliabilities estimated from the pool's own agreement (Dawid–Skene style).

The delivered annotation is a selection among the proposed spans. Each distinct proposed
span c = (start, end, label) is a candidate with a hidden truth y_c ∈ {true, false}.
Annotator k, if it answered c's document, proposes exactly c with probability s_k when
c is true (its sensitivity) and f_k when it is false (its false-alarm rate); an annotator
that did not answer the document says nothing about c. With ``per_label`` the rates are
per annotator and label (s_kl, f_kl) and the prior π_l per label.

The rates and the posteriors P(y_c = true | proposals) are fitted by EM (Dawid & Skene,
1979), started from the weighted vote share of each candidate, with Beta(1, 1) (Laplace)
smoothing of every rate so that rare labels stay finite. No gold is used. A candidate is
kept when its posterior exceeds 0.5; overlaps are resolved as in
:mod:`diziner.analysis.consensus` with the posterior in place of the span support.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Reliability:
    posterior: np.ndarray  # C: P(candidate is true)
    sensitivity: np.ndarray  # K (or K × L)
    false_alarm: np.ndarray  # K (or K × L)
    prior: np.ndarray  # scalar array (or L)
    iterations: int


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def estimate(proposed: np.ndarray, answered: np.ndarray, start: np.ndarray, labels: np.ndarray | None = None,
             n_labels: int = 1, per_label: bool = False, max_iter: int = 200, tol: float = 1e-7) -> Reliability:
    """EM over candidates.

    ``proposed``, ``answered``: K × C booleans (annotator k proposed exactly c / answered
    c's document); ``start``: C initial posteriors (e.g. the vote share); ``labels``: C
    label ids (needed with ``per_label``).
    """
    X = np.asarray(proposed, dtype=np.float64)
    A = np.asarray(answered, dtype=np.float64)
    X = X * A
    k_n, c_n = X.shape
    q = np.clip(np.asarray(start, dtype=np.float64), 0.0, 1.0)
    groups = np.asarray(labels, dtype=np.int64) if per_label else np.zeros(c_n, dtype=np.int64)
    g_n = n_labels if per_label else 1
    onehot = np.zeros((c_n, g_n))
    if c_n:
        onehot[np.arange(c_n), groups] = 1.0
    s = f = pi = None
    it = 0
    for it in range(1, max_iter + 1):
        # M step: rates per annotator (and label group), Laplace-smoothed
        tp = (X * q) @ onehot  # K × G
        tn = (X * (1 - q)) @ onehot
        at = (A * q) @ onehot
        af = (A * (1 - q)) @ onehot
        s = (tp + 1.0) / (at + 2.0)
        f = (tn + 1.0) / (af + 2.0)
        pi = (q @ onehot + 1.0) / (onehot.sum(0) + 2.0)
        # E step
        sc, fc, pc = s[:, groups], f[:, groups], pi[groups]  # K × C, C
        llr = A * (X * (np.log(sc) - np.log(fc)) + (1 - X) * (np.log1p(-sc) - np.log1p(-fc)))
        q_new = 1.0 / (1.0 + np.exp(-(_logit(pc) + llr.sum(0))))
        done = np.max(np.abs(q_new - q)) < tol if c_n else True
        q = q_new
        if done:
            break
    if not per_label and s is not None:
        s, f, pi = s[:, 0], f[:, 0], pi[0]
    return Reliability(q, s if s is not None else np.zeros(k_n), f if f is not None else np.zeros(k_n),
                       np.asarray(pi if pi is not None else 0.0), it)
