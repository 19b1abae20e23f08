"""`diziner bench` end to end against the project's scripted OpenAI-compatible server."""
from __future__ import annotations

import json
import re

import yaml

from diziner.testing.faults import annotator_responder, server_pool
from diziner.testing.server import TestServer


def test_bench_writes_documented_results(tmp_path, shared_benchmarks, monkeypatch):
    from diziner.benchmarks.registry import DATASETS
    from diziner.cli import main

    monkeypatch.setenv("BENCH_KEY", "sk-test")
    labels = list(DATASETS["crossner_politics"].labels)
    with TestServer(responder=annotator_responder(labels)) as srv:
        pool = server_pool(srv.base_url, ["m-one", "m-two", "m-three"], key_env="BENCH_KEY")
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text(yaml.safe_dump(pool))
        out = tmp_path / "bench"
        rc = main(["bench", "crossner_politics", "--pool", str(pool_file), "--out", str(out), "--test-size", "30",
                   "--iterations", "2", "--sample-size", "6", "--cache", str(tmp_path / "c.sqlite"), "--quiet"])
        assert rc == 0
        first_calls = srv.counts.get("chat", sum(srv.counts.values())) if isinstance(srv.counts, dict) else None
    r = json.loads((out / "crossner_politics.json").read_text())
    for key in ["dataset", "pool", "test_size", "seed", "iteration0", "refined", "consensus_iteration0",
                "consensus_refined", "selected_iteration", "agreement_by_iteration", "calls", "tokens_in",
                "tokens_out", "wall_s", "command"]:
        assert key in r, key
    assert r["test_size"] == 30
    assert set(r["iteration0"]) == {"ann0", "ann1", "ann2"}
    assert all(0.0 <= v <= 1.0 for v in r["iteration0"].values())
    assert r["selected_iteration"] in {int(k) for k in r["agreement_by_iteration"]}
    assert r["oracle"]["note"].startswith("picked by test F1")
    assert r["calls"] > 0 and r["command"].startswith("diziner bench")
    # the plain-prompt row: one run per pool model, scored on the same sentences
    assert set(r["naive"]) == {"m-one", "m-two", "m-three"}
    assert all(0.0 < v <= 1.0 for v in r["naive"].values()), r["naive"]
    assert all(d["answered"] == 30 and d["shots"] == 3 for d in r["naive_detail"].values())
    # the pool names no aggregation: the project default (the token consensus) is delivered
    assert r["delivered_aggregation"] == "consensus"
    assert r["delivered"] == r["consensus_refined"] and r["delivered_iteration0"] == r["consensus_iteration0"]
    assert r["best_naive"] in r["naive"] and r["best_iteration0_annotator"] in r["iteration0"]
    for key in ("delivered_minus_best_naive", "delivered_minus_best_iteration0_annotator",
                "delivered_minus_delivered_iteration0"):
        lo, hi = r["diff_ci95"][key]
        assert -1.0 <= lo <= hi <= 1.0, (key, lo, hi)
    assert r["test_sample"] == {"seed": 13, "size": 30, "disjoint_from": None}
    md = (out / "results.md").read_text()
    assert re.search(r"\| crossner_politics( \([0-9a-f]{7}(, modified)?\))? \| 30 \|", md), md
    assert "naive F1 (m-one / m-two / m-three)" in md
    assert set(r["code"]) == {"version", "commit", "modified"}
    assert first_calls is None or first_calls > 0


def test_bench_dry_run_calls_nothing(tmp_path, shared_benchmarks, examples_dir, capsys):
    from diziner.cli import main

    rc = main(["bench", "bc5cdr", "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "b"),
               "--dry-run", "--test-size", "300", "--iterations", "4", "--sample-size", "25"])
    plan = json.loads(capsys.readouterr().out)
    assert rc == 0
    # pilot: 4 × 25 documents × 2 annotators; test: 300 × 2 guidelines × 2 annotators; naive: 300 × 2 models
    assert plan["bc5cdr"]["pilot"]["calls"] == 200 and plan["bc5cdr"]["test"]["calls"] == 1200
    assert plan["bc5cdr"]["naive_calls"] == 600 and plan["bc5cdr"]["calls"] == 2000
    assert not (tmp_path / "b").exists()


