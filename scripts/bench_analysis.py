#!/usr/bin/env python
"""Benchmark the disagreement analysis on synthetic annotations.

Generates N tokens in documents of D tokens, a synthetic gold annotation, and K noisy
annotators (misses, label swaps, boundary shifts, spurious spans; each annotator with its
own noise level). Times, excluding the generation:

1. ``analyze_arrays`` — the numeric core on the K × N tag-id matrix;
2. ``analyze`` from Span objects (projection + core), plus building hotspot details,
   error profiles and the summary;
3. ``aggregate`` (consensus mode).

Prints seconds and peak traced memory (tracemalloc) of each stage and the process's
peak RSS. Example:

    .venv/bin/python scripts/bench_analysis.py --tokens 1000000 --annotators 8
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from diziner.analysis import aggregate, analyze, analyze_arrays
from diziner.analysis.tags import decode, encode
from diziner.corpus.model import Document, Span


def synth(n_tokens: int, k: int, doc_len: int, n_labels: int, seed: int):
    rng = np.random.default_rng(seed)
    n_docs = max(1, n_tokens // doc_len)
    n = n_docs * doc_len
    doc_start = np.zeros(n, dtype=bool)
    doc_start[::doc_len] = True
    # gold: spans of 1-3 tokens inside documents, about 15 % of the tokens
    cand = np.flatnonzero(rng.random(n) < 0.08)
    lengths = rng.integers(1, 4, size=len(cand))
    ends = np.minimum(cand + lengths, (cand // doc_len + 1) * doc_len)
    keep = np.r_[True, cand[1:] >= np.maximum.accumulate(ends)[:-1] + 1]
    gs, ge = cand[keep], ends[keep]
    gl = rng.integers(0, n_labels, size=len(gs))
    rows = []
    for a in range(k):
        noise = 0.05 + 0.25 * a / max(k - 1, 1)
        s, e, lab = gs.copy(), ge.copy(), gl.copy()
        m = rng.random(len(s))
        present = m >= noise  # missed spans
        swap = (m >= noise) & (m < noise * 1.5)
        lab[swap] = (lab[swap] + 1) % n_labels
        shift = (m >= noise * 1.5) & (m < noise * 2.0) & (e - s > 1)
        e[shift] -= 1
        s, e, lab = s[present], e[present], lab[present]
        # spurious single-token spans on O tokens
        z = encode(s, e, lab, n)
        sp = np.flatnonzero((rng.random(n) < noise * 0.05) & (z == 0))
        z[sp] = 2 * rng.integers(0, n_labels, size=len(sp)) + 1
        rows.append(z)
    Z = np.vstack(rows)
    return Z, doc_start, n_docs


def to_spans(Z, doc_start, n_docs, doc_len, labels):
    word = "tok"
    text = " ".join([word] * doc_len)
    tokens = [(i * (len(word) + 1), i * (len(word) + 1) + len(word)) for i in range(doc_len)]
    docs = [Document(f"d{i}", text, tokens=tokens) for i in range(n_docs)]
    ann = {}
    for k in range(Z.shape[0]):
        s, e, lab = decode(Z[k], doc_start)
        by_doc: dict[str, list[Span]] = {}
        for a, b, c in zip(s.tolist(), e.tolist(), lab.tolist()):
            d, ts, te = a // doc_len, a % doc_len, (b - 1) % doc_len
            by_doc.setdefault(f"d{d}", []).append(Span(f"d{d}", tokens[ts][0], tokens[te][1], labels[c]))
        ann[f"m{k}"] = by_doc
    return docs, ann


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, fn):
    """Run ``fn`` once; print wall seconds and the process's peak RSS after it."""
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:<50s} {dt:7.2f} s   peak RSS so far {_rss_mib():7.0f} MiB")
    return out


def traced_peak(fn) -> float:
    """Peak memory traced by tracemalloc while ``fn`` runs (MiB); a separate, slower run."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--doc-len", type=int, default=25)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-full", action="store_true", help="time only the numeric core")
    args = ap.parse_args()
    labels = [f"L{i}" for i in range(args.labels)]
    Z, doc_start, n_docs = synth(args.tokens, args.annotators, args.doc_len, args.labels, args.seed)
    print(f"{Z.shape[1]:,} tokens, {args.annotators} annotators, {n_docs:,} documents, {args.labels} labels")
    print(f"peak RSS after generation {_rss_mib():.0f} MiB")
    arr = timed("core: analyze_arrays (numeric)", lambda: analyze_arrays(Z, doc_start, args.labels))
    print(f"  hot tokens {int(arr.hot.sum()):,}, hotspots {len(arr.hotspot_starts):,}, elite {arr.elite}")
    if not args.skip_full:
        docs, ann = to_spans(Z, doc_start, n_docs, args.doc_len, labels)
        res = timed("analyze() from Span objects (projection + core)", lambda: analyze(docs, ann, labels=labels))
        timed("  + hotspot details, profiles, summary", lambda: (res.hotspots, res.profiles, res.summary))
        weights = res.weights
        timed("aggregate() consensus mode", lambda: aggregate(docs, ann, weights, labels=labels))
    peak = traced_peak(lambda: analyze_arrays(Z, doc_start, args.labels))
    print(f"core: peak memory allocated by analyze_arrays (tracemalloc, separate run) {peak:.0f} MiB")


if __name__ == "__main__":
    main()
