"""The in-memory API: annotate texts with a (refined) guideline, get spans with support.

    from diziner.api import Annotator

    with Annotator("runs/news/final/guideline.yaml", "examples/pool-local.yaml") as ann:
        ann.fit(sample_texts)               # optional: fix annotator weights on a sample
        for spans in ann.predict(["Ada Lovelace met Grace Hopper in London."]):
            for s in spans:
                print(s["text"], s["label"], s["support"]["weight"])

It is the annotation engine of ``diziner annotate`` without files: every annotator of the
pool annotates each text (prompt, structured output, parsing, grounding, the response
cache), an :class:`~diziner.aggregator.Aggregator` (the engine's) gives the annotator
weights and hotspots, and the pool's aggregation (or ``aggregation=``) chooses the
delivered spans, each with ``support = {annotators, weight, token_support}`` and ``hotspot``.
``also=[guideline, ...]`` adds guidelines: every annotator then annotates under each (runs
``<annotator>@it<t>``) and the spans are aggregated over all the runs, as ``refine`` delivers
with its selected and iteration-0 guideline (``Annotator(run/"final/guideline.yaml", pool,
also=[run/"iterations/0/guideline.yaml"])``).

Weights and the hotspot threshold come from :meth:`Annotator.fit` when it was called (a
fit/predict shape: fit on a sample, predict batch after batch with the same weights and
threshold), else from each ``predict`` batch itself (as ``diziner annotate`` does for its
weight window). A text no annotator could
answer gets ``None`` instead of a list (never an empty list: that would read as "no
entities"). The clients live on one event loop in a background thread, so ``predict``
works from plain scripts and from notebooks whose own loop is running.
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Iterable

from diziner.corpus.model import Document
from diziner.errors import DizinerError
from diziner.options import DEFAULTS


def _guideline(g: Any) -> Any:
    from diziner.guideline import Guideline, load_guideline
    from diziner.schema import Schema, load_schema

    if isinstance(g, Guideline):
        return g
    if isinstance(g, Schema):
        return Guideline.initial(g)
    path = Path(g)
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DizinerError(f"{path}: cannot read: {e.strerror}") from None
    if isinstance(data, dict) and "labels" in data and "schema" not in data:
        return Guideline.initial(load_schema(path))  # a schema: its iteration-0 guideline
    return load_guideline(path)


def _pool(p: Any) -> Any:
    from diziner.llm.pool import Pool, load_pool

    return p if isinstance(p, Pool) else load_pool(p)


def _answered(runs: dict[str, Any]) -> list[str]:
    """The annotators that answered at least one document (the aggregator warns about the others)."""
    return [a for a, run in runs.items() if any(r.ok for r in run.results.values())]


class Annotator:
    """Annotate texts in memory with every annotator of a pool; see the module docstring."""

    def __init__(self, guideline: Any, pool: Any, *, aggregation: str | None = None,
                 cache_path: str | Path | None = None, weights: str = DEFAULTS.analysis.weights,
                 percentile: float = DEFAULTS.analysis.percentile, also: Iterable[Any] = ()):
        from diziner.aggregation import Aggregation
        from diziner.annotate.runner import guideline_runs

        self.guideline = _guideline(guideline)
        self.pool = _pool(pool)
        also = [_guideline(g) for g in also]
        # with further guidelines every annotator runs under each (refine's delivery; docs/analysis.md)
        self.runs = guideline_runs(self.pool.ids, [self.guideline, *also]) if also else None
        self.aggregation = Aggregation.parse(Aggregation.pick(aggregation, None, self.pool.aggregation))
        self.weights_mode = weights
        self.percentile = percentile
        self.weights_: dict[str, float] | None = None  # set by fit()
        self.aggregator_: Any = None  # the Aggregator fitted by fit()
        self._cache_path = cache_path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="diziner-annotator", daemon=True)
        self._thread.start()
        self._clients: dict[str, Any] | None = None
        self._sup = None
        self.ledger = None
        self._closed = False

    # ------------------------------------------------------------------ plumbing
    def _run(self, coro: Any) -> Any:
        if self._closed:
            coro.close()
            raise DizinerError("this Annotator is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _ensure_clients(self) -> dict[str, Any]:
        if self._clients is None:
            from diziner.llm.factory import PoolClients

            self.pool.check_env()
            self._pc = PoolClients.build(self.pool, cache_path=self._cache_path)
            self._clients, self._sup, self.ledger = self._pc
        return self._clients

    async def _annotate(self, docs: list[Document]) -> dict[str, Any]:
        """Every annotator's run on ``docs``."""
        from diziner.annotate.runner import annotate_documents

        clients = await self._ensure_clients()
        return await annotate_documents(docs, self.guideline, {a.id: (clients[a.id], a.prompt_style)
                                                               for a in self.pool.annotators}, runs=self.runs,
                                        params=self.pool.annotation_params())

    def _aggregator(self) -> Any:
        from diziner.aggregator import Aggregator

        return Aggregator(list(self.guideline.schema_.label_names), aggregation=self.aggregation,
                          weights=self.weights_mode, percentile=self.percentile)

    @staticmethod
    def _docs(texts: Iterable[Any]) -> list[Document]:
        docs = []
        for i, t in enumerate(texts):
            if isinstance(t, Document):
                docs.append(t)
            elif isinstance(t, str):
                docs.append(Document(f"text-{i}", t))
            else:
                raise DizinerError(f"text {i}: expected a string or a Document, got {type(t).__name__}")
        if len({d.id for d in docs}) != len(docs):
            raise DizinerError("document ids are not unique")
        return docs

    # ------------------------------------------------------------------ API
    def fit(self, texts: Iterable[Any]) -> "Annotator":
        """Fix the annotator weights and the hotspot threshold from the pool's agreement on
        ``texts`` (no gold): an :class:`~diziner.aggregator.Aggregator` fitted on them."""
        docs = self._docs(texts)
        runs = self._run(self._annotate(docs))
        answered = _answered(runs)
        if len(answered) < 2:
            raise DizinerError(f"fit needs at least two annotators that answered; {len(answered)} did")
        self.aggregator_ = self._aggregator().fit(docs, runs, where="the fit sample")
        self.weights_ = dict(self.aggregator_.weights_)
        return self

    def predict(self, texts: Iterable[Any]) -> list[list[dict[str, Any]] | None]:
        """Spans (with support and hotspot flag) per text, in order; None for a text nobody answered.
        Aggregated with the fitted aggregator, else with one fitted on this batch (as the
        annotation engine does for its weight window)."""
        docs = self._docs(texts)
        if not docs:
            return []
        runs = self._run(self._annotate(docs))
        if not _answered(runs):
            return [None] * len(docs)
        agg = self.aggregator_ if self.aggregator_ is not None else self._aggregator().fit(docs, runs, where="this batch")
        rows, _ = agg.predict(docs, runs)
        spans = {r["id"]: r["spans"] for r in rows}
        return [spans.get(d.id) for d in docs]

    def close(self) -> None:
        if self._closed:
            return
        if self._clients is not None:
            asyncio.run_coroutine_threadsafe(self._pc.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._closed = True

    def __enter__(self) -> "Annotator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if not self._closed and self._clients is None:
                self._loop.call_soon_threadsafe(self._loop.stop)
        except Exception:
            pass
