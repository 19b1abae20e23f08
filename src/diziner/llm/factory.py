"""Build ready-to-use clients from a pool: adapter wrapped in cache, budget, limits,
retries and the ledger.

Order of a call through :class:`ManagedClient`::

    cache lookup ─hit─► ledger (cached, cost 0) ─► answer
       │ miss
    budget check ─► endpoint + global slot ─► budget check again ─► retries(adapter) ─► price
       ─► ledger (ok, or failed + reason) ─► budget.add ─► cache store ─► answer

Backends are found in a registry by name and imported lazily; a plugin can add one with
:func:`register_backend` or through the ``diziner.llm_backends`` entry-point group
(value ``module:Class``; the class takes ``(cfg, api_key)``).
"""
from __future__ import annotations

import importlib
import os
import time
import sys
from pathlib import Path
from typing import Any, Callable

from diziner.errors import ConfigError, LLMCallError
from diziner.llm.base import LLMClient, LLMRequest, LLMResponse
from diziner.llm.cache import LLMCache, cache_key
from diziner.llm.ledger import Budget, Ledger, lookup_price
from diziner.llm.pool import BackendConfig, Pool
from diziner.llm.retry import Limiter, RetryPolicy, call_with_retries

_BACKENDS: dict[str, str | Callable[..., Any]] = {
    "openai": "diziner.llm.openai_compat:OpenAICompatClient",
    "anthropic": "diziner.llm.anthropic_backend:AnthropicClient",
    "local": "diziner.llm.local:LocalLlamaClient",
    "vllm-engine": lambda cfg, api_key: _engine_only(cfg),
}


def _engine_only(cfg: BackendConfig) -> Any:
    """A vllm-engine annotator has no endpoint to call: its replicas live inside a Ray pipeline."""
    who = getattr(cfg, "id", cfg.model)
    raise ConfigError(f"annotator {who!r} (backend vllm-engine) is served inside a Ray Data pipeline; "
                      "annotate with --engine ray (docs/scale.md)")
_ENTRY_POINTS_LOADED = False


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="diziner.llm_backends"):
            _BACKENDS.setdefault(ep.name, ep.value)
    except Exception:  # a broken plugin must not break the built-in backends
        pass


def register_backend(name: str, target: str | Callable[..., Any]) -> None:
    """Add a backend: ``target`` is ``"module:Class"`` or a factory ``(cfg, api_key) -> adapter``."""
    _BACKENDS[name] = target


def backend_names() -> set[str]:
    _load_entry_points()
    return set(_BACKENDS)


def make_adapter(cfg: BackendConfig, api_key: str | None = None) -> Any:
    """The bare adapter (one attempt per call) for a backend config."""
    _load_entry_points()
    target = _BACKENDS.get(cfg.backend)
    if target is None:
        raise ConfigError(f"unknown backend {cfg.backend!r} (known: {', '.join(sorted(_BACKENDS))})")
    if isinstance(target, str):
        mod, _, attr = target.partition(":")
        target = getattr(importlib.import_module(mod), attr)
    return target(cfg, api_key)


