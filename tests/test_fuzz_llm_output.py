"""Hostile model answers: the mention parser, the grounding step, the per-document runner
and the annotation-line reader never raise on anything a model (or a broken file) gives
them, and every span that comes out satisfies text[start:end] == span.text.
"""
from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diziner.annotate.ground import ground_mentions
from diziner.annotate.parse import ParsedMention, parse_mentions
from diziner.annotate.runner import DocResult, annotate_document
from diziner.corpus.model import Document
from diziner.errors import InputError
from diziner.guideline import Guideline
from diziner.llm.base import CallableClient
from diziner.schema import LabelDef, Schema

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LABELS = ["PER", "ORG", "LOC"]
NASTY = st.sampled_from(["東京大学", "北京", "😀", "👩‍👩‍👧", "Ame\u0301lie", "Amélie", "שלום עולם", "مرحبا", "\u200b",
                         "\u0000", "\r\n", "\ufeff", "ＡＢＣ", "O'Brien", "“Apple”", "Apple", "apple", "  ", "\t",
                         "<think>", "</think>", "```json", "```", "{", "}", "[", "]", "\"", "'", ",", ":", "\\u00e9",
                         "mentions", "label", "text", "PER", "per", "B-ORG", "null", "NaN", "1e999"])
TEXT = st.lists(st.one_of(st.text(max_size=10), NASTY), max_size=25).map("".join)
DOC = st.lists(st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10), NASTY),
               min_size=1, max_size=25).map("".join)


def _mention_json(doc: str, draw_slices: list[tuple[int, int]], labels: list[str]) -> list[dict]:
    out = []
    for (a, b), lab in zip(draw_slices, labels):
        a, b = sorted((a % (len(doc) + 1), b % (len(doc) + 1)))
        out.append({"text": doc[a:b], "label": lab})
    return out


@FUZZ
@given(answer=st.one_of(TEXT, st.binary(max_size=60).map(lambda b: b.decode("latin-1")), st.none(), st.integers()))
def test_parser_never_raises(answer):
    r = parse_mentions(answer, LABELS)
    assert r.ok or r.error
    for m in r.mentions:
        assert isinstance(m.text, str) and m.label in LABELS


@FUZZ
@given(doc=DOC, slices=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 400)), max_size=8),
       labels=st.lists(st.sampled_from(LABELS + ["per", "B-LOC", "MISC"]), min_size=8, max_size=8),
       wrapper=st.sampled_from(["{\"mentions\": %s}", "%s", "```json\n%s\n```", "<think>x</think>%s", "Sure! %s Done."]),
       cut=st.integers(0, 1000))
def test_parse_then_ground_keeps_offsets(doc, slices, labels, wrapper, cut):
    body = wrapper % json.dumps(_mention_json(doc, slices, labels), ensure_ascii=False)
    if cut % 4 == 0:
        body = body[: cut % (len(body) + 1)]  # truncated answer
    r = parse_mentions(body, LABELS)
    g = ground_mentions(doc, r.mentions, doc_id="d")
    assert len(g.statuses) == len(r.mentions)
    assert sum(g.counts.values()) == len(r.mentions)
    for sp in g.spans:
        assert 0 <= sp.start < sp.end <= len(doc)
        assert doc[sp.start:sp.end] == sp.text
    assert len({(s.start, s.end, s.label) for s in g.spans}) == len(g.spans)


@FUZZ
@given(doc=DOC, mentions=st.lists(st.tuples(TEXT, st.sampled_from(LABELS), st.one_of(st.none(), st.integers(-5, 500))),
                                  max_size=8))
def test_grounding_of_arbitrary_mentions(doc, mentions):
    g = ground_mentions(doc, [ParsedMention(t, lab, s) for t, lab, s in mentions], doc_id="d")
    for sp in g.spans:
        assert doc[sp.start:sp.end] == sp.text and sp.end > sp.start
    # a mention that occurs nowhere (even after folding) is never grounded
    g2 = ground_mentions(doc, [ParsedMention("Zyxqvort Unmentioned Holdings", "ORG")])
    if "zyxqvort" not in doc.casefold():
        assert g2.spans == [] and g2.counts["ungrounded"] == 1


def _guideline() -> Guideline:
    return Guideline.initial(Schema(name="t", goal="Tag names.", labels=[
        LabelDef(name=n, definition=f"A named {n.lower()}.") for n in LABELS]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOC, answers=st.lists(TEXT, min_size=1, max_size=3), style=st.sampled_from(["chat", "fewshot"]))
def test_runner_never_raises_on_hostile_answers(doc, answers, style):
    queue = list(answers)

    def fn(req):
        return queue.pop(0) if len(queue) > 1 else queue[0]

    res = asyncio.run(annotate_document(Document("d", doc), _guideline(), "a", CallableClient(fn), style, reask=1))
    assert res.status in ("ok", "failed")
    if res.status == "failed":
        assert res.reason and res.spans == []
    for sp in res.spans:
        assert doc[sp.start:sp.end] == sp.text
    # the JSONL line it becomes reads back to the same result
    back = DocResult.from_json(res.to_line(), path="x.jsonl", line=1)
    assert back.spans == res.spans and back.status == res.status


@FUZZ
@given(line=st.one_of(TEXT, st.dictionaries(st.sampled_from(["id", "text", "status", "spans", "grounding", "calls",
                                                              "reason", "chunks"]),
                                             st.recursive(st.one_of(st.none(), st.integers(-3, 30), TEXT, st.booleans()),
                                                          lambda c: st.lists(c, max_size=3)
                                                          | st.dictionaries(st.sampled_from(["start", "end", "label", "text"]), c),
                                                          max_leaves=10)).map(json.dumps)))
def test_annotation_line_reader(line):
    try:
        r = DocResult.from_json(line, path="ann.jsonl", line=3)
    except InputError as e:
        assert e.one_line().startswith("ann.jsonl:3: ")
        return
    for sp in r.spans:
        if r.text:
            assert r.text[sp.start:sp.end] == sp.text
