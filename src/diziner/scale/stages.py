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
from diziner.llm.pool import AnnotatorConfig, VLLM_ENGINE
from diziner.llm.retry import TransientError

SKIP = "diziner_no_call"  # the payload of a document that needs no call (empty text): answered by the session


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

    @property
    def column(self) -> str:
        return f"ann_{self.index}"

    @property
    def engine(self) -> bool:
        return self.cfg.backend == VLLM_ENGINE


# ----------------------------------------------------------------------------- per-process state

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()
_CLIENTS: dict[tuple, Any] = {}


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


def managed_client(spec: AnnotatorSpec) -> Any:
    """The annotator's managed client in this worker (no cache; a ledger of running totals only)."""
    key = (spec.cfg.id, spec.cfg.model_dump_json())
    client = _CLIENTS.get(key)
    if client is None:
        from diziner.llm.factory import ManagedClient, make_adapter
        from diziner.llm.ledger import Ledger
        from diziner.llm.retry import Limiter

        if spec.engine:  # no endpoint: the adapter only shapes request bodies and reads answers
            from diziner.llm.openai_compat import OpenAICompatClient

            adapter = OpenAICompatClient(spec.cfg)
        else:
            adapter = make_adapter(spec.cfg, spec.api_key)
        client = ManagedClient(adapter, spec.cfg, cache=None, ledger=Ledger(None, keep_records=False),
                               limiter=Limiter(spec.global_concurrency), name=spec.cfg.id)
        _CLIENTS[key] = client
    return client


def _document(row: dict[str, Any]) -> Document:
    return Document(str(row["id"]), str(row["text"]))


def _annotate(spec: AnnotatorSpec, doc: Document, client: Any) -> Any:
    return annotate_document(doc, spec.guideline, spec.cfg.id, client, spec.cfg.prompt_style, iteration=None,
                             reask=spec.reask, max_mentions=spec.max_mentions, other_annotators=spec.ids)


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


class Prepare:
    """The preprocess of an annotator's HTTP processor: ``payload`` = the first request's body."""

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        req = first_request(self.spec, _document(row))
        if req is None:
            return {"payload": {SKIP: True}}
        return {"payload": openai_body(self.spec, req)[1]}


class PrepareEngine:
    """The preprocess of a vLLM engine processor: ``messages`` or ``prompt``, and ``sampling_params``."""

    SAMPLING = ("temperature", "top_p", "top_k", "max_tokens", "seed", "stop", "presence_penalty",
                "frequency_penalty", "repetition_penalty")

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return engine_request(self.spec, first_request(self.spec, _document(row)))


def engine_request(spec: AnnotatorSpec, req: LLMRequest | None) -> dict[str, Any]:
    """A vLLM engine row for ``req``: chat ``messages`` (or a completion ``prompt``), ``sampling_params``
    from the request's params, and the output JSON schema as structured output. A document that
    needs no call still gets a one-token row (the engine stage takes every row); its answer is ignored."""
    from diziner.llm.openai_compat import flatten_messages

    if req is None:
        return {"messages": [{"role": "user", "content": "."}], "sampling_params": {"max_tokens": 1},
                "no_call": True}
    params = {**spec.cfg.params, **req.params}
    sampling = {k: params[k] for k in PrepareEngine.SAMPLING if k in params}
    if req.json_schema is not None and spec.cfg.structured_output != "none":
        sampling["structured_outputs"] = {"json": req.json_schema}
    out: dict[str, Any] = {"sampling_params": sampling, "no_call": False}
    if spec.cfg.endpoint == "completion":
        out["prompt"] = req.prompt if req.prompt is not None else flatten_messages(req.messages or [])
    else:
        out["messages"] = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt or ""}]
    return out


# ----------------------------------------------------------------------------- the answers

class ReplayClient:
    """Answers the first request from the stage's answer; every other call goes to ``live``."""

    def __init__(self, spec: AnnotatorSpec, api: str, body: dict[str, Any] | None, data: Any, latency_s: float,
                 live: Any):
        self.spec, self.api, self.body, self.data, self.latency_s = spec, api, body, data, latency_s
        self.live = live

    async def complete(self, req: LLMRequest) -> LLMResponse:
        if self.body is not None and self.data is not None:
            body, self.body = self.body, None  # the stage answered the first request only
            if openai_body(self.spec, req)[1] == body:
                try:
                    return self._answer(req)
                except (LLMCallError, TransientError):
                    pass  # not a usable answer: asked again through the managed client below
        if self.live is None:
            raise LLMCallError("the vllm-engine path makes one call per document; this document needs another "
                               "(a re-ask or a later chunk)", "unsupported")
        return await self.live.complete(req)

    def _answer(self, req: LLMRequest) -> LLMResponse:
        from diziner.llm.openai_compat import OpenAICompatClient

        client = managed_client(self.spec)
        adapter = client.adapter if isinstance(client.adapter, OpenAICompatClient) else OpenAICompatClient(self.spec.cfg)
        return adapter.answer(self.api, self.data, client.effective(req), self.latency_s)


def _plain(x: Any) -> Any:
    """Arrow hands nested lists back as numpy arrays: plain Python values again."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _plain(x.tolist())
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _carry(spec: AnnotatorSpec, row: dict[str, Any], result: DocResult) -> dict[str, Any]:
    from diziner.faultpoints import maybe_kill

    maybe_kill("ray_postprocess")
    out = {k: row[k] for k in row if k in ("seq", "id", "text") or (k.startswith("ann_") and k != spec.column)}
    out[spec.column] = json.dumps(result.to_json(), ensure_ascii=False)
    return out


class Finish:
    """The postprocess of an annotator's HTTP processor: parse and ground through :class:`ReplayClient`."""

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        doc = _document(row)
        resp = _plain(row.get("http_response") or {})
        data = None
        if resp.get("status") == 200 and not resp.get("error"):
            try:
                data = json.loads(resp.get("body") or "")
            except ValueError:
                data = None
        payload = _plain(row.get("payload"))
        body = None if not isinstance(payload, dict) or payload.get(SKIP) else payload
        client = ReplayClient(self.spec, self.spec.cfg.endpoint or "chat", body, data,
                              float(resp.get("latency_s") or 0.0), managed_client(self.spec))
        return _carry(self.spec, row, _run(_annotate(self.spec, doc, client)))


class FinishEngine:
    """The postprocess of a vLLM engine processor: ``generated_text`` answers the first request."""

    def __init__(self, spec: AnnotatorSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        doc = _document(row)
        text = row.get("generated_text")
        req = first_request(self.spec, doc)
        data = {"choices": [{"message": {"content": text}, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(_plain(row.get("prompt_token_ids") or [])),
                          "completion_tokens": len(_plain(row.get("generated_tokens") or []))}}
        body = openai_body(self.spec, req)[1] if req is not None else None
        client = ReplayClient(self.spec, self.spec.cfg.endpoint or "chat", body, data, 0.0, None)
        return _carry(self.spec, row, _run(_annotate(self.spec, doc, client)))


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
        if isinstance(data, str) and SKIP in data[:40] and json.loads(data).get(SKIP):
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
    ``line_<i>`` (annotator i's line), ``ok_<i>`` (it answered) and ``reason_<i>`` (why not)."""
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
    return out
