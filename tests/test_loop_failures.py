"""Failed calls in the delivered output (issue 13, item 1, output side) and a failed supervisor's
trace in the guideline (item 10).

A document some annotators failed on gets the vote of those who answered and is flagged
with who failed and why; a document nobody answered is listed as failed, never written as
an empty annotation.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from diziner.corpus.model import Document
from diziner.errors import LLMCallError
from diziner.guideline import Guideline
from diziner.llm.base import CallableClient, LLMRequest
from diziner.llm.ledger import Ledger
from diziner.llm.pool import pool_from_dict
from diziner.loop import RefineOptions, refine
from diziner.stream import annotate_corpus
from diziner.schema import load_schema

FENCE = re.compile(r"<<<DOCUMENT>>>\n?(.*?)\n?<<<END OF DOCUMENT>>>", re.S)

# the answer of every annotator, by text (all annotators agree where they answer)
ANSWERS = {
    "Alice joined Acme in Oslo.": [("Alice", "PER"), ("Acme", "ORG"), ("Oslo", "LOC")],
    "Borealis hired Nadia.": [("Borealis", "ORG"), ("Nadia", "PER")],
    "Mira moved to Tokyo.": [("Mira", "PER"), ("Tokyo", "LOC")],
    "Quill bought Zephyr.": [("Quill", "ORG"), ("Zephyr", "ORG")],
    "Ilse visited Vantage.": [("Ilse", "PER"), ("Vantage", "ORG")],
    "Tokyo welcomed Ilse.": [("Tokyo", "LOC"), ("Ilse", "PER")],
}
TEXTS = list(ANSWERS)
DOCS = [Document(f"d{i}", t) for i, t in enumerate(TEXTS)]
ONE_FAILS = "Borealis hired Nadia."  # annotator b fails on it
BOTH_FAIL = "Mira moved to Tokyo."  # every annotator fails on it


def _doc_text(req: LLMRequest) -> str:
    body = req.messages[-1]["content"] if req.messages else req.prompt
    return list(FENCE.finditer(body))[-1].group(1)


class Annotator:
    def __init__(self, fails: set[str]):
        self.fails = fails

    def __call__(self, req: LLMRequest) -> str:
        text = _doc_text(req)
        if text in self.fails:
            raise LLMCallError("server error 503 after 3 attempts", kind="http_5xx")
        return json.dumps({"mentions": [{"text": t, "label": lab} for t, lab in ANSWERS.get(text, [])]})


def _pool(supervisor: str = "consensus"):
    sup = {"backend": "consensus"} if supervisor == "consensus" else {"backend": "openai", "model": "sup",
                                                                       "base_url": "http://127.0.0.1:9/v1"}
    return pool_from_dict({
        "annotators": [{"id": i, "backend": "openai", "model": f"m-{i}", "base_url": "http://127.0.0.1:9/v1",
                        "prompt_style": "chat"} for i in ("a", "b")],
        "supervisor": sup,
    })


def _clients(sup=None):
    return ({"a": CallableClient(Annotator({BOTH_FAIL}), name="a"),
             "b": CallableClient(Annotator({ONE_FAILS, BOTH_FAIL}), name="b")}, sup, Ledger())


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def schema(examples_dir: Path):
    return load_schema(examples_dir / "schema.yaml")


@pytest.fixture()
def final_run(tmp_path: Path, schema):
    opts = RefineOptions(iterations=1, sample_size=6, seed=1)
    res = refine(schema, DOCS, _pool(), tmp_path / "run", opts, clients=_clients(), quiet=True)
    assert json.loads((tmp_path / "run" / "final" / "done.json").read_text())["guidelines"] == [
        "final/guideline.yaml", "final/companion-guideline.yaml"]
    return tmp_path / "run", res


def test_final_rows_flag_who_failed(final_run):
    out, _ = final_run
    rows = {r["id"]: r for r in _lines(out / "final" / "annotations.jsonl")}
    flagged = rows["d1"]
    # iteration 0 is kept, so the final annotation also ran its companion: b failed under both guidelines
    assert flagged["failed"] == [{"annotator": run, "reason": "http_5xx: server error 503 after 3 attempts"}
                                 for run in ("b", "b@companion")]
    assert "failed" not in rows["d0"]  # everyone answered: no flag


def test_a_document_nobody_answered_is_listed_as_failed_not_written_empty(final_run):
    out, _ = final_run
    rows = _lines(out / "final" / "annotations.jsonl")
    assert [r["id"] for r in rows] == ["d0", "d1", "d3", "d4", "d5"]  # d2: nobody answered
    failed = _lines(out / "final" / "failed.jsonl")
    assert failed == [{"id": "d2", "text": BOTH_FAIL,
                       "failed": [{"annotator": run, "reason": "http_5xx: server error 503 after 3 attempts"}
                                  for run in ("a", "b", "a@companion", "b@companion")]}]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_failed_documents"] == ["d2"]
    assert metrics["final_flagged_documents"] == ["d1"]


def test_the_answering_annotator_s_spans_are_delivered_for_a_document_the_other_failed_on(final_run):
    out, _ = final_run
    row = {r["id"]: r for r in _lines(out / "final" / "annotations.jsonl")}["d1"]
    assert [(s["text"], s["label"]) for s in row["spans"]] == [("Borealis", "ORG"), ("Nadia", "PER")]
    assert all(s["support"]["annotators"] == ["a", "a@companion"] for s in row["spans"])


def test_annotate_corpus_flags_and_lists_failed_documents(tmp_path: Path, schema):
    out = tmp_path / "res.jsonl"
    summary = annotate_corpus(Guideline.initial(schema), DOCS, _pool(), out, clients=_clients(), quiet=True)
    rows = {r["id"]: r for r in _lines(out)}
    assert sorted(rows) == ["d0", "d1", "d3", "d4", "d5"]
    assert rows["d1"]["failed"] == [{"annotator": "b", "reason": "http_5xx: server error 503 after 3 attempts"}]
    assert [r["id"] for r in _lines(tmp_path / "res.failed.jsonl")] == ["d2"]
    assert summary["failed_documents"] == 1 and summary["flagged_documents"] == 1


@pytest.mark.parametrize("batch_size", [2, 6])
def test_stream_flags_and_lists_failed_documents(tmp_path: Path, schema, batch_size: int):
    from diziner.stream import StreamOptions, annotate_stream

    out = tmp_path / "res.jsonl"
    summary = annotate_stream(Guideline.initial(schema), iter(DOCS), _pool(), out, clients=_clients(), quiet=True,
                              options=StreamOptions(batch_size=batch_size, weight_sample=6))
    rows = {r["id"]: r for r in _lines(out)}
    assert list(rows) == ["d0", "d1", "d3", "d4", "d5"]
    assert rows["d1"]["failed"] == [{"annotator": "b", "reason": "http_5xx: server error 503 after 3 attempts"}]
    assert "failed" not in rows["d0"]
    assert _lines(tmp_path / "res.failed.jsonl") == [
        {"id": "d2", "text": BOTH_FAIL,
         "failed": [{"annotator": "a", "reason": "http_5xx: server error 503 after 3 attempts"},
                    {"annotator": "b", "reason": "http_5xx: server error 503 after 3 attempts"}]}]
    assert summary["documents"] == 6
    assert summary["failed_documents"] == 1 and summary["flagged_documents"] == 1
    assert not list(tmp_path.glob("*partial*"))


def test_stream_delivers_the_answering_annotator_s_spans(tmp_path: Path, schema):
    from diziner.stream import StreamOptions, annotate_stream

    out = tmp_path / "res.jsonl"
    annotate_stream(Guideline.initial(schema), iter(DOCS), _pool(), out, clients=_clients(), quiet=True,
                    options=StreamOptions(batch_size=2, weight_sample=6))
    row = {r["id"]: r for r in _lines(out)}["d1"]
    assert [(s["text"], s["label"]) for s in row["spans"]] == [("Borealis", "ORG"), ("Nadia", "PER")]


def test_stream_resume_keeps_failed_documents_finished(tmp_path: Path, schema):
    """A run killed after some batches: the failed list survives and nobody-answered documents are not redone."""
    from diziner.stream import StreamOptions, annotate_stream

    class Boom(Exception):
        pass

    def killed(docs, n):
        for i, d in enumerate(docs):
            if i == n:
                raise Boom("killed")
            yield d

    out = tmp_path / "res.jsonl"
    opts = StreamOptions(batch_size=2, weight_sample=2, prefetch=0)
    with pytest.raises(Boom):
        annotate_stream(Guideline.initial(schema), killed(DOCS, 5), _pool(), out, clients=_clients(), quiet=True,
                        options=opts)
    calls = {"n": 0}

    def counting(fails):
        inner = Annotator(fails)

        def f(req):
            calls["n"] += 1
            return inner(req)
        return f

    clients = ({"a": CallableClient(counting({BOTH_FAIL}), name="a"),
                "b": CallableClient(counting({ONE_FAILS, BOTH_FAIL}), name="b")}, None, Ledger())
    summary = annotate_stream(Guideline.initial(schema), iter(DOCS), _pool(), out, clients=clients, quiet=True,
                              options=opts)
    assert summary["streaming"]["resumed_documents"] == 4  # two batches finished, d2 among them
    assert calls["n"] == 2 * 2  # only the last batch is annotated again
    assert [r["id"] for r in _lines(out)] == ["d0", "d1", "d3", "d4", "d5"]
    assert [r["id"] for r in _lines(tmp_path / "res.failed.jsonl")] == ["d2"]
    assert summary["failed_documents"] == 1


# ----------------------------------------------------------------------------- item 10


def _two_iterations(tmp_path: Path, schema, sup_client, monkeypatch=None, supervisor=None):
    opts = RefineOptions(iterations=2, sample_size=3, seed=1, patience=5, final_annotation=False,
                         supervisor="llm" if sup_client is not None else None)
    clients = ({"a": CallableClient(Annotator(set()), name="a"),
                "b": CallableClient(Annotator(set()), name="b")}, sup_client, Ledger())
    if supervisor is not None:
        monkeypatch.setattr("diziner.loop._make_supervisor", lambda kind, client, schema: supervisor)
    refine(schema, DOCS, _pool("llm" if sup_client is not None else "consensus"), tmp_path / "run", opts,
           clients=clients, quiet=True)
    g0 = yaml.safe_load((tmp_path / "run" / "iterations" / "0" / "guideline.yaml").read_text())
    g1 = yaml.safe_load((tmp_path / "run" / "iterations" / "1" / "guideline.yaml").read_text())
    return g0, g1


def test_a_failed_llm_supervisor_leaves_a_changelog_line(tmp_path: Path, schema):
    garbage = CallableClient(lambda req: "I cannot help with that.", name="sup")
    g0, g1 = _two_iterations(tmp_path, schema, garbage)
    assert g1["iteration"] == 1
    assert g1["common"] == g0["common"] and g1["model_specific"] == g0["model_specific"]
    assert len(g1["changelog"]) == len(g0["changelog"]) + 1
    line = g1["changelog"][-1]
    assert line.startswith("iteration 1:") and "failed" in line and "previous guideline kept" in line


class _FailingStub:
    """A supervisor that reports a failure without touching the guideline's change log."""

    async def revise(self, guideline, analysis, texts, *, iteration, limits, gold=None, annotations=None):
        from diziner.supervise.base import SupervisionResult

        return SupervisionResult(guideline=guideline, ok=False, error="phase 2 (diagnosis): the model said no")


