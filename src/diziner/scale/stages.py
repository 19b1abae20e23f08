"""What runs on the Ray workers: the preprocess and postprocess of each annotator's processor, the
HTTP session the HTTP stage sends through, and the per-batch aggregation.

A row of the pipeline is one document: ``seq`` (its position in the input), ``id``, ``text``,
and one column ``ann_<i>`` per annotator already done (the JSON of its
:class:`~diziner.annotate.runner.DocResult`).

Per annotator, the *preprocess* finds the document's first request exactly as the local
engine makes it: it runs :func:`~diziner.annotate.runner.annotate_document` (chunking, the
prompt builder, the pool's params) with a client that stops at the first call and keeps the
request. The processor's stage (HTTP request, or vLLM engine) answers it. The
*postprocess* runs :func:`annotate_document` again, now with a :class:`ReplayClient`: the
first request gets the stage's answer, so parsing and grounding are the local engine's
own code; a call the stage did not make (a re-ask, a document's later chunks) or a first
answer that is not a usable answer (an HTTP error, a timeout, a malformed body) is made
through diziner's own managed client for that annotator — its retries, backoff and failure
reasons are the local engine's, and a call that still fails is recorded as a failure, never
as an empty annotation.

Every call of a row, the stage's included, goes through a managed client of that row
(:class:`ReplayClient`): the pool's retry policy, the response cache when the run has one,
and a :class:`RowLedger` whose records (one per call, as in the local engine's ledger) leave
the postprocess as the column ``ledger_<i>`` (JSON lines) and travel with the row to the
driver, which writes them to the run's ledger. The preprocess asks the cache first: a
request it answers is not sent by the stage.
"""
from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from diziner.annotate.runner import DocResult, annotate_document
from diziner.corpus.model import Document
from diziner.errors import LLMCallError
from diziner.guideline import Guideline
from diziner.llm.base import LLMRequest, LLMResponse
from diziner.llm.ledger import Ledger
from diziner.llm.pool import AnnotatorConfig, VLLM_ENGINE
from diziner.llm.retry import TransientError, status_error

SKIP = "diziner_no_call"  # the payload of a document that needs no call (or whose answer is cached): not sent
ENGINE_ONE_CALL = ("the vllm-engine path makes one call per document; this document needs another "
                   "(a re-ask or a later chunk)")


@dataclass
class AnnotatorSpec:
    """Everything a worker needs to run one annotator (pickled into the stage functions)."""

    index: int
    cfg: AnnotatorConfig
    ids: list[str]  # every annotator of the pool, in order (the prompt may name them)
    guideline: Guideline
    reask: int = 1
    max_mentions: int = 32
    global_concurrency: int = 64
    api_key: str | None = field(default=None, repr=False)
    cache_path: str | None = None  # the response cache (SQLite) on each worker's machine; None: no cache
    cache_read: bool = True  # False (--no-cache): no lookups, fresh answers are still stored

    @property
    def column(self) -> str:
        return f"ann_{self.index}"

    @property
    def ledger_column(self) -> str:
        return f"ledger_{self.index}"

    @property
    def engine(self) -> bool:
        return self.cfg.backend == VLLM_ENGINE


# ----------------------------------------------------------------------------- per-process state

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()
_CLIENTS: dict[tuple, Any] = {}
_CACHES: dict[tuple[str, bool], Any] = {}


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop per worker process, in a daemon thread (the clients live on it)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="diziner-ray-loop", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _run(coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, _loop()).result()


def _cache(spec: AnnotatorSpec) -> Any:
    """This process's handle on the run's response cache (None without one); SQLite in WAL mode takes
    the worker processes of a machine as concurrent readers and writers."""
    if spec.cache_path is None:
        return None
    key = (spec.cache_path, spec.cache_read)
    cache = _CACHES.get(key)
    if cache is None:
        from diziner.llm.cache import LLMCache

        cache = _CACHES[key] = LLMCache(spec.cache_path, read=spec.cache_read)
    return cache


def managed_client(spec: AnnotatorSpec) -> Any:
    """The annotator's managed client in this worker: its adapter, limiter, retry policy and cache. Its
    ledger keeps nothing: a row's calls go through :class:`ReplayClient`, into that row's ledger."""
    key = (spec.cfg.id, spec.cfg.model_dump_json(), spec.cache_path, spec.cache_read)
    client = _CLIENTS.get(key)
    if client is None:
        from diziner.llm.factory import ManagedClient, make_adapter
        from diziner.llm.retry import Limiter

        if spec.engine:  # no endpoint: the adapter only shapes request bodies and reads answers
            from diziner.llm.openai_compat import OpenAICompatClient

            adapter = OpenAICompatClient(spec.cfg)
        else:
            adapter = make_adapter(spec.cfg, spec.api_key)
        client = ManagedClient(adapter, spec.cfg, cache=_cache(spec), ledger=Ledger(None, keep_records=False),
                               limiter=Limiter(spec.global_concurrency), name=spec.cfg.id)
        _CLIENTS[key] = client
    return client


