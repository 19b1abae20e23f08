#!/usr/bin/env python
"""Per-call cost of the embedded pool against the same models called directly.

For N test sentences (seeded sample, as `diziner bench`) of each dataset and each embedded
model, in one run:

(a) the pool: ``python -m diziner annotate`` with a one-annotator pool of that model (as in
    examples/pool-local.yaml), the iteration-0 guideline and a fresh cache; wall time of
    the command (start-up and model load included) per call, and compute / wait per call
    from its ledger;
(b) the same requests (``build_request``: same prompt, JSON schema, parameters) sent to
    llama-cpp-python directly, one call at a time, with llama-cpp-python's own sampler
    chain and a grammar compiled from the schema (``create_completion``) or
    ``response_format`` (``create_chat_completion``);
(c) a plain k-shot request: the schema's first k demonstrations with mentions, a one-line
    label list, a JSON array of ``{text, label}`` with the label enum as the grammar,
    greedy, repeat penalty 1.1, at most 256 tokens (the "naive" row: no guideline).

(b) and (c) are interleaved sentence by sentence (each on its own model instance), so
both see the same machine load; (a) runs before them. Prints per-call seconds,
prompt-evaluation and generation tokens/s (llama.cpp's own counters, (b) and (c)), strict
span F1 of each, the ratios (a)/(b) and (a)/(c), and the load average around each phase
(the machine is shared). With ``--pool`` the two-model pool is also timed on the same
sentences (both models in one process).

Example:
    PYTHONPATH=src .venv/bin/python scripts/bench_embedded.py bc5cdr,broad_twitter_corpus -n 300 \\
        --json /tmp/bench-embedded.json

Needs llama-cpp-python, the model packages and ../shared/benchmarks (skips cleanly without).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"gemma": ("gemma-3-270m", "fewshot"), "smollm2": ("smollm2-135m", "chat")}


def naive_request(schema: Any, style: str, text: str, k: int = 3) -> Any:
    """The plain k-shot request of the naive row (the one ``diziner bench`` scores)."""
    from diziner.annotate.naive import naive_request as build

    return build(schema, style, text, k)


class Direct:
    """One model called with plain llama-cpp-python (its sampler chain), one call at a time."""

    def __init__(self, model: str, n_threads: int):
        import llama_cpp

        from diziner.llm.local import model_path

        self.lc = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(model_path(model)), n_ctx=4096, n_threads=n_threads,
                                   n_threads_batch=n_threads, n_batch=512, seed=0, verbose=False)
        self.grammars: dict[str, Any] = {}
        self.t = {"calls": 0, "wall": 0.0, "p_ms": 0.0, "p_n": 0, "g_ms": 0.0, "g_n": 0, "in": 0, "out": 0}

    def __call__(self, req: Any) -> str:
        from diziner.llm.local import _ARGS

        kw: dict[str, Any] = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "max_tokens": 512}
        kw.update({k: v for k, v in req.params.items() if k in _ARGS})
        ctx = self.llm._ctx.ctx
        self.lc.llama_perf_context_reset(ctx)
        t0 = time.perf_counter()
        if req.messages is not None:
            out = self.llm.create_chat_completion(messages=req.messages, **kw, response_format={
                "type": "json_object", "schema": req.json_schema})
            text = out["choices"][0]["message"].get("content") or ""
        else:
            key = json.dumps(req.json_schema, sort_keys=True)
            if key not in self.grammars:  # compiled once per schema, as the adapter does
                self.grammars[key] = self.lc.LlamaGrammar.from_json_schema(json.dumps(req.json_schema), verbose=False)
            out = self.llm.create_completion(prompt=req.prompt, grammar=self.grammars[key], **kw)
            text = out["choices"][0].get("text") or ""
        self.t["wall"] += time.perf_counter() - t0
        p = self.lc.llama_perf_context(ctx)
        t = self.t
        t["calls"] += 1
        t["p_ms"] += p.t_p_eval_ms
        t["p_n"] += p.n_p_eval
        t["g_ms"] += p.t_eval_ms
        t["g_n"] += p.n_eval
        t["in"] += out["usage"]["prompt_tokens"]
        t["out"] += out["usage"]["completion_tokens"]
        return text

    def figures(self) -> dict[str, Any]:
        t = self.t
        n = max(1, t["calls"])
        return {"calls": t["calls"], "s_per_call": t["wall"] / n, "prompt_tokens": t["in"] / n,
                "output_tokens": t["out"] / n, "prompt_evaluated": t["p_n"] / n,
                "prompt_eval_tok_s": t["p_n"] / (t["p_ms"] / 1000) if t["p_ms"] else None,
                "gen_tok_s": t["g_n"] / (t["g_ms"] / 1000) if t["g_ms"] else None,
                "outside_model_s_per_call": (t["wall"] - (t["p_ms"] + t["g_ms"]) / 1000) / n}

    def close(self) -> None:
        self.llm.close()


def _f1(gold: dict[str, list[Any]], pred: dict[str, list[Any]], ids: list[str]) -> float:
    from diziner.evaluate import score_spans

    return score_spans([s for d in ids for s in gold.get(d, [])], [s for d in ids for s in pred.get(d, [])])["micro"]["f1"]


def _spans(doc: Any, answer: str, labels: list[str]) -> list[Any]:
    from diziner.annotate.naive import naive_spans

    return naive_spans(doc, answer, labels) or []


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_annotate(work: Path, name: str, annotators: list[str], guideline: Path, texts: Path,
                 src: Path = ROOT / "src") -> dict[str, Any]:
    """(a): ``diziner annotate`` in its own process, fresh cache; wall time and the ledger's figures."""
    import yaml

    from diziner.llm.ledger import Ledger, summarise

    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    pool = {"annotators": [{"id": a, "backend": "local", "model": MODELS[a][0], "prompt_style": MODELS[a][1]}
                           for a in annotators], "supervisor": {"backend": "consensus"}}
    (d / "pool.yaml").write_text(yaml.safe_dump(pool))
    out = d / "out.jsonl"
    cmd = [sys.executable, "-m", "diziner", "annotate", "--guideline", str(guideline), "--pool", str(d / "pool.yaml"),
           "--texts", str(texts), "--out", str(out), "--cache", str(d / "cache.sqlite"), "--force"]
    load0 = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"diziner annotate failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    recs = Ledger.read(out.with_name(out.stem + ".ledger.jsonl"))
    summ = summarise(recs)
    per = {}
    for a in annotators:
        s = summ["by_annotator"].get(a, {})
        n = max(1, s.get("calls", 0) - s.get("cached", 0))
        per[a] = {"calls": s.get("calls", 0), "compute_s_per_call": s.get("compute_s", 0.0) / n,
                  "wait_s_per_call": s.get("wait_s", 0.0) / n, "latency_s_per_call": s.get("latency_s", 0.0) / n,
                  "prompt_tokens": s.get("tokens_in", 0) / n, "output_tokens": s.get("tokens_out", 0) / n,
                  "failed": s.get("failed", 0)}
    calls = sum(p["calls"] for p in per.values())
    return {"wall_s": wall, "calls": calls, "per_annotator": per, "out": out, "load": f"{load0} -> {_load()}"}


