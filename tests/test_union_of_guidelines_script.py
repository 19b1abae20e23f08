"""scripts/union_of_guidelines.py: the union of two span sets and its F1, hand-computed."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from diziner.corpus.model import Span

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "union_of_guidelines.py"
_spec = importlib.util.spec_from_file_location("union_of_guidelines", _PATH)
uog = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(uog)


def sp(doc: str, start: int, end: int, label: str) -> Span:
    return Span(doc, start, end, label)


def test_union_keeps_each_span_once_per_document():
    a = {"d1": [sp("d1", 0, 3, "PER"), sp("d1", 5, 9, "LOC")], "d2": [sp("d2", 0, 2, "ORG")]}
    b = {"d1": [sp("d1", 0, 3, "PER"), sp("d1", 0, 3, "ORG")], "d3": [sp("d3", 1, 4, "PER")]}
    u = uog.union(a, b)
    assert sorted(s.key() for v in u.values() for s in v) == sorted([
        ("d1", 0, 3, "PER"), ("d1", 5, 9, "LOC"), ("d1", 0, 3, "ORG"), ("d2", 0, 2, "ORG"), ("d3", 1, 4, "PER")])
    assert a["d1"] == [sp("d1", 0, 3, "PER"), sp("d1", 5, 9, "LOC")]  # inputs untouched


def test_f1_of_the_union_against_gold():
    gold = {"d1": [sp("d1", 0, 3, "PER"), sp("d1", 5, 9, "LOC")], "d2": [sp("d2", 0, 2, "ORG")]}
    first = {"d1": [sp("d1", 0, 3, "PER")]}                          # tp 1, pred 1
    second = {"d1": [sp("d1", 5, 9, "LOC")], "d2": [sp("d2", 0, 1, "ORG")]}  # tp 1, pred 2
    ids = ["d1", "d2"]
    assert uog.f1(gold, first, ids) == 2 * 1 / (1 + 3)
    assert uog.f1(gold, second, ids) == 2 * 1 / (2 + 3)
    assert uog.f1(gold, uog.union(first, second), ids) == 2 * 2 / (3 + 3)
    assert uog.f1(gold, first, ["d2"]) == 0.0                         # only the listed documents count


def test_flat_union_over_runs_keeps_one_reading_per_token(tmp_path):
    """``--flat``: the engine's union over every run of both lists; where runs overlap the
    best-supported span wins (the set union would keep "Ada" twice, as PER and as ORG)."""
    import json

    text = "Ada met Bob in Paris ."
    spans = {"g1.a": [(0, 3, "PER")], "g1.b": [(0, 3, "PER"), (15, 20, "LOC")],
             "g2.a": [(0, 3, "ORG"), (8, 11, "PER")], "g2.b": [(8, 11, "PER")]}
    files = {}
    for name, ss in spans.items():
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text(json.dumps({"id": "d1", "text": text, "status": "ok", "spans": [
            {"start": s, "end": e, "label": lab, "text": text[s:e]} for s, e, lab in ss]}) + "\n")
    # every run agrees with one other run only (pairwise F1 2/3 with it, 0 with the rest): equal weights
    got = uog.flat_union([files["g1.a"], files["g1.b"]], [files["g2.a"], files["g2.b"]], ["PER", "LOC", "ORG"])
    assert sorted(s.key() for s in got["d1"]) == [("d1", 0, 3, "PER"), ("d1", 8, 11, "PER"), ("d1", 15, 20, "LOC")]
    alone = uog.flat_union([files["g2.a"], files["g2.b"]], [], ["PER", "LOC", "ORG"])
    assert sorted(s.key() for s in alone["d1"]) == [("d1", 0, 3, "ORG"), ("d1", 8, 11, "PER")]