class _RaisingStub:
    async def revise(self, guideline, analysis, texts, *, iteration, limits, gold=None, annotations=None):
        raise LLMCallError("budget of $0.01 exceeded", kind="budget")


def test_a_failed_supervisor_stub_leaves_a_changelog_line_with_its_reason(tmp_path: Path, schema, monkeypatch):
    g0, g1 = _two_iterations(tmp_path, schema, None, monkeypatch, _FailingStub())
    assert g1["iteration"] == 1 and g1["common"] == g0["common"]
    assert g1["changelog"] == g0["changelog"] + [
        "iteration 1: supervisor failed (phase 2 (diagnosis): the model said no); previous guideline kept"]


def test_a_supervisor_whose_call_fails_leaves_a_changelog_line(tmp_path: Path, schema, monkeypatch):
    g0, g1 = _two_iterations(tmp_path, schema, None, monkeypatch, _RaisingStub())
    assert g1["changelog"] == g0["changelog"] + [
        "iteration 1: supervisor failed (budget: budget of $0.01 exceeded); previous guideline kept"]
    metrics = json.loads((tmp_path / "run" / "iterations" / "0" / "metrics.json").read_text())
    assert metrics["supervisor_ok"] is False
    assert "error: budget: budget of $0.01 exceeded" in metrics["supervisor_notes"]


