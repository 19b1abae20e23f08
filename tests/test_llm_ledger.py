"""Ledger sums, unknown prices, price lookup, budget."""
from __future__ import annotations

import asyncio
import json

import pytest

from diziner.errors import BudgetExceeded
from diziner.llm.base import LLMRequest
from diziner.llm.factory import build_pool_clients
from diziner.llm.ledger import Budget, Ledger, LedgerRecord, lookup_price, summarise
from diziner.llm.pool import Price, pool_from_dict
from diziner.testing.server import TestServer


def rec(**kw):
    base = dict(ts=0.0, annotator="a", purpose="annotate", iteration=0, backend="openai", model="m",
                tokens_in=10, tokens_out=5, latency_s=0.5, cached=False, cost_usd=0.01, ok=True)
    base.update(kw)
    return LedgerRecord(**base)


def test_summary_hand_computed():
    records = [
        rec(),
        rec(annotator="b", cost_usd=None),
        rec(cached=True, cost_usd=0.0, tokens_in=10, tokens_out=5),
        rec(iteration=1, ok=False, cost_usd=None, tokens_in=0, tokens_out=0, reason="HTTP 500", kind="http_5xx"),
        rec(iteration=1, purpose="supervise:1", cost_usd=0.02, tokens_in=100, tokens_out=50),
    ]
    s = summarise(records)
    t = s["total"]
    assert (t["calls"], t["ok"], t["failed"], t["cached"]) == (5, 4, 1, 1)
    assert (t["tokens_in"], t["tokens_out"]) == (130, 65)
    assert t["cost_usd"] == pytest.approx(0.03)  # 0.01 + 0.0 + 0.02; the unknown one is not 0, it is counted:
    assert t["unknown_cost_calls"] == 1 and t["cost_complete"] is False
    assert s["by_annotator"]["b"]["cost_usd"] is None  # only unknown prices -> unknown total
    assert s["by_annotator"]["a"]["cost_usd"] == pytest.approx(0.03)
    assert s["by_iteration"]["1"]["failed"] == 1 and s["by_iteration"]["0"]["calls"] == 3
    assert s["by_purpose"]["supervise:1"]["tokens_in"] == 100
    assert s["total"]["latency_s"] == pytest.approx(2.5)


def test_jsonl_written_and_flushed_per_line(tmp_path):
    path = tmp_path / "run" / "ledger.jsonl"
    led = Ledger(path)
    led.record(rec())
    led.record(rec(annotator="b", cost_usd=None))
    lines = path.read_text().splitlines()  # readable while still open
    assert len(lines) == 2 and json.loads(lines[1])["cost_usd"] is None
    led.close()
    with open(path, "a") as fh:
        fh.write('{"ts": 1, "annot')  # a torn last line from a killed process
    assert len(Ledger.read(path)) == 2


def test_price_lookup():
    assert lookup_price("openai", "gpt-4o-mini").input_per_mtok == 0.15
    assert lookup_price("openai", "gpt-4o-mini-2024-07-18").output_per_mtok == 0.60
    assert lookup_price("openai", "openai/gpt-4o").input_per_mtok == 2.5
    assert lookup_price("anthropic", "claude-3-5-haiku-latest").input_per_mtok == 0.8
    assert lookup_price("openai", "gpt-4o-audio-preview") is None  # not silently priced as gpt-4o
    assert lookup_price("openai", "Qwen/Qwen3-14B") is None
    assert lookup_price("local", "smollm2-135m").cost(10**6, 10**6) == 0.0
    own = Price(input_per_mtok=1, output_per_mtok=2)
    assert lookup_price("openai", "gpt-4o", own) is own


def test_budget_object():
    b = Budget(0.05)
    b.check()
    b.add(0.03)
    b.add(None)
    b.check()
    b.add(0.02)
    with pytest.raises(BudgetExceeded):
        b.check()
    assert b.unknown_cost_calls == 1


def test_budget_stops_new_calls_but_in_flight_finish(tmp_path):
    with TestServer() as srv:
        srv.set_faults(latency_ms=50)
        pool = pool_from_dict({"annotators": [{
            "id": "a", "backend": "openai", "model": "m", "base_url": srv.base_url,
            # the server counts 1 token per word: each call costs (2 + 2) * 1000/1e6 = 0.004
            "price": {"input_per_mtok": 1000, "output_per_mtok": 1000}}]})
        clients, _, ledger = build_pool_clients(pool, cache_path=tmp_path / "c.sqlite", budget_usd=0.01)
        c = clients["a"]

        def r(i):
            return LLMRequest(messages=[{"role": "user", "content": f"doc {i}"}])

        async def go():
            # 5 calls start together: all pass the check before any spends, so all finish
            out = await asyncio.gather(*(c.complete(r(i)) for i in range(5)))
            assert all(not x.cached for x in out)
            with pytest.raises(BudgetExceeded):
                await c.complete(r(99))
            # finished calls still come from the cache
            again = await c.complete(r(0))
            assert again.cached

        asyncio.run(go())
        assert srv.counts["requests"] == 5
        t = ledger.summary()["total"]
        assert t["cost_usd"] == pytest.approx(0.02) and t["calls"] == 6 and t["cached"] == 1


