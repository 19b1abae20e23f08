"""Iteration document sets chosen for lexical diversity.

Each iteration of the pilot sees new documents. To make a small set cover as much
of the corpus' vocabulary as possible, documents are embedded with TF-IDF (word
uni- and bigrams, sublinear tf), clustered with k-means into ``size`` clusters, and
the document nearest each centroid is taken. Sets are drawn one after another from
what is left, so they are disjoint. Everything is seeded: the same corpus, sizes and
seed give the same sets.

When the corpus has fewer documents left than ``size``, the last set takes what is
left; when nothing is left, fewer sets are returned (the caller reports it).
"""
from __future__ import annotations

import numpy as np

from diziner.corpus.model import Document


def _representatives(texts: list[str], k: int, seed: int) -> list[int]:
    """Indices (into ``texts``) of one representative per k-means cluster."""
    if k >= len(texts):
        return list(range(len(texts)))
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)
        x = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary (e.g. only punctuation)
        rng = np.random.default_rng(seed)
        return sorted(rng.choice(len(texts), size=k, replace=False).tolist())
    km = KMeans(n_clusters=k, n_init=4, random_state=seed)
    labels = km.fit_predict(x)
    dense_centres = km.cluster_centers_
    chosen: list[int] = []
    taken: set[int] = set()
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        sub = x[members]
        # squared distance to the centroid; the nearest member represents the cluster
        d = np.asarray(sub.multiply(sub).sum(axis=1)).ravel() - 2 * (sub @ dense_centres[c]) + float(dense_centres[c] @ dense_centres[c])
        order = members[np.argsort(d, kind="stable")]
        for idx in order:
            if int(idx) not in taken:
                chosen.append(int(idx))
                taken.add(int(idx))
                break
    if len(chosen) < k:  # duplicate texts can empty clusters: fill deterministically
        rng = np.random.default_rng(seed)
        rest = [i for i in rng.permutation(len(texts)).tolist() if i not in taken]
        chosen.extend(rest[: k - len(chosen)])
    return sorted(chosen)


def iteration_sets(documents: list[Document], n_sets: int, size: int, seed: int = 13) -> list[list[Document]]:
    """``n_sets`` disjoint, lexically diverse sets of ``size`` documents each."""
    if size < 1 or n_sets < 1:
        raise ValueError("n_sets and size must be ≥ 1")
    remaining = list(documents)
    sets: list[list[Document]] = []
    for t in range(n_sets):
        if not remaining:
            break
        idx = _representatives([d.text for d in remaining], min(size, len(remaining)), seed + t)
        picked = set(idx)
        sets.append([remaining[i] for i in idx])
        remaining = [d for i, d in enumerate(remaining) if i not in picked]
    return sets


def fixed_sample(documents: list[Document], size: int, seed: int) -> list[Document]:
    """A seeded uniform sample (in corpus order), the same for every system compared."""
    if size >= len(documents):
        return list(documents)
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(documents), size=size, replace=False).tolist())
    return [documents[i] for i in idx]
