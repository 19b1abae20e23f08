"""The consensus is a selection among proposed spans: it never invents a span, uses one
label order, and breaks ties by a documented rule (docs/analysis.md, "Aggregation")."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.analysis import aggregate, analyze
from diziner.corpus.model import Document, Span

DOC = Document("d", "She flew to New York City with Paris Hilton on Monday .")
DOCS = [DOC]


def sp(text: str, label: str) -> Span:
    i = DOC.text.index(text)
    return Span("d", i, i + len(text), label, text)


def spans_of(out: dict, doc: str = "d") -> list[tuple[str, str]]:
    return [(s["text"], s["label"]) for s in out[doc]]


def test_boundary_tie_does_not_invent_york():
    # before: B vs I tie picks B at "York", O wins the ties at "New" and "City": "York"/LOC
    ann = {"a": {"d": [sp("New York", "LOC")]}, "b": {"d": [sp("York City", "LOC")]}}
    out = aggregate(DOCS, ann, {"a": 0.5, "b": 0.5})
    # equal span support and token support, equal length: the earlier span
    assert spans_of(out) == [("New York", "LOC")]
    assert out["d"][0]["support"]["annotators"] == ["a"]
    r = analyze(DOCS, ann)
    assert r.to_json()["documents"][0]["consensus"][3:6] == ["B-LOC", "I-LOC", "O"]


@pytest.mark.parametrize("labels", [["PER", "ORG"], ["ORG", "PER"]])
def test_type_tie_follows_the_label_order_in_analysis_and_aggregate(labels):
    ann = {"a": {"d": [sp("Paris Hilton", "PER")]}, "b": {"d": [sp("Paris Hilton", "ORG")]}}
    out = aggregate(DOCS, ann, {"a": 0.5, "b": 0.5}, labels=labels)
    assert spans_of(out) == [("Paris Hilton", labels[0])]
    r = analyze(DOCS, ann, labels=labels)
    h = next(h for h in r.hotspots if h["text"] == "Paris Hilton")
    assert [c["label"] for c in h["consensus"]] == [labels[0]]
    assert r.to_json()["documents"][0]["consensus"][7] == f"B-{labels[0]}"


def test_default_label_order_is_shared_by_analysis_and_aggregate():
    ann = {"a": {"d": [sp("Paris Hilton", "PER")]}, "b": {"d": [sp("Paris Hilton", "ORG")]}}
    out = aggregate(DOCS, ann, {"a": 0.5, "b": 0.5})
    r = analyze(DOCS, ann)
    h = next(h for h in r.hotspots if h["text"] == "Paris Hilton")
    assert h["consensus"][0]["label"] == out["d"][0]["label"] == "ORG"  # sorted labels: ORG < PER


def test_tie_rule_order():
    # 1. higher span support wins over a longer span
    ann = {
        "a": {"d": [sp("New York City", "LOC")]},
        "b": {"d": [sp("New York", "LOC")]},
        "c": {"d": [sp("New York", "LOC")]},
    }
    assert spans_of(aggregate(DOCS, ann, {"a": 1, "b": 1, "c": 1})) == [("New York", "LOC")]
    # 2. equal span support: higher token support. a: "flew to New York City" (.5 at
    #    "flew", "to", .5 at B/I mismatches) vs b: "New York" (B .5, I 1.0)
    ann = {"a": {"d": [sp("to New York", "LOC")]}, "b": {"d": [sp("New York", "LOC")]}}
    # "to New York": to .5 (B), New .5 (I, b has B), York 1 -> 2/3 ; "New York": New .5, York 1 -> .75
    assert spans_of(aggregate(DOCS, ann, {"a": 1, "b": 1})) == [("New York", "LOC")]
    # 3. equal supports: the longer span ("New York City" vs "York")
    ann = {"a": {"d": [sp("New York City", "LOC")]}, "b": {"d": [sp("York", "LOC")]}}
    # NYC: New .5? no: b says O at New -> p(B)=.5; York p(I)=.5; City .5 -> .5 ; York: p(B)=.5
    assert spans_of(aggregate(DOCS, ann, {"a": 1, "b": 1})) == [("New York City", "LOC")]
    # 4. higher weight decides a type dispute before the label order
    ann = {"a": {"d": [sp("Paris Hilton", "PER")]}, "b": {"d": [sp("Paris Hilton", "ORG")]}}
    assert spans_of(aggregate(DOCS, ann, {"a": 0.6, "b": 0.4}, labels=["ORG", "PER"])) == [("Paris Hilton", "PER")]


def test_entity_versus_nothing_tie_goes_to_nothing():
    # one annotator of two tags Monday, the other answered without it: no majority for an entity
    ann = {"a": {"d": [sp("Monday", "DATE")]}, "b": {"d": []}}
    assert aggregate(DOCS, ann, {"a": 1, "b": 1}) == {"d": []}
    # a third annotator agreeing with a makes it a majority
    ann["c"] = {"d": [sp("Monday", "DATE")]}
    assert spans_of(aggregate(DOCS, ann, {"a": 1, "b": 1, "c": 1})) == [("Monday", "DATE")]


# ----------------------------------------------------------------------------- property

TOKENS = DOC.tokens
LABELS = ["LOC", "ORG", "PER"]


@st.composite
def annotations(draw):
    k = draw(st.integers(1, 5))
    out, weights = {}, {}
    for a in range(k):
        name = f"a{a}"
        weights[name] = draw(st.floats(0.0, 1.0))
        if draw(st.integers(0, 4)) == 0:
            out[name] = {}  # did not answer
            continue
        spans, pos = [], 0
        while pos < len(TOKENS) and len(spans) < 6:
            start = pos + draw(st.integers(0, 3))
            if start >= len(TOKENS):
                break
            end = min(len(TOKENS), start + draw(st.integers(1, 3)))
            lab = draw(st.sampled_from(LABELS))
            spans.append(Span("d", TOKENS[start][0], TOKENS[end - 1][1], lab))
            pos = end
        out[name] = {"d": spans}
    return out, weights


@settings(max_examples=200, deadline=None)
@given(annotations(), st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_every_aggregate_span_was_proposed_by_someone(data, min_support):
    ann, weights = data
    out = aggregate(DOCS, ann, weights, min_support=min_support, labels=LABELS)
    proposed = {(s.start, s.end, s.label): a for a, by in ann.items() for s in by.get("d", [])}
    if not any("d" in by for by in ann.values()):
        assert out == {}
        return
    for s in out["d"]:
        key = (s["start"], s["end"], s["label"])
        assert key in proposed, f"{key} proposed by nobody"
        who = {a for a, by in ann.items() for x in by.get("d", []) if (x.start, x.end, x.label) == key}
        assert set(s["support"]["annotators"]) == who
    ends = [(s["start"], s["end"]) for s in out["d"]]
    assert all(e0 <= s1 for (_, e0), (s1, _) in zip(ends, ends[1:]))  # flat, sorted
    # the analysis' consensus is the same selection
    if min_support is None and sum(1 for by in ann.values() if "d" in by) >= 1:
        r = analyze(DOCS, ann, labels=LABELS)
        cons = r.consensus_spans()
        got = sorted((r._span_dict(int(a), int(b), int(c))["start"], r._span_dict(int(a), int(b), int(c))["end"],
                      LABELS[int(c)]) for a, b, c in zip(cons.starts, cons.ends, cons.labels))
        assert all(g in proposed for g in got)


@settings(max_examples=100, deadline=None)
@given(annotations())
def test_the_supervisor_sees_the_delivered_consensus(data):
    """analyze()'s weighted consensus and aggregate()'s consensus are the same spans."""
    ann, _ = data
    if not any("d" in by for by in ann.values()):
        return
    r = analyze(DOCS, ann, labels=LABELS)
    out = aggregate(DOCS, ann, r.weights, labels=LABELS)
    cons = r.consensus_spans()
    got = [(r._span_dict(int(a), int(b), int(c))["start"], r._span_dict(int(a), int(b), int(c))["end"], LABELS[int(c)])
           for a, b, c in zip(cons.starts, cons.ends, cons.labels)]
    assert got == [(s["start"], s["end"], s["label"]) for s in out["d"]]
