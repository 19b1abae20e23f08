"""`diziner bench`: does refinement lift F1 without labels? Measured side by side.

For each dataset of the registry:

- the **dev** split is the unlabelled pilot pool: ``refine`` draws its iteration sets
  from it. Dev gold is passed to the loop only for *reporting* per-iteration F1 on the
  pilot sample (used for the agreement-vs-F1 correlation), never for selection;
- a fixed, seeded sample of the **test** split (``test_size`` sentences) is the same
  for every system;
- systems scored on it: each annotator with the iteration-0 guideline; each annotator
  with the label-free selected guideline; the weighted consensus of both (a selection among their proposed spans); and,
  separately and never as the headline, the oracle pick by test F1 among the guidelines
  that were run on the test sample (iteration 0 and the selected one; with ``oracle_all``
  every iteration's guideline is run on test too).

Writes ``DIR/<dataset>.json`` and appends a row to ``DIR/results.md``.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diziner import atomic
from diziner.corpus.model import Document, Span
from diziner.errors import DizinerError
from diziner.guideline import load_guideline
from diziner.options import DEFAULTS


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy)


def _bootstrap_diff_ci(gold: dict[str, list[Span]], a: dict[str, list[Span]], b: dict[str, list[Span]],
                       doc_ids: list[str], n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % paired bootstrap interval (over documents) of micro F1(b) − F1(a)."""
    import numpy as np

    ga = [len(gold.get(d, [])) for d in doc_ids]
    def counts(pred):
        tp, npred = [], []
        for d in doc_ids:
            g = {s.key() for s in gold.get(d, [])}
            p = {s.key() for s in pred.get(d, [])}
            tp.append(len(g & p))
            npred.append(len(p))
        return np.array(tp), np.array(npred)
    g = np.array(ga)
    tpa, pa = counts(a)
    tpb, pb = counts(b)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(doc_ids), size=(n, len(doc_ids)))

    def f1(tp, p):
        t, pp, gg = tp[idx].sum(1), p[idx].sum(1), g[idx].sum(1)
        return np.where(pp + gg > 0, 2 * t / np.maximum(pp + gg, 1), 0.0)
    diff = f1(tpb, pb) - f1(tpa, pa)
    return float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))


async def _score_system(documents, guideline, clients, pool, gold, opts, out_dir: Path, ledger,
                        also: list | None = None) -> dict[str, Any]:
    """Annotate the test sample with one guideline (and each of ``also``, as refine's final
    annotation does) through the annotation engine (the sample as weight window; files in
    ``out_dir``); score each annotator run, the consensus, the union and what the engine delivered."""
    from diziner.evaluate import score_outputs
    from diziner.aggregator import delivered_spans
    from diziner.llm.ledger import summarise
    from diziner.stream import StreamPaths, annotate_documents_in_memory, run_ids

    i0 = len(ledger.records)
    t0 = time.time()
    ids = run_ids(pool, guideline, also or [])
    paths = StreamPaths(out_dir / "delivered.jsonl", {a: out_dir / f"{a}.jsonl" for a in ids}, out_dir / "failed.jsonl")
    _, runs, agg = await annotate_documents_in_memory(
        guideline, documents, pool, paths, opts["refine"].stream_options(), clients=(clients, None, ledger),
        quiet=opts.get("quiet", False), label=f"test: {out_dir.name}", also=also or [])
    usable = agg.usable_
    ann = {a: runs[a].spans_by_doc() for a in usable}
    labels = guideline.schema_.label_names
    res = agg.analysis_
    weights = dict(agg.weights_)
    # a document nobody answered has no output
    lost = [d.id for d in documents if not any(d.id in ann[a] for a in usable)]
    combined = _combined_outputs(documents, ann, weights, res, labels, set(lost))
    combined["delivered"] = delivered_spans(atomic.read_jsonl(paths.out))
    # every system on one path (snapped to tokens, docs/evaluation.md)
    scores = score_outputs(gold, {**{("annotator", a): ann[a] for a in usable}, **combined}, documents)
    per = {a: {**_prf(scores[("annotator", a)], macro=True),
               "failed": sum(1 for r in runs[a].results.values() if r.status != "ok")} for a in usable}
    usage = summarise(ledger.records[i0:])["total"]
    return {
        "annotators": per,
        "consensus": _prf(scores["consensus"], macro=True),
        "union": _prf(scores["union"]),
        "delivered": {**_prf(scores["delivered"], macro=True), "aggregation": str(opts["refine"].aggregation())},
        "failed_documents": lost,
        "mean_pairwise_f1": float(res.mean_agreement) if res else None,
        "weights": weights,
        "calls": usage["calls"], "cached": usage["cached"], "tokens_in": usage["tokens_in"],
        "tokens_out": usage["tokens_out"], "cost_usd": usage["cost_usd"],
        "wall_s": round(time.time() - t0, 1),
        "_ann": ann, "_cons": combined["consensus"], "_delivered": combined["delivered"],
    }


