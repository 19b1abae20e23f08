"""The typed records between stages: their JSON is exactly the analysis' and aggregation's
JSON, and older or hand-written dicts still parse."""
from __future__ import annotations

import json
import random

import pytest

from diziner.analysis import aggregate, aggregate_spans, analyze
from diziner.analysis.records import (
    AggregatedSpan,
    ErrorProfile,
    Hotspot,
    hot_runs_of,
    hotspots_of,
    profiles_of,
)
from diziner.corpus.model import Document, Span
from diziner.errors import InputError

LABELS = ["LOC", "ORG", "PER", "PRODUCT"]


def _real(examples_dir):
    """The example corpus with three annotators made from its gold spans: one drops spans,
    one relabels some, one shortens some (fixed seed)."""
    rows = [json.loads(line) for line in (examples_dir / "gold.jsonl").read_text(encoding="utf-8").splitlines() if line]
    docs = [Document(r["id"], r["text"]) for r in rows]
    rnd = random.Random(7)
    ann: dict[str, dict[str, list[Span]]] = {"a": {}, "b": {}, "c": {}}
    for r in rows:
        gold = [Span(r["id"], s["start"], s["end"], s["label"], s["text"]) for s in r["spans"]]
        ann["a"][r["id"]] = [s for s in gold if rnd.random() > 0.2]
        ann["b"][r["id"]] = [Span(s.doc_id, s.start, s.end, rnd.choice(LABELS) if rnd.random() < 0.3 else s.label, s.text)
                             for s in gold]
        cut = [Span(s.doc_id, s.start, s.end - 1 if rnd.random() < 0.3 and s.end - s.start > 3 else s.end, s.label)
               for s in gold]
        if rnd.random() < 0.2:
            continue  # c did not answer this document
        ann["c"][r["id"]] = cut
    return docs, ann


def test_records_dump_to_the_analysis_json_on_a_real_analysis(examples_dir):
    docs, ann = _real(examples_dir)
    res = analyze(docs, ann, labels=LABELS)
    j = json.loads(json.dumps(res.to_json()))  # as read back from analysis.json
    assert j["hotspots"] and any(h["errors"] for h in j["hotspots"]) and any(h["unanswered"] for h in j["hotspots"])
    assert [h.to_json() for h in res.hotspot_records] == j["hotspots"]
    assert [h.to_json() for h in hotspots_of(j)] == j["hotspots"]
    assert {a: p.to_json() for a, p in profiles_of(j).items()} == j["profiles"]
    assert {a: p.to_json() for a, p in res.profile_records.items()} == j["profiles"]
    assert json.dumps([h.to_json() for h in hotspots_of(j)]) == json.dumps(j["hotspots"])  # key order too


@pytest.mark.parametrize("mode", [{}, {"min_support": 0.5}, {"reliability": "annotator"}])
def test_aggregated_spans_dump_to_the_aggregate_json(examples_dir, mode):
    docs, ann = _real(examples_dir)
    res = analyze(docs, ann, labels=LABELS)
    typed = aggregate_spans(docs, ann, res.weights, hotspots=res.hotspot_records, labels=LABELS, **mode)
    rows = aggregate(docs, ann, res.weights, hotspots=res.hotspots, labels=LABELS, **mode)
    assert {d: [s.to_json() for s in v] for d, v in typed.items()} == rows
    assert any(s["hotspot"] for v in rows.values() for s in v)
    assert ("posterior" in next(s for v in rows.values() for s in v)["support"]) == ("reliability" in mode)
    for d, v in rows.items():
        assert [AggregatedSpan.model_validate(s).to_json() for s in v] == v
        assert [s.to_span(d) for s in typed[d]] == [Span(d, s["start"], s["end"], s["label"], s["text"]) for s in v]


def test_hand_written_hotspots_and_profiles_parse_with_defaults():
    h = Hotspot.model_validate({"document": "d1", "char_start": 4, "char_end": 16, "text": "Ada Lovelace",
                                "readings": {"x": [{"start": 4, "end": 16, "label": "PER"}]},
                                "errors": [{"reading": "O", "consensus": "Acme/ORG"}]})
    assert h.window == (4, 16)  # no window: the hotspot's own extent
    assert h.readings["x"][0].text == "" and h.errors[0].annotators == [] and h.unanswered == []
    assert h.id is None and h.elite_agree is None and h.consensus is None and h.reference == []
    w = Hotspot.model_validate({"char_start": 4, "char_end": 16, "window_char_start": 0, "window_char_end": 20})
    assert w.window == (0, 20)
    assert Hotspot.model_validate({"consensus": [], "elite_consensus": [{"start": 0, "end": 2, "label": "L"}]}
                                  ).reference[0].label == "L"
    p = ErrorProfile.model_validate({"missed": 2, "examples": {"missed": [{"text": "Acme", "label": "O"}]}})
    assert (p.count("missed"), p.count("spurious"), p.examples["missed"][0].text) == (2, 0, "Acme")
    assert [(r.document, r.token_start, r.token_end) for r in hot_runs_of([{"document": 3, "token_start": 1,
                                                                             "token_end": 2}])] == [("3", 1, 2)]


def test_a_malformed_hotspot_is_a_one_line_input_error():
    with pytest.raises(InputError, match=r"hotspots\[1\]\.readings\.x\.0\.start"):
        hotspots_of({"hotspots": [{}, {"readings": {"x": [{"start": "here", "end": 2, "label": "L"}]}}]})
