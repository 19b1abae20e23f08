"""Adapter for OpenAI-compatible servers (vLLM, Ollama, llama.cpp server, LM Studio,
OpenRouter, OpenAI) through the official ``openai`` AsyncOpenAI SDK.

One attempt per :meth:`complete`; the SDK's own retries are off (``max_retries=0``)
because :mod:`diziner.llm.retry` does them. Structured output per ``structured_output``:

=====================  =================================================================
json_schema            ``response_format={"type":"json_schema","json_schema":{name, schema, strict: false}}``
json_object_schema     ``response_format={"type":"json_object","schema": schema}`` (llama-cpp-python server)
grammar                ``"guided_json": schema`` in the body (vLLM)
ollama_format          ``"format": schema`` in the body (Ollama)
none                   nothing: the prompt carries the format, the caller parses leniently
=====================  =================================================================

The ``endpoint`` decides the API: ``chat`` (``/chat/completions``; a plain ``prompt``
becomes one user message) or ``completion`` (``/completions``; ``messages`` are flattened
into a transcript). Every field, the request's params included, travels in one JSON body.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import re
import time
from typing import Any

from diziner.errors import LLMCallError
from diziner.llm.base import LLMRequest, LLMResponse
from diziner.llm.pool import BackendConfig
from diziner.llm.retry import TransientError, status_error

# Shared SDK clients: (loop id, base_url, key, timeout) -> (loop, AsyncOpenAI). The key stays in memory only.
_SHARED: dict[tuple, tuple[asyncio.AbstractEventLoop, Any]] = {}
_ENDPOINT_CONNS: dict[str | None, int] = {}


def _refused(e: BaseException) -> bool:
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 6:
        if isinstance(cur, ConnectionRefusedError) or type(cur).__name__ == "ClientConnectorError":
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


_SSL_CONTEXT: Any = None


def _httpx() -> Any:
    """The HTTP library the installed SDK is built on (``httpx2`` in openai 3, ``httpx`` before)."""
    try:
        return importlib.import_module("httpx2")
    except ImportError:
        return importlib.import_module("httpx")


def _import_sdk() -> None:
    """Import the SDK and what its first request would import, and build the TLS context.

    Done when an adapter is built (setup), so the first call of a run does not pay ~1 s of
    imports and certificate loading while other calls wait behind it on the event loop.
    """
    global _SSL_CONTEXT
    import openai

    try:  # the aiohttp transport (see _client), its vendored glue, and the HTTP core it imports lazily
        import aiohttp  # noqa: F401

        getattr(openai, "DefaultAioHttpClient", None)
    except ImportError:
        pass
    for mod in ("httpcore2", "httpcore"):
        try:
            importlib.import_module(mod)
            break
        except ImportError:
            continue
    hx = _httpx()
    if _SSL_CONTEXT is None:
        try:  # what the SDK's transport would build per client: default CAs, SSL_CERT_FILE honoured
            _SSL_CONTEXT = hx.create_ssl_context(verify=True, trust_env=True)
        except Exception:  # an unusual httpx: let each client build its own
            _SSL_CONTEXT = None


def _count(v: Any) -> int:
    try:
        return max(0, int(v or 0))
    except (TypeError, ValueError):
        return 0


def schema_name(schema: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))[:64]
    return name or "output"


def structured_fields(mode: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The request-body fields that ask for ``schema`` in the given mode."""
    if schema is None or mode == "none":
        return {}
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": schema_name(schema), "schema": schema, "strict": False}}}
    if mode == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "grammar":
        return {"guided_json": schema}
    if mode == "ollama_format":
        return {"format": schema}
    raise ValueError(f"unknown structured_output mode {mode!r}")


def flatten_messages(messages: list[dict[str, str]]) -> str:
    """A plain transcript for a completion endpoint."""
    parts = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


