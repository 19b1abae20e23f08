"""The refinement loop (stages 3–4 of the method) and the final annotation.

One iteration t:

1. take the iteration's document set (disjoint, lexically diverse: :mod:`diziner.sampling`);
2. every annotator tags it with Θk(t) = (Σ, C(t), Rk(t), G(t))  (:mod:`diziner.annotate`);
3. disagreement analysis (:mod:`diziner.analysis`): weights, elite set, U*, hotspots;
4. the supervisor rewrites C, Rk and G from the analysis → Θ(t+1)  (:mod:`diziner.supervise`).

Stop rule: the loop runs at most ``iterations`` times and stops early when the mean
pairwise agreement (strict span F1 between annotators) has not risen above the best
so far for ``patience`` consecutive iterations. Selection is label-free: the guideline
of the iteration with the highest mean pairwise agreement (ties → the earlier, simpler
guideline). Gold, when given, is only scored and reported — never used to select,
except in the explicit ``gold_supervised`` ablation where it replaces the consensus as
the supervisor's reference.

The run directory is documented in docs/run-directory.md. Every file is written
atomically; an iteration is finished when its ``done.json`` exists. Running the same
command again resumes: finished iterations are read back, and calls of an unfinished
iteration come from the response cache (no network call is repeated).
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diziner import atomic
from diziner.corpus.model import Document, Span
from diziner.errors import DizinerError
from diziner.guideline import Guideline, load_guideline
from diziner.schema import Schema, dump_schema
from diziner.options import DEFAULTS
from diziner.faultpoints import maybe_kill
from diziner.aggregator import delivered_spans, usable_annotators
from diziner.faults import fault_summary
from diziner.progress import Progress

if TYPE_CHECKING:
    from diziner.analysis.records import AggregatedSpan

log = logging.getLogger("diziner.loop")


@dataclass
class RefineOptions:
    iterations: int = DEFAULTS.pilot.iterations
    sample_size: int = DEFAULTS.pilot.sample_size
    seed: int = DEFAULTS.pilot.seed
    percentile: float = DEFAULTS.analysis.percentile
    weights: str = DEFAULTS.analysis.weights  # f1 | hybrid
    patience: int = DEFAULTS.pilot.patience
    min_delta: float = DEFAULTS.pilot.min_delta
    drop_low_agreement: bool = False
    drop_margin: float = DEFAULTS.pilot.drop_margin
    min_annotators: int = DEFAULTS.pilot.min_annotators
    supervisor: str | None = None  # consensus | llm | None (= the pool's supervisor)
    max_patterns: int = DEFAULTS.limits.max_patterns
    max_new_common: int = DEFAULTS.limits.max_new_common
    max_model_specific: int = DEFAULTS.limits.max_model_specific
    max_change_ratio: float = DEFAULTS.limits.max_change_ratio
    gold_supervised: bool = False
    freeze_goal: bool = False
    remove_goal: bool = False
    final_annotation: bool = True
    final_min_support: float | None = None  # the span vote's threshold (0 = union); prefer final_aggregation
    final_aggregation: str | None = None  # consensus | union | vote:X | reliability[:label]; None = the default
    # the final annotation also runs the iteration-0 guideline and delivers over both when the selected one differs,
    # else the iteration-0 guideline's companion (supervise/glossary.py) when its pilot agreed on a mention
    final_with_initial: bool = True
    max_mentions: int = DEFAULTS.annotation.max_mentions
    reask: int = DEFAULTS.annotation.reask

    def aggregation(self):
        """The delivered aggregation (:class:`diziner.analysis.aggregate.Aggregation`)."""
        from diziner.aggregation import Aggregation

        return Aggregation.parse(self.final_aggregation, self.final_min_support)

    def stream_options(self):
        """The annotation engine's options for the delivered annotation (:class:`diziner.stream.StreamOptions`)."""
        from diziner.stream import StreamOptions

        return StreamOptions(aggregation=str(self.aggregation()), weights=self.weights, percentile=self.percentile,
                             reask=self.reask, max_mentions=self.max_mentions)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def check(self) -> None:
        """Every value in range, or a one-line error naming the option (before anything is created)."""
        def at_least(flag: str, words: str, v: int, lo: int) -> None:
            if not isinstance(v, int) or v < lo:
                raise DizinerError(f"{flag}: {words} must be at least {lo} (got {v})")

        def within(flag: str, words: str, v: float, lo: float, hi: float, lo_open: bool = False) -> None:
            if not (lo < v <= hi if lo_open else lo <= v <= hi):
                raise DizinerError(f"{flag}: {words} must be within {'(' if lo_open else '['}{lo:g}, {hi:g}] (got {v:g})")

        at_least("--iterations", "iterations", self.iterations, 0)
        at_least("--sample-size", "sample size", self.sample_size, 1)
        at_least("--patience", "patience", self.patience, 0)
        at_least("--min-annotators", "min annotators", self.min_annotators, 1)
        at_least("--max-patterns", "max patterns", self.max_patterns, 0)
        at_least("--max-new-common", "max new common instructions", self.max_new_common, 0)
        at_least("--max-model-specific", "max model-specific instructions", self.max_model_specific, 0)
        at_least("--max-mentions", "max mentions", self.max_mentions, 1)
        at_least("--reask", "re-asks", self.reask, 0)
        within("--percentile", "percentile", self.percentile, 0.0, 100.0)
        within("--min-delta", "min delta", self.min_delta, 0.0, 1.0)
        within("--drop-margin", "drop margin", self.drop_margin, 0.0, 1.0)
        within("--max-change-ratio", "max change ratio", self.max_change_ratio, 0.0, 1.0, lo_open=True)
        if self.weights not in ("f1", "hybrid"):
            raise DizinerError(f"--weights: unknown weights mode {self.weights!r} (use f1 or hybrid)")
        if self.supervisor not in (None, "consensus", "llm"):
            raise DizinerError(f"--supervisor: unknown supervisor {self.supervisor!r} (use consensus or llm)")
        if self.final_min_support is not None:
            within("--min-support", "min support", self.final_min_support, 0.0, 1.0)
        self.aggregation()


