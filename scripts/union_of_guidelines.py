#!/usr/bin/env python
"""Score the union of two annotation files against gold, beside each file alone.

Both files are delivered (or per-annotator) JSONL outputs of the same documents, for
instance the test annotations of two guidelines of one ``bench`` run
(``OUT/DATASET/test/guideline-0/delivered.jsonl`` and ``.../guideline-3/delivered.jsonl``),
or two ``scripts/screen_guidelines.py`` outputs. Prints strict micro F1 of the first file,
of the second, and of the union of their spans, with the paired bootstrap interval
(1,000 resamples of documents) of each difference to the first. Documents: those of the
first file. Gold: the benchmark split (``--split``).

Example (BENCHMARKS.md §13):
    PYTHONPATH=src .venv/bin/python scripts/union_of_guidelines.py broad_twitter_corpus --split test \\
        SCREEN-OUT/broad_twitter_corpus/test/guideline-0/delivered.jsonl \\
        SCREEN-OUT/broad_twitter_corpus/test/guideline-3/delivered.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diziner.annotate.runner import read_answered_spans
from diziner.atomic import iter_jsonl
from diziner.bench import _bootstrap_diff_ci
from diziner.evaluate import score_spans


def union(a: dict[str, list], b: dict[str, list]) -> dict[str, list]:
    """Spans of both, each (start, end, label) once, per document."""
    out: dict[str, list] = {}
    for by_doc in (a, b):
        for doc, spans in by_doc.items():
            kept = out.setdefault(doc, [])
            seen = {s.key() for s in kept}
            for s in spans:
                if s.key() not in seen:
                    seen.add(s.key())
                    kept.append(s)
    return out


def f1(gold: dict[str, list], pred: dict[str, list], ids: list[str]) -> float:
    g = [s for d in ids for s in gold.get(d, [])]
    p = [s for d in ids for s in pred.get(d, [])]
    return score_spans(g, p)["micro"]["f1"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--split", default="test", choices=("dev", "test"))
    a = ap.parse_args(argv)
    from diziner.benchmarks.registry import load_split

    corpus = load_split(a.dataset, a.split)
    gold = {d.id: corpus.spans_of(d.id) for d in corpus.documents}
    ids = [str(r["id"]) for _, r in iter_jsonl(a.first)]
    first, second = read_answered_spans(a.first), read_answered_spans(a.second)
    both = union(first, second)
    row = {"documents": len(ids), "first": round(f1(gold, first, ids), 3), "second": round(f1(gold, second, ids), 3),
           "union": round(f1(gold, both, ids), 3)}
    for name, pred in (("second", second), ("union", both)):
        lo, hi = _bootstrap_diff_ci(gold, first, pred, ids)
        row[f"{name}_minus_first_ci95"] = [round(lo, 3), round(hi, 3)]
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
