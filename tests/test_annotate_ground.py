"""Grounding mentions to character offsets (diziner.annotate.ground)."""
from __future__ import annotations

import unicodedata

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.annotate.ground import find_occurrences, ground_mentions, is_boundary
from diziner.annotate.parse import ParsedMention


def spans(text, mentions):
    r = ground_mentions(text, mentions, doc_id="d")
    return [(s.start, s.end, s.text, s.label) for s in r.spans], r


def test_exact_match_next_to_punctuation():
    text = "Shares of Apple Corp. (IBM) rose in the U.S. today."
    got, r = spans(text, [("Apple Corp.", "ORG"), ("IBM", "ORG"), ("U.S.", "LOC")])
    assert got == [(10, 21, "Apple Corp.", "ORG"), (23, 26, "IBM", "ORG"), (40, 44, "U.S.", "LOC")]
    assert r.counts == {"exact": 3, "fuzzy": 0, "ungrounded": 0, "duplicate": 0}


def test_no_match_inside_a_word():
    got, r = spans("Pineapple and Applesauce", [("apple", "ORG"), ("Apple", "ORG")])
    assert got == [] and r.counts["ungrounded"] == 2


def test_repeated_mentions_take_occurrences_in_order():
    text = "Apple sued Apple's rival; later Apple won."
    got, r = spans(text, [("Apple", "ORG"), ("Apple", "ORG")])
    assert [g[0] for g in got] == [0, 11]  # the first two occurrences, not all three
    got, r = spans(text, [("Apple", "ORG")] * 4)
    assert [g[0] for g in got] == [0, 11, 32] and r.counts["duplicate"] == 1


def test_model_offsets_used_when_they_match():
    text = "Apple and Apple"
    got, _ = spans(text, [ParsedMention("Apple", "ORG", 10)])
    assert got == [(10, 15, "Apple", "ORG")]
    got, _ = spans(text, [ParsedMention("Apple", "ORG", 9)])  # off by one: tolerated
    assert got[0][0] == 10
    got, _ = spans(text, [ParsedMention("Apple", "ORG", 3)])  # wrong: falls back to search
    assert got[0][0] == 0


def test_cjk_without_spaces():
    text = "我在北京大学读书，北京很大。東京タワーに行った。"
    got, r = spans(text, [("北京大学", "ORG"), ("北京", "LOC"), ("東京タワー", "LOC")])
    assert [g[2] for g in got] == ["北京大学", "北京", "東京タワー"]
    assert all(text[s:e] == t for s, e, t, _ in got)
    assert got[1][0] == 9  # the 2nd "北京" occurrence; the first one is inside 北京大学 at a different span
    assert r.counts["exact"] == 3


def test_korean_particles():
    text = "서울에서 만났다"
    got, _ = spans(text, [("서울", "LOC")])
    assert got == [(0, 2, "서울", "LOC")]


def test_emoji_rtl_and_combining():
    text = "🎉 Visit שלום עליכם at Café Nero 😀, or Jose\u0301 Ruiz"
    got, r = spans(text, [("שלום עליכם", "LOC"), ("Café Nero", "ORG"), ("José Ruiz", "PER")])
    assert got[0][2] == "שלום עליכם" and got[1][2] == "Café Nero"
    assert got[2][2] == "Jose\u0301 Ruiz" and r.statuses == ["exact", "exact", "fuzzy"]
    # a mention may not end between a letter and its combining mark
    assert find_occurrences(text, "Jose") == []


def test_fuzzy_case_whitespace_quotes_and_width():
    text = "The  New\nYork Times said “Hello” to ＩＢＭ."
    got, r = spans(text, [("new york times", "ORG"), ("IBM", "ORG"), ('"Hello"', "MISC")])
    assert [g[2] for g in got] == ["New\nYork Times", "ＩＢＭ", "“Hello”"]
    assert r.statuses == ["fuzzy", "fuzzy", "fuzzy"] and r.fuzzy == [True, True, True]


def test_wrapping_punctuation_is_stripped_in_fuzzy():
    got, r = spans("We met Ada today.", [('"Ada",', "PER")])
    assert got == [(7, 10, "Ada", "PER")] and r.statuses == ["fuzzy"]