def test_export_counts_documents_nobody_answered_as_left_out(final_run):
    from diziner.export.source import load_source

    out, _ = final_run
    src = load_source(out)
    assert [d.id for d in src.docs] == ["d0", "d1", "d3", "d4", "d5"]
    assert src.skipped == ["d2"]


class _CapturingStub:
    """Keeps what the loop hands the supervisor; changes nothing."""

    def __init__(self):
        self.calls: list[dict] = []

    async def revise(self, guideline, analysis, texts, *, iteration, limits, gold=None, annotations=None):
        from diziner.supervise.base import SupervisionResult

        self.calls.append({"texts": dict(texts), "annotations": annotations})
        return SupervisionResult(guideline=guideline, ok=True)


def test_the_supervisor_gets_each_annotator_s_answered_documents(tmp_path: Path, schema, monkeypatch):
    stub = _CapturingStub()
    monkeypatch.setattr("diziner.loop._make_supervisor", lambda kind, client, schema: stub)
    opts = RefineOptions(iterations=2, sample_size=3, seed=1, patience=5, final_annotation=False)
    b_fails = set(TEXTS[:3])
    clients = ({"a": CallableClient(Annotator(set()), name="a"),
                "b": CallableClient(Annotator(b_fails), name="b")}, None, Ledger())
    refine(schema, DOCS, _pool(), tmp_path / "run", opts, clients=clients, quiet=True)
    assert stub.calls, "the supervisor was not called"
    texts = stub.calls[0]["texts"]
    failed_ids = {i for i, t in texts.items() if t in b_fails}
    assert failed_ids and failed_ids != set(texts)  # the sample has documents b failed on and others
    got = stub.calls[0]["annotations"]
    assert set(got) == {"a", "b"}
    assert set(got["a"]) == set(texts)  # a answered every document
    assert set(got["b"]) == set(texts) - failed_ids  # b's failed calls are no readings, not empty ones
    for i in failed_ids:
        assert [(s.text, s.label) for s in got["a"][i]] == ANSWERS[texts[i]]
