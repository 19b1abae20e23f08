"""Chunking long documents for annotation, and merging the spans back.

A document whose text fits the budget is one chunk (its whole text, so the prompt is
the same as without chunking). A longer one is split at sentence boundaries into chunks
of at most ``max_tokens`` tokens (approximated as ``ceil(chars / 4)`` unless a
``count_tokens`` function is given), and each chunk after the first starts with the last
sentences of the previous one (up to ``overlap_tokens``), so a mention near a seam is
seen whole at least once. A single sentence longer than the budget is split at
whitespace (or, with no whitespace, between characters, never before a combining mark)
with a warning, and counted in ``ChunkPlan.oversized_sentences``: no text is ever left
out. Chunk texts are exact substrings of the document, so offsets map back by adding
``chunk.start``; spans found twice in an overlap are merged.
"""
from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from diziner.corpus.model import Span

__all__ = ["Chunk", "ChunkPlan", "approx_tokens", "split_sentences", "chunk_text", "merge_chunk_spans"]

log = logging.getLogger(__name__)

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "inc", "corp", "co", "ltd", "vs", "etc",
           "e.g", "i.e", "no", "fig", "gen", "gov", "sen", "rep", "mt", "jan", "feb", "mar", "apr",
           "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "approx", "dept", "est"}
# sentence end: terminal punctuation (plus closing quotes/brackets) followed by whitespace,
# a CJK full stop (no whitespace needed), or a line break
_END = re.compile(r"""([.!?…]+["'’”)\]]*)(?=\s)|([。！？]+["'’”」』）)]*)|(\n)""")


def approx_tokens(text: str) -> int:
    """Token estimate without a tokenizer: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # offset of the chunk in the document
    end: int
    text: str  # == document.text[start:end]


@dataclass
class ChunkPlan:
    chunks: list[Chunk]
    oversized_sentences: int = 0  # sentences longer than the budget, split inside
    warnings: list[str] = field(default_factory=list)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) covering every non-space character of ``text``."""
    out: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end()
        if m.group(1) and m.group(1).startswith("."):
            tail = re.search(r"([\w.]+)$", text[max(start, m.start(1) - 20) : m.start(1)])
            tok = tail.group(1).casefold() if tail else ""
            nxt = text[end : end + 3].lstrip()[:1]
            # "Dr. Smith", "U.S. Army", "J. Smith": not a sentence end
            if tok and nxt.isalpha() and (tok.rstrip(".") in _ABBREV or (len(tok) == 1 and tok.isalpha())):
                continue
        _add(text, start, end, out)
        start = end
    _add(text, start, len(text), out)
    return out


def _add(text: str, s: int, e: int, out: list[tuple[int, int]]) -> None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if e > s:
        out.append((s, e))


def _split_long(text: str, s: int, e: int, max_tokens: int, count: Callable[[str], int]) -> list[tuple[int, int]]:
    """Split text[s:e] into pieces within the budget, at whitespace when there is any."""
    pieces: list[tuple[int, int]] = []
    while s < e:
        if count(text[s:e]) <= max_tokens:
            pieces.append((s, e))
            break
        # the longest prefix within budget (binary search on the end offset)
        lo, hi = s + 1, e
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[s:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        cut = lo
        ws = max((m.start() for m in re.finditer(r"\s+", text[s:cut])), default=-1)
        if ws > 0:
            cut = s + ws
        else:
            while cut > s + 1 and unicodedata.category(text[cut])[0] == "M":
                cut -= 1  # keep a combining mark with its base character
        pieces.append((s, cut))
        s = cut
        while s < e and text[s].isspace():
            s += 1
    return [(a, b) for a, b in pieces if b > a]


def chunk_text(text: str, max_tokens: int = 1500, *, overlap_tokens: int | None = None,
               count_tokens: Callable[[str], int] | None = None) -> ChunkPlan:
    """Plan the chunks of ``text``; see the module docstring."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    count = count_tokens or approx_tokens
    if count(text) <= max_tokens:
        return ChunkPlan([Chunk(0, 0, len(text), text)])
    overlap = max_tokens // 10 if overlap_tokens is None else max(0, min(overlap_tokens, max_tokens // 2))
    plan = ChunkPlan([])
    units: list[tuple[int, int]] = []
    for s, e in split_sentences(text):
        if count(text[s:e]) > max_tokens:
            plan.oversized_sentences += 1
            msg = (f"a sentence of about {count(text[s:e])} tokens at characters {s}-{e} is longer than the "
                   f"chunk budget of {max_tokens} tokens; it was split at whitespace")
            plan.warnings.append(msg)
            log.warning(msg)
            # pieces no longer than the overlap, so that consecutive chunks of this sentence
            # still share text and a mention cut at a seam is seen whole in one of them
            units.extend(_split_long(text, s, e, overlap if overlap > 0 else max_tokens, count))
        else:
            units.append((s, e))
    i = 0
    while i < len(units):
        j = i
        start = units[i][0]
        while j + 1 < len(units) and count(text[start : units[j + 1][1]]) <= max_tokens:
            j += 1
        end = units[j][1]
        plan.chunks.append(Chunk(len(plan.chunks), start, end, text[start:end]))
        if j + 1 >= len(units):
            break
        # the next chunk repeats the tail sentences of this one, within the overlap budget
        k = j + 1
        while k - 1 > i and count(text[units[k - 1][0] : units[j][1]]) <= overlap \
                and count(text[units[k - 1][0] : units[j + 1][1]]) <= max_tokens:
            k -= 1
        i = k
    return plan


def merge_chunk_spans(per_chunk: Iterable[tuple[Chunk, Sequence[Span]]], doc_text: str) -> list[Span]:
    """Shift chunk-relative spans to document offsets and merge the duplicates at seams.

    A span that ends (or starts) exactly at a chunk's inner cut and lies strictly inside a
    span of the same label from another chunk is the cut-off part of that mention and is
    dropped. Returns spans sorted by (start, end, label).
    """
    items: list[tuple[int, Span, Chunk]] = []
    n = len(doc_text)
    for chunk, spans in per_chunk:
        for sp in spans:
            s, e = sp.start + chunk.start, sp.end + chunk.start
            items.append((chunk.index, Span(sp.doc_id, s, e, sp.label, doc_text[s:e]), chunk))
    keep: dict[tuple, Span] = {}
    for ci, sp, chunk in items:
        at_cut = (sp.end == chunk.end and chunk.end < n) or (sp.start == chunk.start and chunk.start > 0)
        if at_cut and any(o.label == sp.label and o.start <= sp.start and sp.end <= o.end
                          and (o.start, o.end) != (sp.start, sp.end) and oc != ci for oc, o, _ in items):
            continue
        keep.setdefault(sp.key(), sp)
    return sorted(keep.values(), key=lambda x: (x.start, x.end, x.label))