@dataclass
class IterationRecord:
    iteration: int
    documents: list[str]
    annotators: list[str]
    mean_pairwise_f1: float
    per_annotator_agreement: dict[str, float]
    weights: dict[str, float]
    elite: list[str]
    hotspots: int
    hotspots_by_category: dict[str, int]
    failures: dict[str, int]
    f1: dict[str, float] = field(default_factory=dict)  # only when gold was given (reported, never used)
    supervisor_ok: bool | None = None
    supervisor_notes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    agreement_by_label: dict[str, float] | None = None  # pairwise F1 per label of the schema

    @property
    def label_macro_f1(self) -> float | None:
        """Agreement averaged over the schema's labels (None for records written before it existed)."""
        by = self.agreement_by_label
        return sum(by.values()) / len(by) if by else None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"label_macro_f1": self.label_macro_f1}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IterationRecord:
        """A record read back from ``done.json`` (derived figures dropped, absent fields defaulted)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RefineResult:
    out: Path
    iterations: list[IterationRecord]
    selected_iteration: int
    guideline: Guideline
    final_f1: dict[str, float] = field(default_factory=dict)
    stopped_because: str = ""


# ----------------------------------------------------------------------------- helpers


def _hash_docs(documents: list[Document]) -> str:
    h = hashlib.sha256()
    for d in documents:
        h.update(d.id.encode() + b"\0" + d.text.encode() + b"\n")
    return h.hexdigest()[:16]


def _per_annotator_agreement(pairwise: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {}
    for a, row in pairwise.items():
        others = [v for b, v in row.items() if b != a]
        out[a] = sum(others) / len(others) if others else 1.0
    return out


def _score(gold: dict[str, list[Span]], outputs: dict[str, dict[str, list[Span]]], documents: list[Document]) -> dict[str, float]:
    """Micro F1 of each output on one path (:func:`diziner.evaluate.score_outputs`: snapped to tokens)."""
    from diziner.evaluate import score_outputs

    return {name: float(sc["micro"]["f1"]) for name, sc in score_outputs(gold, outputs, documents).items()}


def _consensus_spans(documents, annotations, weights, aggregation, hotspots=None, labels=None
                     ) -> dict[str, list[AggregatedSpan]]:
    """The delivered aggregation (an :class:`~diziner.analysis.aggregate.Aggregation` or its text)."""
    from diziner.analysis import aggregate_spans
    from diziner.aggregation import Aggregation

    agg = Aggregation.parse(aggregation)
    return aggregate_spans(documents, annotations, weights, hotspots=hotspots, labels=labels, **agg.kwargs())


def _run_usage(ledger) -> dict[str, Any] | None:
    """Usage of the whole run, every resume included (:meth:`diziner.llm.ledger.Ledger.run_summary`)."""
    return ledger.run_summary() if hasattr(ledger, "run_summary") else None


def _run_fault_summary(out: Path) -> dict[str, Any]:
    """fault_summary over every annotation file of a run directory and its whole ledger (all resumes)."""
    rows: list[dict] = []
    files = sorted(out.glob("iterations/*/annotations/*.jsonl")) + sorted((out / "final" / "by_annotator").glob("*.jsonl"))
    for f in files:
        try:
            rows.extend(atomic.read_jsonl(f, tolerate_torn_tail=True))
        except DizinerError:
            continue
    recs = None
    if (out / "ledger.jsonl").exists():
        from diziner.llm.ledger import Ledger

        recs = Ledger.iter_file(out / "ledger.jsonl")
    return fault_summary(rows, recs)


def _usage_line(ledger) -> str:
    """Calls, cache hits, tokens and cost so far (unknown prices stay unknown)."""
    if ledger is None or not hasattr(ledger, "summary"):
        return "not recorded"
    t = ledger.summary()["total"]
    cost = "unknown" if t.get("cost_usd") is None else f"${t['cost_usd']:.4f}"
    if t.get("cost_usd") is not None and t.get("unknown_cost_calls"):
        cost += f" + unknown ({t['unknown_cost_calls']} calls)"
    return (f"{t['calls']} calls ({t['cached']} cached, {t['failed']} failed), "
            f"{t['tokens_in']} tokens in, {t['tokens_out']} out, cost {cost}")




# ----------------------------------------------------------------------------- annotation step


async def _annotate(documents, guideline, clients, styles, *, iteration, options, out_dir: Path | None,
                    progress: Progress, label: str, params: dict[str, dict] | None = None):
    from diziner.annotate.runner import annotate_documents

    ids = list(clients)
    advance = progress.task(label, total=len(documents) * len(ids))
    per = {a: progress.task(f"  {a}", total=len(documents)) for a in ids} if len(ids) > 1 else {}
    calls = dict.fromkeys(ids, 0)
    failed = dict.fromkeys(ids, 0)

    def on_result(annotator_id, result):
        advance(1)
        if annotator_id in per:
            calls[annotator_id] += result.calls
            failed[annotator_id] += result.status != "ok"
            note = f", {failed[annotator_id]} failed" if failed[annotator_id] else ""
            per[annotator_id](1, f"  {annotator_id} ({calls[annotator_id]} calls{note})")
        maybe_kill("annotate_doc")

    runs = await annotate_documents(
        documents,
        guideline,
        {a: (clients[a], styles[a]) for a in ids},
        iteration=iteration,
        reask=options.reask,
        max_mentions=options.max_mentions,
        on_result=on_result,
        params=params,
    )
    if out_dir is not None:
        for a, run in runs.items():
            atomic.write_jsonl(out_dir / f"{a}.jsonl", [run.results[d.id].to_json() | {"text": d.text} for d in documents if d.id in run.results])
    return runs




# ----------------------------------------------------------------------------- refine


def refine(
    schema: Schema,
    documents: list[Document],
    pool,
    out: str | Path,
    options: RefineOptions | None = None,
    *,
    gold: dict[str, list[Span]] | None = None,
    clients: tuple[dict, Any, Any] | None = None,
    cache_path: str | Path | None = None,
    no_cache: bool = False,
    budget_usd: float | None = None,
    quiet: bool = False,
    command: str = "",
) -> RefineResult:
    """Run the whole pilot (iterations) and the final annotation. Synchronous wrapper."""
    return asyncio.run(
        refine_async(schema, documents, pool, out, options, gold=gold, clients=clients, cache_path=cache_path,
                     no_cache=no_cache, budget_usd=budget_usd, quiet=quiet, command=command)
    )


def _check_or_write_run_json(out: Path, meta: dict[str, Any]) -> None:
    path = out / "run.json"
    if path.exists():
        old = atomic.read_json(path)
        keys = ["schema_sha", "documents_sha", "pool", "options"]
        if any(old.get(k) != meta.get(k) for k in keys):
            diff = [k for k in keys if old.get(k) != meta.get(k)]
            what = []
            for k in diff:
                a, b = old.get(k), meta.get(k)
                if isinstance(a, dict) and isinstance(b, dict):  # name each differing field with both values
                    what += [f"{k}.{f}: {a.get(f)!r} in the run, {b.get(f)!r} now" if k != "options" else
                             f"{f}: {a.get(f)!r} in the run, {b.get(f)!r} now"
                             for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
                else:
                    what.append(f"{k} differs")
            raise DizinerError(
                f"{out}: holds a run with different settings ({'; '.join(what)}); refusing to mix runs",
                hint="re-run with the same arguments to resume, or choose a new --out folder",
            )
        return
    _refuse_foreign_folder(out)
    atomic.write_json(path, meta)


def _refuse_foreign_folder(out: Path) -> None:
    """A non-empty folder without run.json is the user's: never write into it."""
    if out.exists() and not (out / "run.json").exists() and (
        not out.is_dir() or any(p.name != "ledger.jsonl" for p in out.iterdir())  # the ledger is opened first
    ):
        raise DizinerError(f"{out}: exists and is not a diziner run; refusing to overwrite it", hint="choose a new --out folder")


