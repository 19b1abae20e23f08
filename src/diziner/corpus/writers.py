"""Writers for annotated corpora: CoNLL (token TAB tag) and JSONL spans. Atomic writes."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from diziner.atomic import write_text
from diziner.corpus.bio import spans_to_bio, to_scheme
from diziner.corpus.model import AnnotatedCorpus, Span
from diziner.corpus.readers import DOCSTART

_BREAKS = "\t\r\n"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`diziner.atomic.write_text`)."""
    write_text(path, text)


def conll_lines(
    corpus: AnnotatedCorpus, scheme: str = "bio", policy: str = "longest_first"
) -> tuple[list[str], list[Span]]:
    """The lines of the CoNLL rendering of ``corpus`` and the spans BIO could not hold."""
    lines: list[str] = []
    dropped: list[Span] = []
    last_group: Any = object()
    for doc in corpus.documents:
        group = doc.metadata.get("group")
        if corpus.groups is not None and group is not None and group != last_group:
            lines += [f"{DOCSTART}\tO", ""]
            last_group = group
        tags, lost = spans_to_bio(doc, corpus.spans_of(doc.id), policy)
        dropped += lost
        if scheme != "bio":
            tags = to_scheme(tags, scheme)
        for tok, tag in zip(doc.token_texts, tags):
            # A token can't hold a TAB or newline in this format; they become spaces.
            if any(c in tok for c in _BREAKS):
                tok = " ".join(tok.split())
            lines.append(f"{tok}\t{tag}")
        lines.append("")
    return lines, dropped


def write_conll(
    corpus: AnnotatedCorpus, path: str | Path, *, scheme: str = "bio", policy: str = "longest_first"
) -> int:
    """Write ``token TAB tag`` lines, a blank line after each document; returns the number of
    spans dropped by the BIO projection (nested/overlapping, see :func:`spans_to_bio`).

    ``-DOCSTART-`` lines are written between groups when the corpus has groups.
    """
    lines, dropped = conll_lines(corpus, scheme, policy)
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(dropped)


def _record(corpus, doc, span_fields, include_tokens, extra) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    spans = []
    for sp in corpus.spans_of(doc.id):
        d = sp.to_dict()
        if span_fields is not None:
            more = span_fields(sp) if callable(span_fields) else span_fields.get(sp.key())
            if more:
                d.update({k: v for k, v in more.items() if k not in ("start", "end", "label")})
        spans.append(d)
    rec: dict[str, Any] = {"id": doc.id, "text": doc.text}
    if include_tokens:
        rec["tokens"] = [list(t) for t in doc.tokens or []]
    rec["spans"] = spans
    rec.update(extra)
    return rec


def write_jsonl(
    corpus: AnnotatedCorpus,
    path: str | Path,
    *,
    span_fields: Callable[[Span], Mapping[str, Any]] | Mapping[tuple, Mapping[str, Any]] | None = None,
    doc_fields: Mapping[str, Mapping[str, Any]] | None = None,
    include_tokens: bool = False,
) -> int:
    """Write one ``{"id", "text", "spans": [{"start","end","label","text", ...}]}`` per line.

    ``span_fields`` adds per-span fields (e.g. ``support``): a function of the span or a
    mapping from ``Span.key()``. ``doc_fields`` adds per-document fields by document id.
    ``include_tokens`` also writes the token offsets (``"tokens": [[start, end], ...]``) so
    that a dataset's own tokenisation survives a round trip. Returns the number of records.
    """
    out = []
    for doc in corpus.documents:
        extra = dict(doc_fields.get(doc.id, {})) if doc_fields else {}
        rec = _record(corpus, doc, span_fields, include_tokens, extra)
        out.append(json.dumps(rec, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in out))
    return len(out)


__all__ = ["atomic_write_text", "conll_lines", "write_conll", "write_jsonl"]
