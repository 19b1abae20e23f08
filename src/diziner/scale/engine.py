"""The driver of ``diziner annotate --engine ray``: shards in, shards out, resumable.

The driver reads the corpus as a stream with the local engine's readers (so ids, texts and
chunking are the same) and hands it to Ray in shards: shard 0 is the weight window (the
first whole batches holding ``weight_sample`` documents, as in :mod:`diziner.stream`),
every later shard ``shard_size`` documents. A shard becomes a Ray Dataset that runs each
annotator's processor (:mod:`diziner.scale.processors`) and then the aggregation per batch
on the workers; the driver streams the shard's rows back in input order and writes them.

The weight window is annotated first; its rows come back to the driver, which fits the
:class:`~diziner.aggregator.Aggregator` once (weights, hotspot threshold, usable
annotators), keeps the fit in the state file, and ships the fitted aggregator to the
workers with every later shard.

Files, beside ``out`` while running: ``<out>.ray/`` holds ``state.json`` and the finished
shards, ``part-NNNNN.jsonl`` (consensus), ``part-NNNNN.<annotator>.jsonl``,
``part-NNNNN.failed.jsonl`` (or ``.parquet`` for ``output_format="parquet"``), the shard's
ledger records ``part-NNNNN.ledger.jsonl`` (always JSON lines) and its counts
``stats-NNNNN.json``. Every shard file is written to a temporary name and renamed; the
consensus part is written last and marks the shard finished. A re-run with the same
arguments skips the finished shards' documents (a worker that dies mid-shard only costs
Ray's retry of its task; the driver dying costs the unfinished shard). At the end the
ledger shards are concatenated, in shard order, into the local engine's
``<stem>.ledger.jsonl``; ``jsonl`` output is concatenated into the local engine's files
(``out``, ``<stem>.<annotator>.jsonl``, ``<stem>.failed.jsonl``) and the work folder removed;
``parquet`` output becomes the folder ``out`` with the shard files.

The ledger: every call a worker makes for a row (the processor stage's answer included) is
recorded in that row's ledger (:class:`diziner.scale.stages.RowLedger`), whose records travel
with the row to the driver: a shard's ledger is written with the shard, in input order, so
a resumed run keeps the finished shards' records and records each later call once. The
summary's ``usage`` adds up the whole ledger (every shard, those of an earlier, interrupted
run included) and ``usage_this_run`` the records of the shards written by this run, as the
local engine reports its whole ledger file and its own process. ``budget_usd`` is checked by the driver between
shards: no shard is started once this run's known spend reaches it.

The driver holds one shard of documents (and its rows and ledger records), the set of ids
seen (to refuse duplicates), running usage totals and the weight window's results once;
nothing grows with the corpus otherwise.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from diziner import atomic
from diziner.corpus.model import Document
from diziner.errors import BudgetExceeded, DizinerError, InputError
from diziner.faults import FaultTally
from diziner.guideline import Guideline
from diziner.llm.ledger import Ledger, summarise

STATE_VERSION = 2  # 2: shards carry their ledger
FORMATS = ("jsonl", "parquet")


@dataclass
class RayOptions:
    """Knobs of the Ray engine (the annotation's own knobs are :class:`diziner.stream.StreamOptions`)."""

    address: str | None = None  # a running cluster ("auto", "ray://host:10001"); None: RAY_ADDRESS or a local runtime
    shard_size: int = 10_000  # documents per Ray Dataset (and per output shard)
    output_format: str = "jsonl"  # jsonl: the local engine's files | parquet: a folder of shards
    http_concurrency: int = 1  # HTTP stage actors per openai annotator
    http_num_cpus: float = 0.25  # CPUs each HTTP actor reserves (it waits on the network)
    stage_num_cpus: float = 0.25  # CPUs each light actor around a vLLM engine reserves (templating, tokenizing)
    num_cpus: int | None = None  # CPUs of a local runtime started here

    def check(self) -> None:
        if self.shard_size < 1:
            raise DizinerError(f"shard size must be at least 1 (got {self.shard_size})")
        if self.output_format not in FORMATS:
            raise DizinerError(f"unknown output format {self.output_format!r} (use jsonl or parquet)")
        if self.http_concurrency < 1:
            raise DizinerError(f"HTTP concurrency must be at least 1 (got {self.http_concurrency})")


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise DizinerError("--engine ray needs Ray Data", hint="pip install 'diziner[ray]'") from None
    return ray


def init_ray(ropts: RayOptions) -> Any:
    """Connect to the cluster (or start a local runtime bound to 127.0.0.1) unless Ray is up already."""
    ray = import_ray()
    if not ray.is_initialized():
        if ropts.address is None and not os.environ.get("RAY_ADDRESS"):
            ray.init(num_cpus=ropts.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=ropts.address, log_to_driver=False, configure_logging=False)
    return ray


# ----------------------------------------------------------------------------- shard files


class Shards:
    """The work folder: state and finished shards."""

    def __init__(self, out: Path, ids: list[str], fmt: str):
        self.out = out
        self.ids = ids
        self.fmt = fmt
        self.dir = out.with_name(out.name + ".ray")

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    def path(self, k: int, kind: str) -> Path:
        """``kind``: "" (consensus), an annotator id, "failed", "ledger" (JSON lines in either format), or
        "stats" (the shard's counts). "failed" and "ledger" are refused as annotator ids."""
        if kind == "stats":
            return self.dir / f"stats-{k:05d}.json"
        if kind == "ledger":
            return self.dir / f"part-{k:05d}.ledger.jsonl"
        return self.dir / (f"part-{k:05d}.{self.fmt}" if not kind else f"part-{k:05d}.{kind}.{self.fmt}")

    def done(self, k: int) -> bool:
        return self.path(k, "").exists()

    def finished(self) -> list[int]:
        out = []
        k = 0
        while self.done(k):
            out.append(k)
            k += 1
        return out

    def write(self, k: int, shard: "_Shard") -> None:
        """All files of shard ``k``; the consensus part last (it marks the shard finished)."""
        for kind, rows in [*shard.ann.items(), ("failed", shard.lost)]:
            self._rows(self.path(k, kind), rows)
        atomic.write_text(self.path(k, "ledger"), "".join(shard.ledger))
        atomic.write_json(self.path(k, "stats"), shard.stats)
        self._rows(self.path(k, ""), shard.cons)

    def _rows(self, path: Path, rows: list[dict]) -> None:
        if self.fmt == "jsonl":
            atomic.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, path)

    def stats(self, k: int) -> dict:
        return atomic.read_json(self.path(k, "stats"))

    def finalize(self, n: int, finals: list[tuple[str, Path]], ledger: Path) -> None:
        """The ledger shards into ``ledger``; jsonl: concatenate each kind into its final file; parquet: ``out`` =
        the folder (without the ledger shards)."""
        self._concat(n, "ledger", ledger)
        if self.fmt == "parquet":
            self.state.unlink(missing_ok=True)
            for k in range(n):
                self.path(k, "ledger").unlink()
            os.replace(self.dir, self.out)
            return
        for kind, final in finals:
            self._concat(n, kind, final)
        for p in self.dir.iterdir():
            p.unlink()
        self.dir.rmdir()

    def _concat(self, n: int, kind: str, final: Path) -> None:
        """Shards ``0..n-1`` of ``kind`` into ``final`` (``.partial`` then rename), streamed."""
        part = final.with_name(final.name + ".partial")
        with open(part, "wb") as dst:
            for k in range(n):
                with open(self.path(k, kind), "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(part, final)


# ----------------------------------------------------------------------------- the run


def _rows_of(docs: list[Document], start: int) -> list[dict[str, Any]]:
    return [{"seq": start + i, "id": d.id, "text": d.text} for i, d in enumerate(docs)]


def _annotated(ray: Any, rows: list[dict], processors: list[Any], batch_size: int) -> Any:
    ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch_size)))
    for proc in processors:
        ds = proc(ds)
    return ds