async def refine_async(
    schema: Schema,
    documents: list[Document],
    pool,
    out: str | Path,
    options: RefineOptions | None = None,
    *,
    clients: tuple[dict, Any, Any] | None = None,
    cache_path: str | Path | None = None,
    no_cache: bool = False,
    budget_usd: float | None = None,
    **kwargs: Any,
) -> RefineResult:
    """The loop as a coroutine (``kwargs``: gold, quiet, command). Clients built here are closed at the end."""
    from diziner.llm.factory import PoolClients

    if clients is None:
        pool.check_env()
        _refuse_foreign_folder(Path(out))
        pc = PoolClients.build(pool, cache_path=cache_path, no_cache=no_cache, budget_usd=budget_usd,
                               ledger=Path(out) / "ledger.jsonl")
    else:
        pc = PoolClients.borrow(clients)
    async with pc:
        return await _refine_impl(schema, documents, pool, out, options, clients=tuple(pc), **kwargs)


@dataclass
class StopRule:
    """Stop when agreement has not risen by more than ``min_delta`` for ``patience`` iterations
    (never after iteration 0)."""

    patience: int = 1
    min_delta: float = 0.0
    best: float = -1.0
    since_best: int = 0

    def improves(self, score: float) -> bool:
        return score > self.best + self.min_delta

    def would_stop(self, score: float, t: int, changed: bool = True) -> bool:
        """Would :meth:`update` with this score stop the loop (so no supervision is needed)?"""
        return changed and not self.improves(score) and self.since_best + 1 >= self.patience and t > 0

    def update(self, score: float, t: int, changed: bool = True) -> str | None:
        """Record iteration ``t``'s agreement; the reason to stop, or None to go on.

        ``changed=False`` (iteration ``t`` ran the same guideline as ``t - 1``): its agreement
        differs from the last one only by its sentences, so it neither counts towards stopping
        nor becomes the best score."""
        if not changed:
            return None
        if self.improves(score):
            self.best, self.since_best = score, 0
            return None
        self.since_best += 1
        if self.since_best >= self.patience and t > 0:
            return f"agreement did not rise for {self.since_best} iteration(s) after iteration {t - self.since_best}"
        return None


