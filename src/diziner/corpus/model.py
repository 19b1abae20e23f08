"""The data model. Character offsets are the truth; tokens and BIO tags are projections.

A :class:`Document` is one unit of annotation (a sentence for CoNLL-style benchmark
files, a line for plain text, a record for JSONL). Its ``tokens`` are character
offset pairs into ``text``: kept from the dataset when it has its own tokens,
otherwise derived by :func:`tokenize`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN_RE = re.compile(r"\w+(?:[-.]\w+|['’](?!s\b)\w+)*|['’]s\b|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into word and punctuation tokens; returns (start, end) offsets.

    Words may contain inner hyphens, apostrophes and dots ("U.S", "don't", "COVID-19");
    a possessive "'s" is its own token ("Valve's" → "Valve", "'s") so that a name ends
    on a token boundary; every other non-space character is its own token.
    """
    return [(m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


@dataclass(frozen=True, order=True)
class Span:
    """A labelled mention: ``text == document.text[start:end]``."""

    doc_id: str
    start: int
    end: int
    label: str
    text: str = ""

    def key(self) -> tuple[str, int, int, str]:
        """Identity used for strict evaluation: (document, start, end, label)."""
        return (self.doc_id, self.start, self.end, self.label)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label, "text": self.text}


@dataclass
class Document:
    id: str
    text: str
    tokens: list[tuple[int, int]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = tokenize(self.text)

    @property
    def token_texts(self) -> list[str]:
        return [self.text[s:e] for s, e in self.tokens or []]

    def span(self, start: int, end: int, label: str) -> Span:
        return Span(self.id, start, end, label, self.text[start:end])


@dataclass
class AnnotatedCorpus:
    """Documents plus the spans annotated on them (gold, a model's, or a consensus)."""

    documents: list[Document]
    spans: dict[str, list[Span]] = field(default_factory=dict)  # doc id -> spans, sorted
    problems: list[str] = field(default_factory=list)  # repairs and warnings found while reading
    groups: int | None = None  # number of source documents (-DOCSTART- groups) when known

    def spans_of(self, doc_id: str) -> list[Span]:
        return self.spans.get(doc_id, [])

    def all_spans(self) -> list[Span]:
        return [s for d in self.documents for s in self.spans.get(d.id, [])]
