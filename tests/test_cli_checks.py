"""Command-line checks: every refine option before anything is created, refused resumes, --version, help, inspect of config files."""
from __future__ import annotations

import json

import pytest

from diziner.errors import DizinerError
from diziner.loop import RefineOptions


@pytest.mark.parametrize("args,needle", [
    (["--weights", "foo"], "--weights"),
    (["--sample-size", "0"], "--sample-size"),
    (["--iterations", "-1"], "--iterations"),
    (["--max-change-ratio", "5"], "--max-change-ratio"),
    (["--percentile", "150"], "--percentile"),
    (["--patience", "-1"], "--patience"),
    (["--supervisor", "oracle"], "--supervisor"),
    (["--min-support", "2"], "within [0, 1]"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_a_bad_option_is_one_line_before_anything_is_created(tmp_path, examples_dir, capsys, args, needle, dry):
    from diziner.cli import main

    out = tmp_path / "run"
    rc = main(["refine", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(examples_dir / "texts.jsonl"),
               "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(out), *args, *(["--dry-run"] if dry else [])])
    cap = capsys.readouterr()
    assert rc == 2, cap.out[-500:]
    assert needle in cap.err and "Traceback" not in cap.err and len(cap.err.strip().splitlines()) <= 2
    assert not out.exists()


def test_options_check_names_the_option_and_value():
    for kw, needle in [({"iterations": -1}, "iterations must be at least 0 (got -1)"),
                       ({"drop_margin": 1.5}, "drop margin must be within [0, 1] (got 1.5)"),
                       ({"max_mentions": 0}, "max mentions must be at least 1 (got 0)"),
                       ({"final_aggregation": "majority"}, "unknown aggregation")]:
        with pytest.raises(DizinerError, match=needle.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                           .replace(")", r"\)")):
            RefineOptions(**kw).check()
    RefineOptions().check()


def test_a_refused_resume_names_the_option_and_both_values(tmp_path):
    from diziner.loop import _check_or_write_run_json

    meta = {"schema_sha": "s", "documents_sha": "d", "pool": {"a": 1}, "options": RefineOptions(sample_size=10).to_json()}
    _check_or_write_run_json(tmp_path, meta)
    other = dict(meta, options=RefineOptions(sample_size=12, percentile=70.0).to_json())
    with pytest.raises(DizinerError) as e:
        _check_or_write_run_json(tmp_path, other)
    msg = e.value.one_line()
    assert "sample_size: 10 in the run, 12 now" in msg and "percentile: 80.0 in the run, 70.0 now" in msg
    assert json.loads((tmp_path / "run.json").read_text())["options"]["sample_size"] == 10  # untouched


def test_dry_run_gives_usd_where_prices_are_known(tmp_path, examples_dir, capsys):
    from diziner.cli import main

    base = ["refine", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(examples_dir / "texts.jsonl"),
            "--out", str(tmp_path / "r"), "--dry-run", "--iterations", "2", "--sample-size", "5"]
    assert main([*base, "--pool", str(examples_dir / "pools" / "openai-anthropic.yaml")]) == 0
    plan = json.loads(capsys.readouterr().out)
    per = plan["pilot"]["annotators"]
    assert all(v["cost_usd_est"] is not None and v["cost_usd_est"] > 0 for v in per.values()), per
    assert plan["cost_usd_est"] == pytest.approx(plan["pilot"]["cost_usd_est"] + plan["final"]["cost_usd_est"], abs=1e-3)
    assert main([*base, "--pool", str(examples_dir / "pool-local.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["cost_usd_est"] == 0.0  # embedded models cost nothing
    assert not (tmp_path / "r").exists()


def test_small_cli_things(capsys):
    from diziner import __version__
    from diziner.benchmarks.registry import DATASETS
    from diziner.cli import main

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == __version__
    assert main(["refine", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--no-final" in out and "--no-no-final" not in out
    assert main(["bench", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--list" not in out and all(name in out for name in DATASETS)


def test_inspect_validates_schema_pool_and_guideline_files(tmp_path, examples_dir, capsys):
    from diziner.cli import main
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    g = tmp_path / "guideline.yaml"
    g.write_text(Guideline.initial(load_schema(examples_dir / "schema.yaml")).to_yaml())
    for path, kind in [(examples_dir / "schema.yaml", "schema"), (examples_dir / "pool-local.yaml", "pool"), (g, "guideline")]:
        assert main(["inspect", str(path), "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["kind"] == kind and "documents" not in got  # not read as text
    assert got["labels"] == ["PER", "ORG", "LOC", "PRODUCT"]
    bad = tmp_path / "pool.yaml"
    bad.write_text("annotators:\n  - id: a\n    backend: nope\n")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "unknown backend 'nope'" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "x.yaml"
    other.write_text("foo: 1\n")
    assert main(["inspect", str(other)]) == 2 and "neither a schema" in capsys.readouterr().err
