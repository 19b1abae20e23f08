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

That union keeps overlapping spans of the two files side by side. ``--flat`` gives what the
engine delivers instead: FIRST and SECOND are comma-separated lists of per-annotator files
(one file per run), and "first", "second" and "union" are the engine's union aggregation
(weights fitted on these documents, one reading per token) over the first list, the second,
and both (BENCHMARKS.md §14):
    ... --flat G0/gemma.jsonl,G0/smollm2.jsonl OTHER/out.gemma.jsonl,OTHER/out.smollm2.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diziner.annotate.runner import read_answered_spans
from diziner.corpus.model import Span
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


def flat_union(first: list[Path], second: list[Path], labels: list[str], corpus: dict | None = None) -> dict[str, list]:
    """The engine's union over the runs of both lists of per-annotator files (weights fitted on
    their documents, overlaps resolved: one reading per token), as spans by document.
    ``corpus`` (id -> Document): the documents with their own tokens (a benchmark's), else each
    file's text, tokenized."""
    from diziner.aggregator import Aggregator
    from diziner.annotate.runner import AnnotatorRun
    from diziner.corpus.model import Document

    runs, docs = {}, {}
    for tag, files in (("1", first), ("2", second)):
        for path in files:
            run = AnnotatorRun.from_file(path, f"{path.stem}@{tag}")
            for r in run.results.values():
                docs.setdefault(r.doc_id, (corpus or {}).get(r.doc_id) or Document(r.doc_id, r.text))
            runs[run.annotator_id] = run
    documents = list(docs.values())
    for run in runs.values():  # a document a run lacks is one it did not answer
        run.cover(documents)
    rows, _ = Aggregator(labels, aggregation="union").fit(documents, runs).predict(documents, runs)
    return {r["id"]: [Span(r["id"], x["start"], x["end"], x["label"], x["text"]) for x in r["spans"]] for r in rows}


def f1(gold: dict[str, list], pred: dict[str, list], ids: list[str]) -> float:
    g = [s for d in ids for s in gold.get(d, [])]
    p = [s for d in ids for s in pred.get(d, [])]
    return score_spans(g, p)["micro"]["f1"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--split", default="test", choices=("dev", "test"))
    ap.add_argument("--flat", action="store_true", help="FIRST and SECOND are comma-separated per-annotator files; "
                    "score the engine's union over runs (one reading per token)")
    a = ap.parse_args(argv)
    from diziner.benchmarks.registry import load_split

    corpus = load_split(a.dataset, a.split)
    gold = {d.id: corpus.spans_of(d.id) for d in corpus.documents}
    if a.flat:
        from diziner.benchmarks.registry import schema_path
        from diziner.schema import load_schema

        labels = load_schema(schema_path(a.dataset)).label_names
        lists = [[Path(p) for p in x.split(",") if p] for x in (a.first, a.second)]
        ids = [str(r["id"]) for _, r in iter_jsonl(lists[0][0])]
        by_id = {d.id: d for d in corpus.documents}
        first, second = flat_union(lists[0], [], labels, by_id), flat_union(lists[1], [], labels, by_id)
        both = flat_union(lists[0], lists[1], labels, by_id)
    else:
        ids = [str(r["id"]) for _, r in iter_jsonl(Path(a.first))]
        first, second = read_answered_spans(Path(a.first)), read_answered_spans(Path(a.second))
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
