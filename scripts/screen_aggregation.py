#!/usr/bin/env python
"""Screen aggregation rules offline on the test annotations a `diziner bench` run left.

For each dataset folder (``OUT/<dataset>/test/guideline-<t>/<annotator>.jsonl``, written
by ``diziner bench``, best run with ``--disjoint-from 300`` so the reported sentences are
never screened on), for the iteration-0 and the selected guideline, for the whole pool and
for each annotator subset asked for, prints the strict micro F1 of:

- each annotator alone, and the best of them;
- ``consensus``: the token consensus (``min_support`` None, the current default);
- ``vote>=x``: span vote with weight ≥ x (0 = union);
- ``rel-ann`` / ``rel-label``: candidates whose posterior under annotator reliabilities
  fitted without gold (per annotator / per annotator and label) exceeds 0.5.

Weights are those of the analysis of the same annotations (mean pairwise F1), as in
``diziner bench``. Gold is used only to score.

Example:
    PYTHONPATH=src .venv/bin/python scripts/screen_aggregation.py /tmp/screen-out bc5cdr crossner_politics \\
        --subset gemma,smollm2 --json /tmp/screen.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diziner.annotate.runner import read_answered_spans


RULES: dict[str, dict[str, Any]] = {
    "consensus": {"min_support": None},
    "vote>=0": {"min_support": 0.0},
    "vote>=0.25": {"min_support": 0.25},
    "vote>=0.5": {"min_support": 0.5},
    "rel-ann": {"reliability": "annotator"},
    "rel-label": {"reliability": "label"},
}


def screen(out: Path, name: str, subsets: list[list[str]]) -> dict[str, Any]:
    from diziner.analysis import aggregate, analyze
    from diziner.bench import screening_sample
    from diziner.benchmarks.registry import load_split, schema_path
    from diziner.corpus.model import Span
    from diziner.evaluate import score_outputs
    from diziner.loop import _spans_from_dicts
    from diziner.schema import load_schema

    res = json.loads((out / f"{name}.json").read_text())
    schema = load_schema(schema_path(name))
    test = load_split(name, "test")
    ts = res.get("test_sample", {})
    docs = screening_sample(test.documents, res["test_size"], res["seed"], ts.get("disjoint_from"))
    tag_map = schema.tag_map()
    gold = {d.id: [Span(s.doc_id, s.start, s.end, tag_map.get(s.label, s.label), s.text) for s in test.spans_of(d.id)]
            for d in docs}
    labels = schema.label_names
    report: dict[str, Any] = {"dataset": name, "test_size": len(docs), "disjoint_from": ts.get("disjoint_from"),
                              "naive": res.get("naive", {}), "guidelines": {}}
    for t in sorted({0, res["selected_iteration"]}):
        folder = out / name / "test" / f"guideline-{t}"
        ann_all = {p.stem: read_answered_spans(p) for p in sorted(folder.glob("*.jsonl"))}
        rows = {}
        for sub in subsets or [list(ann_all)]:
            ann = {a: ann_all[a] for a in sub}
            an = analyze(docs, ann, labels=labels)
            weights = dict(an.weights)
            outs: dict[Any, Any] = {("one", a): ann[a] for a in ann}
            for rule, kw in RULES.items():
                agg = aggregate(docs, ann, weights, labels=labels, **kw)
                outs[rule] = {d: _spans_from_dicts(d, rows_) for d, rows_ in agg.items()}
            sc = score_outputs(gold, outs, docs)
            f1 = {("alone:" + k[1]) if isinstance(k, tuple) else k: round(v["micro"]["f1"], 4) for k, v in sc.items()}
            f1["best alone"] = max(v for k, v in f1.items() if k.startswith("alone:"))
            rows["+".join(sub)] = {"f1": f1, "weights": {a: round(w, 3) for a, w in weights.items()},
                                   "agreement": round(float(an.mean_agreement), 4)}
        report["guidelines"][str(t)] = rows
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the --out folder of diziner bench")
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--subset", action="append", default=[], help="comma list of annotators (repeatable); "
                    "the whole pool is always screened too")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    reports = []
    for name in a.datasets:
        folder = a.out / name / "test" / "guideline-0"
        pool = sorted(p.stem for p in folder.glob("*.jsonl"))
        subsets = [pool] + [s.split(",") for s in a.subset]
        r = screen(a.out, name, subsets)
        reports.append(r)
        print(f"== {name} (n={r['test_size']}, disjoint from {r['disjoint_from']}); naive: "
              + ", ".join(f"{m} {v:.3f}" for m, v in r["naive"].items()))
        for t, rows in r["guidelines"].items():
            for sub, row in rows.items():
                print(f"  guideline {t} [{sub}] agreement {row['agreement']:.3f}")
                print("    " + "  ".join(f"{k} {v:.3f}" for k, v in row["f1"].items()))
    if a.json:
        a.json.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
