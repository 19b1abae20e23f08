"""Grounding: turn the mentions a model wrote into character offsets in the document.

For each mention, in the order the model wrote them:

1. **Offsets given by the model** are used when ``text[start:start+len(mention)]`` is the
   mention, the match respects token boundaries and that occurrence is not used yet.
2. **Exact search**: occurrences of the mention text that respect token boundaries.
   Repeated mentions are assigned in order: the *n*-th time the model writes the same
   text it gets the first occurrence that no earlier mention has taken (so writing
   "Apple" twice labels the first two occurrences, never every occurrence blindly).
   An occurrence that overlaps no span taken so far is preferred ("北京" after
   "北京大学" goes to a later, free "北京" when there is one).
3. **Fuzzy search** (status ``fuzzy``): the same, after case folding, Unicode
   compatibility folding (full-width forms, accents and other combining marks removed),
   typographic quotes and dashes unified and runs of whitespace collapsed; the span
   covers the *original* document characters. Quotes or punctuation the model put around
   the mention (``"Apple",``) are also stripped here.
4. Otherwise the mention is **ungrounded** (a hallucination or a paraphrase) and dropped.
   A mention whose every occurrence is already taken is a **duplicate** and dropped.

Token-boundary rule: a match may not start or end inside a word. A boundary lies between
two characters unless both are word characters (letters, digits, ``_`` and combining
marks). Punctuation is never part of a word, so "U.S.", "Corp." and "(IBM)" match next to
punctuation. Scripts written without spaces (Chinese, Japanese, Korean Hangul, Thai,
Lao, Khmer, Myanmar, Tibetan) allow a boundary next to any of their characters, because
their words are not delimited by spaces.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from diziner.corpus.model import Span

__all__ = ["GroundingResult", "ground_mentions", "is_boundary", "find_occurrences"]

# Scripts without spaces between words: a boundary is allowed next to these characters.
_NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
)

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "`": "'", "´": "'",
                         "“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"',
                         "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-"})
_WRAP = "\"'“”‘’«»`.,;:!?()[]{}<> \t\r\n"


def _no_space(ch: str) -> bool:
    cp = ord(ch)
    for lo, hi in _NO_SPACE_RANGES:
        if lo <= cp <= hi:
            return True
    return False


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or unicodedata.category(ch)[0] == "M"


def is_boundary(text: str, i: int) -> bool:
    """True when a mention may start or end at offset ``i`` of ``text``."""
    if i <= 0 or i >= len(text):
        return True
    a, b = text[i - 1], text[i]
    if unicodedata.category(b)[0] == "M":
        return False  # never separate a combining mark from its base character
    if not (_is_word(a) and _is_word(b)):
        return True
    return _no_space(a) or _no_space(b)


def find_occurrences(text: str, needle: str) -> list[int]:
    """Start offsets of ``needle`` in ``text`` (overlapping) that respect token boundaries."""
    out: list[int] = []
    if not needle:
        return out
    n = len(needle)
    i = text.find(needle)
    while i != -1:
        if is_boundary(text, i) and is_boundary(text, i + n):
            out.append(i)
        i = text.find(needle, i + 1)
    return out


class _Folded:
    """The document folded for fuzzy search, with a map back to original offsets."""

    def __init__(self, text: str):
        chars: list[str] = []
        origin: list[int] = []  # folded index -> original index
        prev_space = True
        for i, ch in enumerate(text):
            if ch.isspace():
                if not prev_space:
                    chars.append(" ")
                    origin.append(i)
                prev_space = True
                continue
            prev_space = False
            for f in _fold_char(ch):
                chars.append(f)
                origin.append(i)
        self.text = "".join(chars)
        self.origin = origin


def _fold_char(ch: str) -> str:
    d = unicodedata.normalize("NFKD", ch.translate(_QUOTES))
    out = "".join(c for c in d if unicodedata.category(c)[0] != "M").casefold()
    if not out and unicodedata.category(ch)[0] != "M":
        return ch  # keep characters that fold to nothing (rare) as they are
    return out


def _fold(s: str) -> str:
    return " ".join("".join(_fold_char(c) for c in s).split())


@dataclass
class GroundingResult:
    spans: list[Span] = field(default_factory=list)  # in the order the model wrote the mentions
    statuses: list[str] = field(default_factory=list)  # one per input mention: exact|fuzzy|ungrounded|duplicate
    counts: dict[str, int] = field(default_factory=lambda: {"exact": 0, "fuzzy": 0, "ungrounded": 0, "duplicate": 0})
    fuzzy: list[bool] = field(default_factory=list)  # per span: was it found by fuzzy search


def _mention_fields(m: Any) -> tuple[str, str, int | None]:
    if isinstance(m, (tuple, list)):
        text, label = m[0], m[1]
        start = m[2] if len(m) > 2 else None
        return str(text), str(label), start
    return str(m.text), str(m.label), getattr(m, "start", None)


def ground_mentions(text: str, mentions: Iterable[Any], *, doc_id: str = "") -> GroundingResult:
    """Ground ``mentions`` (ParsedMention, or (text, label[, start]) tuples) in ``text``."""
    g = _Grounder(text, doc_id)
    for m in mentions:
        g.ground(*_mention_fields(m))
    return g.res


class _Grounder:
    """Grounds mentions one by one in a text; a span taken is not given twice."""

    def __init__(self, text: str, doc_id: str):
        self.text = text
        self.doc_id = doc_id
        self.res = GroundingResult()
        self.used: set[tuple[int, int]] = set()
        self._exact: dict[str, list[int]] = {}
        self._folded: _Folded | None = None

    def ground(self, mtext: str, label: str, start: int | None) -> None:
        """1. the model's own offset, 2. the first exact occurrence not used, 3. a fuzzy search
        on the folded text (also when every exact occurrence is taken)."""
        needle = mtext.strip()
        if not needle:
            self._miss("ungrounded")
            return
        span = self._at_offset(needle, start)
        if span is not None:
            self._take(span, label, "exact")
            return
        occ = self._occurrences(needle)
        span = _pick([(s, s + len(needle)) for s in occ], self.used)
        if span is not None:
            self._take(span, label, "exact")
            return
        span, dup = self._fuzzy(needle)
        if span is not None:
            self._take(span, label, "fuzzy")
        else:
            self._miss("duplicate" if dup or occ else "ungrounded")

    def _at_offset(self, needle: str, start: int | None) -> tuple[int, int] | None:
        text, n = self.text, len(needle)
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= len(text) - n:
            return None
        for s in (start, start - 1, start + 1):  # tolerate an off-by-one
            if 0 <= s <= len(text) - n and text[s : s + n] == needle and (s, s + n) not in self.used \
                    and is_boundary(text, s) and is_boundary(text, s + n):
                return (s, s + n)
        return None

    def _occurrences(self, needle: str) -> list[int]:
        occ = self._exact.get(needle)
        if occ is None:
            occ = self._exact[needle] = find_occurrences(self.text, needle)
        return occ

    def _fuzzy(self, needle: str) -> tuple[tuple[int, int] | None, bool]:
        """(span, whether a candidate was found but taken) on the folded text, for the needle
        and the needle without wrapping punctuation."""
        if self._folded is None:
            self._folded = _Folded(self.text)
        keys = [_fold(needle)]
        stripped = needle.strip(_WRAP)
        if stripped and stripped != needle:
            keys.append(_fold(stripped))
        dup = False
        for key in (k for k in keys if k):
            cands = self._fuzzy_candidates(key)
            span = _pick(cands, self.used)
            if span is not None:
                return span, dup
            dup = dup or bool(cands)
        return None, dup

    def _fuzzy_candidates(self, key: str) -> list[tuple[int, int]]:
        folded, text = self._folded, self.text
        assert folded is not None
        cands = []
        for fs in _find_all(folded.text, key):
            s = folded.origin[fs]
            e = folded.origin[fs + len(key) - 1] + 1
            while e < len(text) and unicodedata.category(text[e])[0] == "M":
                e += 1  # include combining marks that folded to nothing
            if is_boundary(text, s) and is_boundary(text, e):
                cands.append((s, e))
        return cands

    def _take(self, span: tuple[int, int], label: str, status: str) -> None:
        s, e = span
        self.used.add((s, e))
        self.res.spans.append(Span(self.doc_id, s, e, label, self.text[s:e]))
        self.res.statuses.append(status)
        self.res.counts[status] += 1
        self.res.fuzzy.append(status == "fuzzy")

    def _miss(self, status: str) -> None:
        self.res.statuses.append(status)
        self.res.counts[status] += 1


def _pick(cands: list[tuple[int, int]], used: set[tuple[int, int]]) -> tuple[int, int] | None:
    """The first candidate not used yet, preferring one that overlaps no span taken so far."""
    free = [c for c in cands if c not in used]
    for s, e in free:
        if not any(us < e and s < ue for us, ue in used):
            return (s, e)
    return free[0] if free else None


def _find_all(hay: str, needle: str) -> Iterable[int]:
    i = hay.find(needle)
    while i != -1:
        yield i
        i = hay.find(needle, i + 1)


def ground_counts_total(results: Sequence[GroundingResult]) -> dict[str, int]:
    """Sum the status counts of several grounding results."""
    out = {"exact": 0, "fuzzy": 0, "ungrounded": 0, "duplicate": 0}
    for r in results:
        for k, v in r.counts.items():
            out[k] = out.get(k, 0) + v
    return out
