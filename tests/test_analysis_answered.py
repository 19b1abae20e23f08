"""The "answered" convention: a document absent from an annotator's dict was not answered
(a failed call), which is not "no entities". Hand-computed cases."""
from __future__ import annotations

import json

import pytest

from diziner.analysis import aggregate, analyze
from diziner.corpus.model import Document, Span

DOCS = [
    Document("d1", "Alice visited Paris ."),
    Document("d2", "Bob met Carol in Rome ."),
    Document("d3", "Berlin is cold ."),
]


def sp(doc_id: str, text: str, label: str) -> Span:
    doc = {d.id: d for d in DOCS}[doc_id]
    i = doc.text.index(text)
    return Span(doc_id, i, i + len(text), label, text)


FULL = {
    "d1": [sp("d1", "Paris", "LOC")],
    "d2": [sp("d2", "Rome", "LOC")],
    "d3": [sp("d3", "Berlin", "LOC")],
}


def three_with_b_failing() -> dict:
    b = {k: v for k, v in FULL.items() if k != "d3"}  # b failed on d3
    return {"a": dict(FULL), "b": b, "c": dict(FULL)}


def test_failed_document_does_not_lower_agreement():
    # before: b's missing d3 counted as "no entities": F1(a,b) = F1(b,c) = 2*2/(3+2) = .8,
    # mean (.8+.8+1)/3 = .867. Over the documents each pair answered: 1.0 everywhere.
    r = analyze(DOCS, three_with_b_failing())
    assert r.pairwise_f1["a"]["b"] == pytest.approx(1.0)
    assert r.pairwise_f1["b"]["c"] == pytest.approx(1.0)
    assert r.mean_agreement == pytest.approx(1.0)
    assert r.weights == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_failed_document_makes_no_hotspot_and_no_missed_profile():
    r = analyze(DOCS, three_with_b_failing())
    assert r.hotspots == []  # Berlin: a and c agree; b did not answer d3
    assert r.profiles["b"]["missed"] == 0
    assert r.profiles["b"]["consensus_spans"] == 2  # the consensus spans of the documents b answered
    assert r.profiles["a"]["consensus_spans"] == 3
    assert r.profiles["b"]["documents"] == 2
    d3 = r.to_json()["documents"][2]
    assert d3["u_star"] == [0.0, 0.0, 0.0, 0.0]
    assert d3["consensus"][0] == "B-LOC"
    assert d3["annotators"] == ["a", "c"]


def test_two_annotators_document_answered_by_one_has_no_disagreement():
    # K=2, b failed on d3: d3 is a's alone. No disagreement can be measured there.
    ann = {"a": dict(FULL), "b": {k: v for k, v in FULL.items() if k != "d3"}}
    r = analyze(DOCS, ann)
    assert r.mean_agreement == pytest.approx(1.0)
    assert r.hotspots == []
    assert r.profiles["a"]["spurious"] == 0  # Berlin is in the consensus (a's vote alone)


def test_json_says_who_answered_what():
    j = json.loads(json.dumps(analyze(DOCS, three_with_b_failing()).to_json()))
    assert j["answered"] == {"a": 3, "b": 2, "c": 3}
    assert j["unanswered"] == {"a": [], "b": ["d3"], "c": []}
    docs = j["agreement"]["span_f1"]["documents"]
    assert docs["a"]["b"] == 2 and docs["a"]["c"] == 3 and docs["b"]["b"] == 2


def test_answered_empty_list_is_no_entities():
    # b answered d3 with nothing: that IS a disagreement (F1(a,b) = 2*2/(3+2) = .8)
    ann = three_with_b_failing()
    ann["b"]["d3"] = []
    r = analyze(DOCS, ann)
    assert r.pairwise_f1["a"]["b"] == pytest.approx(0.8)
    assert [h["text"] for h in r.hotspots] == ["Berlin"]
    assert r.profiles["b"]["missed"] == 1


def test_hotspot_readings_leave_out_who_did_not_answer():
    ann = {
        "a": {"d1": [sp("d1", "Paris", "LOC")], "d2": [sp("d2", "Rome", "LOC")]},
        "b": {"d1": [sp("d1", "Paris", "ORG")], "d2": [sp("d2", "Rome", "LOC")]},
        "c": {"d2": [sp("d2", "Rome", "LOC")]},  # c failed on d1
    }
    r = analyze(DOCS[:2], ann)
    paris = next(h for h in r.hotspots if h["text"] == "Paris")
    assert set(paris["readings"]) == {"a", "b"}
    assert paris["unanswered"] == ["c"]
    assert all("c" not in e["annotators"] for e in paris["errors"])


def test_aggregate_uses_the_vote_of_those_who_answered():
    # a failed on d2, nobody answered d3
    ann = {
        "a": {"d1": [sp("d1", "Paris", "LOC")]},
        "b": {"d1": [sp("d1", "Paris", "LOC")], "d2": [sp("d2", "Rome", "LOC"), sp("d2", "Bob", "PER")]},
    }
    for ms in (None, 0.5, 0.0):
        out = aggregate(DOCS, ann, {"a": 0.5, "b": 0.5}, min_support=ms)
        assert set(out) == {"d1", "d2"}  # d3: nobody answered, absent
        assert [s["text"] for s in out["d2"]] == ["Bob", "Rome"]
        for s in out["d2"]:
            assert s["support"]["annotators"] == ["b"]
            assert s["support"]["weight"] == pytest.approx(1.0)  # all the answering weight
            assert s["support"]["token_support"] == pytest.approx(1.0)
        assert out["d1"][0]["support"]["annotators"] == ["a", "b"]


def test_aggregate_all_answered_empty_document_is_present_and_empty():
    ann = {"a": {"d1": []}, "b": {"d1": []}}
    out = aggregate(DOCS, ann, {"a": 1, "b": 1})
    assert out == {"d1": []}


def test_report_says_what_was_not_answered():
    md = analyze(DOCS, three_with_b_failing()).to_markdown()
    assert "Not answered" in md and "b 1 (d3)" in md
    assert "Not answered" not in analyze(DOCS, {"a": dict(FULL), "b": dict(FULL)}).to_markdown()
