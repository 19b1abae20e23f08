"""Streaming annotation of a large corpus with a fixed guideline, in bounded memory.

``diziner annotate`` goes through here. Documents are read lazily and annotated in
batches (every annotator of the pool on every document of the batch, concurrently; the
clients enforce the concurrency limits). While one batch is aggregated and written, the
next one is already being annotated (``prefetch``). Memory holds at most
``prefetch + 1`` batches, plus the set of document ids seen (to refuse duplicates and to
resume), plus the weight window once at the start.

Aggregation needs annotator weights and the hotspot threshold. Both are corpus-level
quantities in the non-streaming path; here they are computed once, from the first
batches holding at least ``weight_sample`` documents (the *weight window*, default two
batches; annotated concurrently) with
:func:`diziner.analysis.analyze`, and then kept fixed:

* weights — mean pairwise strict span F1 on the window (``f1`` or ``hybrid``);
* hotspot threshold — the ``percentile`` of U* over the window's disputed tokens. Each
  later batch marks a token hot when its U* (with the fixed weights) reaches that
  threshold; runs are formed per document exactly as in the analysis. When the window
  has no disputed token at all (no threshold), each batch falls back to its own
  percentile.

This is the one annotation engine for a fixed guideline. The in-memory paths are this
engine with the whole corpus as weight window, in one batch
(:func:`annotate_documents_in_memory`): :func:`annotate_corpus`, the final
annotation of ``refine`` (into ``final/``, :meth:`StreamPaths.folder`) and the test
annotation of ``bench``. Their weights and hotspots are then the corpus's own analysis.

Files (``out`` = ``results.jsonl``):

* ``results.jsonl`` — consensus spans with support, one line per document at least one
  annotator answered, input order; a document some annotators failed on is aggregated
  from those who answered and its line carries ``"failed": [{"annotator", "reason"}]``;
* ``results.failed.jsonl`` — the documents nobody answered, ``{"id","text","failed"}``
  (never written to ``results.jsonl`` as an empty annotation);
* ``results.<annotator>.jsonl`` — each annotator's results (status, reason, spans, ...);
* ``results.ledger.jsonl`` — one record per LLM call (only running totals stay in memory).

While running, lines are appended to ``<file>.partial`` (flushed and fsynced per batch)
and the fixed weights are kept in ``results.jsonl.partial-state.json``; the final paths
are only ever produced by ``os.replace`` when every document is done, so no
half-written file is ever at a final path. Running the same command again resumes: the
documents already in the partial consensus or failed file are skipped, the others are annotated
(finished calls of an interrupted batch come from the response cache).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diziner import atomic
from diziner.corpus.model import Document, Span
from diziner.errors import DizinerError, InputError
from diziner.faultpoints import maybe_kill
from diziner.guideline import Guideline
from diziner.options import DEFAULTS

STATE_VERSION = 1
RESERVED_IDS = ("failed", "ledger")  # <stem>.failed.jsonl and <stem>.ledger.jsonl sit beside <stem>.<annotator>.jsonl


def run_ids(pool: Any, guideline: Guideline, also: Sequence[Guideline] = ()) -> list[str]:
    """The ids of a run's per-annotator files: the pool's annotator ids, and with ``also`` one run
    per annotator and guideline (:func:`diziner.annotate.runner.guideline_runs`)."""
    ids = [a.id for a in pool.annotators]
    if not also:
        return ids
    from diziner.annotate.runner import guideline_runs

    return list(guideline_runs(ids, [guideline, *also]))


def check_annotator_ids(ids: list[str]) -> None:
    """Refuse annotator ids whose per-annotator file would be another output file."""
    bad = [a for a in ids if a in RESERVED_IDS]
    if bad:
        raise DizinerError(f"annotator id {bad[0]!r} is reserved (its file would overwrite <out>.{bad[0]}.jsonl)",
                           hint="rename the annotator in the pool file")
__all__ = [
    "StreamOptions",
    "StreamPaths",
    "check_annotator_ids",
    "run_ids",
    "annotate_corpus",
    "annotate_documents_in_memory",
    "annotate_file",
    "annotate_stream",
    "annotate_stream_async",
    "batch_hotspots",
    "batched",
    "count_documents",
]


@dataclass
class StreamOptions:
    """Knobs of a streamed annotation run."""

    batch_size: int = DEFAULTS.annotation.batch_size
    weight_sample: int | None = None  # documents of the weight window; None = 2 × batch_size
    min_support: float | None = None  # the span vote's threshold (0 = union); prefer aggregation
    aggregation: str | None = None  # consensus | union | vote:X | reliability[:label]; None = the default
    weights: str = DEFAULTS.analysis.weights  # f1 | hybrid
    percentile: float = DEFAULTS.analysis.percentile
    reask: int = DEFAULTS.annotation.reask
    max_mentions: int = DEFAULTS.annotation.max_mentions
    prefetch: int = DEFAULTS.annotation.prefetch  # batches annotated ahead of the one being written

    def window(self) -> int:
        return self.weight_sample if self.weight_sample is not None else 2 * self.batch_size

    def check(self) -> None:
        if self.batch_size < 1:
            raise DizinerError(f"batch size must be at least 1 (got {self.batch_size})")
        if self.window() < 1:
            raise DizinerError(f"the weight sample must be at least 1 document (got {self.window()})")
        if self.prefetch < 0:
            raise DizinerError(f"prefetch must be >= 0 (got {self.prefetch})")
        if self.min_support is not None and not 0.0 <= self.min_support <= 1.0:
            raise DizinerError(f"min_support must be within [0, 1] (got {self.min_support})")
        if self.weights not in ("f1", "hybrid"):
            raise DizinerError(f"unknown weights mode {self.weights!r} (use f1 or hybrid)")
        if not 0.0 <= self.percentile <= 100.0:
            raise DizinerError(f"percentile must be within [0, 100] (got {self.percentile})")
        self.agg()

    def agg(self):
        """The aggregation (:class:`diziner.analysis.aggregate.Aggregation`)."""
        from diziner.aggregation import Aggregation

        return Aggregation.parse(self.aggregation, self.min_support)


@dataclass
class StreamPaths:
    """Where a streamed run writes: final paths, their ``.partial`` twins, the state file, the ledger."""

    out: Path
    annotators: dict[str, Path] = field(default_factory=dict)
    failed_file: Path | None = None  # None = <out stem>.failed.jsonl

    @classmethod
    def of(cls, out: str | Path, annotator_ids: Iterable[str]) -> StreamPaths:
        """``out`` with its siblings ``<stem>.<annotator>.jsonl`` and ``<stem>.failed.jsonl``."""
        out = Path(out)
        ids = list(annotator_ids)
        check_annotator_ids(ids)
        return cls(out, {a: out.with_name(f"{out.stem}.{a}.jsonl") for a in ids})

    @classmethod
    def folder(cls, folder: str | Path, annotator_ids: Iterable[str]) -> StreamPaths:
        """A run directory's layout: ``annotations.jsonl``, ``by_annotator/<annotator>.jsonl``, ``failed.jsonl``."""
        folder = Path(folder)
        return cls(folder / "annotations.jsonl", {a: folder / "by_annotator" / f"{a}.jsonl" for a in annotator_ids},
                   folder / "failed.jsonl")

    @property
    def failed(self) -> Path:
        """The documents nobody answered."""
        return self.failed_file or self.out.with_name(f"{self.out.stem}.failed.jsonl")

    @staticmethod
    def partial(path: Path) -> Path:
        return path.with_name(path.name + ".partial")

    @property
    def state(self) -> Path:
        return self.out.with_name(self.out.name + ".partial-state.json")

    @property
    def ledger(self) -> Path:
        return self.out.with_name(self.out.stem + ".ledger.jsonl")

    def finals(self) -> list[Path]:
        return [*self.annotators.values(), self.failed, self.out]

    def partials(self) -> list[Path]:
        return [self.partial(p) for p in self.finals()]


