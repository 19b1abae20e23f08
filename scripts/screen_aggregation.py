#!/usr/bin/env python
"""Screen aggregation rules offline on the test annotations a `diziner bench` run left.

For each dataset folder (``OUT/<dataset>/test/guideline-<t>/<annotator>.jsonl``, written
by ``diziner bench``, best run with ``--disjoint-from 300`` so the reported sentences are
never screened on), for the iteration-0 and the selected guideline, for the whole pool and
for each annotator subset asked for, prints the strict micro F1 of:

- each annotator alone, and the best of them;
- what the engine delivers under each rule (``diziner.aggregator.Aggregator``: weights fitted
  on these documents, one reading per token): ``consensus`` (the token consensus), ``union``,
  ``vote:0.25``, ``vote:0.5`` (span vote with weight at least x), ``reliability`` and
  ``reliability:label`` (annotator reliabilities fitted without gold, per annotator / per
  annotator and label).

Weights are those of the analysis of the same annotations (mean pairwise F1), as in
``diziner bench``. Gold is used only to score. The ``delivered`` and ``failed`` files beside
the annotators' are not read.

Example:
    PYTHONPATH=src .venv/bin/python scripts/screen_aggregation.py SCREEN-OUT bc5cdr crossner_politics \\
        --subset gemma,smollm2 --json screen.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any



RULES = ("consensus", "union", "vote:0.25", "vote:0.5", "reliability", "reliability:label")
NOT_ANNOTATORS = ("delivered", "failed")  # the files a bench run writes beside the annotators'


def annotator_files(folder: Path) -> list[Path]:
    """The per-annotator files of one guideline's test folder (not its delivered or failed file)."""
    return [p for p in sorted(folder.glob("*.jsonl")) if p.stem not in NOT_ANNOTATORS]


def _runs(files: list[Path], documents: list[Any]) -> dict[str, Any]:
    from diziner.annotate.runner import AnnotatorRun

    return {p.stem: AnnotatorRun.from_file(p).cover(documents) for p in files}


def screen_rules(documents: list[Any], files: list[Path], labels: list[str], gold: dict[str, list]
                 ) -> dict[str, Any]:
    """F1 of each annotator alone and of what the engine delivers under each rule (its Aggregator:
    weights fitted on these documents, one reading per token), with the weights and agreement."""
    from diziner.aggregator import Aggregator
    from diziner.corpus.model import Span
    from diziner.evaluate import score_outputs

    runs = _runs(files, documents)
    outs: dict[Any, Any] = {("one", a): run.spans_by_doc() for a, run in runs.items()}
    fitted = None
    for rule in RULES:
        agg = Aggregator(labels, aggregation=rule).fit(documents, runs)
        fitted = fitted or agg
        rows, _ = agg.predict(documents, runs)
        outs[rule] = {r["id"]: [Span(r["id"], x["start"], x["end"], x["label"], x["text"]) for x in r["spans"]]
                      for r in rows}
    sc = score_outputs(gold, outs, documents)
    f1 = {("alone:" + k[1]) if isinstance(k, tuple) else k: round(v["micro"]["f1"], 4) for k, v in sc.items()}
    f1["best alone"] = max(v for k, v in f1.items() if k.startswith("alone:"))
    an = fitted.analysis_ if fitted is not None else None
    return {"f1": f1, "weights": {a: round(w, 3) for a, w in (fitted.weights_ if fitted else {}).items()},
            "agreement": round(float(an.mean_agreement), 4) if an is not None else None}


def screen(out: Path, name: str, subsets: list[list[str]]) -> dict[str, Any]:
    from diziner.bench import screening_sample
    from diziner.benchmarks.registry import load_split, schema_path
    from diziner.corpus.model import Span
    from diziner.schema import load_schema

    res = json.loads((out / f"{name}.json").read_text())
    schema = load_schema(schema_path(name))
    test = load_split(name, "test")
    ts = res.get("test_sample", {})
    docs = screening_sample(test.documents, res["test_size"], res["seed"], ts.get("disjoint_from"))
    tag_map = schema.tag_map()
    gold = {d.id: [Span(s.doc_id, s.start, s.end, tag_map.get(s.label, s.label), s.text) for s in test.spans_of(d.id)]
            for d in docs}
    report: dict[str, Any] = {"dataset": name, "test_size": len(docs), "disjoint_from": ts.get("disjoint_from"),
                              "naive": res.get("naive", {}), "guidelines": {}}
    for t in sorted({0, res["selected_iteration"]}):
        files = {p.stem: p for p in annotator_files(out / name / "test" / f"guideline-{t}")}
        report["guidelines"][str(t)] = {"+".join(sub): screen_rules(docs, [files[a] for a in sub], schema.label_names,
                                                                   gold)
                                        for sub in subsets or [list(files)]}
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
        pool = [p.stem for p in annotator_files(a.out / name / "test" / "guideline-0")]
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