def _document(row: dict[str, Any]) -> Document:
    return Document(str(row["id"]), str(row["text"]))


def _annotate(spec: AnnotatorSpec, doc: Document, client: Any) -> Any:
    return annotate_document(doc, spec.guideline, spec.cfg.id, client, spec.cfg.prompt_style, iteration=None,
                             reask=spec.reask, max_mentions=spec.max_mentions, other_annotators=spec.ids,
                             params=spec.cfg.params or None)


# ----------------------------------------------------------------------------- the first request

class _FirstCall(Exception):
    def __init__(self, request: LLMRequest):
        self.request = request


class _CaptureClient:
    """Stops the annotation at its first call, keeping the request."""

    async def complete(self, req: LLMRequest) -> LLMResponse:
        raise _FirstCall(req)


def first_request(spec: AnnotatorSpec, doc: Document) -> LLMRequest | None:
    """The first request the local engine would send for ``doc`` (None: the document needs no call)."""
    coro = _annotate(spec, doc, _CaptureClient())
    try:
        coro.send(None)
    except StopIteration:
        return None
    except _FirstCall as c:
        return c.request
    finally:
        coro.close()
    raise RuntimeError("annotate_document awaited something other than its client")  # pragma: no cover


def openai_body(spec: AnnotatorSpec, req: LLMRequest) -> tuple[str, dict[str, Any]]:
    """(api, JSON body) of a request as the annotator's client sends it (the pool's params included)."""
    from diziner.llm.openai_compat import OpenAICompatClient

    client = managed_client(spec)
    adapter = client.adapter if isinstance(client.adapter, OpenAICompatClient) else OpenAICompatClient(spec.cfg)
    return adapter.request_body(client.effective(req))


def cached(spec: AnnotatorSpec, req: LLMRequest) -> bool:
    """The response cache holds the answer to ``req`` (entries are never removed: the postprocess finds it too)."""
    from diziner.llm.cache import cache_key

    client = managed_client(spec)
    if client.cache is None or not client.cache.read:
        return False
    return client.cache.get(cache_key(client.adapter.identity(), client.effective(req))) is not None


class Prepare:
    """The preprocess of an annotator's HTTP processor: ``payload`` = the first request's body (not sent
    when the document needs no call or the cache has the answer)."""

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        # a JSON string, not a dict: Ray Data batches rows as Arrow tables, which give every dict in a
        # column the union of the keys (a real body would carry the no-call marker, a skipped one nulls)
        req = first_request(self.spec, _document(row))
        if req is None or cached(self.spec, req):
            return {"payload": SKIP}
        return {"payload": json.dumps(openai_body(self.spec, req)[1])}


class PrepareEngine:
    """The preprocess of a vLLM engine processor: ``messages`` or ``prompt``, and ``sampling_params``."""

    SAMPLING = ("temperature", "top_p", "top_k", "max_tokens", "seed", "stop", "presence_penalty",
                "frequency_penalty", "repetition_penalty")

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec
        self._no_call: dict[str, Any] | None = None  # the one-token row, built once per worker

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        req = first_request(self.spec, _document(row))
        if req is not None:
            return engine_request(self.spec, req)
        if self._no_call is None:
            self._no_call = engine_request(self.spec, None)
        return self._no_call


