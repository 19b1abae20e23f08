#!/usr/bin/env python
"""Screen a glossary of agreed mentions as the lesson of iteration 0 (BENCHMARKS.md §15).

The consensus supervisor teaches agreed *worked examples*: whole sentences on which every
annotator returned the same spans. Two weak annotators rarely agree on a whole sentence
(politics and music get none), and the sentences they do agree on are often partial
answers. This screen asks whether a lesson without sentences helps instead: the mentions
both annotators of iteration 0's pilot tagged with the same extent and label (plausible by
the schema, as the supervisor checks them), listed in one common rule of the iteration-0
guideline. It measures

- label-free: agreement (overall, over labels) of the iteration-0 and the glossary guideline
  on the same sentences, iteration 1's pilot sample (what selection would compare, paired);
- reported only: strict micro F1 on the screening sentences of a ``bench --disjoint-from``
  run, the glossary guideline alone and in the engine's union with iteration 0 (paired
  bootstrap intervals of the differences, as ``scripts/union_of_guidelines.py --flat``).

The annotation calls go through ``diziner annotate`` with the given pool (its cache).

Example:
    PYTHONPATH=src .venv/bin/python scripts/screen_glossary.py crossner_ai --pilot PAPER-OUT \\
        --screen SCREEN-OUT --work glossary-work --json glossary.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from diziner.atomic import read_jsonl
from diziner.annotate.runner import read_answered_spans
from diziner.guideline import load_guideline
from diziner.supervise.consensus import MentionPrior
from diziner.supervise.glossary import agreed_mentions, glossary_guideline

ANNOTATORS = ("gemma", "smollm2")


def annotate(guideline: Path, texts: Path, out: Path, pool: Path) -> None:
    if not out.exists():
        subprocess.run([sys.executable, "-m", "diziner", "annotate", "--guideline", str(guideline), "--pool", str(pool),
                        "--texts", str(texts), "--out", str(out), "--aggregation", "union", "--quiet"], check=True)


def agreement(texts: Path, out: Path, labels: list[str]) -> dict[str, float | None]:
    from diziner.analysis.core import analyze
    from diziner.corpus.model import Document

    docs = [Document(str(r["id"]), r["text"]) for r in read_jsonl(texts)]
    ann = {a: read_answered_spans(out.with_name(f"{out.stem}.{a}.jsonl")) for a in ANNOTATORS}
    r = analyze(docs, ann, labels=labels)
    return {"overall": r.mean_agreement, "over_labels": r.label_macro_f1}


def write_texts(records, path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": str(r["id"]), "text": r["text"]}) + "\n" for r in records),
                    encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--pilot", type=Path, required=True, help="bench --out folder whose run gives iterations 0 and 1")
    ap.add_argument("--screen", type=Path, required=True, help="bench --out folder of a --disjoint-from run")
    ap.add_argument("--work", type=Path, required=True, help="folder for the guidelines and annotations")
    ap.add_argument("--pool", type=Path, default=Path("examples/pool-local.yaml"))
    ap.add_argument("--max-mentions", type=int, default=12)
    ap.add_argument("--json", type=Path, help="append the result row to this JSON list")
    a = ap.parse_args(argv)
    from diziner.benchmarks.registry import load_split
    from diziner.bench import _bootstrap_diff_ci

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from union_of_guidelines import f1, flat_union

    its = a.pilot / a.dataset / "run" / "iterations"
    work = a.work / a.dataset
    work.mkdir(parents=True, exist_ok=True)
    g0 = load_guideline(its / "0" / "guideline.yaml")
    texts = {str(r["id"]): r["text"] for r in read_jsonl(its / "0" / "sample.jsonl")}
    answers = [read_answered_spans(its / "0" / "annotations" / f"{x}.jsonl") for x in ANNOTATORS]
    mentions = agreed_mentions(texts, answers, MentionPrior(g0.schema_))[: a.max_mentions]
    row: dict = {"dataset": a.dataset, "mentions": [list(m) for m in mentions]}
    if mentions:
        (work / "g0.yaml").write_text(g0.to_yaml(), encoding="utf-8")
        (work / "g1.yaml").write_text(glossary_guideline(g0, mentions).to_yaml(), encoding="utf-8")
        labels = [lab.name for lab in g0.schema_.labels]
        pilot = write_texts(read_jsonl(its / "1" / "sample.jsonl"), work / "pilot1.jsonl")
        for g in ("g0", "g1"):
            annotate(work / f"{g}.yaml", pilot, work / f"pilot-{g}.jsonl", a.pool)
            row[f"pilot1_agreement_{g}"] = agreement(pilot, work / f"pilot-{g}.jsonl", labels)
        t0 = a.screen / a.dataset / "test" / "guideline-0"
        test = write_texts(read_jsonl(t0 / "gemma.jsonl"), work / "test.jsonl")
        annotate(work / "g1.yaml", test, work / "test-g1.jsonl", a.pool)
        corpus = load_split(a.dataset, "test")
        gold = {d.id: corpus.spans_of(d.id) for d in corpus.documents}
        by_id = {d.id: d for d in corpus.documents}
        ids = [str(r["id"]) for r in read_jsonl(test)]
        first = flat_union([t0 / f"{x}.jsonl" for x in ANNOTATORS], [], labels, by_id)
        second = [work / f"test-g1.{x}.jsonl" for x in ANNOTATORS]
        glossary, both = flat_union(second, [], labels, by_id), flat_union([t0 / f"{x}.jsonl" for x in ANNOTATORS],
                                                                         second, labels, by_id)
        row |= {"documents": len(ids), "f1_iteration0": round(f1(gold, first, ids), 3),
                "f1_glossary": round(f1(gold, glossary, ids), 3), "f1_union": round(f1(gold, both, ids), 3)}
        for name, pred in (("glossary", glossary), ("union", both)):
            lo, hi = _bootstrap_diff_ci(gold, first, pred, ids)
            row[f"{name}_minus_iteration0_ci95"] = [round(lo, 3), round(hi, 3)]
    print(json.dumps(row))
    if a.json:
        rows = json.loads(a.json.read_text(encoding="utf-8")) if a.json.exists() else []
        a.json.write_text(json.dumps([r for r in rows if r.get("dataset") != a.dataset] + [row], indent=1) + "\n",
                          encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
