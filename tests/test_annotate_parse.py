"""Lenient parsing of annotator answers (diziner.annotate.parse)."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.annotate.parse import ParsedMention, parse_mentions

LABELS = ["PER", "ORG", "LOC"]


def pairs(res):
    return [(m.text, m.label) for m in res.mentions]


def test_plain_object_and_bare_array():
    a = parse_mentions('{"mentions": [{"text": "Ada", "label": "PER"}]}', LABELS)
    b = parse_mentions('[{"text": "Ada", "label": "PER"}]', LABELS)
    assert a.ok and b.ok and pairs(a) == pairs(b) == [("Ada", "PER")]
    assert a.error is None and not a.truncated


def test_empty_answers_are_ok_but_empty_text_is_not():
    assert parse_mentions("[]", LABELS).ok
    assert parse_mentions('{"mentions": []}', LABELS).mentions == []
    r = parse_mentions("", LABELS)
    assert not r.ok and r.error


def test_think_block_fence_and_prose_are_stripped():
    text = ('<think>maybe [{"text": "Wrong", "label": "PER"}]</think>\nSure! Here you go:\n'
            '```json\n{"mentions": [{"text": "IBM", "label": "ORG"}]}\n```\nHope this helps.')
    r = parse_mentions(text, LABELS)
    assert r.ok and pairs(r) == [("IBM", "ORG")]


def test_unclosed_think_and_lone_close_tag():
    assert not parse_mentions('<think>[{"text": "A", "label": "PER"}]', LABELS).ok
    r = parse_mentions('reasoning here</think>[{"text": "Bo", "label": "PER"}]', LABELS)
    assert pairs(r) == [("Bo", "PER")]


def test_trailing_commas_and_single_quotes():
    r = parse_mentions("[{'text': 'O'Brien', 'label': 'PER',}, {'text': 'Acme', 'label': 'ORG'},]", LABELS)
    assert r.ok and pairs(r) == [("O'Brien", "PER"), ("Acme", "ORG")]


def test_truncated_final_element_keeps_complete_ones():
    r = parse_mentions('{"mentions": [{"text": "Ada", "label": "PER"}, {"text": "Pa', LABELS)
    assert r.ok and r.truncated and pairs(r) == [("Ada", "PER")]
    r = parse_mentions('[{"text": "Ada", "label": "PER"}, {"text": "Paris", "lab', LABELS)
    assert r.ok and r.truncated and pairs(r) == [("Ada", "PER")]


def test_truncated_before_any_mention_is_not_ok():
    r = parse_mentions('{"mentions": [{"text": "Ad', LABELS)
    assert not r.ok and r.truncated and "cut off" in r.error


def test_key_variants_and_offsets():
    r = parse_mentions('[{"entity": "Paris", "type": "loc", "start": 4}, {"mention": "Ada", "entity_type": "PER"}]', LABELS)
    assert r.mentions == [ParsedMention("Paris", "LOC", 4), ParsedMention("Ada", "PER", None)]


def test_labels_outside_schema_are_dropped_and_counted():
    r = parse_mentions('[{"text": "x", "label": "GPE"}, {"text": "y", "label": "per"}, {"text": "z", "label": "B-ORG"}]', LABELS)
    assert r.ok and r.dropped_labels == 1 and pairs(r) == [("y", "PER"), ("z", "ORG")]


def test_label_mapping_and_pairs():
    r = parse_mentions('{"PER": ["Ada", "Bo"], "MISC": ["x"]}', LABELS)
    assert pairs(r) == [("Ada", "PER"), ("Bo", "PER")] and r.dropped_labels == 1
    assert pairs(parse_mentions('[["Ada", "PER"], ["ORG", "IBM"]]', LABELS)) == [("Ada", "PER"), ("IBM", "ORG")]


def test_brackets_in_prose_before_json():
    r = parse_mentions('As noted [1] and {see} below: [{"text": "Rome", "label": "LOC"}]', LABELS)
    assert r.ok and pairs(r) == [("Rome", "LOC")]


def test_unreadable_answers():
    for text in ["No entities found.", "[1, 2, 3]", '{"foo": "bar"}', "{{{{", "]]", "null"]:
        r = parse_mentions(text, LABELS)
        assert not r.ok and r.error, text


def test_items_without_text_are_skipped():
    r = parse_mentions('[{"label": "PER"}, {"text": "", "label": "PER"}, {"text": "Ada", "label": "PER"}]', LABELS)
    assert r.ok and r.skipped_items == 2 and pairs(r) == [("Ada", "PER")]


def test_unicode_escapes_and_surrogate_pairs():
    r = parse_mentions('[{"text": "Jos\\u00e9 \\ud83d\\ude00", "label": "PER"}]', LABELS)
    assert pairs(r) == [("José 😀", "PER")]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_arbitrary_text(text):
    r = parse_mentions(text, LABELS)
    assert isinstance(r.ok, bool)
    assert all(m.label in LABELS for m in r.mentions)


_json_chars = st.sampled_from(list('[]{}",:\' \ntextlabelPERORG0123<>/think`'))


@settings(max_examples=300, deadline=None)
@given(st.lists(_json_chars, max_size=120).map("".join))
def test_never_raises_on_json_like_noise(text):
    parse_mentions(text, LABELS)


mention = st.fixed_dictionaries({"text": st.text(min_size=1, max_size=20).filter(lambda s: s.strip()),
                                 "label": st.sampled_from(LABELS)})


@settings(max_examples=200, deadline=None)
@given(st.lists(mention, max_size=8), st.booleans(), st.integers(min_value=0, max_value=400))
def test_round_trip_and_any_truncation(ms, wrap, cut):
    full = json.dumps({"mentions": ms} if wrap else ms, ensure_ascii=False)
    r = parse_mentions(full, LABELS)
    assert r.ok and pairs(r) == [(m["text"], m["label"]) for m in ms]
    # any prefix: never raises, and what it returns is a prefix of the full list
    part = parse_mentions(full[:cut], LABELS)
    got = pairs(part)
    assert got == [(m["text"], m["label"]) for m in ms][: len(got)]
