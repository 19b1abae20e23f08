"""Retries with exponential backoff and jitter, per-call timeouts, concurrency limits.

Adapters make one attempt and raise :class:`TransientError` for what is worth trying
again (HTTP 429 with its Retry-After, 5xx, connection errors, timeouts, a malformed
response) or :class:`diziner.errors.LLMCallError` for what is not (bad request,
authentication). :func:`call_with_retries` turns the last transient failure into an
``LLMCallError(reason, kind)``: a failed call is never an empty answer.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

from diziner.errors import LLMCallError

T = TypeVar("T")


class TransientError(Exception):
    """One failed attempt worth retrying."""

    def __init__(self, reason: str, kind: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # http_429, http_5xx, timeout, connection, bad_response, parse
        self.retry_after = retry_after


@dataclass
class RetryPolicy:
    max_retries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    timeout_s: float | None = 60.0  # per attempt
    max_retry_after_s: float = 300.0  # a longer Retry-After fails the call instead of sleeping
    # Some failures are unlikely to change on a retry; cap their attempts.
    kind_caps: dict[str, int] = field(default_factory=lambda: {"parse": 1})
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff before retry number ``attempt`` (1-based): full jitter over an exponential cap."""
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        d = cap / 2 + self.rng.uniform(0, cap / 2)
        if retry_after is not None:
            d = max(d, retry_after)
        return d


def status_error(code: int, reason: str, retry_after: str | None = None) -> Exception:
    """The error for an HTTP status: 429, 5xx, 408 and 409 are retried; any other is final."""
    if code == 429:
        return TransientError(reason, "http_429", parse_retry_after(retry_after))
    if code >= 500 or code in (408, 409):
        return TransientError(reason, "http_5xx" if code >= 500 else f"http_{code}")
    return LLMCallError(reason, f"http_{code}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils
        import time

        dt = email.utils.parsedate_to_datetime(value)
        return max(0.0, dt.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


async def call_with_retries(attempt_fn: Callable[[], Awaitable[T]], policy: RetryPolicy,
                            on_retry: Callable[[int, TransientError, float], None] | None = None) -> T:
    """Run ``attempt_fn`` until it succeeds, a fatal error, or retries run out."""
    attempt = 0
    per_kind: dict[str, int] = {}
    while True:
        try:
            if policy.timeout_s is not None:
                try:
                    return await asyncio.wait_for(attempt_fn(), timeout=policy.timeout_s)
                except asyncio.TimeoutError:
                    raise TransientError(f"no answer within {policy.timeout_s:g} s", "timeout") from None
            return await attempt_fn()
        except TransientError as e:
            attempt += 1
            per_kind[e.kind] = per_kind.get(e.kind, 0) + 1
            cap = policy.kind_caps.get(e.kind, policy.max_retries)
            if attempt > policy.max_retries or per_kind[e.kind] > min(cap, policy.max_retries):
                raise LLMCallError(f"{e.reason} (after {attempt} attempt{'s' if attempt > 1 else ''})",
                                   e.kind) from None
            if e.retry_after is not None and e.retry_after > policy.max_retry_after_s:
                raise LLMCallError(f"{e.reason} (Retry-After {e.retry_after:g} s is too long)", e.kind) from None
            d = policy.delay(attempt, e.retry_after)
            if on_retry is not None:
                on_retry(attempt, e, d)
            await asyncio.sleep(d)


class Limiter:
    """A global semaphore plus one per endpoint, created per event loop (safe across asyncio.run)."""

    def __init__(self, global_limit: int):
        self.global_limit = global_limit
        self.endpoint_limits: dict[str, int] = {}
        self._sems: dict[int, tuple[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]]] = {}

    def add_endpoint(self, key: str, limit: int) -> None:
        """Endpoints shared by several configs take the smallest limit."""
        self.endpoint_limits[key] = min(limit, self.endpoint_limits.get(key, limit))

    def _get(self, key: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        entry = self._sems.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = (loop, {})
            self._sems = {id(loop): entry}  # forget semaphores of finished loops
        sems = entry[1]
        if key not in sems:
            limit = self.global_limit if key == "__global__" else self.endpoint_limits.get(key, self.global_limit)
            sems[key] = asyncio.Semaphore(limit)
        return sems[key]

    def slot(self, endpoint: str) -> "_Slot":
        return _Slot(self, endpoint)


class _Slot:
    def __init__(self, limiter: Limiter, endpoint: str):
        self.limiter = limiter
        self.endpoint = endpoint

    async def __aenter__(self) -> None:
        self._ep = self.limiter._get(self.endpoint)
        self._gl = self.limiter._get("__global__")
        await self._ep.acquire()
        try:
            await self._gl.acquire()
        except BaseException:
            self._ep.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._gl.release()
        self._ep.release()


__all__ = ["TransientError", "RetryPolicy", "call_with_retries", "parse_retry_after", "Limiter"]