def _prf(sc: dict[str, Any], macro: bool = False) -> dict[str, Any]:
    """Micro precision, recall, F1 of a :func:`~diziner.evaluate.score_spans` result (and macro F1)."""
    out = {"f1": sc["micro"]["f1"], "precision": sc["micro"]["precision"], "recall": sc["micro"]["recall"]}
    if macro:
        out["macro_f1"] = sc["macro"]["f1"]
    return out


def _combined_outputs(documents, ann, weights, res, labels, lost) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The token consensus and the union (always reported beside what is delivered), as spans
    by document, leaving out the ``lost`` documents (no annotator answered them)."""
    from diziner.analysis import aggregate_spans

    hot = res.hotspots if res else None
    made = {"consensus": aggregate_spans(documents, ann, weights, hotspots=hot, labels=labels),
            "union": aggregate_spans(documents, ann, weights, min_support=0.0, labels=labels)}
    return {k: {d: [sp.to_span(d) for sp in spans] for d, spans in by_doc.items() if d not in lost}
            for k, by_doc in made.items()}


async def _score_naive(documents, schema, pool, clients, gold) -> tuple[dict[str, dict[str, Any]], dict[str, dict]]:
    """The plain k-shot prompt (:mod:`diziner.annotate.naive`) of each pool model on the test sample;
    returns model → scores and model → spans by document."""
    from diziner.annotate.naive import NAIVE_SHOTS, naive_by_model
    from diziner.evaluate import score_outputs

    runs = await naive_by_model(documents, schema, pool, clients)
    spans = {m: sp for m, (_, sp) in runs.items()}
    styles = {a.id: a.prompt_style for a in pool.annotators}
    scores = score_outputs(gold, spans, documents)
    per = {m: {"f1": scores[m]["micro"]["f1"], "precision": scores[m]["micro"]["precision"],
               "recall": scores[m]["micro"]["recall"], "annotator": aid, "prompt_style": styles[aid],
               "shots": NAIVE_SHOTS, "answered": len(spans[m])} for m, (aid, _) in runs.items()}
    return per, spans


def screening_sample(documents: list[Document], size: int, seed: int, disjoint_from: int | None) -> list[Document]:
    """The seeded test sample; with ``disjoint_from`` N, drawn from the documents *outside*
    the N-sentence sample of the same seed (the reported one), for screening ideas."""
    from diziner.sampling import fixed_sample

    if disjoint_from:
        reported = {d.id for d in fixed_sample(documents, disjoint_from, seed)}
        documents = [d for d in documents if d.id not in reported]
    return fixed_sample(documents, size, seed)


@dataclass
class _TestSet:
    """A dataset's dev documents (the unlabelled pilot pool, dev gold for reporting only) and
    the seeded test sample with its gold, labels mapped to the schema's."""

    schema: Any
    dev_docs: list[Document]
    dev_gold: dict[str, list[Span]]
    test_docs: list[Document]
    test_gold: dict[str, list[Span]]

    @classmethod
    def load(cls, name: str, test_size: int, seed: int, disjoint_from: int | None) -> _TestSet:
        from diziner.benchmarks.registry import load_split, schema_path
        from diziner.schema import load_schema

        schema = load_schema(schema_path(name))
        dev = load_split(name, "dev")
        test = load_split(name, "test")
        tag_map = schema.tag_map()

        def mapped(corpus, docs):  # type: ignore[no-untyped-def]
            return {d.id: [Span(s.doc_id, s.start, s.end, tag_map.get(s.label, s.label), s.text)
                           for s in corpus.spans_of(d.id)] for d in docs}

        test_docs = screening_sample(test.documents, test_size, seed, disjoint_from)
        return cls(schema, dev.documents, mapped(dev, dev.documents), test_docs, mapped(test, test_docs))