def engine_request(spec: AnnotatorSpec, req: LLMRequest | None) -> dict[str, Any]:
    """A vLLM engine row for ``req``: chat ``messages`` (or a completion ``prompt``), ``sampling_params``
    from the request's params, and the output JSON schema as structured output. A document that
    needs no call still gets a one-token row (the engine stage takes every row); its answer is ignored.

    Ray Data batches rows as Arrow tables, where a key one row lacks is None in it and dicts merge
    field by field: the one-token row has the keys of a real one (vLLM would get temperature=None),
    and the schema travels as a JSON string."""
    from diziner.llm.openai_compat import flatten_messages

    if req is None:
        like = engine_request(spec, first_request(spec, Document("", "x")))
        sampling = {k: v for k, v in like["sampling_params"].items() if k != "structured_outputs"}
        text = {"prompt": "."} if "prompt" in like else {"messages": [{"role": "user", "content": "."}]}
        return {**text, "sampling_params": {**sampling, "max_tokens": 1}, "no_call": True}
    params = {**spec.cfg.params, **req.params}
    sampling = {k: params[k] for k in PrepareEngine.SAMPLING if k in params}
    if req.json_schema is not None and spec.cfg.structured_output != "none":
        sampling["structured_outputs"] = {"json": json.dumps(req.json_schema)}
    out: dict[str, Any] = {"sampling_params": sampling, "no_call": False}
    if spec.cfg.endpoint == "completion":
        out["prompt"] = req.prompt if req.prompt is not None else flatten_messages(req.messages or [])
    else:
        out["messages"] = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt or ""}]
    return out


# ----------------------------------------------------------------------------- the answers

class RowLedger(Ledger):
    """The ledger of one document and one annotator on a worker: its records travel with the row.

    The stage's attempt at the first request belongs to the call it was for: its latency is
    added to that call's record, and an unusable answer (HTTP error, timeout, malformed body)
    counts among that call's retries, by kind, as a failed attempt of the local engine does.
    Every record names the document (``doc_id``).
    """

    def __init__(self, doc_id: str):
        super().__init__(None)
        self.doc_id = doc_id
        self._latency = 0.0
        self._retries: dict[str, int] = {}

    def stage_attempt(self, latency_s: float, failed: str | None = None) -> None:
        self._latency += latency_s
        if failed is not None:
            self._retries[failed] = self._retries.get(failed, 0) + 1

    def record(self, rec: Any = None, **fields: Any) -> Any:
        if rec is None:
            retries = dict(fields.get("retries") or {})
            for kind, n in self._retries.items():
                retries[kind] = retries.get(kind, 0) + n
            fields.update(doc_id=self.doc_id, retries=retries,
                          latency_s=float(fields.get("latency_s") or 0.0) + self._latency)
            self._latency, self._retries = 0.0, {}
        return super().record(rec, **fields)

    def jsonl(self) -> str:
        """The records as the lines of a ledger file."""
        return "".join(json.dumps(r.model_dump(), ensure_ascii=False) + "\n" for r in self.records)


@dataclass
class StageAnswer:
    """What the processor's stage made of a document's first request."""

    body: dict[str, Any] | None  # the request body the stage sent; None: it sent none (no call needed, or cached)
    data: Any = None  # the parsed response body
    failure: tuple[str, str] | None = None  # (reason, kind) when the answer is unusable
    latency_s: float = 0.0


def http_stage_answer(row: dict[str, Any]) -> StageAnswer:
    """The HTTP stage's answer of a row (see :class:`_Answer`)."""
    sent = row.get("payload")
    if not isinstance(sent, str) or sent == SKIP:
        return StageAnswer(None)
    payload = json.loads(sent)
    resp = _plain(row.get("http_response") or {})
    latency = float(resp.get("latency_s") or 0.0)
    status, error = int(resp.get("status") or 0), str(resp.get("error") or "")
    if status != 200 or error:
        kind = getattr(status_error(status, ""), "kind", "error") if status else (
            "timeout" if "timeout" in error.lower() else "connection")
        return StageAnswer(payload, failure=(error or f"HTTP {status}", kind), latency_s=latency)
    try:
        return StageAnswer(payload, data=json.loads(resp.get("body") or ""), latency_s=latency)
    except ValueError:
        return StageAnswer(payload, failure=("malformed response: not JSON", "bad_response"), latency_s=latency)


class ReplayAdapter:
    """A row's adapter: the stage's answer to the first request, the annotator's adapter (``live``) for any
    other call. An unusable stage answer is asked again through ``live`` within the same attempt (the
    stage's attempt is not one of the pool's ``max_retries``); the vLLM engine path has no ``live``."""

    def __init__(self, spec: AnnotatorSpec, stage: StageAnswer, live: Any, ledger: RowLedger):
        self.spec, self.stage, self.live, self.ledger = spec, stage, live, ledger
        self.shape = managed_client(spec).adapter  # an OpenAICompatClient: request bodies, answers
        self.pending = stage.body is not None

    def identity(self) -> dict[str, Any]:
        return self.shape.identity()

    def endpoint_key(self) -> str:
        return self.shape.endpoint_key()

    def answers(self, req: LLMRequest) -> bool:
        """``req`` is the request the stage answered (and it was not replayed yet)."""
        return self.pending and openai_body(self.spec, req)[1] == self.stage.body

    async def complete(self, req: LLMRequest) -> LLMResponse:
        if self.answers(req):
            self.pending = False
            try:
                resp = self._replay(req)
            except (LLMCallError, TransientError) as e:
                self.ledger.stage_attempt(self.stage.latency_s, e.kind)
            else:
                self.ledger.stage_attempt(self.stage.latency_s)
                return resp
        if self.live is None:
            raise LLMCallError(ENGINE_ONE_CALL, "unsupported")
        return await self.live.complete(req)

    def _replay(self, req: LLMRequest) -> LLMResponse:
        if self.stage.failure is not None:
            raise TransientError(*self.stage.failure)
        return self.shape.answer(self.spec.cfg.endpoint or "chat", self.stage.data, req, self.stage.latency_s)