def test_unknown_dataset_is_one_line(tmp_path, examples_dir, capsys):
    from diziner.cli import main

    rc = main(["bench", "nope", "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "b")])
    assert rc == 2 and "unknown dataset 'nope'" in capsys.readouterr().err


def test_screening_sample_is_disjoint_from_the_reported_one(shared_benchmarks):
    from diziner.bench import screening_sample
    from diziner.benchmarks.registry import load_split
    from diziner.sampling import fixed_sample

    docs = load_split("bc5cdr", "test").documents
    reported = {d.id for d in fixed_sample(docs, 300, 13)}
    screen = screening_sample(docs, 100, 13, disjoint_from=300)
    assert len(screen) == 100 and not reported & {d.id for d in screen}
    assert [d.id for d in screen] == [d.id for d in screening_sample(docs, 100, 13, disjoint_from=300)]
    assert [d.id for d in screening_sample(docs, 300, 13, None)] == [d.id for d in fixed_sample(docs, 300, 13)]


def test_bench_delivers_the_pools_aggregation(tmp_path, shared_benchmarks, monkeypatch):
    from diziner.benchmarks.registry import DATASETS
    from diziner.cli import main

    monkeypatch.setenv("BENCH_KEY", "sk-test")
    labels = list(DATASETS["bc5cdr"].labels)
    with TestServer(responder=annotator_responder(labels)) as srv:
        pool = server_pool(srv.base_url, ["m-one", "m-two"], key_env="BENCH_KEY")
        pool["aggregation"] = "union"
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text(yaml.safe_dump(pool))
        out = tmp_path / "bench"
        assert main(["bench", "bc5cdr", "--pool", str(pool_file), "--out", str(out), "--test-size", "20",
                     "--iterations", "1", "--sample-size", "5", "--cache", str(tmp_path / "c.sqlite"), "--quiet",
                     "--no-naive"]) == 0
    r = json.loads((out / "bc5cdr.json").read_text())
    assert r["delivered_aggregation"] == "union" and r["naive"] == {} and "delivered_minus_best_naive" not in r["diff_ci95"]
    assert r["delivered"] == r["union_refined"] != r["consensus_refined"]
    assert r["command"].endswith("--no-naive")


def test_bench_delivers_over_the_selected_and_the_iteration0_guideline(tmp_path, shared_benchmarks, monkeypatch):
    """The delivered output is what refine writes: the union over the selected guideline's runs and the
    iteration-0 guideline's (no new call: both were run on test anyway); the selected guideline alone
    stays reported (``delivered_selected_only``) with the interval of the difference."""
    from diziner.benchmarks.registry import DATASETS
    from diziner.cli import main
    from diziner.loop import same_guideline_content
    from diziner.guideline import load_guideline
    from diziner.testing.faults import fenced_document

    monkeypatch.setenv("BENCH_KEY", "sk-test")
    labels = list(DATASETS["bc5cdr"].labels)
    plain = annotator_responder(labels)

    def respond(body: dict) -> str:  # a refined guideline (one with rules) loses the first mention, finds the last word
        out = json.loads(plain(body))
        doc = fenced_document(body) or ""
        if doc.split() and "Rules:\\n-" in json.dumps(body):
            out["mentions"] = out["mentions"][1:] + [{"text": doc.split()[-1], "label": labels[0]}]
        return json.dumps(out)

    with TestServer(responder=respond) as srv:
        pool = server_pool(srv.base_url, ["m-one", "m-two"], key_env="BENCH_KEY")
        pool["aggregation"] = "union"
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text(yaml.safe_dump(pool))
        args = ["bench", "bc5cdr", "--pool", str(pool_file), "--test-size", "20", "--iterations", "3",
                "--sample-size", "5", "--cache", str(tmp_path / "c.sqlite"), "--quiet", "--no-naive"]
        assert main(args + ["--out", str(tmp_path / "paired")]) == 0
        before = srv.counts["requests"]
        assert main(args + ["--out", str(tmp_path / "alone"), "--selected-only"]) == 0
        assert srv.counts["requests"] == before  # the same calls, from the cache
    r = json.loads((tmp_path / "paired" / "bc5cdr.json").read_text())
    alone = json.loads((tmp_path / "alone" / "bc5cdr.json").read_text())
    sel = r["selected_iteration"]
    run = tmp_path / "paired" / "bc5cdr" / "run" / "iterations"
    assert sel > 0 and not same_guideline_content(load_guideline(run / str(sel) / "guideline.yaml"),
                                                  load_guideline(run / "0" / "guideline.yaml"))
    assert r["delivered_guidelines"] == [sel, 0] and alone["delivered_guidelines"] == [sel]
    assert set(r["paired_system"]["annotators"]) == {"ann0", "ann1", "ann0@it0", "ann1@it0"}
    assert r["delivered_selected_only"] == alone["delivered"] == alone["delivered_selected_only"]
    assert r["delivered"] == r["paired_system"]["delivered"]["f1"] != r["delivered_selected_only"]
    lo, hi = r["diff_ci95"]["delivered_minus_delivered_selected_only"]
    assert lo <= r["delivered"] - r["delivered_selected_only"] <= hi
    assert "delivered_minus_delivered_selected_only" not in alone["diff_ci95"]
    assert alone["command"].endswith("--selected-only")
    test = tmp_path / "paired" / "bc5cdr" / "test" / f"guideline-{sel}+0"
    paired = {(json.loads(x)["id"], s["start"], s["end"], s["label"]) for x in (test / "delivered.jsonl").open()
              for s in json.loads(x)["spans"]}
    for t in (0, sel):  # each guideline's union is in it, but where runs overlap the best-supported span wins
        one = tmp_path / "paired" / "bc5cdr" / "test" / f"guideline-{t}" / "delivered.jsonl"
        spans = {(json.loads(x)["id"], s["start"], s["end"], s["label"]) for x in one.open()
                 for s in json.loads(x)["spans"]}
        assert all(sp in paired or any(p[0] == sp[0] and p[1] < sp[2] and sp[1] < p[2] for p in paired)
                   for sp in spans)
        assert len(spans & paired) > len(spans) / 2
