"""Secrets: an API key given through the pool's ``api_key_env`` reaches the server's
Authorization header and nothing else — not the run directory, not the response cache,
not the ledger, not the logs (captured at DEBUG, every logger), not error messages, even
when the server echoes the key back in a 401 body or cannot be reached at all.
"""
from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
import yaml

from diziner.cli import main
from diziner.testing.faults import (
    annotator_responder,
    server_pool,
    supervisor_responder,
    synthetic_documents,
)
from diziner.testing.server import Faults, TestServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY_ENV = "DIZINER_SECRET_TEST_KEY"
CANARY = "sk-canary-7f3a9c1e5b2d4e6f8a0b"
LABELS = ["PER", "ORG", "LOC", "PRODUCT"]


def _leaks(root: Path, secret: str) -> list[str]:
    """Files under ``root`` whose bytes contain the secret (as UTF-8, or UTF-16 as SQLite may store text)."""
    needles = [secret.encode("utf-8"), secret.encode("utf-16-le"), secret.encode("utf-16-be")]
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def _texts(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "texts.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in synthetic_documents(n, seed=21)), encoding="utf-8")
    return p


def _pool(tmp_path: Path, base_url: str, **kw) -> Path:
    p = tmp_path / "pool.yaml"
    p.write_text(yaml.safe_dump(server_pool(base_url, ["m-a", "m-b", "m-c"], key_env=KEY_ENV, **kw)), encoding="utf-8")
    return p


@pytest.fixture
def all_logs(caplog):
    caplog.set_level(logging.DEBUG)  # root: every library's debug output is captured too
    return caplog


def test_canary_key_reaches_the_server_and_nothing_else(tmp_path, monkeypatch, capsys, all_logs):
    monkeypatch.setenv(KEY_ENV, CANARY)
    texts = _texts(tmp_path, 12)
    faults = Faults(p_500=0.15, p_429=0.05, retry_after_s=0.05, p_malformed=0.05, seed=3)
    with TestServer(annotator_responder(LABELS, supervisor=supervisor_responder), faults) as srv:
        pool = _pool(tmp_path, srv.base_url, timeout_s=2, max_retries=6, supervisor_model="m-super")
        out, cache = tmp_path / "run", tmp_path / "cache" / "llm.sqlite"
        rc = main(["refine", "--schema", str(EXAMPLES / "schema.yaml"), "--texts", str(texts), "--pool", str(pool),
                   "--out", str(out), "--iterations", "2", "--sample-size", "4", "--patience", "5",
                   "--cache", str(cache)])
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        auth = [r["headers"].get("authorization") for r in srv.requests]
    # the server got the key, on every request
    assert auth and all(a == f"Bearer {CANARY}" for a in auth)
    # ... and nothing else did
    assert _leaks(out, CANARY) == []
    assert _leaks(cache.parent, CANARY) == []  # SQLite file, WAL and shm included
    assert CANARY not in cap.out + cap.err
    assert all(CANARY not in r.getMessage() and CANARY not in str(r.args) for r in all_logs.records)
    assert (out / "ledger.jsonl").exists() and len(list(cache.parent.iterdir())) >= 1
    run = json.loads((out / "run.json").read_text())
    assert run["pool"]["annotators"][0]["base_url"] == srv.base_url  # the run records where, never the key


def test_401_that_echoes_the_key_is_not_passed_on(tmp_path, monkeypatch, capsys, all_logs):
    monkeypatch.setenv(KEY_ENV, CANARY)
    texts = _texts(tmp_path, 6)
    with TestServer(annotator_responder(LABELS), Faults(sequence=["401"] * 1000)) as srv:
        pool = _pool(tmp_path, srv.base_url, timeout_s=2, max_retries=2)
        out = tmp_path / "run"
        rc = main(["refine", "--schema", str(EXAMPLES / "schema.yaml"), "--texts", str(texts), "--pool", str(pool),
                   "--out", str(out), "--iterations", "1", "--sample-size", "3", "--cache", str(tmp_path / "c.sqlite")])
        cap = capsys.readouterr()
        bodies = len(srv.requests)
    assert rc == 2 and bodies == 9  # 3 annotators x 3 documents, and 401 is not retried
    assert "error:" in cap.err and "annotator(s) produced output" in cap.err
    # the failure reasons are recorded (HTTP 401 named) without the key the server echoed
    rows = [json.loads(l) for f in (out / "iterations" / "0" / "annotations").glob("*.jsonl")
            for l in f.read_text().splitlines()]
    assert len(rows) == 9 and all(r["status"] == "failed" and "HTTP 401" in r["reason"] for r in rows)
    assert any("Incorrect API key provided: ***" in r["reason"] for r in rows)
    assert _leaks(tmp_path, CANARY) == []
    assert CANARY not in cap.out + cap.err
    assert all(CANARY not in r.getMessage() for r in all_logs.records)


def test_unreachable_endpoint_error_does_not_echo_the_key(tmp_path, monkeypatch, capsys, all_logs):
    monkeypatch.setenv(KEY_ENV, CANARY)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    s.close()
    texts = _texts(tmp_path, 4)
    pool = _pool(tmp_path, dead, timeout_s=1, max_retries=1)
    out = tmp_path / "ann.jsonl"
    g = tmp_path / "g.yaml"
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    g.write_text(Guideline.initial(load_schema(EXAMPLES / "schema.yaml")).to_yaml(), encoding="utf-8")
    rc = main(["annotate", "--guideline", str(g), "--pool", str(pool), "--texts", str(texts), "--out", str(out),
               "--cache", str(tmp_path / "c.sqlite")])
    cap = capsys.readouterr()
    assert rc == 2 and "error:" in cap.err and "Traceback" not in cap.err
    assert CANARY not in cap.out + cap.err
    assert _leaks(tmp_path, CANARY) == []
    assert all(CANARY not in r.getMessage() for r in all_logs.records)
    ledger = [json.loads(l) for p in tmp_path.glob("*.ledger.jsonl") for l in p.read_text().splitlines()]
    assert ledger and all(r["ok"] is False and r["kind"] == "connection" for r in ledger)


def test_missing_key_is_named_but_never_shown(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("SOME_OTHER_VAR", CANARY)
    pool = _pool(tmp_path, "http://127.0.0.1:9/v1")
    rc = main(["refine", "--schema", str(EXAMPLES / "schema.yaml"), "--texts", str(_texts(tmp_path, 3)), "--pool",
               str(pool), "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite")])
    cap = capsys.readouterr()
    assert rc == 2 and KEY_ENV in cap.err and f"{pool}:" in cap.err and CANARY not in cap.err


def test_key_pasted_into_the_pool_file_is_rejected_without_echo(tmp_path, capsys):
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump({"annotators": [{"id": "a", "backend": "openai", "model": "m",
                                                    "base_url": "http://x/v1", "api_key_env": CANARY}]}),
                    encoding="utf-8")
    rc = main(["refine", "--schema", str(EXAMPLES / "schema.yaml"), "--texts", str(_texts(tmp_path, 3)), "--pool",
               str(pool), "--out", str(tmp_path / "run")])
    cap = capsys.readouterr()
    assert rc == 2 and "api_key_env" in cap.err and CANARY not in cap.err + cap.out
    assert not (tmp_path / "run").exists() or _leaks(tmp_path / "run", CANARY) == []
