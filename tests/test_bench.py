"""`diziner bench` end to end against the project's scripted OpenAI-compatible server."""
from __future__ import annotations

import json

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
    md = (out / "results.md").read_text()
    assert "| crossner_politics | 30 |" in md
    assert first_calls is None or first_calls > 0


def test_bench_dry_run_calls_nothing(tmp_path, shared_benchmarks, examples_dir, capsys):
    from diziner.cli import main

    rc = main(["bench", "bc5cdr", "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "b"),
               "--dry-run", "--test-size", "300", "--iterations", "4", "--sample-size", "25"])
    plan = json.loads(capsys.readouterr().out)
    assert rc == 0
    # pilot: 4 × 25 documents × 2 annotators; test: 300 × 2 guidelines × 2 annotators
    assert plan["bc5cdr"]["pilot"]["calls"] == 200 and plan["bc5cdr"]["test"]["calls"] == 1200
    assert not (tmp_path / "b").exists()


def test_unknown_dataset_is_one_line(tmp_path, examples_dir, capsys):
    from diziner.cli import main

    rc = main(["bench", "nope", "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "b")])
    assert rc == 2 and "unknown dataset 'nope'" in capsys.readouterr().err
