"""analyze() / aggregate() on small hand-built annotations."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diziner.analysis import aggregate, analyze, analyze_arrays
from diziner.analysis.error_types import BOUNDARY, MATCH, SPURIOUS, TYPE, SpanSet, classify
from diziner.analysis.tags import TokenIndex, project
from diziner.corpus.model import Document, Span
from diziner.errors import InputError

DOCS = [
    Document("d1", "Barack Obama visited Paris and Berlin yesterday ."),
    Document("d2", "Apple sued Samsung in New York City ."),
]


def sp(doc_id: str, text: str, label: str, nth: int = 0) -> Span:
    doc = {d.id: d for d in DOCS}[doc_id]
    i = -1
    for _ in range(nth + 1):
        i = doc.text.index(text, i + 1)
    return Span(doc_id, i, i + len(text), label, text)


def three_annotators() -> dict[str, dict[str, list[Span]]]:
    return {
        "a": {
            "d1": [sp("d1", "Barack Obama", "PER"), sp("d1", "Paris", "LOC"), sp("d1", "Berlin", "LOC")],
            "d2": [sp("d2", "Apple", "ORG"), sp("d2", "Samsung", "ORG"), sp("d2", "New York City", "LOC")],
        },
        "b": {
            "d1": [sp("d1", "Barack Obama", "PER"), sp("d1", "Paris", "LOC")],
            "d2": [sp("d2", "Apple", "ORG"), sp("d2", "Samsung", "ORG"), sp("d2", "New York", "LOC")],
        },
        "c": {
            "d1": [sp("d1", "Obama", "PER"), sp("d1", "Paris", "ORG"), sp("d1", "Berlin", "LOC")],
            "d2": [sp("d2", "Apple", "ORG"), sp("d2", "New York City", "LOC")],
        },
    }


def test_weights_elite_and_f1_hand_computed():
    r = analyze(DOCS, three_annotators())
    # spans: a=6, b=5, c=5. a∩b = Obama, Paris, Apple, Samsung = 4 -> F1 = 8/11
    # a∩c = Berlin, Apple, NYC = 3 -> 6/11 ; b∩c = Apple = 1 -> 2/10
    f1 = r.pairwise_f1
    assert f1["a"]["b"] == pytest.approx(8 / 11)
    assert f1["a"]["c"] == pytest.approx(6 / 11)
    assert f1["b"]["c"] == pytest.approx(0.2)
    # means: a=(8/11+6/11)/2=7/11, b=(8/11+.2)/2=51/110, c=(6/11+.2)/2=41/110 ; sum 162/110
    assert r.weights["a"] == pytest.approx(70 / 162)
    assert r.weights["b"] == pytest.approx(51 / 162)
    assert r.weights["c"] == pytest.approx(41 / 162)
    assert r.elite == ["a", "b"]  # .432 then .747
    assert r.mean_agreement == pytest.approx((8 / 11 + 6 / 11 + 0.2) / 3)
    assert r.labels == ["LOC", "ORG", "PER"]


def test_hotspots_errors_and_readings():
    r = analyze(DOCS, three_annotators())
    hs = {h["text"]: h for h in r.hotspots}
    # "Berlin": a LOC (.432) + c LOC (.253) vs b O (.315): U* = D_conf = 1-(.685²+.315²)
    berlin = hs["Berlin"]
    assert berlin["document"] == "d1" and berlin["token_start"] == 5 and berlin["token_end"] == 6
    assert berlin["char_start"] == 31 and berlin["char_end"] == 37
    assert [e["type"] for e in berlin["errors"]] == ["missed"]
    assert berlin["errors"][0]["annotators"] == ["b"] and berlin["errors"][0]["consensus"] == "Berlin/LOC"
    assert berlin["readings"]["b"] == [] and berlin["readings"]["a"][0]["label"] == "LOC"
    assert berlin["elite_agree"] is False  # a and b (the elite) disagree
    assert berlin["consensus"] == [{"start": 31, "end": 37, "label": "LOC", "text": "Berlin"}]
    # "City": only the last token is hot, but the reading window takes the whole spans:
    city = hs["City"]
    assert city["readings"]["b"] == [{"start": 22, "end": 30, "label": "LOC", "text": "New York"}]
    assert [(e["type"], e["reading"], e["annotators"]) for e in city["errors"]] == [
        ("boundary", "New York/LOC", ["b"])
    ]
    assert city["window_char_start"] == 22 and city["window_char_end"] == 35
    assert "New York City" in city["context"]
    for h in r.hotspots:
        assert h["category"] in ("elite_split", "systematic_bias", "both", "minor")
        assert 0 < h["mean_u_star"] <= 1


def test_profiles_against_weighted_consensus():
    r = analyze(DOCS, three_annotators())
    c = r.profiles["c"]
    # consensus = a's reading everywhere (a+b or a+c outweigh the third)
    assert (c["spurious"], c["missed"], c["type_confusion"], c["boundary"]) == (0, 1, 1, 1)
    assert c["examples"]["type_confusion"][0]["consensus"] == "Paris/LOC"
    assert c["examples"]["boundary"][0]["text"] == "Obama"
    assert c["examples"]["missed"][0]["consensus"] == "Samsung/ORG"
    assert "[Obama]" in c["examples"]["boundary"][0]["context"]
    a = r.profiles["a"]
    assert a["matched"] == 6 and a["spurious"] == a["missed"] == 0


def test_to_json_fields_and_markdown():
    r = analyze(DOCS, three_annotators())
    j = json.loads(json.dumps(r.to_json()))  # JSON-serialisable
    for key in ["annotators", "weights", "elite", "pairwise_f1", "mean_pairwise_f1", "agreement", "documents",
                "hotspots", "profiles", "summary"]:
        assert key in j
    assert j["annotators"] == ["a", "b", "c"]
    d1 = j["documents"][0]
    assert d1["id"] == "d1" and d1["tokens"][:2] == ["Barack", "Obama"]
    n = len(d1["tokens"])
    for key in ["consensus", "d_conf", "d_type", "u_bnd", "u_star", "hot"]:
        assert len(d1[key]) == n
    assert d1["consensus"][:2] == ["B-PER", "I-PER"]
    assert set(j["agreement"]) == {"span_f1", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha"}
    assert j["summary"]["n_hotspots"] == len(j["hotspots"])
    md = r.to_markdown()
    assert "## Agreement" in md and "## Main patterns" in md and "## Annotator profiles" in md
    assert "New York/LOC" in md


def test_all_tokens_agree_no_hotspots():
    ann = three_annotators()
    same = {k: ann["a"] for k in ("x", "y", "z")}
    r = analyze(DOCS, same)
    assert r.hotspots == [] and r.summary["n_hotspots"] == 0
    assert r.weights == pytest.approx({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3})
    assert r.agreement["fleiss_kappa"] == pytest.approx(1.0)
    assert "No hotspots" in r.to_markdown()


def test_all_o_degenerate_agreement_is_none():
    r = analyze(DOCS, {"x": {"d1": [], "d2": []}, "y": {"d1": [], "d2": []}})
    assert r.pairwise_f1["x"]["y"] == 0.0  # both empty: silence is no agreement (was 1.0)
    assert r.mean_agreement == 0.0
    assert r.agreement["fleiss_kappa"] is None and r.agreement["krippendorff_alpha"] is None
    assert r.agreement["cohen_kappa"]["mean"] is None
    assert r.hotspots == []
    json.dumps(r.to_json())
    r.to_markdown()


def test_all_pairwise_f1_zero_every_entity_disputed():
    ann = {
        "x": {"d1": [sp("d1", "Paris", "LOC")]},
        "y": {"d1": [sp("d1", "Paris", "ORG")]},
        "z": {"d1": [sp("d1", "Barack", "PER")]},
    }
    r = analyze(DOCS, ann)
    assert r.weights == pytest.approx({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3})
    assert r.elite == ["x", "y"]
    assert r.mean_agreement == 0.0
    texts = sorted(h["text"] for h in r.hotspots)
    # Paris: 3 readings (LOC, ORG, O) -> U* = max(D_conf=2/3, D_type=.5, U_bnd=8/9) = 8/9,
    #   hot score H = max(U*, 2*D_type) = 1 (the label split counts on the boundary scale)
    # Barack: z alone -> U_bnd = 4*(1/3)*(2/3) = 8/9 = H. The 80th percentile of H over
    # (8/9, 1) is above 8/9: only Paris is hot (before, both had 8/9 and both were hot).
    assert texts == ["Paris"]
    assert sorted(h["text"] for h in analyze(DOCS, ann, percentile=0).hotspots) == ["Barack", "Paris"]
    paris = next(h for h in r.hotspots if h["text"] == "Paris")
    assert paris["mean_u_star"] == pytest.approx(8 / 9, abs=1e-4)
    assert paris["elite_agree"] is False


def test_k1_and_k2():
    ann = three_annotators()
    r1 = analyze(DOCS, {"a": ann["a"]})
    assert r1.weights == {"a": 1.0} and r1.elite == ["a"] and r1.mean_agreement is None
    assert r1.hotspots == [] and r1.agreement["fleiss_kappa"] is None
    json.dumps(r1.to_json())
    r2 = analyze(DOCS, {"a": ann["a"], "b": ann["b"]})
    assert r2.weights == pytest.approx({"a": 0.5, "b": 0.5})
    assert r2.elite == ["a"]  # tie: input order
    # one elite annotator: an elite split is impossible
    assert all(h["elite_agree"] for h in r2.hotspots)
    assert {h["category"] for h in r2.hotspots} <= {"systematic_bias", "minor"}
    assert len(r2.hotspots) >= 1


def test_hybrid_weights_mode():
    r = analyze(DOCS, three_annotators(), weights="hybrid")
    assert sum(r.weights.values()) == pytest.approx(1.0)
    assert r.to_json()["weights_mode"] == "hybrid"
    with pytest.raises(InputError):
        analyze(DOCS, three_annotators(), weights="nope")


def test_labels_fixed_and_unknown_dropped():
    r = analyze(DOCS, three_annotators(), labels=["PER", "LOC"])
    assert r.labels == ["PER", "LOC"]
    assert r.dropped["a"]["unknown_label"] == 2  # Apple, Samsung ORG
    assert any("unknown label" in p for p in r.problems)


def test_bad_input_raises_input_error():
    with pytest.raises(InputError, match="unknown document"):
        analyze(DOCS, {"a": {"nope": [Span("nope", 0, 1, "X")]}})
    with pytest.raises(InputError, match="outside the text"):
        analyze(DOCS, {"a": {"d1": [Span("d1", 0, 999, "X")]}})
    with pytest.raises(InputError):
        analyze(DOCS, {})


def test_projection_overlaps_whitespace_and_partial_tokens():
    index = TokenIndex.build(DOCS)
    spans = {
        "d1": [
            Span("d1", 0, 12, "PER"),  # Barack Obama
            Span("d1", 7, 12, "PER"),  # nested: dropped (longest first)
            Span("d1", 0, 12, "PER"),  # duplicate: placed once, not reported
            Span("d1", 12, 13, "PER"),  # whitespace only: no token
            Span("d1", 23, 24, "LOC"),  # partial token "r" of Paris -> whole token
        ]
    }
    z, dropped = project(index, spans, {"PER": 0, "LOC": 1})
    assert dropped == {"unknown_label": 0, "no_token": 1, "overlap": 1}
    assert z[:4].tolist() == [1, 2, 0, 3]


def test_projection_matches_corpus_bio():
    bio = pytest.importorskip("diziner.corpus.bio")
    rng = np.random.default_rng(0)
    labels = ["LOC", "ORG", "PER"]
    ids = {lab: i for i, lab in enumerate(labels)}
    names = ["O"] + [f"{p}-{lab}" for lab in labels for p in ("B", "I")]
    index = TokenIndex.build(DOCS)
    for _ in range(50):
        by_doc = {}
        for d in DOCS:
            spans = []
            for _ in range(int(rng.integers(0, 6))):
                a = int(rng.integers(0, len(d.text)))
                b = int(rng.integers(a + 1, len(d.text) + 1))
                spans.append(Span(d.id, a, b, labels[int(rng.integers(0, 3))]))
            by_doc[d.id] = spans
        z, _ = project(index, by_doc, ids)
        expected = []
        for d in DOCS:
            expected += bio.spans_to_bio(d, by_doc[d.id])[0]
        assert [names[t] for t in z.tolist()] == expected


def test_classify_error_types():
    ref = SpanSet(np.array([0, 5, 10]), np.array([2, 7, 12]), np.array([0, 0, 1]))
    ann = SpanSet(np.array([0, 3, 5, 10]), np.array([2, 4, 6, 12]), np.array([0, 1, 0, 0]))
    cl = classify(ann, ref)
    # (0,2,0) exact ; (3,4) no overlap -> spurious ; (5,6,0) vs (5,7,0) -> boundary ;
    # (10,12,0) vs (10,12,1) -> type confusion
    assert cl.codes.tolist() == [MATCH, SPURIOUS, BOUNDARY, TYPE]
    assert cl.missed.tolist() == [False, False, False]
    empty = SpanSet(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert classify(empty, ref).missed.tolist() == [True, True, True]
    assert classify(ann, empty).codes.tolist() == [SPURIOUS] * 4


def test_aggregate_consensus_and_span_vote():
    ann = three_annotators()
    w = {"a": 0.5, "b": 0.3, "c": 0.2}
    out = aggregate(DOCS, ann, w)
    d1 = {s["text"]: s for s in out["d1"]}
    assert set(d1) == {"Barack Obama", "Paris", "Berlin"}
    assert d1["Barack Obama"]["support"]["annotators"] == ["a", "b"]
    assert d1["Barack Obama"]["support"]["weight"] == pytest.approx(0.8)
    # tokens: Barack p(B-PER)=.8 ; Obama p(I-PER)=.8 (c has B-PER there) -> .8
    assert d1["Barack Obama"]["support"]["token_support"] == pytest.approx(0.8)
    assert d1["Berlin"]["support"]["weight"] == pytest.approx(0.7)
    assert isinstance(d1["Berlin"]["hotspot"], bool)
    # span vote, weighted majority: Berlin (a+c=.7) kept; New York (b=.3) not
    vote = aggregate(DOCS, ann, w, min_support=0.5)
    assert {s["text"] for s in vote["d2"]} == {"Apple", "Samsung", "New York City"}
    # union (min_support 0): overlapping New York City (.7) beats New York (.3); Obama loses to Barack Obama
    union = aggregate(DOCS, ann, w, min_support=0.0)
    assert [s["text"] for s in union["d2"]] == ["Apple", "Samsung", "New York City"]
    assert [s["text"] for s in union["d1"]] == ["Barack Obama", "Paris", "Berlin"]
    low = aggregate(DOCS, {"x": ann["c"], "y": {"d1": [], "d2": []}}, {"x": 1, "y": 1}, min_support=0.5)
    assert {s["text"] for s in low["d1"]} == {"Obama", "Paris", "Berlin"}  # .5 of normalised weight
    # supplied hotspots
    marked = aggregate(DOCS, ann, w, hotspots=[{"document": "d1", "token_start": 0, "token_end": 1}])
    assert [s["hotspot"] for s in marked["d1"]] == [True, False, False]
    with pytest.raises(InputError):
        aggregate(DOCS, ann, {"a": 1.0})


def test_analyze_arrays_direct():
    Z = np.array([[1, 2, 0, 0], [1, 2, 0, 3], [1, 0, 0, 3]], dtype=np.int16)
    ds = np.array([1, 0, 0, 0], dtype=bool)
    a = analyze_arrays(Z, ds, n_labels=2)
    assert a.weights.sum() == pytest.approx(1.0)
    assert a.hot.dtype == bool and len(a.scores.u_star) == 4
    assert a.scores.u_star[2] == 0.0


def test_hotspot_bridges_one_token_gap():
    # x: Paris LOC and Berlin LOC ; y: answered, nothing -> Paris, Berlin hot; "and" between them is bridged
    ann = {"x": {"d1": [sp("d1", "Paris", "LOC"), sp("d1", "Berlin", "LOC")]}, "y": {"d1": []}}
    r = analyze(DOCS, ann)
    assert [h["text"] for h in r.hotspots] == ["Paris and Berlin"]
    h = r.hotspots[0]
    assert (h["token_start"], h["token_end"]) == (3, 6)
    assert len(h["readings"]["x"]) == 2