def test_hallucination_is_ungrounded():
    got, r = spans("Nothing to see here.", [("X", "ORG"), ("", "PER"), ("   ", "PER")])
    assert got == [] and r.counts["ungrounded"] == 3 and r.statuses == ["ungrounded"] * 3


def test_very_long_line():
    text = ("lorem ipsum " * 20000) + "Zanzibar" + (" dolor" * 20000)
    got, r = spans(text, [("Zanzibar", "LOC"), ("zanzibar", "LOC"), ("Atlantis", "LOC")])
    assert got == [(240000, 240008, "Zanzibar", "LOC")]
    assert r.counts == {"exact": 1, "fuzzy": 0, "ungrounded": 1, "duplicate": 1}


def test_boundary_rule():
    assert is_boundary("ab", 0) and is_boundary("ab", 2) and not is_boundary("ab", 1)
    assert is_boundary("a.b", 1) and is_boundary("北京", 1)
    assert not is_boundary("e\u0301", 1)


words = st.text(alphabet=st.sampled_from(list("ab AB.,é北京\u0301😀 \n-'")), max_size=60)


@settings(max_examples=300, deadline=None)
@given(words, st.lists(st.tuples(st.text(max_size=8), st.integers(-5, 70) | st.none()), max_size=8))
def test_offsets_in_range_and_exact_matches_equal_mention(text, ms):
    mentions = [ParsedMention(t, "X", s) for t, s in ms]
    r = ground_mentions(text, mentions, doc_id="d")
    assert len(r.statuses) == len(mentions)
    assert sum(r.counts.values()) == len(mentions) and len(r.spans) == r.counts["exact"] + r.counts["fuzzy"]
    it = iter(r.spans)
    seen = set()
    for m, status in zip(mentions, r.statuses):
        if status in ("exact", "fuzzy"):
            sp = next(it)
            assert 0 <= sp.start < sp.end <= len(text)
            assert sp.text == text[sp.start : sp.end]
            assert (sp.start, sp.end) not in seen
            seen.add((sp.start, sp.end))
            if status == "exact":
                assert sp.text == m.text.strip()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.integers(0, 40), st.integers(0, 10))
def test_substring_at_boundaries_is_always_found(text, a, n):
    a = min(a, len(text))
    b = min(len(text), a + n)
    needle = text[a:b]
    if not needle.strip() or needle != needle.strip():
        return
    if not (is_boundary(text, a) and is_boundary(text, b)):
        return
    r = ground_mentions(text, [(needle, "X")])
    assert r.statuses == ["exact"] and r.spans[0].text == needle
    assert unicodedata.normalize("NFC", r.spans[0].text) == unicodedata.normalize("NFC", needle)


@pytest.mark.benchmarks
def test_gold_mentions_ground_back_to_gold_offsets(shared_benchmarks):
    """Feeding the gold mention texts (in order) recovers the gold offsets on real data."""
    for rel, floor in (("crossner_politics/test.txt", 0.999), ("bc5cdr/test.tsv", 0.999),
                       ("broad_twitter_corpus/btc.test", 0.99)):
        total = hit = 0
        for sent in _read_bio(shared_benchmarks / rel):
            text, offs = "", []
            for tok, _ in sent:
                text += " " if text else ""
                offs.append((len(text), len(text) + len(tok)))
                text += tok
            gold, cur = [], None
            for (s, e), (_, tag) in zip(offs, sent):
                if tag.startswith("B-") or (tag.startswith("I-") and cur is None):
                    if cur:
                        gold.append(tuple(cur))
                    cur = [s, e, tag[2:]]
                elif tag.startswith("I-"):
                    cur[1] = e
                elif cur:
                    gold.append(tuple(cur))
                    cur = None
            if cur:
                gold.append(tuple(cur))
            gold = [g for g in gold if g[1] > g[0]]
            r = ground_mentions(text, [(text[s:e], lab) for s, e, lab in gold])
            got = {(sp.start, sp.end, sp.label) for sp in r.spans}
            total += len(gold)
            hit += sum(g in got for g in gold)
        assert hit / total >= floor, (rel, hit, total)


def _read_bio(path):
    sents, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if cur:
                sents.append(cur)
                cur = []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        parts = line.split("\t")
        cur.append((parts[0], parts[-1]))
    if cur:
        sents.append(cur)
    return sents