def annotate_spans(out: Path, annotator: str) -> dict[str, list[Any]]:
    from diziner.corpus.model import Span

    res: dict[str, list[Any]] = {}
    with open(out.with_name(f"{out.stem}.{annotator}.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            o = json.loads(line)
            if o.get("status", "ok") == "ok":
                res[o["id"]] = [Span(o["id"], s["start"], s["end"], s["label"], s.get("text", ""))
                                for s in o.get("spans", [])]
    return res


def bench_dataset(name: str, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    from diziner.annotate.prompt import build_request
    from diziner.benchmarks.registry import load_split, schema_path
    from diziner.corpus.model import Span
    from diziner.guideline import Guideline
    from diziner.sampling import fixed_sample
    from diziner.schema import load_schema

    schema = load_schema(schema_path(name))
    test = load_split(name, "test")
    docs = [d for d in fixed_sample(test.documents, a.n, a.seed)]
    tag_map = schema.tag_map()
    gold = {d.id: [Span(s.doc_id, s.start, s.end, tag_map.get(s.label, s.label), s.text) for s in test.spans_of(d.id)]
            for d in docs}
    ids = [d.id for d in docs]
    labels = schema.label_names
    g = Guideline.initial(schema)
    wd = work / name
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "guideline.yaml").write_text(g.to_yaml())
    with open(wd / "texts.jsonl", "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"id": d.id, "text": d.text}, ensure_ascii=False) + "\n")
    result: dict[str, Any] = {"dataset": name, "n": len(docs), "models": {}}
    from diziner.llm.local import default_threads

    threads = a.n_threads or default_threads(1)  # what the adapter uses for a one-model pool
    for aid in a.models.split(","):
        model, style = MODELS[aid]
        print(f"[{name} / {aid}] (a) diziner annotate ...", flush=True)
        ra = run_annotate(wd, aid, [aid], wd / "guideline.yaml", wd / "texts.jsonl", Path(a.src))
        f1_a = _f1(gold, annotate_spans(ra["out"], aid), ids)
        if a.only_a:
            pa = ra["per_annotator"][aid]
            result["models"][aid] = {"a": {"wall_s": ra["wall_s"], "s_per_call": ra["wall_s"] / max(1, pa["calls"]), **pa,
                                           "f1": f1_a, "load": ra["load"]}}
            print(f"  {name} {aid} (a) annotate {ra['wall_s'] / max(1, pa['calls']):.3f} s/call (wall {ra['wall_s']:.1f} s,"
                  f" {pa['calls']} calls); F1 {f1_a:.3f}  [load {ra['load']}]", flush=True)
            continue
        print(f"[{name} / {aid}] (b) direct and (c) naive, interleaved ...", flush=True)
        load0 = _load()
        direct, naive = Direct(model, threads), Direct(model, threads)
        warm = naive_request(schema, style, "Warm-up.")
        direct(warm), naive(warm)  # page the weights in, untimed
        for x in (direct, naive):
            x.t.update({k: 0 if isinstance(v, int) else 0.0 for k, v in x.t.items()})
        pred_b: dict[str, list[Any]] = {}
        pred_c: dict[str, list[Any]] = {}
        for d in docs:
            req = build_request(g, aid, style, d.text, other_annotators=[aid])
            pred_b[d.id] = _spans(d, direct(req), labels)
            pred_c[d.id] = _spans(d, naive(naive_request(schema, style, d.text)), labels)
        load_bc = f"{load0} -> {_load()}"
        fb, fc = direct.figures(), naive.figures()
        direct.close()
        naive.close()
        pa = ra["per_annotator"][aid]
        per_call_a = ra["wall_s"] / max(1, pa["calls"])
        row = {"a": {"wall_s": ra["wall_s"], "s_per_call": per_call_a, **pa, "f1": f1_a, "load": ra["load"]},
               "b": {**fb, "f1": _f1(gold, pred_b, ids), "load": load_bc},
               "c": {**fc, "f1": _f1(gold, pred_c, ids), "load": load_bc},
               "n_threads": threads}
        row["a_over_b"] = per_call_a / fb["s_per_call"]
        row["a_over_c"] = per_call_a / fc["s_per_call"]
        result["models"][aid] = row
        print_row(name, aid, row)
    if a.pool:
        print(f"[{name}] the two-model pool ...", flush=True)
        ids_pool = a.models.split(",")
        rp = run_annotate(wd, "pool", ids_pool, wd / "guideline.yaml", wd / "texts.jsonl", Path(a.src))
        result["pool"] = {"wall_s": rp["wall_s"], "calls": rp["calls"], "load": rp["load"],
                          "per_annotator": rp["per_annotator"],
                          "f1": {x: _f1(gold, annotate_spans(rp["out"], x), ids) for x in ids_pool}}
        print(f"  pool ({'+'.join(ids_pool)}, one process): wall {rp['wall_s']:.1f} s for {rp['calls']} calls; "
              + "; ".join(f"{x}: compute {v['compute_s_per_call']:.3f} s/call, wait {v['wait_s_per_call']:.3f} s/call"
                          for x, v in rp["per_annotator"].items()) + f"  [load {rp['load']}]", flush=True)
    return result


def _fmt(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def print_row(name: str, aid: str, r: dict[str, Any]) -> None:
    a, b, c = r["a"], r["b"], r["c"]
    print(f"  {name} {aid} ({r['n_threads']} threads)")
    print(f"    (a) annotate  {a['s_per_call']:.3f} s/call (wall {a['wall_s']:.1f} s, {a['calls']} calls; compute "
          f"{a['compute_s_per_call']:.3f}, wait {a['wait_s_per_call']:.3f}); in {a['prompt_tokens']:.0f} out "
          f"{a['output_tokens']:.1f} tok; F1 {a['f1']:.3f}  [load {a['load']}]")
    for k, x in (("(b) direct  ", b), ("(c) naive   ", c)):
        print(f"    {k}  {x['s_per_call']:.3f} s/call; in {x['prompt_tokens']:.0f} (evaluated {x['prompt_evaluated']:.0f}) "
              f"out {x['output_tokens']:.1f} tok; prompt eval {_fmt(x['prompt_eval_tok_s'])} tok/s, generation "
              f"{_fmt(x['gen_tok_s'])} tok/s, outside the model {x['outside_model_s_per_call']:.3f} s/call; "
              f"F1 {x['f1']:.3f}")
    print(f"    (a)/(b) {r['a_over_b']:.2f}   (a)/(c) {r['a_over_c']:.2f}   [load (b,c) {b['load']}]", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", help="comma list of shared benchmarks, e.g. bc5cdr,broad_twitter_corpus")
    ap.add_argument("-n", type=int, default=60, help="test sentences per dataset (default 60)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--models", default="gemma,smollm2", help="comma list of gemma, smollm2")
    ap.add_argument("--n-threads", type=int, default=None, help="threads of (b) and (c) (default: as the adapter for one model)")
    ap.add_argument("--pool", action="store_true", help="also time the two-model pool in one process")
    ap.add_argument("--src", default=str(ROOT / "src"),
                    help="diziner sources that (a) runs (default: this checkout; another version for a before/after)")
    ap.add_argument("--only-a", action="store_true", help="time (a) only (e.g. an older --src)")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)
    try:
        import llama_cpp  # noqa: F401

        from diziner.benchmarks.registry import shared_root

        shared_root()
    except Exception as e:  # no llama.cpp or no shared benchmarks: nothing to measure
        print(f"skipped: {e}")
        return 0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    print(f"commit {commit}{' (+ uncommitted changes)' if dirty else ''}; {os.cpu_count()} cores; load {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work) if a.work else Path(tmp)
        results = [bench_dataset(name, a, work) for name in a.datasets.split(",")]
    if a.json:
        Path(a.json).write_text(json.dumps({"commit": commit, "dirty": dirty, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