def test_summary_keeps_compute_and_wait_apart():
    records = [
        rec(backend="local", latency_s=1.5, compute_s=1.0, wait_s=0.5),
        rec(backend="local", latency_s=0.75, compute_s=0.5, wait_s=0.25, annotator="b"),
        rec(latency_s=2.0, compute_s=None, wait_s=0.125),  # HTTP: compute unknown, slot wait known
        rec(cached=True, cost_usd=0.0, latency_s=0.001),  # a cache hit neither computes nor waits
    ]
    t = summarise(records)["total"]
    assert t["compute_s"] == pytest.approx(1.5) and t["compute_calls"] == 2
    assert t["wait_s"] == pytest.approx(0.875)
    assert summarise(records)["by_annotator"]["b"]["compute_s"] == pytest.approx(0.5)


class _SlowModel:
    """A stand-in for a local model: each call computes (sleeps) 0.2 s; calls are serialised."""

    backend = "local"

    def __init__(self):
        import threading

        self.lock = threading.Lock()

    def identity(self):
        return {"backend": "local", "model": "slow"}

    def endpoint_key(self):
        return "local:slow"

    async def complete(self, req):
        import time

        from diziner.llm.base import LLMResponse

        def run(submitted):
            with self.lock:
                t0 = time.perf_counter()
                time.sleep(0.2)
                compute = time.perf_counter() - t0
            return LLMResponse(text="[]", latency_s=time.perf_counter() - submitted, compute_s=compute,
                               backend="local", model="slow")

        return await asyncio.to_thread(run, time.perf_counter())


def test_ledger_records_model_wait_apart_from_compute():
    """Two calls at once on one model: both compute 0.2 s; the second also waits ~0.2 s for the model."""
    from diziner.llm.factory import ManagedClient
    from diziner.llm.pool import AnnotatorConfig
    from diziner.llm.retry import Limiter

    led = Ledger()
    cfg = AnnotatorConfig(id="slow", backend="local", model="smollm2-135m")
    client = ManagedClient(_SlowModel(), cfg, cache=None, ledger=led, limiter=Limiter(8), name="slow")

    async def both():
        await asyncio.gather(client.complete(LLMRequest(prompt="a")), client.complete(LLMRequest(prompt="b")))

    asyncio.run(both())
    recs = sorted(led.records, key=lambda r: r.wait_s)
    assert [r.compute_s for r in recs] == [pytest.approx(0.2, abs=0.05)] * 2
    assert recs[0].wait_s < 0.05 and recs[1].wait_s == pytest.approx(0.2, abs=0.07)
    assert recs[1].latency_s == pytest.approx(recs[1].wait_s + recs[1].compute_s, abs=0.02)
    t = led.summary()["total"]
    assert t["compute_s"] == pytest.approx(0.4, abs=0.1) and t["wait_s"] == pytest.approx(0.2, abs=0.07)


def test_ledger_counts_the_wait_for_a_concurrency_slot(tmp_path):
    """HTTP calls: compute unknown (None); the wait for the endpoint's only slot is recorded."""
    pool = pool_from_dict({"annotators": [{"id": "a", "backend": "openai", "model": "m", "base_url": "http://x/v1",
                                           "max_concurrency": 1}]})
    with TestServer() as srv:
        pool.annotators[0].base_url = srv.base_url
        srv.set_responder(lambda body: "ok")
        from diziner.testing.server import Faults

        srv.set_faults(Faults(latency_ms=200))
        clients, _, led = build_pool_clients(pool, use_cache=False)

        async def both():
            from diziner.llm.factory import close_clients

            try:
                await asyncio.gather(clients["a"].complete(LLMRequest(prompt="x")),
                                     clients["a"].complete(LLMRequest(prompt="y")))
            finally:
                await close_clients(clients)

        asyncio.run(both())
    recs = sorted(led.records, key=lambda r: r.wait_s)
    assert all(r.compute_s is None for r in recs)
    assert recs[0].wait_s < 0.1 and recs[1].wait_s >= 0.15


def test_every_hosted_model_the_examples_name_has_a_price(examples_dir):
    import yaml

    from diziner.llm.ledger import lookup_price

    named = set()
    for f in sorted((examples_dir / "pools").glob("*.yaml")) + [examples_dir / "pool-local.yaml"]:
        pool = yaml.safe_load(f.read_text())
        for a in [*pool.get("annotators", []), pool.get("supervisor") or {}]:
            # hosted = an OpenAI or Anthropic endpoint (no base_url of one's own server)
            if a.get("backend") in ("openai", "anthropic") and not a.get("base_url"):
                named.add((a["backend"], a["model"]))
    assert {m for _, m in named} >= {"gpt-5-mini", "claude-haiku-4-5", "claude-sonnet-4-5"}
    missing = [m for b, m in sorted(named) if lookup_price(b, m) is None]
    assert missing == []


def test_an_unknown_price_under_a_budget_is_a_one_line_notice(capsys):
    from diziner.llm.factory import build_pool_clients
    from diziner.llm.pool import pool_from_dict

    pool = pool_from_dict({"annotators": [
        {"id": "x", "backend": "openai", "model": "my-own-model", "base_url": "http://127.0.0.1:9/v1"},
        {"id": "y", "backend": "openai", "model": "gpt-5-mini", "base_url": "http://127.0.0.1:9/v1"}]})
    build_pool_clients(pool, use_cache=False, budget_usd=1.0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("notice: --budget cannot count calls of x: price unknown")