class _Shard:
    """The rows of one shard (aggregated batches, input order), its ledger records and its counts."""

    def __init__(self, ids: list[str]):
        self.ids = ids
        self.cons: list[dict] = []
        self.lost: list[dict] = []
        self.ann: dict[str, list[dict]] = {a: [] for a in ids}
        self.ledger: list[str] = []  # JSON lines: per document, per annotator, per call
        self.faults = FaultTally()
        self.stats = {"documents": 0, "spans": 0, "failed_documents": 0, "flagged_documents": 0,
                      "ok": {a: 0 for a in ids}, "failed": {a: 0 for a in ids}, "reasons": {a: [] for a in ids},
                      "ledger_records": 0, "faults": self.faults.counts}  # counted in place, written with the stats

    def add(self, batch: dict[str, Any]) -> None:
        from diziner.scale.stages import _plain

        cols = {k: _plain(batch[k]) for k in ("cons", "lost")}
        for i in range(len(self.ids)):
            for k in ("line", "ok", "reason", "ledger"):
                cols[f"{k}_{i}"] = _plain(batch[f"{k}_{i}"])
        for j in range(len(cols["cons"])):
            self._row(cols, j)

    def _row(self, cols: dict[str, list[Any]], j: int) -> None:
        st = self.stats
        st["documents"] += 1
        if cols["cons"][j]:
            row = json.loads(cols["cons"][j])
            self.cons.append(row)
            st["spans"] += len(row["spans"])
            st["flagged_documents"] += int("failed" in row)
        if cols["lost"][j]:
            self.lost.append(json.loads(cols["lost"][j]))
            st["failed_documents"] += 1
        for i, a in enumerate(self.ids):
            line = json.loads(cols[f"line_{i}"][j])
            self.ann[a].append(line)
            self.faults.add(line)
            if cols[f"ledger_{i}"][j]:
                self.ledger.append(cols[f"ledger_{i}"][j])
                st["ledger_records"] += cols[f"ledger_{i}"][j].count("\n")
            if cols[f"ok_{i}"][j]:
                st["ok"][a] += 1
                continue
            reason = str(cols[f"reason_{i}"][j])
            st["failed"][a] += 1
            if len(st["reasons"][a]) < 50 and reason not in st["reasons"][a]:
                st["reasons"][a].append(reason)

    def records(self) -> Iterator[Any]:
        from diziner.llm.ledger import LedgerRecord

        for chunk in self.ledger:
            for line in chunk.splitlines():
                yield LedgerRecord.model_validate_json(line)


