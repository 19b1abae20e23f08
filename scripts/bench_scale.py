"""Scale benchmark: streamed `diziner annotate` over a large JSONL corpus (prints figures; not a test).

Writes N synthetic documents to a JSONL file, starts the project's scripted test server
(src/diziner/testing/server.py) in a *separate process* with a document-dependent
responder (two annotators that disagree now and then) and 0–5 ms latency, then runs
:func:`diziner.stream.annotate_file` in this process and reports:

* peak RSS of this process (``resource.getrusage``; the server is not counted),
* RSS sampled while running (to show it stays flat), and the tracemalloc peak when
  ``--tracemalloc`` is given (slower),
* documents per second, calls per second, and the output sizes.

Example:
    .venv/bin/python scripts/bench_scale.py --docs 100000 --batch-size 256 --concurrency 64
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NAMES = ["Acme", "Borealis", "Nadia", "Oslo", "Zephyr", "Quill", "Mira", "Tokyo", "Vantage", "Ilse", "Kestrel",
         "Lagos", "Orion", "Petra", "Sable", "Tarn"]
FILLER = ["said", "the", "new", "plans", "in", "with", "a", "deal", "for", "today", "and", "its", "on", "chips",
          "market", "shares", "rose", "after", "report"]


def serve(latency_ms: float, jitter_ms: float) -> None:
    """Child process: run the test server until stdin closes."""
    from diziner.testing.faults import title_word_responder
    from diziner.testing.server import Faults, TestServer

    srv = TestServer(title_word_responder, Faults(latency_ms=latency_ms, latency_jitter_ms=jitter_ms), keep_requests=False)
    srv.start()
    print(srv.base_url, flush=True)
    sys.stdin.read()
    srv.stop()
    print(json.dumps(dict(srv.counts)), flush=True)


def write_corpus(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            words = [rng.choice(NAMES) if rng.random() < 0.25 else rng.choice(FILLER) for _ in range(rng.randint(6, 18))]
            words[0] = words[0].capitalize()
            fh.write(json.dumps({"id": f"doc-{i:07d}", "text": " ".join(words) + "."}) + "\n")


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--weight-sample", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=64, help="max_concurrency per annotator")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=5.0)
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--tracemalloc", action="store_true", help="also report the tracemalloc peak (slower)")
    ap.add_argument("--in-memory", action="store_true",
                    help="for comparison: the non-streaming path (read_corpus + diziner.stream.annotate_corpus)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temp folder)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        serve(a.latency_ms, a.jitter_ms)
        return 0

    from diziner.guideline import Guideline
    from diziner.llm.pool import AnnotatorConfig, Pool
    from diziner.schema import load_schema
    from diziner.stream import StreamOptions, annotate_file

    work = a.workdir or Path(tempfile.mkdtemp(prefix="diziner-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    texts = work / "texts.jsonl"
    t0 = time.perf_counter()
    write_corpus(texts, a.docs)
    print(f"corpus: {a.docs} documents, {texts.stat().st_size / 1e6:.1f} MB ({time.perf_counter() - t0:.1f} s)")

    child = subprocess.Popen([sys.executable, __file__, "--serve", "--latency-ms", str(a.latency_ms),
                              "--jitter-ms", str(a.jitter_ms)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    base_url = child.stdout.readline().strip()
    print(f"test server: {base_url} (separate process), latency {a.latency_ms:g}+U(0,{a.jitter_ms:g}) ms")

    root = Path(__file__).resolve().parents[1]
    guideline = Guideline.initial(load_schema(root / "examples" / "schema.yaml"))
    pool = Pool(annotators=[AnnotatorConfig(id=x, backend="openai", model=f"m-{x}", base_url=base_url,
                                            max_concurrency=a.concurrency, timeout_s=60) for x in ("a", "b")],
                global_concurrency=2 * a.concurrency)
    out = work / "out.jsonl"
    for p in [*work.glob("out*"), *work.glob("cache.sqlite*")]:  # a warm cache would skip every call
        p.unlink()
    opts = StreamOptions(batch_size=a.batch_size, weight_sample=a.weight_sample)

    if a.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()
    start = time.perf_counter()

    def sampler() -> None:
        partial = out.with_name(out.name + ".partial") if not a.in_memory else out.with_name(out.stem + ".ledger.jsonl")
        while not stop.wait(a.sample_s):
            n = count_lines(partial)
            samples.append((time.perf_counter() - start, n, rss_mb()))
            unit = "calls" if a.in_memory else "docs"
            print(f"  {samples[-1][0]:7.1f} s  {n:7d} {unit}  RSS {samples[-1][2]:7.1f} MB", flush=True)

    rss_before = rss_mb()
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    try:
        if a.in_memory:
            from diziner.corpus.readers import read_corpus
            from diziner.stream import annotate_corpus

            docs = read_corpus(texts).documents
            summary = annotate_corpus(guideline, docs, pool, out, cache_path=work / "cache.sqlite", quiet=True)
            del docs
        else:
            summary = annotate_file(guideline, texts, pool, out, count=False, options=opts,
                                    cache_path=work / "cache.sqlite", quiet=True)
    finally:
        stop.set()
        th.join()
        child.stdin.close()
        counts = child.stdout.read().strip()
        child.wait(30)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {
        "path": "in-memory (diziner.stream.annotate_corpus)" if a.in_memory else "streamed (diziner.stream)",
        "documents": summary["documents"],
        "annotators": len(summary["annotators"]),
        "batch_size": a.batch_size,
        "concurrency_per_annotator": a.concurrency,
        "wall_s": round(wall, 1),
        "docs_per_s": round(summary["documents"] / wall, 1),
        "calls": summary["usage"]["total"]["calls"],
        "calls_per_s": round(summary["usage"]["total"]["calls"] / wall, 1),
        "failed": summary["failed"],
        "consensus_spans": summary["spans"],
        "weights": {k: round(v, 4) for k, v in summary["weights"].items()},
        "rss_before_run_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_samples_mb": [round(s[2], 1) for s in samples],
        "output_mb": round(sum(p.stat().st_size for p in work.glob("out*.jsonl")) / 1e6, 1),
        "server_counts": json.loads(counts.splitlines()[-1]) if counts else None,
    }
    if a.tracemalloc:
        import tracemalloc

        figures["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    print(json.dumps(figures, indent=2))
    print(f"files in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
