"""One scoring path for every output compared in a table (issue 13, item 7).

Annotators answer with raw character spans; the consensus is decoded from tokens. Every
output is snapped to the document's tokens the same way (the analysis projection) before
it is scored, so two annotators writing "U.S" against the gold token "U.S." score what
their consensus scores.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diziner.corpus.model import AnnotatedCorpus, Document, Span
from diziner.evaluate import evaluate_corpora, score_outputs, snap_to_tokens
from diziner.guideline import Guideline
from diziner.llm.base import CallableClient, LLMRequest
from diziner.llm.ledger import Ledger
from diziner.llm.pool import pool_from_dict
from diziner.loop import RefineOptions, refine
from diziner.schema import load_schema

FENCE = re.compile(r"<<<DOCUMENT>>>\n?(.*?)\n?<<<END OF DOCUMENT>>>", re.S)

# dataset tokens (CoNLL style): "U.S." is one token
DOCS = [
    Document("d1", "U.S. troops left.", tokens=[(0, 4), (5, 11), (12, 16), (16, 17)]),
    Document("d2", "The U.S. economy grew.", tokens=[(0, 3), (4, 8), (9, 16), (17, 21), (21, 22)]),
]
GOLD = {"d1": [Span("d1", 0, 4, "LOC", "U.S.")], "d2": [Span("d2", 4, 8, "LOC", "U.S.")]}


def _answer_us(req: LLMRequest) -> str:
    body = req.messages[-1]["content"] if req.messages else req.prompt
    assert FENCE.search(body)
    return json.dumps({"mentions": [{"text": "U.S", "label": "LOC"}]})


def _pool():
    return pool_from_dict({
        "annotators": [{"id": i, "backend": "openai", "model": f"m-{i}", "base_url": "http://127.0.0.1:9/v1",
                        "prompt_style": "chat"} for i in ("a", "b")],
        "supervisor": {"backend": "consensus"},
    })


def _clients():
    return ({k: CallableClient(_answer_us, name=k) for k in ("a", "b")}, None, Ledger())


def test_snap_moves_a_partial_token_span_onto_its_token():
    snapped = snap_to_tokens(DOCS, {"d1": [Span("d1", 0, 3, "LOC", "U.S")]})
    assert snapped == {"d1": [Span("d1", 0, 4, "LOC", "U.S.")]}
    # idempotent on token-aligned spans; unknown labels are kept (they are scored, as false positives)
    assert snap_to_tokens(DOCS, snapped) == snapped
    odd = {"d2": [Span("d2", 9, 16, "WEIRD", "economy")]}
    assert snap_to_tokens(DOCS, odd) == odd


def test_score_outputs_scores_annotators_like_the_consensus():
    raw = {"d1": [Span("d1", 0, 3, "LOC", "U.S")], "d2": [Span("d2", 4, 7, "LOC", "U.S")]}
    cons = {"d1": [Span("d1", 0, 4, "LOC", "U.S.")], "d2": [Span("d2", 4, 8, "LOC", "U.S.")]}
    got = score_outputs(GOLD, {"a": raw, "consensus": cons}, DOCS)
    assert got["a"]["micro"]["f1"] == got["consensus"]["micro"]["f1"] == 1.0


def test_loop_iteration_and_final_f1_use_one_scoring_path(tmp_path: Path, examples_dir: Path):
    schema = load_schema(examples_dir / "schema.yaml")
    opts = RefineOptions(iterations=1, sample_size=2, seed=1)
    res = refine(schema, DOCS, _pool(), tmp_path / "run", opts, gold=GOLD, clients=_clients(), quiet=True)
    # the consensus is "U.S." (token), the annotators wrote "U.S": all three score the same
    assert res.iterations[0].f1 == {"a": 1.0, "b": 1.0, "consensus": 1.0}
    # iteration 0 kept: its companion ran too, each run scored on the same path
    assert res.final_f1 == {"a": 1.0, "b": 1.0, "a@companion": 1.0, "b@companion": 1.0, "consensus": 1.0}


def test_bench_rows_use_one_scoring_path(tmp_path: Path, examples_dir: Path):
    import asyncio

    from diziner.bench import _score_system

    schema = load_schema(examples_dir / "schema.yaml")
    clients, _, ledger = _clients()
    got = asyncio.run(_score_system(DOCS, Guideline.initial(schema), clients, _pool(), GOLD,
                                    {"refine": RefineOptions(), "quiet": True}, tmp_path / "guideline-0", ledger))
    assert got["annotators"]["a"]["f1"] == got["annotators"]["b"]["f1"] == 1.0
    assert got["consensus"]["f1"] == got["union"]["f1"] == 1.0


def test_evaluate_can_snap_predictions_to_the_gold_tokens():
    gold = AnnotatedCorpus(DOCS, dict(GOLD))
    pred_docs = [Document(d.id, d.text) for d in DOCS]  # a JSONL file: tokens from the tokenizer
    pred = AnnotatedCorpus(pred_docs, {"d1": [Span("d1", 0, 3, "LOC", "U.S")], "d2": [Span("d2", 4, 7, "LOC", "U.S")]})
    assert evaluate_corpora(gold, pred)["micro"]["f1"] == 0.0  # raw characters by default
    assert evaluate_corpora(gold, pred, snap=True)["micro"]["f1"] == pytest.approx(1.0)
