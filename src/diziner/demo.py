"""`make demo`: refine on the bundled example with the embedded pool, then score against gold.

Runs ``refine`` (SmolLM2-135M + Gemma-3-270M in process, consensus supervisor) on
``examples/texts.jsonl``, annotates the same documents with the iteration-0 guideline
as the baseline, and prints iteration-0 vs refined F1 (the gold file is used only
here, for scoring) and agreement, and where the guideline and report are.

Usage: python -m diziner.demo [--out DIR] [--iterations N] [--sample-size K]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from diziner.errors import DizinerError


def _root() -> Path:
    here = Path.cwd()
    if (here / "examples" / "schema.yaml").exists():
        return here
    pkg = Path(__file__).resolve().parents[2]
    if (pkg / "examples" / "schema.yaml").exists():
        return pkg
    raise DizinerError("examples/ not found: run the demo from the project root")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m diziner.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-run")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--sample-size", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N example documents (for quick checks)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except DizinerError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from diziner.corpus.readers import read_corpus
    from diziner.llm.pool import load_pool
    from diziner.loop import RefineOptions, refine
    from diziner.schema import load_schema

    root = _root()
    ex = root / "examples"
    out = Path(args.out)
    if not out.is_absolute():
        out = root / out
    opts = RefineOptions(iterations=args.iterations, sample_size=args.sample_size, seed=13)
    limit_key = {"limit": args.limit}
    command = f"diziner-demo {limit_key}"
    _replace_an_older_demo(out, opts, command)
    schema = load_schema(ex / "schema.yaml")
    pool = load_pool(ex / "pool-local.yaml")
    gold_corpus = read_corpus(ex / "gold.jsonl")
    docs = read_corpus(ex / "texts.jsonl").documents[: args.limit]
    gold = {d.id: gold_corpus.spans_of(d.id) for d in docs}
    t0 = time.time()
    print(f"diziner demo: {len(docs)} documents, annotators {', '.join(pool.ids)}, consensus supervisor")
    res = refine(schema, docs, pool, out, opts, gold=gold, quiet=args.quiet, command=command)
    f1 = _baseline_f1(schema, docs, pool, gold, out / "baseline" / "annotations.jsonl", args.quiet)
    _print_results(out, res, f1, opts, pool, len(docs))
    print(f"wall time: {time.time() - t0:.0f} s")
    return 0


def _replace_an_older_demo(out: Path, opts, command: str) -> None:  # type: ignore[no-untyped-def]
    """The demo folder is ours: a run of an older configuration is replaced, anything else is refused."""
    if not (out / "run.json").exists():
        return
    meta = json.loads((out / "run.json").read_text())
    if meta.get("command", "").startswith("diziner-demo") and (
        meta.get("options") != opts.to_json() or meta.get("command") != command
    ):
        shutil.rmtree(out)


def _baseline_f1(schema, docs, pool, gold, base_out: Path, quiet: bool) -> dict:  # type: ignore[no-untyped-def]
    """F1 of the iteration-0 guideline (delivered and per annotator) and of the plain prompt,
    every row on the one scoring path of bench and refine (snapped to tokens, docs/evaluation.md)."""
    from diziner.annotate.naive import run_naive
    from diziner.corpus.readers import read_corpus
    from diziner.evaluate import score_outputs
    from diziner.guideline import Guideline
    from diziner.stream import annotate_corpus

    if not base_out.exists():
        annotate_corpus(Guideline.initial(schema), docs, pool, base_out, quiet=quiet)
    outputs = {"consensus": {d.id: read_corpus(base_out).spans_of(d.id) for d in docs}}
    for a in pool.ids:
        p = base_out.with_name(f"annotations.{a}.jsonl")
        if p.exists():
            c = read_corpus(p)
            outputs[("annotator", a)] = {d.id: c.spans_of(d.id) for d in docs}
    for m, (_, sp) in run_naive(docs, schema, pool).items():
        outputs[("naive", m)] = sp
    return {k: v["micro"]["f1"] for k, v in score_outputs(gold, outputs, docs).items()}


def _print_results(out: Path, res, f1: dict, opts, pool, n_docs: int) -> None:  # type: ignore[no-untyped-def]
    from diziner.aggregation import Aggregation

    base_per = {k[1]: v for k, v in f1.items() if isinstance(k, tuple) and k[0] == "annotator"}
    naive = {k[1]: v for k, v in f1.items() if isinstance(k, tuple) and k[0] == "naive"}
    metrics = json.loads((out / "metrics.json").read_text())
    agree, by_label = metrics["agreement_by_iteration"], metrics.get("label_agreement_by_iteration") or {}
    print()
    print("agreement (mean pairwise strict span F1; averaged over labels) by iteration: " + ", ".join(
        f"{k}: {v:.3f}" + (f" ({by_label[k]:.3f})" if by_label.get(k) is not None else "") for k, v in agree.items()))
    print(f"selected iteration (label-free, by agreement over labels): {res.selected_iteration}")
    print(f"F1 vs gold on all {n_docs} documents (gold used only for this score):")
    agg = str(Aggregation.parse(Aggregation.pick(opts.final_aggregation, opts.final_min_support, pool.aggregation),
                                opts.final_min_support))
    paired = len(metrics.get("final_guidelines", [])) > 1
    second = ("its companion (iteration 0 plus the mentions its pilot agreed on)"
              if "final/companion-guideline.yaml" in metrics.get("final_guidelines", []) else "the iteration-0 guideline")
    runs = f"annotator runs of the selected guideline and {second}" if paired else "annotators"
    print(f"(delivered = what refine writes: the {agg} of the {runs})")
    print(f"  iteration-0 guideline: delivered {f1['consensus']:.3f}  " + "  ".join(f"{a} {v:.3f}" for a, v in base_per.items()))
    print(f"  refined guideline:     delivered {res.final_f1.get('consensus', 0.0):.3f}  "
          + "  ".join(f"{a} {v:.3f}" for a, v in res.final_f1.items() if a != "consensus" and "@" not in a)
          + (f"   (delivered over it and {second.split(' (')[0]})" if paired else ""))
    print("  plain 3-shot prompt:   " + "  ".join(f"{m} {v:.3f}" for m, v in naive.items())
          + "   (no guideline: what one model gives without diziner)")
    if _kept_iteration0(out):
        print("  (the selected guideline is the iteration-0 one: refinement did not raise agreement over labels "
              "on this pilot)")
    print(f"guideline:   {out / 'final' / 'guideline.md'}")
    print(f"report:      {out / 'iterations'}/<t>/report.md   (HTML: diziner report {out})")
    print(f"annotations: {out / 'final' / 'annotations.jsonl'}")


def _kept_iteration0(out: Path) -> bool:
    """Is the delivered guideline the iteration-0 one (same instructions and goal)?"""
    from diziner.guideline import load_guideline
    from diziner.loop import same_guideline_content

    return same_guideline_content(load_guideline(out / "iterations" / "0" / "guideline.yaml"),
                                  load_guideline(out / "final" / "guideline.yaml"))


if __name__ == "__main__":
    sys.exit(main())
