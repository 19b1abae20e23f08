"""Retries, timeouts and concurrency limits against the real scripted HTTP server."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from diziner.errors import LLMCallError
from diziner.testing import call_once
from diziner.llm.base import LLMRequest
from diziner.llm.factory import build_client
from diziner.llm.ledger import Ledger
from diziner.llm.pool import AnnotatorConfig
from diziner.llm.retry import Limiter, RetryPolicy, parse_retry_after
from diziner.testing.server import TestServer

SCHEMA = {"type": "object", "properties": {"mentions": {"type": "array"}}}


@pytest.fixture()
def server():
    with TestServer() as srv:
        yield srv


def client(base_url, *, timeout_s=5.0, max_retries=3, max_concurrency=8, ledger=None, global_limit=64):
    cfg = AnnotatorConfig(id="a", backend="openai", model="m", base_url=base_url, timeout_s=timeout_s,
                          max_retries=max_retries, max_concurrency=max_concurrency)
    c = build_client(cfg, cache=None, ledger=ledger or Ledger(), limiter=Limiter(global_limit))
    c.policy.base_delay_s = 0.01  # fast tests; Retry-After still wins
    c.policy.rng.seed(0)
    return c


def req(i=0):
    return LLMRequest(messages=[{"role": "user", "content": f"doc {i}"}], json_schema=SCHEMA)


def test_retries_5xx_then_succeeds(server):
    server.set_faults(sequence=["500", "503", "ok"])
    ledger = Ledger()
    r = call_once(client(server.base_url, ledger=ledger), req())
    assert r.text == '{"mentions": []}'
    assert server.counts["requests"] == 3
    assert ledger.summary()["total"]["ok"] == 1


def test_429_retry_after_is_honoured(server):
    server.set_faults(sequence=["429"], retry_after_s=0.6)
    t0 = time.perf_counter()
    call_once(client(server.base_url), req())
    assert time.perf_counter() - t0 >= 0.6
    assert server.counts["fault:429"] == 1 and server.counts["requests"] == 2


def test_hang_past_timeout_then_retry(server):
    server.set_faults(sequence=["hang"], hang_s=5)
    t0 = time.perf_counter()
    r = call_once(client(server.base_url, timeout_s=0.3), req())
    assert r.text.startswith("{")
    assert 0.3 <= time.perf_counter() - t0 < 3


def test_timeout_every_time_raises_with_reason(server):
    server.set_faults(p_hang=1.0, hang_s=5)
    ledger = Ledger()
    with pytest.raises(LLMCallError) as ei:
        call_once(client(server.base_url, timeout_s=0.2, max_retries=1, ledger=ledger), req())
    assert ei.value.kind == "timeout" and "after 2 attempts" in ei.value.reason
    rec = ledger.records[-1]
    assert rec.ok is False and rec.kind == "timeout" and "timeout" in rec.reason


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    with pytest.raises(LLMCallError) as ei:
        call_once(client(f"http://127.0.0.1:{port}/v1", max_retries=2), req())
    assert ei.value.kind == "connection" and "after 3 attempts" in ei.value.reason


def test_persistent_5xx_fails_with_reason_never_empty(server):
    server.set_faults(p_500=1.0)
    ledger = Ledger()
    with pytest.raises(LLMCallError) as ei:
        call_once(client(server.base_url, max_retries=2, ledger=ledger), req())
    assert ei.value.kind == "http_5xx" and "HTTP 500" in ei.value.reason
    assert server.counts["requests"] == 3
    s = ledger.summary()["total"]
    assert s["failed"] == 1 and s["ok"] == 0


def test_400_is_not_retried(server):
    server.set_faults(sequence=["400"])
    with pytest.raises(LLMCallError) as ei:
        call_once(client(server.base_url), req())
    assert ei.value.kind == "http_400" and server.counts["requests"] == 1


def test_malformed_body_and_truncated_json_are_retried(server):
    server.set_faults(sequence=["malformed", "truncated", "ok"])
    r = call_once(client(server.base_url), req())
    assert r.text == '{"mentions": []}' and server.counts["requests"] == 3


def test_truncated_json_retried_once_only(server):
    server.set_faults(p_truncated=1.0)
    with pytest.raises(LLMCallError) as ei:
        call_once(client(server.base_url, max_retries=4), req())
    assert ei.value.kind == "parse" and server.counts["requests"] == 2


def test_endpoint_and_global_limits(server):
    server.set_faults(latency_ms=80)
    c = client(server.base_url, max_concurrency=3)

    asyncio.run(_gather(c, 12))
    assert server.max_inflight == 3
    server.reset()
    c2 = client(server.base_url, max_concurrency=50, global_limit=5)
    asyncio.run(_gather(c2, 12))
    assert server.max_inflight == 5


def _gather(c, n):
    async def go():
        try:
            await asyncio.gather(*(c.complete(req(i)) for i in range(n)))
        finally:
            await c.aclose()
    return go()


def test_client_survives_several_event_loops(server):
    c = client(server.base_url)
    for i in range(3):
        call_once(c, req(i))
    assert server.counts["requests"] == 3


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_backoff_grows_and_respects_retry_after():
    p = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    p.rng.seed(1)
    d = [p.delay(i, None) for i in range(1, 6)]
    assert 0.5 <= d[0] <= 1.0 and 1.0 <= d[1] <= 2.0 and 2.0 <= d[2] <= 4.0 and 4.0 <= d[3] <= 8.0 and 4 <= d[4] <= 8
    assert p.delay(1, 3.0) == 3.0
