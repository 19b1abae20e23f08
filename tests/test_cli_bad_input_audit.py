"""Bad input on the command line: one line on stderr naming the file (and line) and the problem,
exit code 2, no traceback, and no input file touched. Each test is a case an audit found wrong.

No test calls a model: the pools point at a closed local port, and every check runs first.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from diziner.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCHEMA = EXAMPLES / "schema.yaml"

# Two annotators on a closed port: a check that is missing shows as a connection failure, never a model call.
DEAD_POOL = "".join(f"  - {{id: {a}, backend: openai, model: m-{a}, base_url: 'http://127.0.0.1:9/v1', "
                    "max_retries: 0, timeout_s: 1}\n" for a in ("a", "b"))


def _dead_pool(tmp_path: Path) -> Path:
    p = tmp_path / "pool.yaml"
    p.write_text("annotators:\n" + DEAD_POOL, encoding="utf-8")
    return p


def _texts(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"id": "d1", "text": "Acme hired Nadia in Oslo."}) + "\n", encoding="utf-8")
    return path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _one_line_error(capsys, rc: int, *needles: str) -> str:
    cap = capsys.readouterr()
    err = cap.err
    assert rc == 2, err + cap.out[-500:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


# ----------------------------------------------------------------------------- YAML files


def test_inspect_names_the_line_of_a_yaml_file_that_is_not_utf8(tmp_path, capsys):
    f = tmp_path / "schema.yaml"
    f.write_bytes(b"name: x\ngoal: caf\xe9\nlabels: []\n")
    _one_line_error(capsys, main(["inspect", str(f)]), "schema.yaml:2", "UTF-8")


def test_a_guideline_example_must_use_schema_labels_and_quote_its_text(tmp_path, capsys):
    g = tmp_path / "g.yaml"
    body = ("schema:\n  goal: g\n  labels:\n    - name: PER\n      definition: d\ngoal: g\ncommon:\n"
            "  - id: '1'\n    text: Tag people.\n    examples:\n      - text: Ada met Bob.\n        mentions:\n")
    g.write_text(body + "          - {text: Ada, label: PERSON}\n", encoding="utf-8")
    _one_line_error(capsys, main(["guideline", "show", str(g)]), "g.yaml:13", "PERSON", "not in the schema")
    g.write_text(body + "          - {text: Ada, label: PER}\n          - {text: Eve, label: PER}\n", encoding="utf-8")
    _one_line_error(capsys, main(["guideline", "show", str(g)]), "g.yaml:14", "'Eve'", "does not occur")
    pool = _dead_pool(tmp_path)
    _one_line_error(capsys, main(["annotate", "--guideline", str(g), "--pool", str(pool), "--texts",
                                  str(_texts(tmp_path / "t.jsonl")), "--out", str(tmp_path / "o.jsonl"),
                                  "--dry-run"]), "g.yaml:14")


# ----------------------------------------------------------------------------- texts


@pytest.mark.parametrize("body,line,needle", [
    ("id,text\n1,Hello there.\n2,Ada met Bob, then left.\n", 3, "3 fields"),  # an unquoted comma cut the text
    ('id,text\n1,Hello there.\n2,"Ada met Bob\n3,then left.\n', 3, "CSV"),  # a quote never closed swallowed rows
])
def test_a_malformed_csv_row_is_an_error_not_a_cut_text(tmp_path, capsys, body, line, needle):
    f = tmp_path / "t.csv"
    f.write_text(body, encoding="utf-8")
    _one_line_error(capsys, main(["inspect", str(f)]), f"t.csv:{line}", needle)


# ----------------------------------------------------------------------------- annotate's outputs


@pytest.mark.parametrize("sibling", ["out.a.jsonl", "out.failed.jsonl", "out.ledger.jsonl"])
def test_annotate_never_writes_over_its_texts(tmp_path, capsys, sibling):
    """The texts are one of the files OUT brings with it (per annotator, failed, ledger)."""
    texts = _texts(tmp_path / sibling)
    before = _md5(texts)
    rc = main(["annotate", "--schema", str(SCHEMA), "--pool", str(_dead_pool(tmp_path)), "--texts", str(texts),
               "--out", str(tmp_path / "out.jsonl"), "--quiet", "--no-cache"])
    _one_line_error(capsys, rc, sibling, "input")
    assert _md5(texts) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pool.yaml", sibling])


def test_annotate_checks_out_and_texts_before_any_call(tmp_path, capsys):
    pool = _dead_pool(tmp_path)
    texts = _texts(tmp_path / "t.jsonl")
    common = ["annotate", "--schema", str(SCHEMA), "--pool", str(pool), "--quiet", "--no-cache"]
    (tmp_path / "folder").mkdir()
    _one_line_error(capsys, main([*common, "--texts", str(texts), "--out", str(tmp_path / "folder"), "--force"]),
                    "folder", "folder")
    assert list((tmp_path / "folder").iterdir()) == [] and not (tmp_path / "folder.ledger.jsonl").exists()
    _one_line_error(capsys, main([*common, "--texts", str(texts), "--out", str(texts / "o.jsonl")]),
                    "t.jsonl", "not a folder")
    _one_line_error(capsys, main([*common, "--texts", str(tmp_path / "folder"), "--out", str(tmp_path / "o.jsonl")]),
                    "folder", "directory")
    _one_line_error(capsys, main([*common, "--texts", str(texts), "--out", str(tmp_path / "o.jsonl"),
                                  "--budget", "-1"]), "--budget")
    assert not (tmp_path / "o.ledger.jsonl").exists()


@pytest.mark.parametrize("command", ["annotate", "refine"])
def test_a_cache_that_is_not_a_cache_is_one_line(tmp_path, capsys, command):
    pool = _dead_pool(tmp_path)
    texts = _texts(tmp_path / "t.jsonl")
    out = ["--out", str(tmp_path / ("o.jsonl" if command == "annotate" else "run")), "--quiet"]
    args = [command, "--schema", str(SCHEMA), "--pool", str(pool), "--texts", str(texts), *out]
    before = _md5(texts)
    _one_line_error(capsys, main([*args, "--cache", str(texts)]), "t.jsonl", "cache")
    assert _md5(texts) == before
    (tmp_path / "adir").mkdir()
    _one_line_error(capsys, main([*args, "--cache", str(tmp_path / "adir")]), "adir", "cache")


def test_refine_checks_the_budget_before_creating_the_run(tmp_path, capsys):
    pool = _dead_pool(tmp_path)
    rc = main(["refine", "--schema", str(SCHEMA), "--pool", str(pool), "--texts", str(_texts(tmp_path / "t.jsonl")),
               "--out", str(tmp_path / "run"), "--budget", "-5", "--quiet"])
    _one_line_error(capsys, rc, "--budget")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- other outputs


def _guideline_file(tmp_path: Path) -> Path:
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    g = tmp_path / "g.yaml"
    g.write_text(Guideline.initial(load_schema(SCHEMA)).to_yaml(), encoding="utf-8")
    return g


def _spans_file(path: Path) -> Path:
    path.write_text(json.dumps({"id": "d1", "text": "Ada met Bob.", "spans": [{"start": 0, "end": 3, "label": "PER"}]})
                    + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("blocked", ["parent is a file", "is a folder"])
@pytest.mark.parametrize("command", ["export", "guideline show", "analyze", "report"])
def test_an_output_path_that_cannot_be_written_is_one_line(tmp_path, capsys, command, blocked):
    a, b = _spans_file(tmp_path / "a.jsonl"), _spans_file(tmp_path / "b.jsonl")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me\n", encoding="utf-8")
    folder = tmp_path / "folder"
    folder.mkdir()
    if command == "report":
        assert main(["analyze", str(a), str(b), "--out", str(tmp_path / "an"), "--quiet"]) == 0
    out = blocker / "sub" / "x.out" if blocked == "parent is a file" else folder
    if command == "analyze" and blocked == "is a folder":
        out = blocker  # analyze's --out is a folder: a file there is in the way
    args = {"export": ["export", str(a), "-f", "jsonl", "-o", str(out), "--force"],
            "guideline show": ["guideline", "show", str(_guideline_file(tmp_path)), "-o", str(out)],
            "analyze": ["analyze", str(a), str(b), "--out", str(out), "--quiet"],
            "report": ["report", str(tmp_path / "an"), "--out", str(out), "--force"]}[command]
    _one_line_error(capsys, main(args), "notes.txt" if out != folder else "folder")
    assert blocker.read_text(encoding="utf-8") == "keep me\n" and list(folder.iterdir()) == []


# ----------------------------------------------------------------------------- option values


def test_a_bad_option_value_is_one_line(tmp_path, capsys):
    a, b = _spans_file(tmp_path / "a.jsonl"), _spans_file(tmp_path / "b.jsonl")
    _one_line_error(capsys, main(["analyze", str(a), str(b), "--out", str(tmp_path / "an"), "--examples", "many"]),
                    "--examples", "diziner analyze --help")
    _one_line_error(capsys, main(["inspect", str(a), "--no-such-option"]), "--no-such-option")
    _one_line_error(capsys, main(["inspect"]), "Missing argument")
    _one_line_error(capsys, main(["analyze", str(a), str(b), "--out", str(tmp_path / "an"), "--examples", "-1"]),
                    "--examples")
    assert not (tmp_path / "an").exists()
    assert main([]) == 2 and "Usage" in capsys.readouterr().out  # no arguments still prints the help


@pytest.mark.parametrize("args,needle", [
    (["--test-size", "-1"], "--test-size"),
    (["--iterations", "-1"], "--iterations"),
    (["--sample-size", "0"], "--sample-size"),
    (["--aggregation", "majority"], "unknown aggregation"),
    (["--disjoint-from", "-3"], "--disjoint-from"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_bench_checks_its_options_before_anything(tmp_path, capsys, args, needle, dry):
    pool = _dead_pool(tmp_path)
    rc = main(["bench", "crossner_ai", "--pool", str(pool), "--out", str(tmp_path / "b"), "--quiet", *args,
               *(["--dry-run"] if dry else [])])
    _one_line_error(capsys, rc, needle)
    assert not (tmp_path / "b").exists()
