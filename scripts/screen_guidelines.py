#!/usr/bin/env python
"""Screen guidelines on the same dev documents: label-free agreement beside dev F1.

The pilot of ``refine`` measures each iteration's guideline on *new* documents, so two
iterations' agreement differ by their sentences as well as by their guidelines. This script
annotates one fixed set of dev documents with each guideline given (every annotator of the
pool, through the library's own ``annotate_corpus``) and prints per guideline:

- ``agreement``: mean pairwise strict span F1 (what the stop rule watches);
- ``over_labels``: the same per label, averaged over the schema's labels (what selection uses);
- spans per annotator and per label (a collapse onto one label shows here);
- dev F1 of each annotator and of the union (gold only scores).

Documents: the iteration-0 pilot sample of a ``refine``/``bench`` run folder (``--run``,
``iterations/0/sample.jsonl``) and/or ``--extra N`` dev documents drawn (``--seed``) from
outside every pilot sample of that run. Guidelines: ``--guideline PATH`` (repeatable) or
``--iterations 0,1`` (the run's ``iterations/<t>/guideline.yaml``).

Example (BENCHMARKS.md §10):
    PYTHONPATH=src .venv/bin/python scripts/screen_guidelines.py bc5cdr --run OUT/bc5cdr/run \\
        --iterations 0,1 --extra 25 --out screen-guidelines --json bc5cdr.json
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from diziner.annotate.runner import read_answered_spans


def _f1(gold: dict[str, list], pred: dict[str, list], doc_ids: list[str]) -> float:
    tp = n_pred = n_gold = 0
    for d in doc_ids:
        g = {s.key() for s in gold.get(d, [])}
        p = {s.key() for s in pred.get(d, [])}
        tp, n_pred, n_gold = tp + len(g & p), n_pred + len(p), n_gold + len(g)
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def _samples(run: Path | None, corpus, extra: int, seed: int) -> dict[str, list]:
    from diziner.atomic import read_jsonl
    from diziner.corpus.model import Document

    out: dict[str, list] = {}
    used: set[str] = set()
    if run is not None:
        for sample in sorted((run / "iterations").glob("*/sample.jsonl")):
            rows = list(read_jsonl(sample))
            used |= {r["id"] for r in rows}
            if sample.parent.name == "0":
                out["pilot0"] = [Document(r["id"], r["text"]) for r in rows]
    if extra:
        rest = [d for d in corpus.documents if d.id not in used]
        out[f"extra{extra}"] = [Document(d.id, d.text) for d in random.Random(seed).sample(rest, min(extra, len(rest)))]
    return out


def screen(dataset: str, pool_path: str, run: Path | None, guidelines: dict[str, Path], extra: int, seed: int,
           out: Path) -> list[dict]:
    from diziner.analysis import analyze
    from diziner.benchmarks.registry import load_split
    from diziner.guideline import load_guideline
    from diziner.llm.pool import load_pool
    from diziner.stream import annotate_corpus

    pool = load_pool(pool_path)
    corpus = load_split(dataset, "dev")
    gold = {d.id: corpus.spans_of(d.id) for d in corpus.documents}
    rows = []
    for sname, docs in _samples(run, corpus, extra, seed).items():
        ids = [d.id for d in docs]
        for gname, gpath in guidelines.items():
            g = load_guideline(gpath)
            o = out / dataset / f"{sname}-{gname}.jsonl"
            o.parent.mkdir(parents=True, exist_ok=True)
            annotate_corpus(g, docs, pool, o, quiet=True, aggregation="union")
            ann = {a.id: read_answered_spans(o.with_name(f"{o.stem}.{a.id}.jsonl")) for a in pool.annotators}
            res = analyze(docs, ann, labels=g.schema_.label_names)
            union = read_answered_spans(o)
            row = {"documents": sname, "n": len(docs), "guideline": gname, "agreement": res.mean_agreement,
                   "over_labels": res.label_macro_f1, "agreement_by_label": res.agreement_by_label,
                   "spans": {a: dict(Counter(s.label for v in by.values() for s in v)) for a, by in ann.items()},
                   "dev_f1": {**{a: round(_f1(gold, by, ids), 3) for a, by in ann.items()},
                              "union": round(_f1(gold, union, ids), 3)}}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--pool", default="examples/pool-local.yaml")
    ap.add_argument("--run", type=Path, help="a refine/bench run folder (RUN/iterations/<t>/...)")
    ap.add_argument("--iterations", default="", help="comma-separated iterations of --run whose guidelines to screen")
    ap.add_argument("--guideline", action="append", default=[], help="NAME=PATH of a guideline YAML (repeatable)")
    ap.add_argument("--extra", type=int, default=0, help="dev documents from outside every pilot sample of --run")
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--out", type=Path, default=Path("screen-guidelines"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    guidelines: dict[str, Path] = {}
    for t in filter(None, a.iterations.split(",")):
        if a.run is None:
            ap.error("--iterations needs --run")
        guidelines[f"G{t}"] = a.run / "iterations" / t / "guideline.yaml"
    for item in a.guideline:
        name, _, path = item.partition("=")
        guidelines[name if path else Path(name).stem] = Path(path or name)
    if not guidelines:
        ap.error("give --iterations or --guideline")
    rows = screen(a.dataset, a.pool, a.run, guidelines, a.extra, a.seed, a.out)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
