"""Token tag schemes and the projection between character spans and BIO tags.

Spans (character offsets) are the truth; BIO tags are a projection onto a document's
tokens. This module converts between the two and between tag schemes:

* schemes: ``bio`` (= IOB2), ``iob1``, ``iobes`` (B/I/E/S), ``bilou`` (B/I/L/U).
  Every scheme is normalised to BIO by :func:`normalize_tags`.
* :func:`bio_to_spans` decodes tags into :class:`~diziner.corpus.model.Span` objects.
* :func:`spans_to_bio` projects spans onto tokens (policy ``longest_first`` for
  overlapping spans; the spans that could not be placed are returned).
* :func:`to_scheme` writes BIO tags in another scheme.

Decoding follows the conlleval/seqeval convention: a continuation tag (``I-``, ``E-``,
``L-``) that does not continue an entity of the same label starts a new entity.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from diziner.corpus.model import Document, Span

SCHEMES = ("bio", "iob1", "iobes", "bilou")
_TAG_RE = re.compile(r"^([BIESLU])-(\S.*)$")
# Prefix -> BIO role: "B" begins, "I" continues; single-token and end tags map accordingly.
_BEGIN = {"B", "S", "U"}
_CONTINUE = {"I", "E", "L"}
_SCHEME_PREFIXES = {
    "bio": {"B", "I"},
    "iob1": {"B", "I"},
    "iobes": {"B", "I", "E", "S"},
    "bilou": {"B", "I", "L", "U"},
}


class TagProblem(NamedTuple):
    """A repair made while normalising: ``index`` is the token position in the sequence."""

    index: int
    message: str


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", None)``; raises ValueError if not BIO-like."""
    if tag == "O":
        return "O", None
    m = _TAG_RE.match(tag)
    if m is None:
        raise ValueError(
            f"tag {tag!r} is not a BIO-like tag (expected O, or B-/I-/E-/S-/L-/U- followed by a label)"
        )
    return m.group(1), m.group(2)


def is_tag(tag: str) -> bool:
    """True when ``tag`` is ``O`` or a prefix in B/I/E/S/L/U, a dash and a label."""
    return tag == "O" or _TAG_RE.match(tag) is not None


def detect_scheme(tags: Iterable[str]) -> str:
    """Guess the scheme of a tag collection (all sentences of a file, flattened).

    ``iobes`` when E-/S- occur, ``bilou`` when L-/U- occur, ``iob1`` when some entity
    starts with I- and B- is only ever used right after an entity of the same label,
    otherwise ``bio``. Sentence boundaries may be marked by ``"O"`` (any padding works).
    """
    prefixes: set[str] = set()
    i_starts = 0
    b_after_outside = 0
    prev_p, prev_l = "O", None
    for tag in tags:
        p, lab = split_tag(tag)
        prefixes.add(p)
        if p == "I" and (prev_p == "O" or prev_l != lab):
            i_starts += 1
        if p == "B" and (prev_p == "O" or prev_l != lab):
            b_after_outside += 1
        prev_p, prev_l = p, lab
    if prefixes & {"E", "S"}:
        return "iobes"
    if prefixes & {"L", "U"}:
        return "bilou"
    if i_starts and not b_after_outside:
        return "iob1"
    return "bio"


def normalize_tags(tags: Sequence[str], scheme: str = "auto") -> tuple[list[str], list[TagProblem]]:
    """Convert one sentence's tags from ``scheme`` to BIO; returns (tags, repairs).

    ``scheme`` is one of :data:`SCHEMES` or ``"auto"`` (prefixes decide: S-/U- begin an
    entity, E-/L- continue one). A continuation tag that does not continue an entity of
    the same label starts a new entity (``B-``). In ``iob1`` that is the scheme's normal
    meaning; in every other scheme it is an invalid sequence and is reported as a repair.
    Prefixes foreign to an explicit scheme (e.g. ``S-`` in ``bio``) are also reported.
    Raises ValueError for a tag that is not BIO-like.
    """
    if scheme != "auto" and scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r} (use one of {', '.join(SCHEMES)} or auto)")
    allowed = _SCHEME_PREFIXES.get(scheme)
    out: list[str] = []
    problems: list[TagProblem] = []
    prev_label: str | None = None  # label of the entity the previous token belongs to
    for i, tag in enumerate(tags):
        p, lab = split_tag(tag)
        if p == "O":
            out.append("O")
            prev_label = None
            continue
        if allowed is not None and p not in allowed:
            problems.append(TagProblem(i, f"prefix {p}- in a {scheme} sequence ({tag})"))
        if p in _BEGIN:
            out.append(f"B-{lab}")
        elif prev_label == lab:
            out.append(f"I-{lab}")
        else:
            out.append(f"B-{lab}")
            if scheme != "iob1":
                before = "O" if prev_label is None else f"an entity of {prev_label}"
                problems.append(TagProblem(i, f"{tag} after {before} starts a new entity (B-{lab})"))
        prev_label = lab
        # S-/U- and E-/L- close the entity: a following continuation starts a new one.
        if p in {"S", "U", "E", "L"}:
            prev_label = None
    return out, problems


