"""Local engine vs Ray engine on the same documents against the loopback scripted server.

    python scripts/bench_ray.py --documents 10000 --annotators 3 --cpus 2

Each engine runs in its own subprocess (so peak memory is that engine's driver alone):
docs/s over the whole run (Ray start-up included for the Ray engine) and the driver's peak
RSS (ru_maxrss). The server runs in a third process. Needs ``pip install 'diziner[ray]'``.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["Acme", "Borealis", "Nadia", "Oslo", "Zephyr", "Quill", "Mira", "Tokyo", "Vantage", "Ilse",
         "said", "the", "new", "plans", "in", "with", "a", "deal", "for", "today", "and", "its"]


def write_inputs(folder: Path, n: int, annotators: int, base_url: str) -> tuple[Path, Path, Path]:
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    rng = random.Random(3)
    texts = folder / "texts.jsonl"
    with open(texts, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"d{i:06d}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "."}) + "\n")
    root = Path(__file__).resolve().parents[1]
    guideline = folder / "guideline.yaml"
    guideline.write_text(Guideline.initial(load_schema(root / "examples" / "schema.yaml")).to_yaml())
    pool = folder / "pool.yaml"
    pool.write_text("annotators:\n" + "".join(
        f"  - {{id: a{i}, backend: openai, model: m{i}, base_url: '{base_url}', max_concurrency: 32}}\n"
        for i in range(annotators)))
    return texts, guideline, pool


def one(engine: str, texts: str, guideline: str, pool: str, out: str, cpus: int, shard: int) -> None:
    """Child process: run one engine, print {"seconds", "documents", "peak_rss_mb"}."""
    from diziner.cli import main

    args = ["annotate", "--guideline", guideline, "--pool", pool, "--texts", texts, "--out", out, "-q",
            "--engine", engine]
    if engine == "ray":
        import ray

        ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        args += ["--shard-size", str(shard)]
    else:
        args += ["--no-cache", "--cache", out + ".cache.sqlite"]
    t0 = time.perf_counter()
    rc = main(args)
    dt = time.perf_counter() - t0
    docs = sum(1 for _ in open(out, encoding="utf-8"))
    print(json.dumps({"rc": rc, "seconds": round(dt, 2), "documents": docs,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=10_000)
    ap.add_argument("--annotators", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray runtime")
    ap.add_argument("--shard-size", type=int, default=10_000)
    ap.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        e, t, g, p, o, c, s = a.child
        one(e, t, g, p, o, int(c), int(s))
        return 0
    from diziner.testing.server import TestServer
    from diziner.testing.faults import title_word_responder

    with TestServer(title_word_responder, keep_requests=False) as srv, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        texts, guideline, pool = write_inputs(folder, a.documents, a.annotators, srv.base_url)
        res = {}
        for engine in ("local", "ray"):
            out = folder / engine / "out.jsonl"
            out.parent.mkdir()
            proc = subprocess.run([sys.executable, __file__, "--child", engine, str(texts), str(guideline), str(pool),
                                   str(out), str(a.cpus), str(a.shard_size)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["docs_per_s"] = round(r["documents"] / r["seconds"], 1)
            res[engine] = r
            print(f"{engine:5s}  {r['documents']} documents x {a.annotators} annotators  {r['seconds']:7.1f} s  "
                  f"{r['docs_per_s']:7.1f} docs/s  peak driver RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        same = (folder / "local" / "out.jsonl").read_bytes() == (folder / "ray" / "out.jsonl").read_bytes()
        print(f"identical consensus files: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
