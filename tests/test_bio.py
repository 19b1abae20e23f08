"""Tag schemes, BIO decoding and span projection."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.corpus.bio import (
    bio_to_spans,
    detect_scheme,
    is_tag,
    iter_bio_entities,
    normalize_tags,
    spans_to_bio,
    split_tag,
    to_scheme,
)
from diziner.corpus.model import Document, Span


def doc_of(*words: str, doc_id: str = "d") -> Document:
    toks, pos = [], 0
    for w in words:
        toks.append((pos, pos + len(w)))
        pos += len(w) + 1
    return Document(doc_id, " ".join(words), toks)


# --------------------------------------------------------------------------- tags


def test_split_tag_and_is_tag():
    assert split_tag("O") == ("O", None)
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-cell_type") == ("I", "cell_type")
    assert split_tag("S-B-X") == ("S", "B-X")
    for bad in ["", "o", "PER", "B-", "X-PER", "B PER", "B_PER"]:
        assert not is_tag(bad)
        with pytest.raises(ValueError, match="not a BIO-like tag"):
            split_tag(bad)


def test_normalize_bio_repairs_i_after_o():
    tags, probs = normalize_tags(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "I-LOC"], "bio")
    assert tags == ["O", "B-PER", "I-PER", "B-LOC", "B-LOC", "I-LOC"]
    assert [p.index for p in probs] == [1, 3]
    assert "I-PER after O" in probs[0].message
    assert "entity of PER" in probs[1].message


def test_normalize_iob1_is_not_a_problem():
    tags, probs = normalize_tags(["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "iob1")
    assert tags == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert probs == []


def test_normalize_iobes_and_bilou():
    assert normalize_tags(["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"], "iobes") == (
        ["B-PER", "B-LOC", "I-LOC", "I-LOC", "B-LOC"],
        [],
    )
    assert normalize_tags(["U-PER", "B-LOC", "L-LOC", "U-LOC"], "bilou") == (
        ["B-PER", "B-LOC", "I-LOC", "B-LOC"],
        [],
    )
    # An E- that continues nothing starts an entity (reported); after E-, I- starts anew.
    tags, probs = normalize_tags(["E-PER", "I-PER"], "iobes")
    assert tags == ["B-PER", "B-PER"]
    assert len(probs) == 2
    # A prefix foreign to the scheme is reported.
    _, probs = normalize_tags(["S-PER"], "bio")
    assert "prefix S-" in probs[0].message


def test_normalize_unknown_scheme():
    with pytest.raises(ValueError):
        normalize_tags(["O"], "io")


def test_detect_scheme():
    assert detect_scheme(["B-PER", "I-PER", "O"]) == "bio"
    assert detect_scheme(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == "iob1"
    assert detect_scheme(["O", "I-PER", "O", "B-LOC"]) == "bio"  # broken BIO, not IOB1
    assert detect_scheme(["S-PER", "O"]) == "iobes"
    assert detect_scheme(["U-PER", "O"]) == "bilou"
    assert detect_scheme(["O", "O"]) == "bio"


def test_iter_entities_like_conlleval():
    assert iter_bio_entities(["B-A", "I-A", "I-B", "O", "I-A", "B-A"]) == [(0, 2, "A"), (2, 3, "B"), (4, 5, "A"), (5, 6, "A")]
    assert iter_bio_entities(["B-A", "E-A", "I-A", "S-A"]) == [(0, 2, "A"), (2, 3, "A"), (3, 4, "A")]
    assert iter_bio_entities([]) == []


# --------------------------------------------------------------------------- to_scheme


def test_to_scheme_hand_made():
    bio = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-ORG"]
    assert to_scheme(bio, "iobes") == ["B-PER", "E-PER", "S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "S-ORG"]
    assert to_scheme(bio, "bilou") == ["B-PER", "L-PER", "U-PER", "O", "B-LOC", "I-LOC", "L-LOC", "U-ORG"]
    assert to_scheme(bio, "iob1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-LOC", "I-ORG"]
    assert to_scheme(bio, "bio") == bio
    with pytest.raises(ValueError):
        to_scheme(bio, "ioe2")


@st.composite
def bio_sequences(draw):
    """Valid BIO sequences."""
    n = draw(st.integers(0, 25))
    labels = st.sampled_from(["A", "B", "LONG_label"])
    out: list[str] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["O", "B", "I"]))
        if kind == "I" and out and out[-1] != "O":
            out.append("I-" + out[-1][2:])
        elif kind == "O":
            out.append("O")
        else:
            out.append("B-" + draw(labels))
    return out


@given(bio_sequences(), st.sampled_from(["bio", "iob1", "iobes", "bilou"]))
@settings(max_examples=300, deadline=None)
def test_scheme_round_trip(bio, scheme):
    other = to_scheme(bio, scheme)
    back, probs = normalize_tags(other, scheme)
    assert back == bio
    assert probs == []
    assert to_scheme(back, scheme) == other
    # auto mode reads IOBES/BILOU/BIO without problems too
    if scheme != "iob1":
        assert normalize_tags(other, "auto") == (bio, [])


@given(st.lists(st.sampled_from(["O", "B-A", "I-A", "E-A", "S-A", "L-B", "U-B", "I-B"]), max_size=20))
@settings(max_examples=300, deadline=None)
def test_normalize_output_is_valid_bio(tags):
    out, _ = normalize_tags(tags, "auto")
    assert len(out) == len(tags)
    prev = "O"
    for t in out:
        if t.startswith("I-"):
            assert prev != "O" and prev[2:] == t[2:]
        prev = t
    # Decoding the raw and the normalised tags gives the same entities.
    assert iter_bio_entities(out) == iter_bio_entities(tags)


# --------------------------------------------------------------------------- spans <-> BIO


def test_bio_to_spans():
    d = doc_of("Ada", "Lovelace", "met", "Charles", "Babbage", "in", "London")
    spans = bio_to_spans(d, ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC"])
    assert spans == [
        Span("d", 0, 12, "PER", "Ada Lovelace"),
        Span("d", 17, 32, "PER", "Charles Babbage"),
        Span("d", 36, 42, "LOC", "London"),
    ]
    with pytest.raises(ValueError, match="tags for"):
        bio_to_spans(d, ["O"])


def test_spans_to_bio_longest_first_and_dropped():
    d = doc_of("New", "York", "City", "Council")
    outer = d.span(0, 21, "ORG")
    inner = d.span(0, 8, "LOC")
    tail = d.span(9, 21, "MISC")
    tags, dropped = spans_to_bio(d, [inner, outer, tail])
    assert tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert dropped == sorted([inner, tail])
    tags, dropped = spans_to_bio(d, [inner, tail])
    assert tags == ["B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    assert dropped == []
    tags, dropped = spans_to_bio(d, [outer, inner], policy="leftmost_first")
    assert tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"] and dropped == [inner]
    with pytest.raises(ValueError):
        spans_to_bio(d, [], policy="random")


def test_spans_to_bio_tie_and_duplicates():
    d = doc_of("Paris", "Hilton")
    a, b = d.span(0, 5, "LOC"), d.span(0, 5, "PER")
    tags, dropped = spans_to_bio(d, [b, a, a])
    assert tags == ["B-LOC", "O"]  # same length and start: label order decides
    assert dropped == [b]  # duplicates of a are not reported


def test_spans_to_bio_unaligned_spans_cover_overlapped_tokens():
    d = doc_of("New", "York", "is", "big")
    tags, dropped = spans_to_bio(d, [Span("d", 1, 6, "LOC")])  # "ew Yo"
    assert tags == ["B-LOC", "I-LOC", "O", "O"] and dropped == []
    # A span that sits only on whitespace overlaps no token: dropped.
    tags, dropped = spans_to_bio(d, [Span("d", 3, 4, "LOC")])
    assert tags == ["O"] * 4 and len(dropped) == 1


@st.composite
def doc_and_spans(draw):
    words = draw(st.lists(st.text(alphabet="abcé中Z-", min_size=1, max_size=5), min_size=0, max_size=12))
    d = doc_of(*words)
    spans, i = [], 0
    while i < len(words):
        if draw(st.booleans()):
            n = draw(st.integers(1, min(3, len(words) - i)))
            s, e = d.tokens[i][0], d.tokens[i + n - 1][1]
            spans.append(d.span(s, e, draw(st.sampled_from(["X", "Y"]))))
            i += n
        else:
            i += 1
    return d, spans


@given(doc_and_spans())
@settings(max_examples=300, deadline=None)
def test_spans_bio_round_trip(ds):
    d, spans = ds
    tags, dropped = spans_to_bio(d, spans)
    assert dropped == []
    assert bio_to_spans(d, tags) == sorted(spans)
    for scheme in ("iobes", "bilou", "iob1"):
        assert bio_to_spans(d, normalize_tags(to_scheme(tags, scheme), scheme)[0]) == sorted(spans)
