"""The one interface every annotator and supervisor call goes through.

``await client.complete(LLMRequest) -> LLMResponse``. A request is either chat
(``messages``) or plain completion (``prompt``, for base models). ``json_schema`` asks
for structured output; each adapter translates it to what its backend accepts (or
falls back to prompt + lenient parsing). Failures that survive retries raise
:class:`diziner.errors.LLMCallError` with a reason — never an empty answer.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class LLMRequest(BaseModel):
    messages: list[dict[str, str]] | None = None  # chat: [{"role": ..., "content": ...}]
    prompt: str | None = None  # plain completion (base models)
    json_schema: dict[str, Any] | None = None  # structured output wanted
    params: dict[str, Any] = Field(default_factory=dict)  # temperature, max_tokens, stop, seed, ...
    # Tags for the ledger; not part of the cache key.
    purpose: str = "annotate"  # annotate | supervise:<phase> | ...
    annotator: str | None = None
    iteration: int | None = None
    doc_id: str | None = None  # the document the call is for (annotation calls)

    def cache_payload(self) -> dict[str, Any]:
        """What identifies the answer (the cache adds backend and model)."""
        return {
            "messages": self.messages,
            "prompt": self.prompt,
            "json_schema": self.json_schema,
            "params": self.params,
        }


class LLMResponse(BaseModel):
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    # Seconds the model itself computed this answer (local models: inside the model's lock, without
    # the wait for it); None when the backend cannot tell it apart from waiting (HTTP).
    compute_s: float | None = None
    cached: bool = False
    cost_usd: float | None = None  # None = unknown price, never 0 by default
    model: str = ""
    backend: str = ""
    finish_reason: str | None = None


@runtime_checkable
class LLMClient(Protocol):
    """Anything with ``async complete(request) -> response``."""

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


class CallableClient:
    """An LLMClient around a plain function (sync or async); for tests and offline tools."""

    def __init__(self, fn: Callable[[LLMRequest], str | LLMResponse | Awaitable[str | LLMResponse]], name: str = "callable"):
        self.fn = fn
        self.name = name

    async def complete(self, request: LLMRequest) -> LLMResponse:
        out = self.fn(request)
        if hasattr(out, "__await__"):
            out = await out  # type: ignore[misc]
        if isinstance(out, LLMResponse):
            return out
        return LLMResponse(text=str(out), model=self.name, backend="callable")