@dataclass
class _Tested:
    """The refine run on dev and what was scored on the test sample: each tested guideline's
    systems (by iteration) and the plain prompt of each model."""

    run: Any
    systems: dict[int, dict[str, Any]]
    naive_scores: dict[str, dict[str, Any]]
    naive_spans: dict[str, dict]
    paired: dict[str, Any] | None = None  # the selected guideline with the iteration-0 one or its companion
    paired_with: str | None = None  # "0" or "companion" (what refine delivers beside the selected guideline)

    @property
    def delivered_guidelines(self) -> list[Any]:
        """The guidelines of the delivered output: the selected iteration, and 0 or "companion" when paired."""
        sel = self.run.selected_iteration
        return [sel] if self.paired is None else [sel, 0 if self.paired_with == "0" else "companion"]

    @property
    def delivered(self) -> dict[str, Any]:
        """The system whose delivered output refine writes: the pair of guidelines, else the selected one."""
        return self.paired if self.paired is not None else self.systems[self.run.selected_iteration]

    def paired_diffs(self, data: _TestSet) -> tuple[dict[str, tuple[float, float]], str, str | None]:
        """The delivered output (what refine writes: the aggregation over the selected guideline's
        runs, and the iteration-0 guideline's when paired) against what a user has without it,
        paired bootstrap over sentences; returns (intervals, best iteration-0 annotator, best
        plain-prompt model)."""
        s0, ss = self.systems[0], self.delivered
        ids = [d.id for d in data.test_docs]
        gold = data.test_gold
        best_it0 = max(s0["annotators"], key=lambda a: s0["annotators"][a]["f1"])
        diffs = {"delivered_minus_delivered_iteration0": _bootstrap_diff_ci(gold, s0["_delivered"], ss["_delivered"], ids),
                 "delivered_minus_best_iteration0_annotator": _bootstrap_diff_ci(gold, s0["_ann"][best_it0],
                                                                                 ss["_delivered"], ids)}
        if self.paired is not None:
            alone = self.systems[self.run.selected_iteration]["_delivered"]
            diffs["delivered_minus_delivered_selected_only"] = _bootstrap_diff_ci(gold, alone, ss["_delivered"], ids)
        best_naive = None
        if self.naive_scores:
            best_naive = max(self.naive_scores, key=lambda m: self.naive_scores[m]["f1"])
            diffs["delivered_minus_best_naive"] = _bootstrap_diff_ci(gold, self.naive_spans[best_naive],
                                                                     ss["_delivered"], ids)
        return diffs, best_it0, best_naive

    def agreement_points(self) -> tuple[list[float], list[float]]:
        """(agreement, F1) of each annotator in each iteration, on the pilot samples (dev gold: reporting only)."""
        pts = [(agr, r.f1[a]) for r in self.run.iterations for a, agr in r.per_annotator_agreement.items() if a in r.f1]
        return [x for x, _ in pts], [y for _, y in pts]

    def oracle(self) -> dict[str, Any]:
        systems = self.systems
        t, a = max(((t, a) for t in systems for a in systems[t]["annotators"]),
                   key=lambda ta: systems[ta[0]]["annotators"][ta[1]]["f1"])
        return {"iteration": t, "annotator": a, "f1": systems[t]["annotators"][a]["f1"],
                "note": "picked by test F1 among the guidelines run on test; never the headline"}


async def _refine_and_test(data: _TestSet, pool, ds_dir: Path, opts, clients, *, oracle_all: bool,  # type: ignore[no-untyped-def]
                           naive: bool, quiet: bool, command: str) -> _Tested:
    """Refine on dev, then score iteration 0 and the selected guideline (every one with
    ``oracle_all``) and, with ``naive``, the plain prompt on the test sample."""
    from diziner.loop import companion_of, paired_guidelines, refine_async

    run = await refine_async(data.schema, data.dev_docs, pool, ds_dir / "run", opts, gold=data.dev_gold,
                             clients=tuple(clients), quiet=quiet, command=command)
    guidelines = {t: load_guideline(ds_dir / "run" / "iterations" / str(t) / "guideline.yaml") for t in
                  [r.iteration for r in run.iterations]}
    to_test = sorted(set([0, run.selected_iteration] + (list(guidelines) if oracle_all else [])))
    bo = {"refine": opts, "quiet": quiet}
    systems: dict[int, dict[str, Any]] = {}
    for t in to_test:
        systems[t] = await _score_system(data.test_docs, guidelines[t], clients.annotators, pool, data.test_gold, bo,
                                         ds_dir / "test" / f"guideline-{t}", clients.ledger)
    sel = run.selected_iteration
    companion = companion_of(guidelines[0], ds_dir / "run", [a.id for a in pool.annotators])
    also = paired_guidelines(guidelines[sel], guidelines[0], opts.final_with_initial, companion)
    paired = None
    if also:
        tag = "companion" if also[0] is companion else "0"
        paired = await _score_system(data.test_docs, guidelines[sel], clients.annotators, pool, data.test_gold, bo,
                                     ds_dir / "test" / f"guideline-{sel}+{tag}", clients.ledger, also=also)
    naive_scores, naive_spans = (await _score_naive(data.test_docs, data.schema, pool, clients.annotators,
                                                    data.test_gold)) if naive else ({}, {})
    return _Tested(run, systems, naive_scores, naive_spans, paired, None if paired is None else tag)