class ManagedClient:
    """An LLMClient: adapter + cache + budget + concurrency limit + retries + ledger."""

    def __init__(self, adapter: Any, cfg: BackendConfig, *, cache: LLMCache | None, ledger: Ledger,
                 limiter: Limiter, budget: Budget | None = None, name: str | None = None,
                 policy: RetryPolicy | None = None):
        self.adapter = adapter
        self.cfg = cfg
        self.cache = cache
        self.ledger = ledger
        self.limiter = limiter
        self.budget = budget
        self.name = name
        self.price = lookup_price(cfg.backend, cfg.model, cfg.price)
        self.endpoint = adapter.endpoint_key()
        limiter.add_endpoint(self.endpoint, cfg.max_concurrency)
        local = cfg.backend == "local"
        # A local call cannot be abandoned (the worker thread keeps the model): no timeout, no retry.
        self.policy = policy or RetryPolicy(max_retries=0 if local else cfg.max_retries,
                                            timeout_s=None if local else cfg.timeout_s + 5.0)

    def effective(self, request: LLMRequest) -> LLMRequest:
        """The request with the pool's params as defaults (request params win)."""
        if not self.cfg.params:
            return request
        return request.model_copy(update={"params": {**self.cfg.params, **request.params}})

    def _record(self, req: LLMRequest, resp: LLMResponse | None, *, ok: bool, latency: float,
                reason: str | None = None, kind: str | None = None, retries: dict[str, int] | None = None,
                wait: float = 0.0) -> None:
        compute = resp.compute_s if resp is not None and not resp.cached else None
        if compute is not None:
            wait += max(0.0, latency - compute)  # queued for the model (local: behind its other calls)
        self.ledger.record(
            ts=time.time(), annotator=req.annotator or self.name, purpose=req.purpose, iteration=req.iteration,
            doc_id=req.doc_id, backend=self.cfg.backend, model=self.cfg.model,
            tokens_in=resp.tokens_in if resp else 0, tokens_out=resp.tokens_out if resp else 0,
            latency_s=latency, cached=bool(resp and resp.cached),
            cost_usd=resp.cost_usd if resp else None, ok=ok, reason=reason, kind=kind, retries=retries or {},
            compute_s=compute, wait_s=round(wait, 6))

    async def complete(self, request: LLMRequest) -> LLMResponse:
        req = self.effective(request)
        key = cache_key(self.adapter.identity(), req) if self.cache is not None else None
        t0 = time.perf_counter()
        if self.cache is not None and key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                hit.latency_s = time.perf_counter() - t0
                self._record(req, hit, ok=True, latency=hit.latency_s)
                return hit
        if self.budget is not None:
            self.budget.check()
        t_slot = time.perf_counter()
        async with self.limiter.slot(self.endpoint):
            if self.budget is not None:
                self.budget.check()  # spent while this call waited for a slot
            t1 = time.perf_counter()
            slot_wait = t1 - t_slot
            retries: dict[str, int] = {}

            def on_retry(attempt: int, err: Any, delay: float) -> None:
                retries[err.kind] = retries.get(err.kind, 0) + 1

            try:
                resp = await call_with_retries(lambda: self.adapter.complete(req), self.policy, on_retry=on_retry)
            except LLMCallError as e:
                self._record(req, None, ok=False, latency=time.perf_counter() - t1, reason=e.reason, kind=e.kind,
                             retries=retries, wait=slot_wait)
                raise
        resp.latency_s = time.perf_counter() - t1
        resp.cost_usd = self.price.cost(resp.tokens_in, resp.tokens_out) if self.price is not None else None
        self._record(req, resp, ok=True, latency=resp.latency_s, retries=retries, wait=slot_wait)
        if self.budget is not None:
            self.budget.add(resp.cost_usd)
        if self.cache is not None and key is not None:
            self.cache.put(key, resp)
        return resp

    async def aclose(self) -> None:
        close = getattr(self.adapter, "aclose", None)
        if close is not None:
            await close()


def build_client(cfg: BackendConfig, *, cache: LLMCache | None, ledger: Ledger, limiter: Limiter,
                 budget: Budget | None = None, name: str | None = None,
                 environ: dict[str, str] | None = None) -> ManagedClient:
    """One managed client for one backend config (the key is read from the environment here)."""
    env = os.environ if environ is None else environ
    api_key = env.get(cfg.api_key_env) if cfg.api_key_env else None
    if cfg.api_key_env and not api_key:
        raise ConfigError(f"environment variable {cfg.api_key_env} is not set")
    adapter = make_adapter(cfg, api_key)
    return ManagedClient(adapter, cfg, cache=cache, ledger=ledger, limiter=limiter, budget=budget,
                         name=name or getattr(cfg, "id", None))