def same_guideline_content(a: Guideline, b: Guideline) -> bool:
    """Do two guidelines prompt alike: the same goal, common and model-specific instructions
    (the iteration number and the change log aside)?"""
    return (a.goal, a.common, a.model_specific) == (b.goal, b.common, b.model_specific)


def select_iteration(records: list[IterationRecord]) -> IterationRecord | None:
    """Label-free selection: the highest agreement averaged over the schema's labels
    (:attr:`IterationRecord.label_macro_f1`), then the highest overall agreement; ties go to
    the earlier iteration. A guideline under which the pool agrees more by tagging one label
    only (BC5CDR: everything Disease) does not win: the labels it abandons count 0. Records
    without the per-label figure (runs of older versions) are compared on overall agreement."""
    if not records:
        return None
    by_label = all(r.label_macro_f1 is not None for r in records)
    return max(records, key=lambda r: ((r.label_macro_f1 if by_label else 0.0), r.mean_pairwise_f1, -r.iteration))


@dataclass
class _Loop:
    """What every step of one refine run reads (set up once by :func:`_refine_impl`)."""

    schema: Schema
    pool: Any
    out: Path
    opts: RefineOptions
    gold: dict[str, list[Span]] | None
    ann_clients: dict[str, Any]
    styles: dict[str, str]
    supervisor: Any
    limits: Any
    ledger: Any
    progress: Any = None

    def it_dir(self, t: int) -> Path:
        return self.out / "iterations" / str(t)


def _prepare_run(schema: Schema, documents: list[Document], pool, out: Path, opts: RefineOptions,
                 gold: dict | None, command: str) -> RefineOptions:
    """Check the options and the documents, apply the pool's aggregation, write (or check) run.json."""
    opts.check()
    from diziner.aggregation import Aggregation

    opts = dataclasses.replace(opts, final_aggregation=Aggregation.pick(
        opts.final_aggregation, opts.final_min_support, getattr(pool, "aggregation", None)))
    if not documents:
        raise DizinerError("no documents to annotate")
    ids = [d.id for d in documents]
    if len(set(ids)) != len(ids):
        raise DizinerError("document ids are not unique")
    if len(pool.annotators) < 2:
        raise DizinerError("the pool needs at least two annotators to measure disagreement")
    meta = {
        "command": command,
        "schema_sha": hashlib.sha256(dump_schema(schema).encode()).hexdigest()[:16],
        "documents_sha": _hash_docs(documents),
        "documents": len(documents),
        "pool": pool.public_summary(),
        "options": opts.to_json(),
        "gold": gold is not None,
    }
    _check_or_write_run_json(out, meta)
    if not (out / "schema.yaml").exists():
        atomic.write_text(out / "schema.yaml", dump_schema(schema))
    return opts


