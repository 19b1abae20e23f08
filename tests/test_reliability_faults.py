"""Faults from endpoints: refine and annotate finish against a server that fails a lot,
every document is accounted for, and the summary counts each kind of fault.

The server (diziner.testing.server.TestServer) injects, per request: 20 % HTTP 5xx, 5 % 429
with Retry-After, 5 % hangs past the client's timeout, 10 % malformed bodies or truncated
JSON content; the responder adds a mention that is not in the text for 5 % of the answers.
Every injected fault is counted at the server and must show up, kind by kind, in the
run's ledger summary (a retry, or a failed call) — nothing is lost or swallowed.
"""
from __future__ import annotations

import json
import logging
import socket
from collections import Counter
from pathlib import Path

import yaml

from diziner.cli import main
from diziner.faults import fault_summary
from diziner.testing.faults import (
    annotator_responder,
    server_pool,
    supervisor_responder,
    synthetic_documents,
)
from diziner.testing.server import Faults, TestServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY_ENV = "DIZINER_REL_KEY"
LABELS = ["PER", "ORG", "LOC", "PRODUCT"]

# injected fault -> the kind the client reports (retry or failure) in the ledger
KIND_OF_FAULT = {"500": "http_5xx", "503": "http_5xx", "429": "http_429", "hang": "timeout", "malformed": "bad_response"}