def build_pool_clients(pool: Pool, *, cache_path: str | Path | None = None, no_cache: bool = False,
                       use_cache: bool = True, budget_usd: float | None = None,
                       ledger: Ledger | str | Path | None = None,
                       ) -> tuple[dict[str, LLMClient], LLMClient | None, Ledger]:
    """Clients for every annotator, the supervisor (None for ``consensus``), and the ledger.

    ``no_cache=True`` skips cache lookups but still stores answers; ``use_cache=False``
    disables the cache entirely. ``ledger`` may be a Ledger or a path to a JSONL file.
    """
    pool.check_env()
    if not isinstance(ledger, Ledger):
        ledger = Ledger(ledger)
    cache = LLMCache(cache_path, read=not no_cache) if use_cache else None
    limiter = Limiter(pool.global_concurrency)
    budget = Budget(budget_usd) if budget_usd is not None else None
    clients: dict[str, LLMClient] = {}
    for a in pool.annotators:
        clients[a.id] = build_client(a, cache=cache, ledger=ledger, limiter=limiter, budget=budget, name=a.id)
    sup: LLMClient | None = None
    if pool.supervisor.backend != "consensus":
        sup = build_client(pool.supervisor, cache=cache, ledger=ledger, limiter=limiter, budget=budget,
                           name="supervisor")
    if budget is not None:
        unknown = [c.name for c in [*clients.values(), *([sup] if sup else [])]
                   if isinstance(c, ManagedClient) and c.price is None]
        if unknown:
            # one line on stderr, as the other notices (not a Python warning with a source line)
            print(f"notice: --budget cannot count calls of {', '.join(str(u) for u in unknown)}: price unknown "
                  "(add price: to the pool file, or the model to $DIZINER_PRICES_FILE)", file=sys.stderr)
    return clients, sup, ledger


class PoolClients:
    """Every client of a pool, built once and closed once (an async context manager).

    ``annotators`` (id → client), ``supervisor`` (None for the consensus supervisor) and
    ``ledger``. :meth:`build` makes clients this object owns: leaving the ``async with``
    (or :meth:`aclose`) closes every client, the supervisor's too, and the ledger file.
    :meth:`borrow` wraps clients someone else owns (tests, ``bench`` reusing one set for
    several stages): closing it closes nothing. It unpacks like the older
    ``(annotators, supervisor, ledger)`` tuple.
    """

    def __init__(self, annotators: dict[str, LLMClient], supervisor: LLMClient | None, ledger: Ledger,
                 owned: bool = True):
        self.annotators = annotators
        self.supervisor = supervisor
        self.ledger = ledger
        self.owned = owned
        self.closed = False

    @classmethod
    def build(cls, pool: Pool, **kw: Any) -> "PoolClients":
        """:func:`build_pool_clients` with the same keywords, owned."""
        return cls(*build_pool_clients(pool, **kw), owned=True)

    @classmethod
    def borrow(cls, clients: "PoolClients | tuple") -> "PoolClients":
        if isinstance(clients, PoolClients):
            return cls(clients.annotators, clients.supervisor, clients.ledger, owned=False)
        ann, sup, ledger = clients
        return cls(ann, sup, ledger, owned=False)

    def __iter__(self):
        return iter((self.annotators, self.supervisor, self.ledger))

    async def aclose(self) -> None:
        if not self.owned or self.closed:
            return
        self.closed = True
        await close_clients(self.annotators, self.supervisor)
        if hasattr(self.ledger, "close"):
            self.ledger.close()

    async def __aenter__(self) -> "PoolClients":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


async def close_clients(clients: dict[str, LLMClient], supervisor: LLMClient | None = None) -> None:
    """Close HTTP connection pools and local models."""
    for c in [*clients.values(), *([supervisor] if supervisor else [])]:
        close = getattr(c, "aclose", None)
        if close is not None:
            await close()


__all__ = ["ManagedClient", "PoolClients", "build_client", "build_pool_clients", "make_adapter", "register_backend",
           "backend_names", "close_clients"]
