"""Chunking long documents and merging spans at seams (diziner.annotate.chunk)."""
from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.annotate.chunk import Chunk, approx_tokens, chunk_text, merge_chunk_spans, split_sentences
from diziner.corpus.model import Span


def test_approx_tokens():
    assert approx_tokens("") == 0 and approx_tokens("abcd") == 1 and approx_tokens("abcde") == 2


def test_sentence_split_keeps_abbreviations():
    text = "Dr. Smith joined the U.S. Army. He met J. Doe! Then 北京大学。東京に行った。\nNew line?  Yes."
    got = [text[s:e] for s, e in split_sentences(text)]
    assert got == ["Dr. Smith joined the U.S. Army.", "He met J. Doe!", "Then 北京大学。", "東京に行った。",
                   "New line?", "Yes."]


def test_short_document_is_one_chunk_with_the_whole_text():
    plan = chunk_text("  Short text.\n", 100)
    assert plan.chunks == [Chunk(0, 0, 14, "  Short text.\n")] and plan.oversized_sentences == 0


def test_long_document_chunks_are_substrings_within_budget_with_overlap():
    text = " ".join(f"Sentence number {i} mentions Paris." for i in range(60))
    plan = chunk_text(text, 40, overlap_tokens=12)
    assert len(plan.chunks) > 1
    for c in plan.chunks:
        assert text[c.start : c.end] == c.text and approx_tokens(c.text) <= 40
    for a, b in zip(plan.chunks, plan.chunks[1:]):
        assert b.start < a.end  # overlap
        assert b.start > a.start  # progress
    assert plan.chunks[-1].end == len(text.rstrip())


def test_oversized_sentence_is_split_at_whitespace_with_warning(caplog):
    text = "word " * 100 + "end."
    with caplog.at_level(logging.WARNING):
        plan = chunk_text(text, 10)
    assert plan.oversized_sentences == 1 and plan.warnings and "longer than" in caplog.text
    # nothing dropped: the chunks cover the text (consecutive ones may overlap, so that a
    # mention cut at a seam is seen whole in one of them)
    assert plan.chunks[0].start == 0 and plan.chunks[-1].end == len(text)
    assert all(b.start <= a.end and text[a.end:b.start].strip() == "" for a, b in zip(plan.chunks, plan.chunks[1:]))
    assert all(not c.text.startswith(" ") and approx_tokens(c.text) <= 10 for c in plan.chunks)


def test_no_whitespace_sentence_is_split_between_characters_not_before_marks():
    text = ("e\u0301" * 30) + "。"
    plan = chunk_text(text, 3)
    assert plan.oversized_sentences == 1
    assert "".join(c.text for c in plan.chunks) == text
    assert all(not c.text.startswith("\u0301") for c in plan.chunks)


def test_custom_token_counter():
    text = "a b c. d e f. g h i."
    plan = chunk_text(text, 3, overlap_tokens=0, count_tokens=lambda s: len(s.split()))
    assert [c.text for c in plan.chunks] == ["a b c.", "d e f.", "g h i."]


def test_merge_shifts_and_deduplicates_seams():
    text = "Ada went to Paris. Bo met Ada in Paris."
    c1, c2 = Chunk(0, 0, 18, text[:18]), Chunk(1, 19, len(text), text[19:])
    c_overlap = Chunk(1, 12, len(text), text[12:])
    s1 = [Span("d", 0, 3, "PER", "Ada"), Span("d", 12, 17, "LOC", "Paris")]
    s2 = [Span("d", 0, 5, "LOC", "Paris")]  # relative to c_overlap: Paris at 12
    merged = merge_chunk_spans([(c1, s1), (c_overlap, s2)], text)
    assert [(s.start, s.end, s.label, s.text) for s in merged] == [(0, 3, "PER", "Ada"), (12, 17, "LOC", "Paris")]
    merged = merge_chunk_spans([(c2, [Span("d", 7, 10, "PER", "Ada")])], text)
    assert merged[0].text == "Ada" and merged[0].start == 26


def test_merge_drops_cut_off_part_of_a_mention():
    text = "aaa New York bbb"
    c1, c2 = Chunk(0, 0, 7, text[:7]), Chunk(1, 4, len(text), text[4:])
    merged = merge_chunk_spans([(c1, [Span("d", 4, 7, "LOC", "New")]), (c2, [Span("d", 0, 8, "LOC", "New York")])], text)
    assert [(s.start, s.end) for s in merged] == [(4, 12)]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?\n北。é")), max_size=400), st.integers(2, 40))
def test_chunks_cover_every_non_space_character(text, budget):
    plan = chunk_text(text, budget)
    covered = [False] * len(text)
    for c in plan.chunks:
        assert text[c.start : c.end] == c.text
        for i in range(c.start, c.end):
            covered[i] = True
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
