"""Adapter for Anthropic's Messages API (official ``anthropic`` SDK, optional extra).

Structured output is one forced tool whose ``input_schema`` is the JSON schema; the
tool's input, serialised as JSON, is the answer text. A schema whose top level is not an
object is wrapped in ``{"result": ...}`` and unwrapped again. System messages are split
out into ``system=``. One attempt per call; retries live in :mod:`diziner.llm.retry`.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from diziner.errors import DizinerError, LLMCallError
from diziner.llm.base import LLMRequest, LLMResponse
from diziner.llm.pool import BackendConfig
from diziner.llm.retry import TransientError, status_error

TOOL_NAME = "record_answer"
# Named create() arguments; sampling params (temperature, top_p, top_k) go in the body via extra_body,
# which works whether or not the installed SDK version still names them.
_ARGS = {"stop_sequences", "metadata"}


def _import_anthropic() -> Any:
    try:
        import anthropic
    except ImportError:
        raise DizinerError("the anthropic backend needs the anthropic SDK",
                           hint="install with: pip install 'diziner[anthropic]'") from None
    return anthropic


class AnthropicClient:
    backend = "anthropic"

    def __init__(self, cfg: BackendConfig, api_key: str | None = None):
        _import_anthropic()
        self.cfg = cfg
        self.model = cfg.model
        self._api_key = api_key
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model}

    def endpoint_key(self) -> str:
        return self.cfg.base_url or f"anthropic:{self.model}"

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        anthropic = _import_anthropic()
        kw: dict[str, Any] = {"api_key": self._api_key or "not-set", "max_retries": 0, "timeout": self.cfg.timeout_s}
        if self.cfg.base_url:
            kw["base_url"] = self.cfg.base_url.removesuffix("/v1")
        client = anthropic.AsyncAnthropic(**kw)
        self._clients = {id(loop): (loop, client)}
        return client

    def _redact(self, text: str) -> str:
        text = " ".join(str(text).split())
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text[:300]

    def request_kwargs(self, req: LLMRequest) -> tuple[dict[str, Any], bool]:
        """(kwargs for messages.create, whether the schema was wrapped)."""
        msgs = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt or ""}]
        system = "\n\n".join(m["content"] for m in msgs if m.get("role") == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in msgs if m.get("role") != "system"]
        params = dict(req.params)
        if "stop" in params:
            stop = params.pop("stop")
            params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        params.pop("seed", None)  # not supported by the Messages API
        kw: dict[str, Any] = {"model": self.model, "messages": turns, "max_tokens": int(params.pop("max_tokens", 2048))}
        if system:
            kw["system"] = system
        extra = {k: v for k, v in params.items() if k not in _ARGS}
        kw.update({k: v for k, v in params.items() if k in _ARGS})
        if extra:
            kw["extra_body"] = extra
        wrapped = False
        if req.json_schema is not None:
            schema = req.json_schema
            if schema.get("type") != "object":
                schema, wrapped = {"type": "object", "properties": {"result": schema}, "required": ["result"]}, True
            kw["tools"] = [{"name": TOOL_NAME, "description": "Record the answer in the required structure.",
                            "input_schema": schema}]
            kw["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return kw, wrapped

    async def complete(self, req: LLMRequest) -> LLMResponse:
        anthropic = _import_anthropic()
        kw, wrapped = self.request_kwargs(req)
        t0 = time.perf_counter()
        where = self.cfg.base_url or "the Anthropic API"
        try:
            resp = await self._client().messages.create(**kw)
        except anthropic.APITimeoutError:
            raise TransientError(f"timeout after {self.cfg.timeout_s:g} s from {where}", "timeout") from None
        except anthropic.APIConnectionError:
            raise TransientError(f"cannot connect to {where}", "connection") from None
        except anthropic.APIStatusError as e:
            code = e.status_code
            reason = f"HTTP {code} from {where}: {self._redact(getattr(e, 'message', ''))}"
            retry_after = e.response.headers.get("retry-after") if e.response is not None else None
            raise status_error(code, reason, retry_after) from None
        except (anthropic.APIResponseValidationError, ValueError) as e:
            raise TransientError(f"malformed response from {where}: {type(e).__name__}", "bad_response") from None
        latency = time.perf_counter() - t0
        text = None
        for block in resp.content:
            if req.json_schema is not None and getattr(block, "type", "") == "tool_use":
                data = block.input
                if wrapped and isinstance(data, dict):
                    data = data.get("result")
                text = json.dumps(data, ensure_ascii=False)
                break
            if req.json_schema is None and getattr(block, "type", "") == "text":
                text = (text or "") + block.text
        if text is None:
            raise LLMCallError(f"no {'tool_use' if req.json_schema else 'text'} block in the answer from {where} "
                               f"(stop_reason={resp.stop_reason})", "empty")
        usage = resp.usage
        return LLMResponse(text=text, tokens_in=int(usage.input_tokens or 0), tokens_out=int(usage.output_tokens or 0),
                           latency_s=latency, model=self.model, backend=self.backend, finish_reason=resp.stop_reason)

    async def aclose(self) -> None:
        for loop, client in list(self._clients.values()):
            if loop is asyncio.get_running_loop():
                await client.close()
        self._clients = {}