def iter_bio_entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entities of a BIO sequence as (first token, last token exclusive, label).

    Lenient like conlleval: ``I-X`` after ``O`` or after another label starts an entity.
    Tags of the other schemes are accepted too (their prefixes are mapped as in
    :func:`normalize_tags`).
    """
    entities: list[tuple[int, int, str]] = []
    start: int | None = None
    label: str | None = None
    closed = False  # the current entity ended with an E-/L-/S-/U- tag
    for i, tag in enumerate(tags):
        p, lab = split_tag(tag)
        continues = start is not None and not closed and p in _CONTINUE and lab == label
        if continues:
            if p in {"E", "L"}:
                closed = True
            continue
        if start is not None:
            entities.append((start, i, label or ""))
            start, label = None, None
        if p != "O":
            start, label = i, lab
            closed = p in {"S", "U", "E", "L"}
    if start is not None:
        entities.append((start, len(tags), label or ""))
    return entities


def bio_to_spans(doc: Document, tags: Sequence[str]) -> list[Span]:
    """Decode one tag per token of ``doc`` into character spans (sorted by start)."""
    tokens = doc.tokens or []
    if len(tags) != len(tokens):
        raise ValueError(f"document {doc.id}: {len(tags)} tags for {len(tokens)} tokens")
    spans = []
    for a, b, lab in iter_bio_entities(tags):
        s, e = tokens[a][0], tokens[b - 1][1]
        spans.append(Span(doc.id, s, e, lab, doc.text[s:e]))
    return sorted(spans)


def token_range(doc: Document, start: int, end: int) -> tuple[int, int] | None:
    """Tokens ``[i, j)`` of ``doc`` that overlap the characters ``[start, end)``; None if none."""
    first = last = None
    for i, (ts, te) in enumerate(doc.tokens or []):
        if ts < end and te > start:
            if first is None:
                first = i
            last = i
        elif first is not None and ts >= end:
            break
    if first is None or last is None:
        return None
    return first, last + 1


def spans_to_bio(
    doc: Document, spans: Iterable[Span], policy: str = "longest_first"
) -> tuple[list[str], list[Span]]:
    """Project character spans onto ``doc``'s tokens as BIO tags; returns (tags, dropped).

    * A span covers every token it overlaps by at least one character, so a span that
      does not sit on token boundaries is widened to whole tokens ("New Yo" on the
      tokens "New" "York" tags both). A span that overlaps no token is dropped.
    * BIO cannot express nested or overlapping spans. Policy ``longest_first`` keeps the
      span covering the most characters first (ties: earlier start, then label in
      alphabetical order) and drops any span that would share a token with a kept one.
      Policy ``leftmost_first`` keeps spans in order of start (ties: longer first).
    * Exact duplicates (same start, end and label) are placed once and not reported.
    """
    tokens = doc.tokens or []
    tags = ["O"] * len(tokens)
    unique = sorted(set(spans))
    if policy == "longest_first":
        order = sorted(unique, key=lambda s: (-(s.end - s.start), s.start, s.label, s.end))
    elif policy == "leftmost_first":
        order = sorted(unique, key=lambda s: (s.start, -(s.end - s.start), s.label))
    else:
        raise ValueError(f"unknown projection policy {policy!r} (use longest_first or leftmost_first)")
    seen: set[tuple[int, int, str]] = set()
    dropped: list[Span] = []
    for sp in order:
        k = (sp.start, sp.end, sp.label)
        if k in seen:
            continue
        seen.add(k)
        rng = token_range(doc, sp.start, sp.end)
        if rng is None or any(tags[i] != "O" for i in range(*rng)):
            dropped.append(sp)
            continue
        a, b = rng
        tags[a] = f"B-{sp.label}"
        for i in range(a + 1, b):
            tags[i] = f"I-{sp.label}"
    return tags, sorted(dropped)


def to_scheme(tags: Sequence[str], scheme: str) -> list[str]:
    """Rewrite a BIO sequence in ``scheme`` (``bio``, ``iob1``, ``iobes`` or ``bilou``).

    The input is decoded leniently (see :func:`iter_bio_entities`), so the output is
    always a valid sequence of the target scheme.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r} (use one of {', '.join(SCHEMES)})")
    out = ["O"] * len(tags)
    prev_end, prev_label = -1, None
    for a, b, lab in iter_bio_entities(tags):
        n = b - a
        if scheme == "bio":
            names = ["B"] + ["I"] * (n - 1)
        elif scheme == "iob1":
            touching = prev_end == a and prev_label == lab
            names = ["B" if touching else "I"] + ["I"] * (n - 1)
        else:
            single, end = ("S", "E") if scheme == "iobes" else ("U", "L")
            names = [single] if n == 1 else ["B"] + ["I"] * (n - 2) + [end]
        for k, p in enumerate(names):
            out[a + k] = f"{p}-{lab}"
        prev_end, prev_label = b, lab
    return out