async def bench_dataset(name: str, pool, out: Path, *, test_size: int = 300, seed: int = DEFAULTS.pilot.seed,
                        iterations: int = DEFAULTS.pilot.iterations, sample_size: int = DEFAULTS.pilot.sample_size, oracle_all: bool = False, cache_path=None, no_cache: bool = False,
                        quiet: bool = False, command: str = "", naive: bool = True,
                        disjoint_from: int | None = None, aggregation: str | None = None,
                        with_initial: bool = True) -> dict[str, Any]:
    from diziner.aggregation import Aggregation
    from diziner.llm.factory import PoolClients
    from diziner.loop import RefineOptions

    t0 = time.time()
    data = _TestSet.load(name, test_size, seed, disjoint_from)
    pool.check_env()
    ds_dir = out / name
    opts = RefineOptions(iterations=iterations, sample_size=sample_size, seed=seed, final_annotation=False,
                         final_with_initial=with_initial)
    opts.final_aggregation = Aggregation.pick(aggregation, None, pool.aggregation)
    opts.aggregation()  # a bad name fails before any client is built
    pc = PoolClients.build(pool, cache_path=cache_path, no_cache=no_cache, ledger=ds_dir / "ledger.jsonl")
    try:
        tested = await _refine_and_test(data, pool, ds_dir, opts, pc, oracle_all=oracle_all, naive=naive, quiet=quiet,
                                        command=command)
    finally:
        await pc.aclose()
    run, systems = tested.run, tested.systems
    sel = run.selected_iteration
    s0, ss, sd = systems[0], systems[sel], tested.delivered
    diffs, best_it0, best_naive = tested.paired_diffs(data)
    xs, ys = tested.agreement_points()
    usage = pc.ledger.summary()["total"]
    result = {
        "dataset": name,
        "pool": [{"id": a.id, "backend": a.backend, "model": a.model, "prompt_style": a.prompt_style} for a in pool.annotators],
        "test_size": len(data.test_docs),
        "seed": seed,
        "iterations_run": len(run.iterations),
        "sample_size": sample_size,
        "iteration0": {a: v["f1"] for a, v in s0["annotators"].items()},
        "refined": {a: v["f1"] for a, v in ss["annotators"].items()},
        "naive": {m: v["f1"] for m, v in tested.naive_scores.items()},
        "naive_detail": tested.naive_scores,
        "delivered": sd["delivered"]["f1"],
        "delivered_iteration0": s0["delivered"]["f1"],
        "delivered_selected_only": ss["delivered"]["f1"],
        "delivered_guidelines": tested.delivered_guidelines,
        "delivered_aggregation": str(opts.aggregation()),
        "best_naive": best_naive,
        "best_iteration0_annotator": best_it0,
        "diff_ci95": {k: list(v) for k, v in diffs.items()},
        "test_sample": {"seed": seed, "size": len(data.test_docs), "disjoint_from": disjoint_from},
        "consensus_iteration0": s0["consensus"]["f1"],
        "consensus_refined": ss["consensus"]["f1"],
        "consensus_diff_ci95": _bootstrap_diff_ci(data.test_gold, s0["_cons"], ss["_cons"], [d.id for d in data.test_docs]),
        "union_iteration0": s0["union"]["f1"],
        "union_refined": ss["union"]["f1"],
        "selected_iteration": sel,
        "stopped_because": run.stopped_because,
        "agreement_by_iteration": {str(r.iteration): r.mean_pairwise_f1 for r in run.iterations},
        "label_agreement_by_iteration": {str(r.iteration): r.label_macro_f1 for r in run.iterations},
        "pilot_f1_by_iteration": {str(r.iteration): r.f1 for r in run.iterations},
        "agreement_f1_pearson_r": _pearson(xs, ys),
        "agreement_f1_points": len(xs),
        "oracle": tested.oracle(),
        "systems": {str(t): {k: v for k, v in s.items() if not k.startswith("_")} for t, s in systems.items()},
        "paired_system": None if tested.paired is None else {k: v for k, v in tested.paired.items()
                                                             if not k.startswith("_")},
        "calls": usage["calls"],
        "cache_hits": usage["cached"],
        "tokens_in": usage["tokens_in"],
        "tokens_out": usage["tokens_out"],
        "cost_usd": usage["cost_usd"],
        "wall_s": round(time.time() - t0, 1),
        "command": command,
        "code": code_version(),
    }
    atomic.write_json(out / f"{name}.json", result)
    return result


