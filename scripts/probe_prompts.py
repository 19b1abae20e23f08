#!/usr/bin/env python
"""Probe the annotation prompts of the embedded models on a few seeded DEV sentences.

Annotates N dev sentences (seeded sample) of a benchmark, or of ``examples/`` (gold.jsonl
with examples/schema.yaml), with Gemma-3-270M (``fewshot``) and SmolLM2-135M (``chat``),
one model after the other (so timings are not shared between them), and prints strict
span precision / recall / F1, #pred / #gold, failures and seconds per call per model.

Example:
    .venv/bin/python scripts/probe_prompts.py crossner_politics -n 40
    .venv/bin/python scripts/probe_prompts.py examples --models smollm2 --template-version v1
    .venv/bin/python scripts/probe_prompts.py bc5cdr --json out.json --show 3

Uses the dev split only (never test). Needs llama-cpp-python and the model packages.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"gemma": ("gemma-3-270m", "fewshot"), "smollm2": ("smollm2-135m", "chat")}


def load_data(name: str) -> tuple[Any, Any]:
    """(AnnotatedCorpus, Schema) of a benchmark's dev split, or of examples/."""
    from diziner.schema import load_schema

    if name == "examples":
        from diziner.corpus.readers import read_corpus

        return read_corpus(ROOT / "examples" / "gold.jsonl"), load_schema(ROOT / "examples" / "schema.yaml")
    from diziner.benchmarks.registry import load_split, schema_path

    return load_split(name, "dev"), load_schema(schema_path(name))


def sample(corpus: Any, n: int, seed: int) -> list[Any]:
    docs = [d for d in corpus.documents if d.text.strip()]
    if n >= len(docs):
        return docs
    return sorted(random.Random(seed).sample(docs, n), key=lambda d: corpus.documents.index(d))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", help="benchmark name (e.g. crossner_politics) or 'examples'")
    ap.add_argument("-n", type=int, default=40, help="number of dev sentences (default 40)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--models", default="gemma,smollm2", help="comma list of gemma, smollm2")
    ap.add_argument("--template-version", default=None, help="annotation template version (default: current)")
    ap.add_argument("--max-mentions", type=int, default=32)
    ap.add_argument("--params", default=None, help='JSON object of request params to override, e.g. {"repeat_penalty": 1.0}')
    ap.add_argument("--n-threads", type=int, default=None)
    ap.add_argument("--show", type=int, default=0, help="print this many documents' predictions per model")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from diziner.annotate import prompt as P
    from diziner.annotate.runner import annotate_documents_sync
    from diziner.evaluate import score_spans
    from diziner.guideline import Guideline
    from diziner.llm.local import LocalLlamaClient
    from diziner.llm.pool import BackendConfig

    if args.template_version:
        P.TEMPLATE_VERSION = args.template_version  # probe only: pick the template version to measure
    corpus, schema = load_data(args.dataset)
    docs = sample(corpus, args.n, args.seed)
    gold = [s for d in docs for s in corpus.spans_of(d.id)]
    guideline = Guideline.initial(schema)
    rows: list[dict[str, Any]] = []
    for key in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, style = MODELS[key]
        cfg = BackendConfig(backend="local", model=model, n_threads=args.n_threads)
        client = LocalLlamaClient(cfg)
        t_load = time.perf_counter()
        client.load()
        t_load = time.perf_counter() - t_load
        t0 = time.perf_counter()
        runs = annotate_documents_sync(docs, guideline, {key: (client, style)}, max_mentions=args.max_mentions,
                                       params={key: json.loads(args.params)} if args.params else None)
        wall = time.perf_counter() - t0
        run = runs[key]
        pred = [s for spans in run.spans_by_doc().values() for s in spans]
        sc = score_spans(gold, pred)["micro"]
        summ = run.summary()
        row = {"dataset": args.dataset, "model": key, "style": style, "prompt": run.prompt, "docs": len(docs),
               "precision": round(sc["precision"], 4), "recall": round(sc["recall"], 4), "f1": round(sc["f1"], 4),
               "pred": len(pred), "gold": len(gold), "tp": sc["tp"], "failed": summ["failed"],
               "ungrounded": summ["ungrounded"], "dropped_labels": summ["dropped_labels"],
               "calls": summ["calls"], "sec_per_call": round(wall / max(1, summ["calls"]), 3),
               "load_s": round(t_load, 2)}
        rows.append(row)
        if args.show:
            for d in docs[: args.show]:
                r = run.results[d.id]
                print(f"  [{key}] {d.text[:100]!r}", file=sys.stderr)
                print(f"      gold: {[(s.text, s.label) for s in corpus.spans_of(d.id)]}", file=sys.stderr)
                print(f"      pred: {[(s.text, s.label) for s in r.spans]} {r.reason or ''}", file=sys.stderr)
        import asyncio

        asyncio.run(client.aclose())
    hdr = f"{'dataset':22} {'model':8} {'prompt':22} {'P':>6} {'R':>6} {'F1':>6} {'#pred':>6} {'#gold':>6} " \
          f"{'fail':>4} {'ungr':>4} {'s/call':>6}"
    print(hdr)
    for r in rows:
        print(f"{r['dataset']:22} {r['model']:8} {r['prompt']:22} {r['precision']:6.3f} {r['recall']:6.3f} "
              f"{r['f1']:6.3f} {r['pred']:6d} {r['gold']:6d} {r['failed']:4d} {r['ungrounded']:4d} "
              f"{r['sec_per_call']:6.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