def _limits(opts: RefineOptions):
    from diziner.supervise.base import Limits

    return Limits(max_patterns=opts.max_patterns, max_new_common=opts.max_new_common,
                  max_model_specific=opts.max_model_specific, max_change_ratio=opts.max_change_ratio,
                  freeze_goal=opts.freeze_goal, remove_goal=opts.remove_goal)


async def _annotate_step(lp: _Loop, t: int, sample: list[Document], guideline: Guideline, active: list[str]):
    """Stage 1: every active annotator on the iteration's sample; (runs, usable annotators, their spans)."""
    it_dir = lp.it_dir(t)
    atomic.write_jsonl(it_dir / "sample.jsonl", [{"id": d.id, "text": d.text} for d in sample])
    runs = await _annotate(sample, guideline, {a: lp.ann_clients[a] for a in active}, lp.styles, iteration=t,
                           options=lp.opts, out_dir=it_dir / "annotations", progress=lp.progress,
                           label=f"iteration {t}: annotate", params=lp.pool.annotation_params())
    usable = usable_annotators(runs, lp.progress, 2, f"iteration {t}")
    return runs, usable, {a: runs[a].spans_by_doc() for a in usable}


def _analyse_step(lp: _Loop, t: int, sample: list[Document], runs: dict, usable: list[str],
                  annotations: dict) -> tuple[dict, IterationRecord]:
    """Stage 2: the disagreement analysis (analysis.json, report.md) and the iteration's record."""
    from diziner.analysis import analyze

    result = analyze(sample, annotations, labels=lp.schema.label_names, weights=lp.opts.weights,
                     percentile=lp.opts.percentile)
    analysis = result.to_json()
    atomic.write_json(lp.it_dir(t) / "analysis.json", analysis)
    atomic.write_text(lp.it_dir(t) / "report.md", result.to_markdown())
    maybe_kill("analysis")
    rec = IterationRecord(
        iteration=t,
        documents=[d.id for d in sample],
        annotators=usable,
        mean_pairwise_f1=float(analysis["mean_pairwise_f1"]),
        agreement_by_label=analysis.get("agreement_by_label"),
        per_annotator_agreement=_per_annotator_agreement(analysis["pairwise_f1"]),
        weights=dict(analysis["weights"]),
        elite=list(analysis["elite"]),
        hotspots=len(analysis["hotspots"]),
        hotspots_by_category=dict(analysis.get("summary", {}).get("by_category", {})),
        failures={a: sum(1 for r in runs[a].results.values() if r.status != "ok") for a in runs},
    )
    return analysis, rec


def _score_step(lp: _Loop, sample: list[Document], annotations: dict, analysis: dict, rec: IterationRecord) -> None:
    """F1 against gold of each annotator and of the delivered aggregation (reported, never used)."""
    if lp.gold is None:
        return
    cons = _consensus_spans(sample, annotations, rec.weights, lp.opts.aggregation(), analysis["hotspots"],
                            lp.schema.label_names)
    rec.f1 = _score(lp.gold, {**{a: annotations[a] for a in rec.annotators},
                              "consensus": {d: [sp.to_span(d) for sp in v] for d, v in cons.items()}}, sample)


def _drop_step(lp: _Loop, t: int, rec: IterationRecord) -> None:
    """The paper's drop rule: an annotator ≥ drop_margin below the mean agreement leaves later iterations."""
    opts, per_ann = lp.opts, rec.per_annotator_agreement
    if not (opts.drop_low_agreement and len(rec.annotators) > opts.min_annotators):
        return
    mean = sum(per_ann.values()) / len(per_ann)
    for _, a in sorted((v, a) for a, v in per_ann.items() if v <= mean - opts.drop_margin):
        if len(rec.annotators) - len(rec.dropped) <= opts.min_annotators:
            break
        rec.dropped.append(a)
    if rec.dropped:
        lp.progress.print(f"iteration {t}: dropping low-agreement annotator(s) {', '.join(rec.dropped)}")


async def _supervise_step(lp: _Loop, t: int, sample: list[Document], guideline: Guideline, analysis: dict,
                          annotations: dict, rec: IterationRecord) -> None:
    """Stage 3: the supervisor writes Θ(t+1) (or Θ(t) is kept, with a change-log line, when it fails)."""
    texts = {d.id: d.text for d in sample}
    gold = lp.gold
    sup_gold = {d: gold.get(d, []) for d in texts} if (lp.opts.gold_supervised and gold is not None) else None
    sres = await _supervise(lp.supervisor, guideline, analysis, texts, t + 1, lp.limits, sup_gold, annotations)
    for name, payload in (sres.outputs or {}).items():
        atomic.write_json(lp.it_dir(t) / "supervisor" / f"{name}.json", payload)
    rec.supervisor_ok = bool(sres.ok)
    rec.supervisor_notes = list(sres.notes or []) + ([f"error: {sres.error}"] if sres.error else [])
    new_g = sres.guideline.model_copy(update={"iteration": t + 1}) if sres.ok else _kept_guideline(guideline, sres, t + 1)
    atomic.write_text(lp.it_dir(t + 1) / "guideline.yaml", new_g.to_yaml())
    maybe_kill("supervisor")
    if not sres.ok:
        lp.progress.print(f"[yellow]warning:[/] supervisor failed in iteration {t}: {sres.error}; "
                          "the previous guideline is kept")