def code_version(path: Path | None = None) -> dict[str, Any]:
    """The code a result comes from: diziner's version and, when ``path`` (default: this
    package's folder) is a folder of a git checkout that tracks its ``__init__.py`` (a
    checkout of diziner, not a project whose virtualenv holds an installed copy), the commit
    and whether tracked files differ from it (untracked files do not count); both None
    otherwise or without git."""
    import subprocess

    from diziner import __version__

    where = str(path or Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    tracked = git("ls-files", "--error-unmatch", "--", "__init__.py")
    commit = git("rev-parse", "--short=7", "HEAD") if tracked else None
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"version": __version__, "commit": commit, "modified": None if status is None else bool(status)}


def markdown_row(r: dict[str, Any]) -> str:
    ids = [p["id"] for p in r["pool"]]
    per = " / ".join(f"{r['iteration0'].get(a, 0):.3f}→{r['refined'].get(a, 0):.3f}" for a in ids)
    naive = " / ".join(f"{v:.3f}" for v in r.get("naive", {}).values()) or "–"
    d = r.get("diff_ci95", {})
    lo, hi = d.get("delivered_minus_delivered_iteration0", r["consensus_diff_ci95"])
    vs_naive = d.get("delivered_minus_best_naive")
    vs_naive_s = "–" if vs_naive is None else (f"{r['delivered'] - r['naive'][r['best_naive']]:+.3f} "
                                               f"[{vs_naive[0]:+.3f}, {vs_naive[1]:+.3f}]")
    vs_it0 = d.get("delivered_minus_best_iteration0_annotator")
    best0 = r.get("best_iteration0_annotator")
    vs_it0_s = "–" if vs_it0 is None else (f"{r['delivered'] - r['iteration0'][best0]:+.3f} "
                                           f"[{vs_it0[0]:+.3f}, {vs_it0[1]:+.3f}]")
    pr = r["agreement_f1_pearson_r"]
    by_label = r.get("label_agreement_by_iteration") or {}
    agr = " → ".join(f"{v:.3f}" + (f" ({by_label[t]:.3f})" if by_label.get(t) is not None else "")
                     for t, v in r["agreement_by_iteration"].items())
    code = r.get("code") or {}
    name = r["dataset"]
    if code.get("commit"):
        name += f" ({code['commit']}{', modified' if code.get('modified') else ''})"
    return (f"| {name} | {r['test_size']} | {naive} | {per} | "
            f"{r.get('delivered_iteration0', r['consensus_iteration0']):.3f}→{r.get('delivered', r['consensus_refined']):.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] | {r.get('delivered_aggregation', 'consensus')} | {vs_naive_s} | {vs_it0_s} | "
            f"{r['consensus_iteration0']:.3f}→{r['consensus_refined']:.3f} | {r['union_iteration0']:.3f}→{r['union_refined']:.3f} | "
            f"{agr} | {r['selected_iteration']} | {'n/a' if pr is None else f'{pr:.2f}'} | "
            f"{r['calls']} ({r['cache_hits']} cached) | {r['wall_s']:.0f} |")


MD_HEADER = ("| dataset | test n | naive F1 (" + "{models}" + ") | per annotator F1 (it0→refined; " + "{ids}" + ") | "
             "delivered F1 it0→refined [95% CI of diff] | aggregation | delivered − best naive [CI] | "
             "delivered − best it0 annotator [CI] | consensus F1 | union F1 | agreement by iteration (over labels) | selected | "
             "r(agreement, F1) | calls | wall s |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def run_bench(datasets: list[str], pool, out: Path, **kw) -> list[dict[str, Any]]:
    from diziner.benchmarks.registry import DATASETS

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise DizinerError(f"unknown dataset {unknown[0]!r}; known: {', '.join(sorted(DATASETS))}")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in datasets:
        r = asyncio.run(bench_dataset(name, pool, out, **kw))
        results.append(r)
        md = out / "results.md"
        head = "" if md.exists() else (MD_HEADER.replace("{ids}", " / ".join(p["id"] for p in r["pool"]))
                                       .replace("{models}", " / ".join(r.get("naive", {})) or "–") + "\n")
        with open(md, "a", encoding="utf-8") as f:
            f.write(head + markdown_row(r) + "\n")
    return results