# ----------------------------------------------------------------------------- pure helpers


def batched(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    """Lists of up to ``size`` documents, in order, pulled lazily."""
    buf: list[Document] = []
    for d in documents:
        buf.append(d)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def batch_hotspots(documents: list[Document], annotations: dict[str, dict[str, list[Span]]],
                   weights: dict[str, float], labels: list[str], threshold: float | None,
                   percentile: float = 80.0) -> list[dict]:
    """Hotspot runs of a batch with fixed weights and a fixed threshold.

    The analysis's own rule (:func:`diziner.analysis.core.hot_runs`: the hot score
    ``H``, ``p`` over the annotators who answered each document), so a batch's hotspots
    are the ones :func:`diziner.analysis.analyze` finds with the same weights and
    threshold; ``threshold=None`` uses the batch's own ``percentile``.
    """
    from diziner.analysis.core import hot_runs

    return [h.to_json() for h in hot_runs(documents, annotations, weights, labels, threshold, percentile)]


def guideline_sha(guideline: Guideline) -> str:
    return hashlib.sha256(guideline.to_yaml().encode("utf-8")).hexdigest()[:16]


def guidelines_sha(guideline: Guideline, also: Sequence[Guideline] = ()) -> str | list[str]:
    """What a resume state records of a run's guidelines: the guideline's sha, or with further
    guidelines the list of all their shas (a resume with other guidelines is refused)."""
    return guideline_sha(guideline) if not also else [guideline_sha(g) for g in (guideline, *also)]


def params_state(pool: Any) -> dict[str, Any]:
    """What a resume state records of the annotators' params (they decide the requests): nothing when
    none is set, so a partial run of an older version stays resumable."""
    params = pool.annotation_params()
    return {"params": params} if params else {}


def count_documents(path: str | Path, fmt: str | None = None, text_field: str = "text") -> int:
    """Number of documents in a corpus file, read as a stream (for the progress bar)."""
    from diziner.corpus.readers import iter_documents

    return sum(1 for _ in iter_documents(path, fmt, text_field=text_field))


# ----------------------------------------------------------------------------- partial files


def _good_prefix(path: Path) -> tuple[int, list[dict]]:
    """(byte length of the complete, valid JSON lines at the head of ``path``, their objects).

    Reading stops at the first torn or unreadable line (a run killed mid-write).
    """
    good = 0
    rows = []
    with open(path, "rb") as fh:
        for raw, obj in _complete_lines(fh):
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                break
            rows.append(obj)
            good += len(raw)
    return good, rows


def _complete_lines(fh):
    """(raw line, parsed JSON) for each line up to the first torn or unreadable one."""
    for raw in fh:
        if not raw.endswith(b"\n"):
            return
        try:
            obj = json.loads(raw)
        except ValueError:
            return
        yield raw, obj


def _done_rows(path: Path) -> list[dict]:
    """The rows of the documents finished in a partial consensus (or failed) file; truncates a torn tail."""
    if not path.exists():
        return []
    good, rows = _good_prefix(path)
    if good != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return rows


def _filter_annotator_partial(path: Path, done: set[str], counters: _Counters, annotator: str) -> None:
    """Keep the lines of finished documents (first occurrence) and count their failures."""
    if not path.exists():
        if done:
            raise DizinerError(f"{path}: missing while the consensus file lists finished documents; cannot resume",
                               hint="remove the .partial files to start over")
        return
    tmp = path.with_name(path.name + ".tmp")
    seen: set[str] = set()
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for raw, obj in _complete_lines(src):
            doc_id = obj.get("id") if isinstance(obj, dict) else None
            if doc_id in done and doc_id not in seen:
                seen.add(doc_id)
                dst.write(raw)
                counters.add_result(annotator, obj)
        dst.flush()
        os.fsync(dst.fileno())
    if len(seen) != len(done):
        tmp.unlink()
        raise DizinerError(f"{path}: lacks {len(done) - len(seen)} of the finished documents; cannot resume",
                           hint="remove the .partial files to start over")
    os.replace(tmp, path)


class _Counters:
    """Running figures for the summary (O(annotators) memory)."""

    def __init__(self, annotators: list[str]):
        from diziner.faults import FaultTally

        self.faults = FaultTally()
        self.failed = {a: 0 for a in annotators}
        self.ok = {a: 0 for a in annotators}
        self.reasons: dict[str, set[str]] = {a: set() for a in annotators}
        self.documents = 0
        self.spans = 0
        self.failed_documents = 0  # nobody answered
        self.flagged_documents = 0  # some annotators failed

    def add_result(self, annotator: str, row: dict[str, Any]) -> None:
        """Count one annotation line of ``annotator`` (DocResult JSON)."""
        self.faults.add(row)
        ok, reason = row.get("status", "ok") == "ok", row.get("reason")
        if ok:
            self.ok[annotator] += 1
        else:
            self.failed[annotator] += 1
            if len(self.reasons[annotator]) < 50:
                self.reasons[annotator].add(reason or "")


class _Writer:
    """Append-only handles on the partial files; each batch is flushed and fsynced."""

    def __init__(self, paths: StreamPaths):
        self.paths = paths
        # long-lived append handles, closed by close() (the run's finally block)
        self.fh = {a: open(StreamPaths.partial(p), "a", encoding="utf-8", newline="\n")  # noqa: SIM115
                   for a, p in paths.annotators.items()}
        self.failed = open(StreamPaths.partial(paths.failed), "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        self.cons = open(StreamPaths.partial(paths.out), "a", encoding="utf-8", newline="\n")  # noqa: SIM115

    def write_batch(self, annotator_lines: dict[str, list[str]], consensus_lines: list[str],
                    failed_lines: list[str] | None = None) -> None:
        # annotators first: a consensus or failed line marks its document finished
        for fh, lines in [*((self.fh[a], v) for a, v in annotator_lines.items()), (self.failed, failed_lines or [])]:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        self.cons.write("".join(line + "\n" for line in consensus_lines))
        self.cons.flush()
        os.fsync(self.cons.fileno())

    def close(self) -> None:
        for fh in [*self.fh.values(), self.failed, self.cons]:
            fh.close()


# ----------------------------------------------------------------------------- the run


def _load_state(paths: StreamPaths, expect: dict[str, Any]) -> dict[str, Any] | None:
    """The saved weight-window state, or None (then any stale partial file is removed)."""
    if not paths.state.exists():
        for p in paths.partials():
            if p.exists():
                p.unlink()
        return None
    try:
        state = atomic.read_json(paths.state)
    except (OSError, ValueError) as e:
        raise DizinerError(f"{paths.state}: unreadable ({e}); cannot resume",
                           hint="remove the .partial files to start over") from None
    diff = [k for k, v in expect.items() if state.get(k) != v]
    if diff:
        raise DizinerError(
            f"{paths.state}: a partial run with a different {', '.join(diff)} is in the way; refusing to mix runs",
            hint=f"re-run with the same arguments to resume, or remove {paths.out.name}.partial* to start over")
    return state


async def annotate_stream_async(
    guideline: Guideline,
    documents: Iterable[Document],
    pool,
    out: str | Path,
    *,
    options: StreamOptions | None = None,
    clients: tuple[dict, Any, Any] | None = None,
    cache_path: str | Path | None = None,
    no_cache: bool = False,
    budget_usd: float | None = None,
    quiet: bool = False,
    total: int | None = None,
    source: str | Path | None = None,
    paths: StreamPaths | None = None,
    on_fit: Callable[[list[Document], dict, Any], None] | None = None,
    progress: Any = None,
    label: str = "annotate",
    also: Sequence[Guideline] = (),
) -> dict[str, Any]:
    """Annotate ``documents`` (any iterable, read once, lazily) and write ``out`` and its siblings.

    ``clients`` = (annotator clients, supervisor, ledger) as from
    :class:`diziner.llm.factory.PoolClients`; by default they are built from the pool
    with a ledger that keeps only running totals in memory. ``total`` (documents, when
    known) sizes the progress bar; ``source`` names the input in error messages.
    ``paths`` overrides the layout of :meth:`StreamPaths.of` (``out`` is then ignored).
    ``on_fit(documents, runs, aggregator)`` is called once the weight window is annotated and
    the aggregator fitted on it (not when a resumed run reads the saved fit): with the whole
    corpus as window (:func:`annotate_documents_in_memory`) it sees every result.
    ``progress`` (a :class:`diziner.progress.Progress` already open) and ``label`` name the bar.
    ``also``: further guidelines; every annotator then annotates with each guideline too, as runs
    ``<annotator>@it<iteration>`` (:func:`run_ids`), and the aggregation is over all the runs
    (support counts runs). Returns a summary: documents, annotators, weights, failures, spans, ``usage`` (the whole
    ledger file, every resume included), ``usage_this_run``, ``faults`` and streaming figures.
    """
    run = _StreamRun(guideline, pool, paths or StreamPaths.of(out, run_ids(pool, guideline, also)), options, source,
                     also=also)
    run.on_fit = on_fit
    run.resume()
    pc = run.clients(pool, clients, cache_path, no_cache, budget_usd)
    try:
        with _progress(progress, quiet) as bar:
            run.start_progress(bar, total, label)
            batches = batched(run.fresh(documents), run.opts.batch_size)
            window = await run.fit_window(batches)
            run.writer = _Writer(run.paths)
            for batch, runs in window:
                run.process(batch, runs)
            window.clear()
            await run.drive(batches)
    finally:
        await run.cancel_pending()
        if run.writer is not None:
            run.writer.close()
        await pc.aclose()  # closes what it built (every client and the ledger), nothing it borrowed
    return run.finish(quiet, pc.ledger)


def annotate_corpus(
    guideline: Guideline,
    documents: list[Document],
    pool,
    out: str | Path,
    *,
    clients: tuple[dict, Any, Any] | None = None,
    cache_path: str | Path | None = None,
    no_cache: bool = False,
    budget_usd: float | None = None,
    min_support: float | None = None,
    quiet: bool = False,
    options: StreamOptions | None = None,
    aggregation: str | None = None,
    also: Sequence[Guideline] = (),
) -> dict[str, Any]:
    """Annotate ``documents`` with a fixed guideline by every annotator of the pool and aggregate:
    this engine with the whole corpus as weight window (:func:`annotate_documents_in_memory`).

    Writes the consensus JSONL to ``out`` (rows of documents some annotators failed on carry
    ``"failed"``; :func:`diziner.aggregator.delivered_rows`), the documents nobody answered to
    ``<out stem>.failed.jsonl``, each annotator's file beside it (``<out stem>.<annotator>.jsonl``)
    and the call ledger (``<out stem>.ledger.jsonl``). Returns the engine's summary.
    ``aggregation`` (text, see :class:`~diziner.aggregation.Aggregation`; ``min_support`` alone
    = ``vote:X``) defaults to the pool's, then the project default. ``also``: further guidelines
    (see :func:`annotate_stream_async`).
    """
    from diziner.aggregation import Aggregation

    agg = Aggregation.parse(Aggregation.pick(aggregation, min_support, getattr(pool, "aggregation", None)), min_support)
    sopts = dataclasses.replace(options or StreamOptions(), aggregation=str(agg), min_support=None)
    paths = StreamPaths.of(out, run_ids(pool, guideline, also))
    summary, _, _ = asyncio.run(annotate_documents_in_memory(
        guideline, documents, pool, paths, sopts, clients=clients, cache_path=cache_path, no_cache=no_cache,
        budget_usd=budget_usd, quiet=quiet, also=also))
    return summary


def _progress(progress: Any, quiet: bool) -> Any:
    """The caller's open progress display (left open), or a new one."""
    from diziner.progress import Progress

    return contextlib.nullcontext(progress) if progress is not None else Progress(quiet)


async def annotate_documents_in_memory(guideline: Guideline, documents: list[Document], pool: Any,
                                       paths: StreamPaths, options: StreamOptions | None = None,
                                       **kwargs: Any) -> tuple[dict[str, Any], dict, Any]:
    """The engine with the whole corpus as weight window, in one batch: the weights and hotspot
    threshold are the corpus's own, as the analysis of the pilot computes them. Returns (the
    summary, every annotator's run, the fitted aggregator, whose ``analysis_`` is the corpus
    analysis). It never resumes a partial run (a stale one at ``paths`` is removed): finished
    calls come back from the response cache."""
    seen: dict[str, Any] = {}

    def keep(docs: list[Document], runs: dict, aggregator: Any) -> None:
        seen.update(runs=runs, aggregator=aggregator)

    paths.state.unlink(missing_ok=True)  # the run then removes the stale .partial files
    n = max(1, len(documents))
    opts = dataclasses.replace(options or StreamOptions(), batch_size=n, weight_sample=n)
    summary = await annotate_stream_async(guideline, documents, pool, paths.out, options=opts, paths=paths,
                                          on_fit=keep, total=len(documents), **kwargs)
    return summary, seen["runs"], seen["aggregator"]


class _StreamRun:
    """One streamed run: its options, files, resume state, counters and the batches in flight.
    :func:`annotate_stream_async` calls the steps in order."""

    def __init__(self, guideline: Guideline, pool: Any, paths: StreamPaths, options: StreamOptions | None,
                 source: str | Path | None, also: Sequence[Guideline] = ()):
        from diziner.aggregation import Aggregation
        from diziner.aggregator import Aggregator
        from diziner.annotate.runner import guideline_runs

        opts = options or StreamOptions()
        opts = dataclasses.replace(opts, aggregation=Aggregation.pick(opts.aggregation, opts.min_support,
                                                                      getattr(pool, "aggregation", None)))
        opts.check()
        self.guideline, self.opts, self.out = guideline, opts, paths.out
        self.annotator_ids = [a.id for a in pool.annotators]
        self.styles = {a.id: a.prompt_style for a in pool.annotators}
        self.params = pool.annotation_params()
        self.plan = guideline_runs(self.annotator_ids, [guideline, *also]) if also else None
        self.ids = list(self.plan) if self.plan else self.annotator_ids  # the runs: annotator × guideline
        if sorted(paths.annotators) != sorted(self.ids):
            raise DizinerError(f"the output paths name annotators {sorted(paths.annotators)}, the pool {sorted(self.ids)}")
        self.paths = paths
        self.expect = {
            "version": STATE_VERSION,
            "guideline_sha": guidelines_sha(guideline, also),
            "annotators": self.ids,
            "weight_sample": opts.window(),
            "weights_mode": opts.weights,
            "percentile": opts.percentile,
            "min_support": opts.min_support,
            "aggregation": str(opts.agg()),
            **params_state(pool),
        }
        self.where = str(source) if source is not None else None
        self.aggregator = Aggregator(list(guideline.schema_.label_names), aggregation=opts.agg(),
                                     weights=opts.weights, percentile=opts.percentile)
        self.counters = _Counters(self.ids)
        self.state: dict[str, Any] | None = None
        self.done: set[str] = set()
        self.resumed = 0
        self.n_batches = 0
        self.writer: _Writer | None = None
        self.pending: collections.deque[tuple[list[Document], asyncio.Task]] = collections.deque()
        self.ann_clients: dict[str, Any] = {}
        self.advance: Any = None
        self.progress: Any = None
        self.on_fit: Callable[[list[Document], dict, Any], None] | None = None

    # ---- set-up
    def resume(self) -> None:
        """Read a partial run's state and counters; the documents it finished are skipped."""
        paths = self.paths
        for p in paths.finals():
            p.parent.mkdir(parents=True, exist_ok=True)
        self.state = _load_state(paths, self.expect)
        if self.state is None:
            return
        cons_rows = _done_rows(StreamPaths.partial(paths.out))
        lost_rows = _done_rows(StreamPaths.partial(paths.failed))
        done_list = [r["id"] for r in cons_rows + lost_rows]
        self.done = set(done_list)
        if len(self.done) != len(done_list):
            raise DizinerError(f"{StreamPaths.partial(paths.out)}: a document appears twice; cannot resume",
                               hint="remove the .partial files to start over")
        c = self.counters
        c.documents = len(self.done)
        c.spans = sum(len(r.get("spans") or []) for r in cons_rows)
        c.flagged_documents = sum(1 for r in cons_rows if r.get("failed"))
        c.failed_documents = len(lost_rows)
        for a, p in paths.annotators.items():
            _filter_annotator_partial(StreamPaths.partial(p), self.done, c, a)
        self.resumed = len(self.done)

    def clients(self, pool: Any, clients: tuple | None, cache_path: Any, no_cache: bool, budget_usd: float | None):
        """The pool's clients (built here, with a ledger of running totals, or borrowed)."""
        from diziner.llm.factory import PoolClients

        if clients is None:
            from diziner.llm.ledger import Ledger

            pool.check_env()
            pc = PoolClients.build(pool, cache_path=cache_path, no_cache=no_cache, budget_usd=budget_usd,
                                   ledger=Ledger(self.paths.ledger, keep_records=False))
        else:
            pc = PoolClients.borrow(clients)
        self.ann_clients = pc.annotators
        missing = [a for a in self.annotator_ids if a not in self.ann_clients]
        if missing:
            raise DizinerError(f"no client for annotator(s) {', '.join(missing)}")
        return pc

    def start_progress(self, progress: Any, total: int | None, label: str = "annotate") -> None:
        self.progress = progress
        self.advance = progress.task(label, total=total)
        if self.resumed:
            self.advance(self.resumed)
            progress.print(f"resuming: {self.resumed} documents finished earlier")

    def fresh(self, documents: Iterable[Document]) -> Iterator[Document]:
        """The documents not finished earlier; a repeated id is an input error."""
        done, seen = self.done, set(self.done)
        for d in documents:
            if d.id in done:
                done.discard(d.id)  # each finished id is skipped once; a repeat is a duplicate
                continue
            if d.id in seen:
                raise InputError(self.where, None, f"duplicate document id {d.id!r}; ids must be unique")
            seen.add(d.id)
            yield d

    # ---- annotation
    async def annotate(self, batch: list[Document]) -> dict:
        """Every annotator on every document of the batch; the bar advances when all answered one."""
        from diziner.annotate.runner import annotate_documents

        remaining: dict[str, int] = {}

        def on_result(annotator_id, result):
            k = remaining.get(result.doc_id, 0) + 1
            remaining[result.doc_id] = k
            if k == len(self.ids):
                self.advance(1)
            maybe_kill("annotate_doc")

        return await annotate_documents(batch, self.guideline,
                                        {a: (self.ann_clients[a], self.styles[a]) for a in self.annotator_ids},
                                        iteration=None, reask=self.opts.reask, max_mentions=self.opts.max_mentions,
                                        on_result=on_result, runs=self.plan, params=self.params)

    async def fit_window(self, batches: Iterator[list[Document]]) -> list[tuple[list[Document], dict]]:
        """A fresh run: annotate the weight window, fit the aggregator on it, write the state;
        returns the window's batches (written like any batch). A resumed run: the saved fit."""
        window: list[tuple[list[Document], dict]] = []
        if self.state is None:
            win_batches: list[list[Document]] = []
            n_win = 0
            while n_win < self.opts.window():
                batch = next(batches, None)
                if batch is None:
                    break
                win_batches.append(batch)
                n_win += len(batch)
            win_runs = await asyncio.gather(*(self.annotate(b) for b in win_batches))
            window = list(zip(win_batches, win_runs))
            win_docs = [d for b, _ in window for d in b]
            if not win_docs:
                raise InputError(self.where, None, "no documents found")
            runs_all = {a: _merge_runs([r[a] for _, r in window]) for a in self.ids}
            fitted = self.aggregator.fit(win_docs, runs_all, progress=self.progress,
                                         where=f"the weight window ({len(win_docs)} documents)")
            if self.on_fit is not None:
                self.on_fit(win_docs, runs_all, fitted)
            self.state = {**self.expect, **fitted.state(), "window_documents": len(win_docs)}
            atomic.write_json(self.paths.state, self.state)
        self.aggregator.load_state(self.state)
        return window

    def process(self, batch: list[Document], runs: dict) -> None:
        """Aggregate one annotated batch and append it to the partial files."""
        c = self.counters
        ann_lines: dict[str, list[str]] = {}
        for a in self.ids:
            rows = [runs[a].results[d.id].to_json() | {"text": d.text} for d in batch]
            for row in rows:
                c.add_result(a, row)
            ann_lines[a] = [json.dumps(row, ensure_ascii=False) for row in rows]
        rows, lost = self.aggregator.predict(batch, runs)
        c.spans += sum(len(r["spans"]) for r in rows)
        c.documents += len(batch)
        c.failed_documents += len(lost)
        c.flagged_documents += sum(1 for r in rows if "failed" in r)
        assert self.writer is not None
        self.writer.write_batch(ann_lines, [json.dumps(r, ensure_ascii=False) for r in rows],
                                [json.dumps(r, ensure_ascii=False) for r in lost])
        self.n_batches += 1

    async def drive(self, batches: Iterator[list[Document]]) -> None:
        """The rest of the corpus, ``prefetch`` batches annotated ahead of the one being written."""
        pending = self.pending
        for batch in batches:
            pending.append((batch, asyncio.create_task(self.annotate(batch))))
            if len(pending) > self.opts.prefetch:
                b, task = pending.popleft()
                self.process(b, await task)
        while pending:
            b, task = pending.popleft()
            self.process(b, await task)

    async def cancel_pending(self) -> None:
        for _, task in self.pending:
            task.cancel()
        if self.pending:
            await asyncio.gather(*(t for _, t in self.pending), return_exceptions=True)

    # ---- the end
    def finish(self, quiet: bool, ledger: Any) -> dict[str, Any]:
        """Move the partial files to their final paths and return the summary."""
        c, paths, agg = self.counters, self.paths, self.aggregator
        if c.documents == 0:
            raise InputError(self.where, None, "no documents found")
        if not agg.usable_:
            raise DizinerError("no annotator produced output in the weight window",
                               hint="check the endpoints in the pool file")
        for final, part in zip(paths.finals(), paths.partials()):
            os.replace(part, final)
        paths.state.unlink(missing_ok=True)
        if c.failed_documents and not quiet:
            import sys

            print(f"warning: {c.failed_documents} document(s) nobody answered are listed in {paths.failed}, "
                  f"not in {paths.out}", file=sys.stderr)
        usage = ledger.run_summary() if hasattr(ledger, "run_summary") else None
        return {
            "documents": c.documents,
            "annotators": self.ids,
            "weights": agg.weights_,
            "failed": dict(c.failed),
            "failure_reasons": {a: sorted(r)[:5] for a, r in c.reasons.items() if c.failed[a]},
            "failed_documents": c.failed_documents,
            "flagged_documents": c.flagged_documents,
            "spans": c.spans,
            "usage": usage,
            "usage_this_run": ledger.summary() if hasattr(ledger, "summary") else None,
            "faults": c.faults.result(usage["total"] if usage else None),
            "streaming": {
                "batch_size": self.opts.batch_size,
                "batches_this_run": self.n_batches,
                "resumed_documents": self.resumed,
                "weight_window_documents": self.state.get("window_documents", 0) if self.state else 0,
                "hotspot_threshold": agg.threshold_,
                "usable_annotators": agg.usable_,
            },
        }


def _merge_runs(parts: list) -> Any:
    """One AnnotatorRun over several batches' runs of the same annotator."""
    from diziner.annotate.runner import AnnotatorRun

    first = parts[0]
    merged = AnnotatorRun(first.annotator_id, first.prompt_style, first.prompt)
    for p in parts:
        merged.results.update(p.results)
    return merged


def annotate_stream(guideline: Guideline, documents: Iterable[Document], pool, out: str | Path,
                    **kwargs: Any) -> dict[str, Any]:
    """Blocking wrapper around :func:`annotate_stream_async`."""
    return asyncio.run(annotate_stream_async(guideline, documents, pool, out, **kwargs))


def annotate_file(guideline: Guideline, texts: str | Path, pool, out: str | Path, *, fmt: str | None = None,
                  text_field: str = "text",
                  count: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Stream the documents of ``texts`` (text, JSONL, CoNLL, GENIA) through :func:`annotate_stream`.

    ``count=True`` reads the file once beforehand to size the progress bar.
    """
    from diziner.corpus.readers import iter_documents

    total = count_documents(texts, fmt, text_field) if count else None
    docs = (d for d, _ in iter_documents(texts, fmt, text_field=text_field))
    return annotate_stream(guideline, docs, pool, out, total=total, source=texts, **kwargs)