async def _run_iteration(lp: _Loop, t: int, sample: list[Document], guideline: Guideline, active: list[str],
                         stop: StopRule, last: bool, changed: bool = True) -> IterationRecord:
    """One pilot iteration: annotate, analyse, score, drop, supervise (unless it is the last one or
    the stop rule will end the loop here); ``done.json`` marks it finished."""
    runs, usable, annotations = await _annotate_step(lp, t, sample, guideline, active)
    analysis, rec = _analyse_step(lp, t, sample, runs, usable, annotations)
    _score_step(lp, sample, annotations, analysis, rec)
    _drop_step(lp, t, rec)
    if not last and not stop.would_stop(rec.mean_pairwise_f1, t, changed):
        await _supervise_step(lp, t, sample, guideline, analysis, annotations, rec)
    atomic.write_json(lp.it_dir(t) / "metrics.json", rec.to_json())
    atomic.write_json(lp.it_dir(t) / "done.json", rec.to_json())
    f1s = f"; F1 vs gold (reported only): consensus {rec.f1.get('consensus', 0):.3f}" if rec.f1 else ""
    over_labels = f" (over labels {rec.label_macro_f1:.3f})" if rec.label_macro_f1 is not None else ""
    lp.progress.print(f"iteration {t}: agreement {rec.mean_pairwise_f1:.3f}{over_labels}, {rec.hotspots} hotspots{f1s}")
    lp.progress.print("  usage so far: " + _usage_line(lp.ledger))
    return rec


def _iteration_guideline(lp: _Loop, t: int, guideline: Guideline) -> Guideline:
    """Θ(t) as written (a resumed run reads it back), else the one carried over, written now."""
    gpath = lp.it_dir(t) / "guideline.yaml"
    if gpath.exists():
        return load_guideline(gpath)
    atomic.write_text(gpath, guideline.to_yaml())
    return guideline


async def _pilot(lp: _Loop, sets: list[list[Document]], guideline: Guideline,
                 active: list[str]) -> tuple[list[IterationRecord], list[str], Guideline, str]:
    """The iterations (resumed where done.json exists); (records, active annotators, Θ last, why it stopped)."""
    opts = lp.opts
    stopped = f"ran all {len(sets)} iterations"
    if len(sets) < opts.iterations:
        stopped = f"ran {len(sets)} iterations (the corpus has too few documents for {opts.iterations} sets of {opts.sample_size})"
    stop = StopRule(patience=opts.patience, min_delta=opts.min_delta)
    records: list[IterationRecord] = []
    previous: Guideline | None = None
    for t, sample in enumerate(sets):
        guideline = _iteration_guideline(lp, t, guideline)
        changed = previous is None or not same_guideline_content(previous, guideline)
        done = lp.it_dir(t) / "done.json"
        if done.exists():
            rec = IterationRecord.from_json(atomic.read_json(done))
            lp.progress.print(f"iteration {t}: finished earlier (agreement {rec.mean_pairwise_f1:.3f}); resumed")
        else:
            rec = await _run_iteration(lp, t, sample, guideline, active, stop, last=t == len(sets) - 1,
                                       changed=changed)
        records.append(rec)
        active = [a for a in rec.annotators if a not in rec.dropped]
        previous = guideline
        nxt = lp.it_dir(t + 1) / "guideline.yaml"
        if nxt.exists():
            guideline = load_guideline(nxt)
        why = stop.update(rec.mean_pairwise_f1, t, changed=changed)
        if why is not None:
            stopped = why
            break
    return records, active, guideline, stopped


