#!/usr/bin/env python
"""Benchmarks of the LLM layer (prints figures; not a test).

(a) orchestration throughput against the scripted server (in its own process) at a fixed
    latency: annotators x documents calls at a global concurrency; req/s as a fraction of
    the ideal concurrency / latency, and the client's CPU time per call;
(b) the same workload again: every answer from the cache, 0 network calls (counted at the
    server), and its wall time;
(c) embedded models: generated tokens/s through our adapter vs llama-cpp-python called
    directly on the same requests.

Usage: .venv/bin/python scripts/bench_llm.py [--annotators 8] [--docs 500] [--latency-ms 200]
       [--concurrency 64] [--local-calls 8] [--local-prompts short|pipeline] [--skip-local]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "diziner.testing.server", "--port", "0",
                             "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT/v1"
    return proc, line.rsplit(" ", 1)[-1]


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats", timeout=10) as r:
        return json.load(r)


async def workload(clients: dict, docs: int) -> None:
    from diziner.llm.base import LLMRequest

    schema = {"type": "object", "properties": {"mentions": {"type": "array"}}}

    async def one(aid: str, i: int) -> None:
        await clients[aid].complete(LLMRequest(
            messages=[{"role": "system", "content": "Tag names."}, {"role": "user", "content": f"Document {i} text."}],
            json_schema=schema, annotator=aid, iteration=0))

    await asyncio.gather(*(one(aid, i) for aid in clients for i in range(docs)))


async def run_and_close(clients: dict, docs: int) -> float:
    """Wall time of the workload (the connection pools are closed after the clock stops)."""
    from diziner.llm.factory import close_clients

    t0 = time.perf_counter()
    try:
        await workload(clients, docs)
        return time.perf_counter() - t0
    finally:
        await close_clients(clients)


def bench_orchestration(a: argparse.Namespace) -> None:
    from diziner.llm.factory import build_pool_clients
    from diziner.llm.pool import pool_from_dict

    proc, base_url = start_server(a.latency_ms)
    try:
        tmp = Path(tempfile.mkdtemp(prefix="diziner-bench-"))
        pool = pool_from_dict({"annotators": [
            {"id": f"ann{k}", "backend": "openai", "model": f"model-{k}", "base_url": base_url,
             "max_concurrency": a.concurrency, "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.4}}
            for k in range(a.annotators)], "global_concurrency": a.concurrency})
        n = a.annotators * a.docs
        ideal = a.concurrency / (a.latency_ms / 1000.0)

        clients, _, ledger = build_pool_clients(pool, cache_path=tmp / "cache.sqlite", ledger=tmp / "ledger.jsonl")
        c0 = time.process_time()
        wall = asyncio.run(run_and_close(clients, a.docs))
        cpu = time.process_time() - c0
        stats = server_stats(base_url)
        rps = n / wall
        print(f"(a) {a.annotators} annotators x {a.docs} docs = {n} calls, latency {a.latency_ms:g} ms, "
              f"global concurrency {a.concurrency}")
        print(f"    wall {wall:.2f} s, {rps:.1f} req/s = {100 * rps / ideal:.1f} % of ideal {ideal:.0f} req/s; "
              f"client CPU {1000 * cpu / n:.2f} ms/call; server saw {stats.get('requests', 0)} requests")
        s = ledger.summary()["total"]
        print(f"    ledger: {s['calls']} calls, {s['ok']} ok, cost ${s['cost_usd']:.6f}")

        clients2, _, ledger2 = build_pool_clients(pool, cache_path=tmp / "cache.sqlite", ledger=tmp / "ledger2.jsonl")
        before = server_stats(base_url).get("requests", 0)
        wall2 = asyncio.run(run_and_close(clients2, a.docs))
        after = server_stats(base_url).get("requests", 0)
        s2 = ledger2.summary()["total"]
        print(f"(b) rerun of the finished workload: {after - before} network calls, wall {wall2:.2f} s "
              f"({1e6 * wall2 / n:.0f} us/call), {s2['cached']}/{s2['calls']} cache hits, cost ${s2['cost_usd']:.6f}")
    finally:
        proc.terminate()
        proc.wait(10)


def _short_requests() -> dict[str, list]:
    """A short hand-written chat request per sentence (~80 prompt tokens)."""
    from diziner.llm.base import LLMRequest

    schema = {"type": "object", "properties": {"mentions": {"type": "array", "maxItems": 4, "items": {
        "type": "object", "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": ["PER", "LOC", "ORG"]}},
        "required": ["text", "label"]}}}, "required": ["mentions"]}
    sents = ["Angela Merkel visited Paris with Siemens executives.", "The United Nations met in Geneva on Tuesday.",
             "Barack Obama spoke to Microsoft staff in Seattle.", "Toyota opened a plant near Lyon, France."]
    system = "You annotate named entities: persons (PER), locations (LOC), organisations (ORG). Answer in JSON."
    reqs = [LLMRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": s}],
                       json_schema=schema, params={"max_tokens": 64}) for s in sents]
    return {"smollm2-135m": reqs, "gemma-3-270m": reqs}


def _pipeline_requests(n: int) -> dict[str, list]:
    """The pipeline's own iteration-0 annotation requests for the bundled example: a chat prompt
    for SmolLM2 and a few-shot completion prompt for Gemma, as in examples/pool-local.yaml."""
    from diziner.annotate.prompt import build_request
    from diziner.corpus.readers import read_corpus
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    root = Path(__file__).resolve().parent.parent / "examples"
    g = Guideline.initial(load_schema(root / "schema.yaml"))
    docs = read_corpus(root / "texts.jsonl").documents[:n]
    return {"smollm2-135m": [build_request(g, "smollm2", "chat", d.text) for d in docs],
            "gemma-3-270m": [build_request(g, "gemma", "fewshot", d.text) for d in docs]}


def bench_local(a: argparse.Namespace) -> None:
    try:
        import llama_cpp
    except ImportError:
        print("(c) skipped: llama_cpp not importable")
        return
    from diziner.llm.base import LLMRequest
    from diziner.llm.local import _ARGS, LocalLlamaClient, model_path
    from diziner.llm.pool import AnnotatorConfig

    requests = _pipeline_requests(a.local_calls) if a.local_prompts == "pipeline" else _short_requests()
    n_threads = os.cpu_count() or 1
    for model in a.local_models.split(","):
        path = model_path(model)
        reqs = requests[model]
        results = {}
        for reproducible in (False, True):
            ours = LocalLlamaClient(AnnotatorConfig(id="x", backend="local", model=model, n_threads=n_threads,
                                                    reproducible=reproducible))
            ours.load()
            direct = llama_cpp.Llama(model_path=str(path), n_ctx=4096, n_threads=n_threads, n_batch=512, seed=0,
                                     verbose=False)
            grammars: dict[str, object] = {}

            def direct_call(req: LLMRequest) -> int:
                kw = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "max_tokens": 512}
                kw.update({k: v for k, v in req.params.items() if k in _ARGS})
                if req.messages is not None:
                    out = direct.create_chat_completion(messages=req.messages, **kw,
                                                        response_format={"type": "json_object", "schema": req.json_schema})
                else:
                    key = json.dumps(req.json_schema, sort_keys=True)
                    if key not in grammars:  # compiled once per schema, as the adapter does
                        grammars[key] = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(req.json_schema), verbose=False)
                    out = direct.create_completion(prompt=req.prompt, grammar=grammars[key], **kw)
                return out["usage"]["completion_tokens"]

            warm = LLMRequest(messages=[{"role": "user", "content": "Warm-up sentence."}], params={"max_tokens": 4})
            direct.create_chat_completion(messages=warm.messages, max_tokens=4)  # page the weights in, untimed
            asyncio.run(ours.complete(warm))
            tok = {"ours": 0, "direct": 0}
            wall = {"ours": 0.0, "direct": 0.0}
            prompt_tokens = 0
            for i in range(a.local_calls):  # interleaved, so both see the same machine load
                req = reqs[i % len(reqs)]
                t0 = time.perf_counter()
                # in a worker thread like the adapter: on this machine llama.cpp called from the main
                # thread ran several times slower than from a worker thread (same instance, same call)
                tok["direct"] += asyncio.run(asyncio.to_thread(direct_call, req))
                wall["direct"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                r = asyncio.run(ours.complete(req))
                wall["ours"] += time.perf_counter() - t0
                tok["ours"] += r.tokens_out
                prompt_tokens += r.tokens_in
            results[reproducible] = (tok, wall, prompt_tokens / a.local_calls)
            asyncio.run(ours.aclose())
            direct.close()
        for reproducible, (tok, wall, mean_in) in results.items():
            t_o, t_d = tok["ours"] / wall["ours"], tok["direct"] / wall["direct"]
            print(f"(c) {model} ({a.local_calls} {a.local_prompts} calls, ~{mean_in:.0f} prompt tokens, {n_threads} "
                  f"threads, reproducible={reproducible}): ours {t_o:.1f} tok/s, direct {t_d:.1f} tok/s, "
                  f"overhead {100 * (1 - t_o / t_d):+.1f} %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--local-calls", type=int, default=8)
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--local-models", default="smollm2-135m,gemma-3-270m")
    ap.add_argument("--local-prompts", choices=["short", "pipeline"], default="short",
                    help="short hand-written chat prompts, or the pipeline's own annotation prompts")
    ap.add_argument("--skip-orchestration", action="store_true")
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if not a.skip_orchestration:
        bench_orchestration(a)
    if not a.skip_local:
        bench_local(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
