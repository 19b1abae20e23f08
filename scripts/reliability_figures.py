"""Figures for docs/reliability.md: faults injected and survived, crash points, fuzz cases.

    .venv/bin/python scripts/reliability_figures.py            # all three sections (~2 min)
    .venv/bin/python scripts/reliability_figures.py --faults   # fault injection only
    .venv/bin/python scripts/reliability_figures.py --crash --fuzz

Fault injection runs `diziner annotate` (500 documents x 3 annotators) and `diziner refine`
(3 annotators x 2 iterations, LLM supervisor) in-process against the scripted test server
with 20 % 5xx, 5 % 429 (Retry-After), 5 % hangs past the 1 s timeout, 5 % malformed bodies,
5 % truncated JSON and 5 % answers with a mention that is not in the text. It prints, per
kind, what the server injected and what the run's ledger counted (retries, failed calls).
The crash section runs tests/test_reliability_crash.py; the fuzz section runs the fuzz
tests with hypothesis statistics and sums the examples.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["PER", "ORG", "LOC", "PRODUCT"]
KIND = {"500": "http_5xx", "429": "http_429", "hang": "timeout", "malformed": "bad_response", "truncated": "parse"}


def _faults_section() -> None:
    import yaml

    from diziner.cli import main
    from diziner.guideline import Guideline
    from diziner.faults import fault_summary
    from diziner.schema import load_schema
    from diziner.testing.faults import (
        annotator_responder,
        server_pool,
        supervisor_responder,
        synthetic_documents,
    )
    from diziner.testing.server import Faults, TestServer

    os.environ["DIZINER_FIGURES_KEY"] = "sk-figures-not-a-real-key"
    faults = {"p_500": 0.20, "p_429": 0.05, "retry_after_s": 0.1, "p_hang": 0.05, "hang_s": 2.5, "p_malformed": 0.05,
              "p_truncated": 0.05}
    print("## Faults injected and survived\n")
    print("| run | fault | injected at the server | retried | failed calls | documents failed |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        schema = ROOT / "examples" / "schema.yaml"
        g = tmp / "g.yaml"
        g.write_text(Guideline.initial(load_schema(schema)).to_yaml(), encoding="utf-8")
        for name, n_docs in (("annotate", 500), ("refine", 30)):
            texts = tmp / f"{name}.jsonl"
            texts.write_text("".join(json.dumps(r) + "\n" for r in synthetic_documents(n_docs, seed=11)), encoding="utf-8")
            responder = annotator_responder(LABELS, p_ungrounded=0.05, supervisor=supervisor_responder)
            with TestServer(responder, Faults(seed=5, **faults)) as srv:
                pool = server_pool(srv.base_url, ["m-alpha", "m-beta", "m-gamma"], key_env="DIZINER_FIGURES_KEY",
                                   timeout_s=1.0, max_retries=3 if name == "annotate" else 4, max_concurrency=64,
                                   structured=["json_schema", "none", "json_schema"],
                                   supervisor_model="m-super" if name == "refine" else None)
                (tmp / "pool.yaml").write_text(yaml.safe_dump(pool), encoding="utf-8")
                t0 = time.time()
                if name == "annotate":
                    argv = ["annotate", "--guideline", str(g), "--pool", str(tmp / "pool.yaml"), "--texts", str(texts),
                            "--out", str(tmp / "out.jsonl"), "--cache", str(tmp / "a.sqlite"), "--quiet"]
                else:
                    argv = ["refine", "--schema", str(schema), "--texts", str(texts), "--pool", str(tmp / "pool.yaml"),
                            "--out", str(tmp / "run"), "--iterations", "2", "--sample-size", "8", "--patience", "5",
                            "--cache", str(tmp / "r.sqlite"), "--quiet"]
                rc = main(argv)
                wall = time.time() - t0
                injected = Counter(r["fault"] for r in srv.requests)
            if rc != 0:
                print(f"| {name} | run failed (exit {rc}) | | | | |")
                continue
            if name == "annotate":
                rows = [json.loads(l) for i in range(3) for l in (tmp / f"out.ann{i}.jsonl").read_text().splitlines()]
                from diziner.llm.ledger import Ledger

                recs = Ledger.read(tmp / "out.ledger.jsonl")
                fs = fault_summary(rows, recs)
            else:
                fs = json.loads((tmp / "run" / "metrics.json").read_text())["faults"]
            for fault, kind in KIND.items():
                print(f"| {name} | {fault} ({kind}) | {injected.get(fault, 0)} | {fs['retries_by_kind'].get(kind, 0)} | "
                      f"{fs['failed_calls_by_kind'].get(kind, 0)} | {fs['failed_by_kind'].get(kind, 0)} |")
            print(f"| {name} | mentions not in the text | {fs['ungrounded_mentions']} dropped | | | |")
            print(f"| {name} | unreadable answers (no structured output) | {fs['parse_failures']} re-asked, "
                  f"{fs['truncated_answers']} kept truncated | | | {fs['failed_by_kind'].get('unreadable_answer', 0)} |")
            print(f"| {name} | **total** | {sum(injected[k] for k in KIND)} of {sum(injected.values())} requests | "
                  f"{fs['retries']} | {sum(fs['failed_calls_by_kind'].values())} | "
                  f"{fs['failed']} of {fs['documents']} ({wall:.0f} s) |")
    print()


def _pytest(files: list[str], extra: list[str]) -> str:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files, *extra]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return p.stdout + p.stderr


def _crash_section() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_reliability_crash import KILL_POINTS

    out = _pytest(["tests/test_reliability_crash.py"], [])
    last = [l for l in out.splitlines() if " passed" in l or " failed" in l]
    print("## Crash points (SIGKILL, then the same command again)\n")
    print("| point | where |")
    print("|---|---|")
    for p, where in KILL_POINTS.items():
        print(f"| `{p}` | {where} |")
    print(f"\n`pytest tests/test_reliability_crash.py`: {last[-1].strip('= ') if last else 'no result'}\n")


def _fuzz_section() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_fuzz_*.py"))
    out = _pytest(files, ["--hypothesis-show-statistics"])
    print("## Fuzz cases\n")
    print("| test | examples run |")
    print("|---|---:|")
    total = 0
    current = None
    counts: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"^(tests/\S+::\S+):", line.strip())
        if m:
            current = m.group(1)
        m = re.search(r"(\d+) passing(?: examples?)?, (\d+) failing", line)
        if m and current:
            counts[current] = counts.get(current, 0) + int(m.group(1)) + int(m.group(2))
    for name, n in counts.items():
        total += n
        print(f"| `{name}` | {n} |")
    last = [l for l in out.splitlines() if " passed" in l or " failed" in l]
    print(f"| **total** | {total} |\n")
    print(f"`pytest {' '.join(files)}`: {last[-1].strip('= ') if last else 'no result'}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--crash", action="store_true")
    ap.add_argument("--fuzz", action="store_true")
    a = ap.parse_args()
    every = not (a.faults or a.crash or a.fuzz)
    import logging

    logging.disable(logging.WARNING)
    if a.faults or every:
        _faults_section()
    if a.crash or every:
        _crash_section()
    if a.fuzz or every:
        _fuzz_section()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