def _collect(ids: list[str], batches: Iterable[dict[str, Any]]) -> _Shard:
    """The rows of a shard from its aggregated batches."""
    shard = _Shard(ids)
    for batch in batches:
        shard.add(batch)
    return shard


def _window_size(opts: Any) -> int:
    """Documents of the weight window: whole batches until ``weight_sample`` is reached (as the local engine)."""
    return -(-opts.window() // opts.batch_size) * opts.batch_size


@dataclass
class _RayRun:
    """What the shards of one Ray run share (set up once by :func:`_prepare`)."""

    opts: Any
    ropts: RayOptions
    ids: list[str]
    specs: list[Any]
    expect: dict[str, Any]
    paths: Any  # diziner.stream.StreamPaths: the final files
    shards: Shards
    aggregator: Any
    finished: set[int]
    budget_usd: float | None = None
    usage: Any = None  # diziner.llm.ledger.RunningSummary of the shards written by this run
    last_written: int | None = None

    def written(self, k: int, shard: _Shard) -> None:
        """Shard ``k`` was written by this run: its calls count in ``usage``."""
        for rec in shard.records():
            self.usage.add(rec)
        self.last_written = k

    def check_budget(self) -> None:
        """Before a shard is started: this run's known spend is below the budget."""
        if self.budget_usd is None:
            return
        spent = self.usage.total["cost_usd"]
        if spent >= self.budget_usd:
            where = "before any shard" if self.last_written is None else f"after shard {self.last_written}"
            raise BudgetExceeded(
                f"budget of ${self.budget_usd:.4f} reached {where}: ${spent:.4f} spent in this run (known prices); "
                "no further shard is started",
                hint="the finished shards are kept: run the same command again (with a higher --budget) and it "
                     "resumes from them")


def _specs(plan: dict[str, tuple[str, Guideline]], pool: Any, opts: Any, cache_path: str | Path | None,
           no_cache: bool) -> list[Any]:
    """Each run's spec for the workers (a run: an annotator under a guideline,
    :func:`diziner.annotate.runner.guideline_runs`); the cache (an absolute path: the workers' working
    folder is not the driver's) for the HTTP annotators only."""
    from diziner.llm.pool import VLLM_ENGINE
    from diziner.scale.stages import AnnotatorSpec

    ids = [a.id for a in pool.annotators]
    cfg = {a.id: a for a in pool.annotators}
    cache = str(Path(cache_path).expanduser().resolve()) if cache_path is not None else None
    specs = []
    for i, (aid, g) in enumerate(plan.values()):
        a = cfg[aid]
        specs.append(AnnotatorSpec(i, a, ids, g, reask=opts.reask, max_mentions=opts.max_mentions,
                                   global_concurrency=pool.global_concurrency,
                                   api_key=os.environ.get(a.api_key_env) if a.api_key_env else None,
                                   cache_path=None if a.backend == VLLM_ENGINE else cache, cache_read=not no_cache))
    return specs


def _budget(budget_usd: float | None, specs: list[Any]) -> float | None:
    """The budget (a negative one is refused); a notice names the annotators whose calls it cannot count."""
    if budget_usd is None:
        return None
    from diziner.llm.ledger import Budget, lookup_price

    limit = Budget(budget_usd).limit_usd
    unknown = [s.cfg.id for s in specs if lookup_price(s.cfg.backend, s.cfg.model, s.cfg.price) is None]
    if unknown:
        import sys

        print(f"notice: --budget cannot count calls of {', '.join(unknown)}: price unknown "
              "(add price: to the pool file, or the model to $DIZINER_PRICES_FILE)", file=sys.stderr)
    return limit


def _prepare(guideline: Guideline, pool: Any, out: Path, options: Any, ray_options: RayOptions | None, *,
             cache_path: str | Path | None = None, no_cache: bool = False,
             budget_usd: float | None = None, also: Sequence[Guideline] = ()) -> _RayRun:
    """Check the options and the pool, build each run's spec (each annotator, under each guideline with
    ``also``), load a resumable state."""
    from diziner.aggregation import Aggregation
    from diziner.aggregator import Aggregator
    from diziner.llm.ledger import RunningSummary
    from diziner.scale import processors as P
    from diziner.stream import StreamOptions, StreamPaths, guidelines_sha, params_state

    opts = options or StreamOptions()
    opts = dataclasses.replace(opts, aggregation=Aggregation.pick(opts.aggregation, opts.min_support,
                                                                  getattr(pool, "aggregation", None)))
    opts.check()
    ropts = ray_options or RayOptions()
    ropts.check()
    from diziner.annotate.runner import guideline_runs

    plan = guideline_runs([a.id for a in pool.annotators], [guideline, *also])
    ids = list(plan)  # the runs: the annotator ids, and <annotator>@it<t> under a further guideline
    paths = StreamPaths.of(out, ids)  # checks the annotator ids
    pool.check_env()
    specs = _specs(plan, pool, opts, cache_path, no_cache)
    P.check_backends(specs, several_guidelines=bool(also))
    budget = _budget(budget_usd, specs)
    expect = {"version": STATE_VERSION, "engine": "ray", "guideline_sha": guidelines_sha(guideline, also),
              "annotators": ids,
              "weight_sample": opts.window(), "batch_size": opts.batch_size, "weights_mode": opts.weights,
              "percentile": opts.percentile, "aggregation": str(opts.agg()), "shard_size": ropts.shard_size,
              "output_format": ropts.output_format, **params_state(pool)}
    shards = Shards(out, ids, ropts.output_format)
    state = _load_state(shards, expect)
    aggregator = Aggregator(list(guideline.schema_.label_names), aggregation=opts.agg(), weights=opts.weights,
                            percentile=opts.percentile)
    if state is not None:
        aggregator.load_state(state)
    return _RayRun(opts, ropts, ids, specs, expect, paths, shards, aggregator, set(shards.finished()),
                   budget_usd=budget, usage=RunningSummary())


def _unique(documents: Iterable[Document], where: str | None) -> Iterator[Document]:
    seen: set[str] = set()
    for d in documents:
        if d.id in seen:
            raise InputError(where, None, f"duplicate document id {d.id!r}; ids must be unique")
        seen.add(d.id)
        yield d


def _run_shards(run: _RayRun, ray: Any, documents: Iterator[Document], procs: list[Any], quiet: bool) -> tuple[int, int]:
    """Shard 0 (the weight window), then shards of ``shard_size``; finished ones are skipped; none is started
    once the budget is spent. Returns (shards, documents)."""
    from diziner.progress import Progress
    from diziner.scale.stages import Aggregate

    opts, window = run.opts, _window_size(run.opts)
    k = start = 0
    with Progress(quiet) as progress:
        while True:
            docs = list(islice(documents, window if k == 0 else run.ropts.shard_size))
            if not docs:
                return k, start
            if k in run.finished:
                progress.print(f"shard {k}: {len(docs)} documents finished earlier")
            else:
                run.check_budget()
                if k == 0:
                    shard = _write_window(run, ray, docs, procs, progress)
                else:
                    ds = _annotated(ray, _rows_of(docs, start), procs, opts.batch_size)
                    ds = ds.map_batches(Aggregate(run.aggregator, run.ids), batch_size=opts.batch_size,
                                        batch_format="default")
                    shard = _collect(run.ids, ds.iter_batches(batch_size=opts.batch_size, batch_format="default"))
                    run.shards.write(k, shard)
                    progress.print(f"shard {k}: {len(docs)} documents written")
                run.written(k, shard)
            start += len(docs)
            k += 1


def _cache_notice(ray: Any, specs: list[Any]) -> None:
    """On a cluster of several machines each one has its own cache file: say so once."""
    path = next((s.cache_path for s in specs if s.cache_path), None)
    nodes = [n for n in ray.nodes() if n.get("Alive")] if path else []
    if len(nodes) > 1:
        import sys

        print(f"notice: --cache: each of the {len(nodes)} machines of the cluster keeps its own cache file at {path} "
              "(a local disk: SQLite's WAL mode does not work on a network filesystem)", file=sys.stderr)


def annotate_ray(guideline: Guideline, documents: Iterable[Document], pool: Any, out: str | Path, *,
                 options: Any = None, ray_options: RayOptions | None = None, quiet: bool = False,
                 source: str | Path | None = None, cache_path: str | Path | None = None, no_cache: bool = False,
                 budget_usd: float | None = None, also: Sequence[Guideline] = ()) -> dict[str, Any]:
    """Annotate ``documents`` on Ray Data and write ``out`` and its siblings (see the module docstring).

    ``cache_path``: the response cache (SQLite) the workers share on each machine (None: no cache);
    ``no_cache``: do not read it (fresh answers are still stored). ``budget_usd``: no shard is started
    once this run's known spend reaches it (:class:`~diziner.errors.BudgetExceeded`; the finished
    shards are kept). ``also``: further guidelines, as for the local engine (runs ``<annotator>@it<t>``;
    HTTP annotators only). Returns the summary of :func:`diziner.stream.annotate_stream_async` (``usage``:
    the whole ledger; ``usage_this_run``: the shards this run wrote; ``faults``) plus a ``ray`` section.
    """
    from diziner.scale import processors as P

    out = Path(out)
    run = _prepare(guideline, pool, out, options, ray_options, cache_path=cache_path, no_cache=no_cache,
                   budget_usd=budget_usd, also=also)
    opts, ropts = run.opts, run.ropts
    where = str(source) if source is not None else None
    ray = init_ray(ropts)
    _cache_notice(ray, run.specs)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    if quiet:
        ctx.enable_progress_bars = False
    procs = [P.build(s, batch_size=opts.batch_size, http_concurrency=ropts.http_concurrency,
                     http_num_cpus=ropts.http_num_cpus, stage_num_cpus=ropts.stage_num_cpus) for s in run.specs]
    k, start = _run_shards(run, ray, _unique(documents, where), procs, quiet)
    if start == 0:
        raise InputError(where, None, "no documents found")
    totals = _totals([run.shards.stats(j) for j in range(k)], run.ids)
    paths = run.paths
    run.shards.finalize(k, [*((a, p) for a, p in paths.annotators.items()), ("failed", paths.failed), ("", out)],
                        paths.ledger)
    if totals["failed_documents"] and not quiet:
        import sys

        print(f"warning: {totals['failed_documents']} document(s) nobody answered are listed in the failed "
              f"file{'s' if ropts.output_format == 'parquet' else ''}, not with the annotations", file=sys.stderr)
    agg = run.aggregator
    usage = summarise(Ledger.iter_file(paths.ledger))  # every shard, resumed ones too
    totals["faults"] = totals["faults"].result(usage["total"])
    return {**totals, "annotators": run.ids, "weights": agg.weights_, "usage": usage,
            "usage_this_run": run.usage.result(),
            "streaming": {"batch_size": opts.batch_size, "weight_window_documents": min(_window_size(opts), start),
                          "hotspot_threshold": agg.threshold_, "usable_annotators": agg.usable_},
            "ray": {"shards": k, "resumed_shards": len([j for j in run.finished if j < k]),
                    "shard_size": ropts.shard_size, "output_format": ropts.output_format}}


def _write_window(run: _RayRun, ray: Any, docs: list[Document], procs: list[Any], progress: Any) -> _Shard:
    """Shard 0: annotate the weight window, fit the aggregator on it, then aggregate it batch by batch here."""
    from diziner.annotate.runner import AnnotatorRun, DocResult
    from diziner.scale.stages import _plain, aggregate_rows

    ids, size, aggregator = run.ids, run.opts.batch_size, run.aggregator
    ds = _annotated(ray, _rows_of(docs, 0), procs, size)
    cols: dict[str, list[Any]] = {"seq": [], "id": [], "text": [],
                                  **{f"{c}_{i}": [] for i in range(len(ids)) for c in ("ann", "ledger")}}
    for batch in ds.iter_batches(batch_size=size, batch_format="default"):
        for c in cols:
            cols[c].extend(_plain(batch[c]))
    runs = {}
    for i, a in enumerate(ids):
        runs[a] = AnnotatorRun(a)
        runs[a].results = {d.id: DocResult.from_json(raw) for d, raw in zip(docs, cols[f"ann_{i}"])}
    aggregator.fit(docs, runs, progress=progress, where=f"the weight window ({len(docs)} documents)")
    atomic.write_json(run.shards.state, {**run.expect, **aggregator.state(), "window_documents": len(docs)})
    batches = ({c: v[s:s + size] for c, v in cols.items()} for s in range(0, len(docs), size))
    shard = _collect(ids, (aggregate_rows(aggregator, ids, b) for b in batches))
    run.shards.write(0, shard)
    progress.print(f"weight window: {len(docs)} documents written; weights "
                   + ", ".join(f"{a} {w:.3f}" for a, w in aggregator.weights_.items()))
    return shard


def _load_state(shards: Shards, expect: dict) -> dict | None:
    """The saved state of an interrupted run with the same arguments, or None (a fresh work folder)."""
    if not shards.state.exists():
        if shards.dir.exists():
            for p in [*shards.dir.glob("part-*"), *shards.dir.glob("stats-*")]:
                p.unlink()  # shards of a run interrupted before its weight window was fitted
        shards.dir.mkdir(parents=True, exist_ok=True)
        return None
    try:
        state = atomic.read_json(shards.state)
    except (OSError, ValueError) as e:
        raise DizinerError(f"{shards.state}: unreadable ({e}); cannot resume", hint=f"remove {shards.dir} to start over") from None
    diff = [k for k, v in expect.items() if state.get(k) != v]
    if diff:
        raise DizinerError(f"{shards.state}: a partial run with a different {', '.join(diff)} is in the way; "
                           "refusing to mix runs",
                           hint=f"re-run with the same arguments to resume, or remove {shards.dir} to start over")
    return state


def _totals(stats: list[dict], ids: list[str]) -> dict[str, Any]:
    tot: dict[str, Any] = {"documents": 0, "spans": 0, "failed_documents": 0, "flagged_documents": 0,
                           "failed": {a: 0 for a in ids}, "faults": FaultTally()}
    reasons: dict[str, list[str]] = {a: [] for a in ids}
    for s in stats:
        tot["faults"].merge(s.get("faults") or {})
        for key in ("documents", "spans", "failed_documents", "flagged_documents"):
            tot[key] += s[key]
        for a in ids:
            tot["failed"][a] += s["failed"][a]
            reasons[a].extend(r for r in s["reasons"][a] if r not in reasons[a])
    tot["failure_reasons"] = {a: sorted(r)[:5] for a, r in reasons.items() if tot["failed"][a]}
    return tot


def annotate_file_ray(guideline: Guideline, texts: str | Path, pool: Any, out: str | Path, *, fmt: str | None = None,
                      text_field: str = "text", **kwargs: Any) -> dict[str, Any]:
    """Annotate the documents of ``texts`` (text, JSONL, CoNLL, GENIA, CSV, Parquet) on Ray Data."""
    from diziner.corpus.readers import iter_documents

    docs = (d for d, _ in iter_documents(texts, fmt, text_field=text_field))
    return annotate_ray(guideline, docs, pool, out, source=texts, **kwargs)