class _AfterStage:
    """A row's view of the response cache: not read for the request the stage answered (that call was
    made, and is recorded as made); every fresh answer is stored."""

    def __init__(self, cache: Any, replay: ReplayAdapter):
        self.cache, self.replay = cache, replay

    @property
    def read(self) -> bool:
        return bool(self.cache.read)

    def get(self, key: str) -> LLMResponse | None:
        return None if self.replay.pending else self.cache.get(key)

    def put(self, key: str, resp: LLMResponse) -> None:
        self.cache.put(key, resp)


class ReplayClient:
    """The client of a postprocess: a managed client of this row (the pool's retries, the cache, the row's
    ledger) over a :class:`ReplayAdapter`. On the vLLM engine path (``live=False``) a call the engine did
    not answer is refused before the managed client: it is never made, so it is not in the ledger."""

    def __init__(self, spec: AnnotatorSpec, stage: StageAnswer, ledger: RowLedger, *, live: bool = True):
        from diziner.llm.factory import ManagedClient

        base = managed_client(spec)
        self.replay = ReplayAdapter(spec, stage, base.adapter if live else None, ledger)
        cache = _AfterStage(base.cache, self.replay) if base.cache is not None else None
        self.managed = ManagedClient(self.replay, spec.cfg, cache=cache, ledger=ledger, limiter=base.limiter,
                                     name=spec.cfg.id, policy=base.policy)

    async def complete(self, req: LLMRequest) -> LLMResponse:
        if self.replay.live is None and not self.replay.answers(req):
            raise LLMCallError(ENGINE_ONE_CALL, "unsupported")
        return await self.managed.complete(req)


def _plain(x: Any) -> Any:
    """Arrow hands nested lists back as numpy arrays: plain Python values again."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _plain(x.tolist())
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _carry(spec: AnnotatorSpec, row: dict[str, Any], result: DocResult, ledger: RowLedger) -> dict[str, Any]:
    """The row for the next stage: the document, every earlier annotator's result and ledger, and this one's."""
    from diziner.faultpoints import maybe_kill

    maybe_kill("ray_postprocess")
    mine = (spec.column, spec.ledger_column)
    out = {k: row[k] for k in row
           if k in ("seq", "id", "text") or (k.startswith(("ann_", "ledger_")) and k not in mine)}
    out[spec.column] = json.dumps(result.to_json(), ensure_ascii=False)
    out[spec.ledger_column] = ledger.jsonl()
    return out


class Finish:
    """The postprocess of an annotator's HTTP processor: parse and ground through :class:`ReplayClient`."""

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        doc = _document(row)
        ledger = RowLedger(doc.id)
        client = ReplayClient(self.spec, http_stage_answer(row), ledger)
        return _carry(self.spec, row, _run(_annotate(self.spec, doc, client)), ledger)