class OpenAICompatClient:
    """One endpoint + model. ``complete`` makes exactly one HTTP attempt."""

    backend = "openai"

    def __init__(self, cfg: BackendConfig, api_key: str | None = None):
        self.cfg = cfg
        self.model = cfg.model
        self.endpoint = cfg.endpoint or "chat"
        self._api_key = api_key  # never logged, cached or put in an error message
        self._loop_client: tuple[asyncio.AbstractEventLoop, Any] | None = None
        _ENDPOINT_CONNS[cfg.base_url] = max(_ENDPOINT_CONNS.get(cfg.base_url, 0), cfg.max_concurrency)
        _import_sdk()  # heavy: imported when a pool uses this backend, so not on the first call

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "endpoint": self.endpoint,
                "structured_output": self.cfg.structured_output}

    def endpoint_key(self) -> str:
        return self.cfg.base_url or f"{self.backend}:{self.model}"

    def _client(self) -> Any:
        """One AsyncOpenAI per (event loop, base URL, key), shared by the adapters of that endpoint.

        An httpx pool cannot cross event loops; sharing one pool per endpoint keeps the
        number of idle connections (which httpcore scans on every request) small.
        """
        loop = asyncio.get_running_loop()
        if self._loop_client is not None and self._loop_client[0] is loop:
            return self._loop_client[1]
        import openai

        httpx = _httpx()
        key = (id(loop), self.cfg.base_url, self._api_key, self.cfg.timeout_s)
        entry = _SHARED.get(key)
        if entry is None or entry[0] is not loop:
            n = max(_ENDPOINT_CONNS.get(self.cfg.base_url, self.cfg.max_concurrency), 1) + 8
            limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
            timeout = httpx.Timeout(self.cfg.timeout_s, connect=min(10.0, self.cfg.timeout_s))
            tls = {"verify": _SSL_CONTEXT} if _SSL_CONTEXT is not None else {}
            try:  # aiohttp transport: httpcore's pool scans every connection on each request
                import aiohttp  # noqa: F401

                http = openai.DefaultAioHttpClient(limits=limits, timeout=timeout, **tls)
            except (ImportError, RuntimeError, AttributeError):
                http = httpx.AsyncClient(limits=limits, timeout=timeout, **tls)
            client = openai.AsyncOpenAI(api_key=self._api_key or "not-needed", base_url=self.cfg.base_url,
                                        max_retries=0, timeout=self.cfg.timeout_s, http_client=http)
            for k in [k for k, v in _SHARED.items() if v[0].is_closed()]:
                del _SHARED[k]
            entry = (loop, client)
            _SHARED[key] = entry
        self._loop_client = entry
        return entry[1]

    def _redact(self, text: str) -> str:
        text = " ".join(str(text).split())
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text[:300]

    def request_body(self, req: LLMRequest) -> tuple[str, dict[str, Any]]:
        """(api, JSON body): model, the messages (chat) or prompt (completion), the structured-output
        fields, then the request's params, which are sent as given and win on a clash."""
        body: dict[str, Any] = {"model": self.model}
        if self.endpoint == "chat":
            body["messages"] = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt or ""}]
        else:
            body["prompt"] = req.prompt if req.prompt is not None else flatten_messages(req.messages or [])
        body.update(structured_fields(self.cfg.structured_output, req.json_schema))
        body.update(req.params)
        return self.endpoint, body

    async def complete(self, req: LLMRequest) -> LLMResponse:
        api, body = self.request_body(req)
        client = self._client()
        t0 = time.perf_counter()
        data = await self._post(client, api, body)
        return self.answer(api, data, req, time.perf_counter() - t0)

    @property
    def _where(self) -> str:
        return self.cfg.base_url or "the OpenAI API"

    async def _post(self, client: Any, api: str, body: dict[str, Any]) -> Any:
        """The call; the SDK's errors as this project's (transient ones are retried)."""
        import openai

        where = self._where
        # client.post (the SDK's generic call) with the body already serialised and the answer
        # left as parsed JSON (cast_to=object): the same request, errors and retries semantics
        # as chat.completions.create, without the SDK's per-call type-directed transform of the
        # body and its construction of response models (most of its CPU time per call).
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            return await client.post("/chat/completions" if api == "chat" else "/completions", content=raw,
                                     cast_to=object)
        except openai.APITimeoutError as e:
            if _refused(e):  # the aiohttp transport reports a refused connection as a connect timeout
                raise TransientError(f"cannot connect to {where}: connection refused", "connection") from None
            raise TransientError(f"timeout after {self.cfg.timeout_s:g} s from {where}", "timeout") from None
        except openai.APIConnectionError as e:
            raise TransientError(f"cannot connect to {where}: {self._redact(type(e.__cause__ or e).__name__)}",
                                 "connection") from None
        except openai.APIStatusError as e:
            code = e.status_code
            msg = self._redact(getattr(e, "message", "") or "")
            reason = f"HTTP {code} from {where}: {msg}"
            retry_after = e.response.headers.get("retry-after") if e.response is not None else None
            raise status_error(code, reason, retry_after) from None
        except (openai.APIResponseValidationError, ValueError) as e:
            raise TransientError(f"malformed response from {where}: {self._redact(type(e).__name__)}",
                                 "bad_response") from None

    def answer(self, api: str, data: Any, req: LLMRequest, latency: float) -> LLMResponse:
        """The :class:`LLMResponse` of a parsed response body; raises as :meth:`complete` does for a
        body without an answer (also used for answers fetched elsewhere, e.g. by a Ray Data stage)."""
        text, finish = self._answer(data, api, req)
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return LLMResponse(text=text, tokens_in=_count(usage.get("prompt_tokens")),
                           tokens_out=_count(usage.get("completion_tokens")), latency_s=latency,
                           model=self.model, backend=self.backend, finish_reason=finish)

    def _answer(self, data: Any, api: str, req: LLMRequest) -> tuple[str, Any]:
        """(text, finish_reason) of the first choice, checked (JSON when structured output was asked)."""
        where = self._where
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") if api == "chat" else choice.get("text")
            finish = choice.get("finish_reason")
        except (AttributeError, IndexError, KeyError, TypeError):
            raise TransientError(f"malformed response from {where}: no choices", "bad_response") from None
        if text is None:
            raise LLMCallError(f"empty answer from {where} (finish_reason={finish})", "empty")
        if not isinstance(text, str):
            raise TransientError(f"malformed response from {where}: content is not text", "bad_response")
        if req.json_schema is not None and self.cfg.structured_output != "none":
            try:
                json.loads(text)
            except ValueError:
                raise TransientError(
                    f"answer from {where} is not valid JSON although structured output was requested "
                    f"(finish_reason={finish}, {len(text)} chars)", "parse") from None
        return text, finish

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for k, (lp, client) in list(_SHARED.items()):
            if lp is loop and k[1] == self.cfg.base_url:
                del _SHARED[k]
                await client.close()
        self._loop_client = None