def paper_faults(seed: int) -> Faults:
    """20 % 5xx, 5 % 429 (Retry-After 0.1 s), 5 % hangs, 5 % malformed bodies, 5 % truncated JSON."""
    return Faults(p_500=0.20, p_429=0.05, retry_after_s=0.1, p_hang=0.05, hang_s=2.5, p_malformed=0.05,
                  p_truncated=0.05, seed=seed)


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if path.suffix == ".yaml" else data, encoding="utf-8")
    return path


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _run_cli(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _server_fault_counts(srv: TestServer, models: set[str] | None = None) -> Counter:
    c: Counter = Counter()
    for r in srv.requests:
        if models is None or r["json"].get("model") in models:
            c[r["fault"]] += 1
    return c


def _check_fault_accounting(srv: TestServer, faults_summary: dict, *, structured_models: set[str]) -> None:
    """Every fault the server injected appears in the ledger as a retry or a failed call of its kind."""
    injected = _server_fault_counts(srv)
    seen = Counter(faults_summary["retries_by_kind"]) + Counter(faults_summary["failed_calls_by_kind"])
    for kind in set(KIND_OF_FAULT.values()):
        expected = sum(n for f, n in injected.items() if KIND_OF_FAULT.get(f) == kind)
        assert seen.get(kind, 0) == expected, (kind, dict(seen), dict(injected))
    # truncated JSON content: with structured output the client retries it as "parse";
    # without, the lenient parser keeps complete mentions or re-asks (parse_failures)
    trunc_structured = _server_fault_counts(srv, structured_models)["truncated"]
    assert seen.get("parse", 0) == trunc_structured
    assert sum(injected[k] for k in KIND_OF_FAULT) > 0 and injected["truncated"] > 0


def _check_documents(rows: list[dict], doc_ids: list[str]) -> None:
    """One line per document; failed ones carry a reason; spans are grounded in the text."""
    assert [r["id"] for r in rows] == doc_ids
    for r in rows:
        assert r["status"] in ("ok", "failed")
        if r["status"] == "failed":
            assert r["reason"] and r["spans"] == []
        for s in r["spans"]:
            assert r["text"][s["start"]:s["end"]] == s["text"]
        assert "Zyxqvort" not in json.dumps(r["spans"])


def test_refine_survives_injected_faults(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-test-faults-0000")
    docs = synthetic_documents(30, seed=3)
    texts = _jsonl(tmp_path / "texts.jsonl", docs)
    models = ["m-alpha", "m-beta", "m-gamma"]
    responder = annotator_responder(LABELS, p_ungrounded=0.05, supervisor=supervisor_responder)
    with TestServer(responder, paper_faults(seed=7)) as srv:
        pool = _write(tmp_path / "pool.yaml", server_pool(srv.base_url, models, key_env=KEY_ENV, timeout_s=1.0,
                                                          max_retries=4, structured=["json_schema", "json_schema", "none"],
                                                          supervisor_model="m-super"))
        out = tmp_path / "run"
        rc, stdout, err = _run_cli(["refine", "--schema", EXAMPLES / "schema.yaml", "--texts", texts, "--pool", pool,
                                    "--out", out, "--iterations", 2, "--sample-size", 8, "--patience", 5,
                                    "--cache", tmp_path / "cache.sqlite", "--json"], capsys)
        assert rc == 0, err
        summary = json.loads(stdout)
    assert len(summary["iterations"]) == 2
    assert all(len(it["annotators"]) >= 2 for it in summary["iterations"])
    faults = summary["faults"]
    _check_fault_accounting(srv, faults, structured_models={"m-alpha", "m-beta", "m-super"})
    assert faults["ungrounded_mentions"] > 0  # the 5 % mentions not in the text were seen and dropped
    # every document of every annotation file is accounted for
    ids = [d["id"] for d in docs]
    for it in (0, 1):
        sample = [json.loads(l)["id"] for l in (out / "iterations" / str(it) / "sample.jsonl").read_text().splitlines()]
        for f in (out / "iterations" / str(it) / "annotations").glob("*.jsonl"):
            _check_documents([json.loads(l) for l in f.read_text().splitlines()], sample)
    by_ann = sorted((out / "final" / "by_annotator").glob("*.jsonl"))
    assert len(by_ann) == 3 * len(summary["final_guidelines"])  # each annotator under each delivered guideline
    rows = []
    for f in by_ann:
        part = [json.loads(l) for l in f.read_text().splitlines()]
        _check_documents(part, ids)
        rows += part
    assert faults["documents"] == len(rows) + 3 * 2 * 8
    final = [json.loads(l) for l in (out / "final" / "annotations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in final] == ids
    # the LLM supervisor ran through the faults too
    assert (out / "iterations" / "0" / "supervisor" / "phase1.json").exists()


def test_annotate_500_documents_under_faults(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-test-faults-0001")
    docs = synthetic_documents(500, seed=11)
    texts = _jsonl(tmp_path / "texts.jsonl", docs)
    models = ["m-alpha", "m-beta", "m-gamma"]
    with TestServer(annotator_responder(LABELS, p_ungrounded=0.05), paper_faults(seed=5), keep_requests=True) as srv:
        pool = _write(tmp_path / "pool.yaml", server_pool(srv.base_url, models, key_env=KEY_ENV, timeout_s=1.0,
                                                          max_retries=3, max_concurrency=64,
                                                          structured=["json_schema", "none", "json_schema"]))
        out = tmp_path / "out.jsonl"
        rc, stdout, err = _run_cli(["annotate", "--guideline", _guideline(tmp_path), "--pool", pool, "--texts", texts,
                                    "--out", out, "--cache", tmp_path / "cache.sqlite", "--json"], capsys)
        assert rc == 0, err
        summary = json.loads(stdout)
    # the streamed annotate reports retries and failed calls by kind in its ledger summary;
    # per-document faults (failures by kind, ungrounded mentions, parse failures) are in its files
    ids = [d["id"] for d in docs]
    rows = []
    for i in range(3):
        part = [json.loads(l) for l in (tmp_path / f"out.ann{i}.jsonl").read_text().splitlines()]
        _check_documents(part, ids)
        rows += part
    total = summary["usage"]["total"]
    faults = fault_summary(rows) | {"retries_by_kind": total["retries_by_kind"],
                                    "failed_calls_by_kind": total["failures_by_kind"]}
    _check_fault_accounting(srv, faults, structured_models={"m-alpha", "m-gamma"})
    assert faults["documents"] == 1500 and faults["ok"] + faults["failed"] == 1500
    # with only 3 retries some documents fail: each is recorded with its reason, by kind
    assert faults["failed"] == sum(summary["failed"].values()) > 0
    assert sum(faults["failed_by_kind"].values()) == faults["failed"]
    assert set(faults["failed_by_kind"]) <= set(KIND_OF_FAULT.values()) | {"parse", "unreadable_answer"}
    assert faults["ungrounded_mentions"] > 0
    assert faults["parse_failures"] + faults["truncated_answers"] > 0  # the unstructured annotator met cut JSON
    cons = [json.loads(l) for l in out.read_text().splitlines()]
    # a document every annotator failed on is delivered in the failed file, not as an empty annotation
    # (which ones depends on how the faults fell on the concurrent requests)
    nobody = {r["id"] for r in rows if r["status"] == "ok"} ^ set(ids)
    failed_file = tmp_path / "out.failed.jsonl"
    failed_ids = [json.loads(l)["id"] for l in failed_file.read_text().splitlines()] if failed_file.exists() else []
    assert sorted(failed_ids) == sorted(nobody)
    assert [r["id"] for r in cons] == [i for i in ids if i not in nobody]
    for r in cons:
        for s in r["spans"]:
            assert r["text"][s["start"]:s["end"]] == s["text"]


def _guideline(tmp_path: Path) -> Path:
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    p = tmp_path / "guideline.yaml"
    p.write_text(Guideline.initial(load_schema(EXAMPLES / "schema.yaml")).to_yaml(), encoding="utf-8")
    return p


def _dead_url() -> str:
    """A URL nobody listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"


def _pool_with_dead(base_url: str, n_dead: int) -> dict:
    pool = server_pool(base_url, ["m-alpha", "m-beta", "m-gamma"], key_env=KEY_ENV, timeout_s=1.0, max_retries=1)
    dead = _dead_url()
    for a in pool["annotators"][:n_dead]:
        a["base_url"] = dead
    return pool


def test_completely_failing_annotator_is_dropped_with_a_warning(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv(KEY_ENV, "sk-test-faults-0002")
    texts = _jsonl(tmp_path / "texts.jsonl", synthetic_documents(12, seed=2))
    with TestServer(annotator_responder(LABELS)) as srv:
        pool = _write(tmp_path / "pool.yaml", _pool_with_dead(srv.base_url, 1))
        out = tmp_path / "run"
        with caplog.at_level(logging.WARNING, logger="diziner"):
            rc, stdout, err = _run_cli(["refine", "--schema", EXAMPLES / "schema.yaml", "--texts", texts, "--pool", pool,
                                        "--out", out, "--iterations", 2, "--sample-size", 4, "--patience", 5,
                                        "--cache", tmp_path / "cache.sqlite", "--json"], capsys)
    assert rc == 0, err
    summary = json.loads(stdout)
    assert [it["annotators"] for it in summary["iterations"]] == [["ann1", "ann2"], ["ann1", "ann2"]]
    assert any("'ann0' failed on every document" in r.getMessage() and "connection" in r.getMessage()
               for r in caplog.records)
    rows = [json.loads(l) for l in (out / "iterations" / "0" / "annotations" / "ann0.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["status"] == "failed" and r["reason"].startswith("connection:") for r in rows)
    assert summary["faults"]["failed_by_kind"].get("connection") == 4
    assert summary["faults"]["failed_calls_by_kind"].get("connection") == 4
    assert (out / "final" / "annotations.jsonl").exists()


def test_run_stops_clearly_when_fewer_than_two_annotators_remain(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-test-faults-0003")
    texts = _jsonl(tmp_path / "texts.jsonl", synthetic_documents(8, seed=4))
    with TestServer(annotator_responder(LABELS)) as srv:
        pool = _write(tmp_path / "pool.yaml", _pool_with_dead(srv.base_url, 2))
        rc, _, err = _run_cli(["refine", "--schema", EXAMPLES / "schema.yaml", "--texts", texts, "--pool", pool,
                               "--out", tmp_path / "run", "--iterations", 2, "--sample-size", 4,
                               "--cache", tmp_path / "cache.sqlite", "--quiet"], capsys)
    assert rc == 2
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "only 1 annotator(s) produced output in iteration 0" in lines[0]
    assert "at least 2 are needed" in lines[0]