class FinishEngine:
    """The postprocess of a vLLM engine processor: ``generated_text`` answers the first request."""

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        doc = _document(row)
        req = first_request(self.spec, doc)
        stage = StageAnswer(None)
        if req is not None:
            text = row.get("generated_text")
            data = {"choices": [{"message": {"content": text}, "text": text, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": len(_plain(row.get("prompt_token_ids") or [])),
                              "completion_tokens": len(_plain(row.get("generated_tokens") or []))}}
            stage = StageAnswer(openai_body(self.spec, req)[1], data=data)
        ledger = RowLedger(doc.id)
        client = ReplayClient(self.spec, stage, ledger, live=False)
        return _carry(self.spec, row, _run(_annotate(self.spec, doc, client)), ledger)


# ----------------------------------------------------------------------------- the HTTP session

class _Answer:
    """What the HTTP stage reads from a response: always status 200 and a JSON object
    ``{"status", "body", "error", "latency_s"}`` (the endpoint's own status inside), so that an
    endpoint's error becomes a row for the postprocess, never an exception that fails the Ray task."""

    status = 200
    reason = "OK"

    def __init__(self, status: int, body: str, error: str = "", latency_s: float = 0.0):
        self._json = {"status": status, "body": body, "error": error, "latency_s": latency_s}

    async def json(self) -> dict[str, Any]:
        return self._json

    async def __aenter__(self) -> "_Answer":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None


class Session:
    """The ``session_factory`` of the HTTP request stage.

    ``post`` starts the request at once (up to ``max_concurrency`` in flight per batch; the
    stock session sends a batch's requests one after the other) and never raises: a timeout,
    a refused connection or an HTTP error is answered as an :class:`_Answer` carrying it.
    """

    def __init__(self, timeout_s: float = 60.0, max_concurrency: int = 8):
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self._session: Any = None
        self._sem: asyncio.Semaphore | None = None

    async def __aenter__(self) -> "Session":
        import aiohttp

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=self.max_concurrency))
        self._sem = asyncio.Semaphore(self.max_concurrency)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._session.close()

    def post(self, url: str, headers: dict[str, Any] | None = None, data: Any = None) -> "asyncio.Task[_Answer]":
        return asyncio.ensure_future(self._post(url, headers or {}, data))

    async def _post(self, url: str, headers: dict[str, Any], data: Any) -> _Answer:
        # the stage JSON-encodes the payload, here a string: the body Prepare encoded, or the no-call marker
        data = json.loads(data)
        if data == SKIP:
            return _Answer(200, "", error="no call")
        assert self._sem is not None
        async with self._sem:
            t0 = time.perf_counter()
            try:
                async with self._session.post(url, headers=headers, data=data) as resp:
                    text = await resp.text()
                    return _Answer(resp.status, text, "" if resp.status == 200 else f"HTTP {resp.status}",
                                   time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - every failure becomes a row the postprocess retries
                return _Answer(0, "", type(e).__name__ or "error", time.perf_counter() - t0)


def session_factory(cfg: AnnotatorConfig) -> Any:
    """A picklable factory of :class:`Session` with the annotator's timeout and concurrency."""
    return functools.partial(Session, cfg.timeout_s, cfg.max_concurrency)


# ----------------------------------------------------------------------------- aggregation

class Aggregate:
    """``map_batches`` function: rows with every annotator's result -> the lines to write."""

    def __init__(self, aggregator: Any, ids: list[str]):
        self.aggregator = aggregator
        self.ids = ids

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return aggregate_rows(self.aggregator, self.ids, batch)


def aggregate_rows(aggregator: Any, ids: list[str], batch: dict[str, Any]) -> dict[str, list[Any]]:
    """Columns ``seq``, ``id``, ``cons`` (the consensus line, or ""), ``lost`` (the failed line, or ""),
    ``line_<i>`` (annotator i's line), ``ok_<i>`` (it answered), ``reason_<i>`` (why not) and
    ``ledger_<i>`` (its calls' ledger records, JSON lines, passed through)."""
    from diziner.annotate.runner import AnnotatorRun

    seqs = [int(s) for s in _plain(batch["seq"])]
    docs = [Document(str(i), str(t)) for i, t in zip(_plain(batch["id"]), _plain(batch["text"]))]
    runs = {}
    for i, a in enumerate(ids):
        run = AnnotatorRun(a)
        for d, raw in zip(docs, _plain(batch[f"ann_{i}"])):
            run.results[d.id] = DocResult.from_json(raw)
        runs[a] = run
    rows, lost = aggregator.predict(docs, runs)
    cons = {r["id"]: json.dumps(r, ensure_ascii=False) for r in rows}
    gone = {r["id"]: json.dumps(r, ensure_ascii=False) for r in lost}
    out: dict[str, list[Any]] = {"seq": seqs, "id": [d.id for d in docs],
                                 "cons": [cons.get(d.id, "") for d in docs], "lost": [gone.get(d.id, "") for d in docs]}
    for i, a in enumerate(ids):
        res = [runs[a].results[d.id] for d in docs]
        out[f"line_{i}"] = [json.dumps(r.to_json() | {"text": d.text}, ensure_ascii=False) for r, d in zip(res, docs)]
        out[f"ok_{i}"] = [r.ok for r in res]
        out[f"reason_{i}"] = ["" if r.ok else (r.reason or "") for r in res]
        out[f"ledger_{i}"] = [str(x) for x in _plain(batch[f"ledger_{i}"])]
    return out