def _write_selected(lp: _Loop, records: list[IterationRecord], guideline: Guideline,
                    stopped: str) -> tuple[int, Guideline, str]:
    """Write final/guideline.yaml and .md; (selected iteration, its guideline, why the pilot stopped)."""
    from diziner.guideline_render import render_markdown

    sel = select_iteration(records)
    if sel is not None:
        sel_it = sel.iteration
        selected = load_guideline(lp.it_dir(sel_it) / "guideline.yaml")
        over_labels = f"over labels {sel.label_macro_f1:.3f}, " if sel.label_macro_f1 is not None else ""
        msg = f"selected iteration {sel_it} by agreement ({over_labels}overall {sel.mean_pairwise_f1:.3f}); {stopped}"
    else:  # --iterations 0: no pilot, the corpus is annotated with the iteration-0 guideline
        sel_it, selected = 0, guideline
        stopped = msg = "no pilot (--iterations 0): the iteration-0 guideline"
    atomic.write_text(lp.out / "final" / "guideline.yaml", selected.to_yaml())
    maybe_kill("final_write")
    atomic.write_text(lp.out / "final" / "guideline.md", render_markdown(selected))
    lp.progress.print(msg)
    return sel_it, selected, stopped


async def _refine_impl(
    schema: Schema,
    documents: list[Document],
    pool,
    out: str | Path,
    options: RefineOptions | None = None,
    *,
    clients: tuple[dict, Any, Any],
    gold: dict[str, list[Span]] | None = None,
    quiet: bool = False,
    command: str = "",
) -> RefineResult:
    from diziner.sampling import iteration_sets

    out = Path(out)
    opts = _prepare_run(schema, documents, pool, out, options or RefineOptions(), gold, command)
    ann_clients, sup_client, ledger = clients
    supervisor_kind = opts.supervisor or getattr(pool.supervisor, "backend", "consensus")
    lp = _Loop(schema=schema, pool=pool, out=out, opts=opts, gold=gold, ann_clients=ann_clients,
               styles={a.id: a.prompt_style for a in pool.annotators},
               supervisor=_make_supervisor(supervisor_kind, sup_client, schema), limits=_limits(opts), ledger=ledger)
    sets = iteration_sets(documents, opts.iterations, opts.sample_size, opts.seed) if opts.iterations else []
    guideline = Guideline.initial(schema)
    if opts.remove_goal:
        guideline = guideline.model_copy(update={"goal": ""})
    initial = guideline
    t0 = time.time()
    with Progress(quiet) as progress:
        lp.progress = progress
        records, active, guideline, stopped = await _pilot(lp, sets, guideline, [a.id for a in pool.annotators])
        sel_it, selected, stopped = _write_selected(lp, records, guideline, stopped)
        final: dict[str, Any] = {}
        if opts.final_annotation:
            also = paired_guidelines(selected, initial, opts.final_with_initial,
                                     companion_of(initial, out, active) if opts.final_with_initial else None)
            final = await _final_annotation(documents, selected, lp, active, also=also)
    final_f1: dict[str, float] = final.get("f1", {})
    summary = {
        "iterations": [r.to_json() for r in records],
        "selected_iteration": sel_it,
        "selection_rule": ("max mean pairwise strict span F1 between annotators averaged over the schema's labels, "
                           "then overall (label-free); ties -> earlier iteration"),
        "stopped_because": stopped,
        "agreement_by_iteration": {str(r.iteration): r.mean_pairwise_f1 for r in records},
        "label_agreement_by_iteration": {str(r.iteration): r.label_macro_f1 for r in records},
        "final_f1": final_f1,
        "final_guidelines": final.get("guidelines", []),
        "final_failed_documents": final.get("failed_documents", []),
        "final_flagged_documents": final.get("flagged_documents", []),
        "wall_s": round(time.time() - t0, 2),
        "usage": _run_usage(ledger),
        "usage_this_run": ledger.summary() if ledger is not None and hasattr(ledger, "summary") else None,
        "faults": _run_fault_summary(out),
    }
    atomic.write_json(out / "metrics.json", summary)
    return RefineResult(out=out, iterations=records, selected_iteration=sel_it, guideline=selected,
                        final_f1=final_f1, stopped_because=stopped)


async def _supervise(supervisor, guideline: Guideline, analysis: dict, texts: dict[str, str], iteration: int, limits, gold,
                     annotations: dict[str, dict[str, list[Span]]] | None = None):
    """``supervisor.revise`` with each annotator's spans of the documents it answered (agreed worked
    examples are checked span by span); a call that fails (:class:`LLMCallError`) is a failed
    supervision, not a crash."""
    from diziner.errors import LLMCallError
    from diziner.supervise.base import SupervisionResult

    try:
        return await supervisor.revise(guideline, analysis, texts, iteration=iteration, limits=limits, gold=gold,
                                       annotations=annotations)
    except LLMCallError as e:
        return SupervisionResult(guideline=guideline, ok=False, error=f"{e.kind}: {e.reason}")


def _kept_guideline(previous: Guideline, sres, iteration: int) -> Guideline:
    """Θ(t+1) after a failed supervision: Θ(t)'s content with the new iteration number and a change-log
    line that says the supervisor failed and why (the supervisor's own line when it wrote one)."""
    base = list(previous.changelog)
    own = list(getattr(sres.guideline, "changelog", None) or [])
    added = own[len(base):] if own[: len(base)] == base else []
    if not added:
        added = [f"iteration {iteration}: supervisor failed ({sres.error or 'no reason given'}); previous guideline kept"]
    return previous.model_copy(update={"iteration": iteration, "changelog": base + added})


def _make_supervisor(kind: str, client, schema: Schema):
    if kind in ("consensus", "none", None):
        from diziner.supervise.consensus import ConsensusSupervisor

        return ConsensusSupervisor()
    if client is None:
        raise DizinerError(f"supervisor {kind!r} needs an LLM client: set supervisor.backend and model in the pool file")
    from diziner.supervise.llm import LLMSupervisor

    return LLMSupervisor(client)


def paired_guidelines(selected: Guideline, initial: Guideline, with_initial: bool,
                      companion: Guideline | None = None) -> list[Guideline]:
    """The guidelines the final annotation runs beside the selected one, when ``with_initial``: the
    iteration-0 guideline when the selected one prompts differently (BENCHMARKS.md §14), else the
    iteration-0 guideline's ``companion`` (:mod:`diziner.supervise.glossary`, §15) when there is one."""
    if not with_initial:
        return []
    if not same_guideline_content(selected, initial):
        return [initial]
    return [companion] if companion is not None else []


def companion_of(initial: Guideline, run: Path, annotators: list[str]) -> Guideline | None:
    """The companion of the iteration-0 guideline from the run's iteration-0 pilot (None without one)."""
    from diziner.supervise.glossary import companion_guideline

    return companion_guideline(initial, Path(run) / "iterations" / "0", annotators)


COMPANION_FILE = "final/companion-guideline.yaml"


def _also_file(out: Path, g: Guideline) -> str:
    """Where a guideline the final annotation ran beside the selected one is kept (relative to the run):
    a pilot iteration's own file, or the companion's, written here (with its Markdown)."""
    from diziner.guideline_render import render_markdown
    from diziner.supervise.glossary import is_companion

    if not is_companion(g):
        return f"iterations/{g.iteration}/guideline.yaml"

    atomic.write_text(out / COMPANION_FILE, g.to_yaml())
    atomic.write_text((out / COMPANION_FILE).with_suffix(".md"), render_markdown(g))
    return COMPANION_FILE


async def _final_annotation(documents, guideline, lp: _Loop, active: list[str],
                            also: list[Guideline] | None = None) -> dict[str, Any]:
    """Annotate the corpus with the selected guideline (and each of ``also``: every annotator under
    every guideline, :func:`diziner.annotate.runner.guideline_runs`) through the annotation engine
    (the whole corpus as weight window) into ``final/``; returns ``final/done.json``'s content
    (annotators — the runs —, guidelines, weights, f1, failed_documents, flagged_documents)."""
    from diziner.stream import StreamPaths, annotate_documents_in_memory, run_ids

    fdir = lp.out / "final"
    if (fdir / "done.json").exists():
        return atomic.read_json(fdir / "done.json")
    also = also or []
    guidelines = ["final/guideline.yaml"] + [_also_file(lp.out, g) for g in also]
    pool = lp.pool.model_copy(update={"annotators": [a for a in lp.pool.annotators if a.id in active]})
    paths = StreamPaths.folder(fdir, run_ids(pool, guideline, also))
    summary, runs, agg = await annotate_documents_in_memory(
        guideline, documents, pool, paths, lp.opts.stream_options(),
        clients=({a: lp.ann_clients[a] for a in active}, None, lp.ledger),
        quiet=True, progress=lp.progress, label="final annotation", also=also)
    if agg.analysis_ is not None:
        atomic.write_json(fdir / "analysis.json", agg.analysis_.to_json())
        atomic.write_text(fdir / "report.md", agg.analysis_.to_markdown())
    maybe_kill("final_annotations")
    rows = atomic.read_jsonl(paths.out)
    lost = [r["id"] for r in atomic.read_jsonl(paths.failed)]
    flagged = [r["id"] for r in rows if "failed" in r]
    if lost or flagged:
        lp.progress.print(f"[yellow]warning:[/] final annotation: {len(lost)} document(s) nobody answered "
                          f"(listed in {paths.failed}), {len(flagged)} answered by only some annotators (flagged)")
    f1: dict[str, float] = {}
    if lp.gold is not None:
        f1 = _score(lp.gold, {**{a: runs[a].spans_by_doc() for a in agg.usable_}, "consensus": delivered_spans(rows)},
                    documents)
    done = {"annotators": agg.usable_, "guidelines": guidelines, "weights": summary["weights"], "f1": f1,
            "failed_documents": lost, "flagged_documents": flagged}
    atomic.write_json(fdir / "done.json", done)
    return done
