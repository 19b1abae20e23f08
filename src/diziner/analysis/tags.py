"""Tag ids, span → token projection and token → span decoding (vectorised).

The analysis works on one integer matrix ``Z`` of shape (K annotators, N tokens): the
tokens of all documents concatenated in input order. Tag ids are small integers:

* ``0`` is ``O``;
* label ``l`` (0-based index in the label list) has ``B-l = 2l + 1`` and ``I-l = 2l + 2``.

So tag index order is ``O, B-l0, I-l0, B-l1, I-l1, ...`` — the order used by every
tie-break in the analysis.

Projection rule (characters → tokens): a span covers every token it overlaps by at
least one character; a span that overlaps no token (only whitespace) is dropped.
Exact duplicates are placed once. Overlapping spans (flat BIO cannot hold nested
mentions) are resolved as :func:`diziner.corpus.bio.spans_to_bio` does with its default
``longest_first`` policy: the span covering the most characters first (ties: earlier
start, then label name, then end); a span sharing a token with a kept one is dropped.
Dropped spans are counted, never silently lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diziner.corpus.model import Document, Span
from diziner.errors import InputError


def tag_names(labels: list[str]) -> list[str]:
    """Tag strings in tag-id order: ``["O", "B-l0", "I-l0", ...]``."""
    out = ["O"]
    for lab in labels:
        out += [f"B-{lab}", f"I-{lab}"]
    return out


def tag_label(z: np.ndarray) -> np.ndarray:
    """Label index of each tag id (−1 for O)."""
    z = np.asarray(z)
    return np.where(z > 0, (z - 1) // 2, -1)


@dataclass
class TokenIndex:
    """The tokens of a document list, concatenated.

    ``offsets[d]`` is the first global token index of document ``d`` (length D+1);
    ``doc_start`` marks the first token of every document; ``char_start``/``char_end``
    are each token's character offsets inside its own document.
    """

    documents: list[Document]
    offsets: np.ndarray
    doc_of_token: np.ndarray
    doc_start: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    position: dict[str, int] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def build(cls, documents: list[Document]) -> TokenIndex:
        lengths = np.fromiter((len(d.tokens or []) for d in documents), dtype=np.int64, count=len(documents))
        offsets = np.zeros(len(documents) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        n = int(offsets[-1])
        flat = np.fromiter(
            (x for d in documents for tok in (d.tokens or []) for x in tok), dtype=np.int64, count=2 * n
        ).reshape(n, 2)
        doc_of_token = np.repeat(np.arange(len(documents), dtype=np.int64), lengths)
        doc_start = np.zeros(n, dtype=bool)
        doc_start[offsets[:-1][lengths > 0]] = True
        position: dict[str, int] = {}
        for i, d in enumerate(documents):
            if d.id in position:
                raise InputError(None, None, f"document id {d.id!r} appears twice")
            position[d.id] = i
        return cls(documents, offsets, doc_of_token, doc_start, flat[:, 0].copy(), flat[:, 1].copy(), position)


def project(
    index: TokenIndex,
    spans_by_doc: dict[str, list[Span]],
    label_ids: dict[str, int],
    annotator: str = "",
) -> tuple[np.ndarray, dict[str, int]]:
    """Project one annotator's character spans onto BIO tag ids over all tokens.

    Returns ``(z, dropped)`` where ``z`` has one tag id per global token and
    ``dropped`` counts spans lost, by reason: ``unknown_label``, ``no_token``
    (covers no token) and ``overlap`` (overlaps a span already taken).
    Raises :class:`InputError` for an unknown document id or offsets outside the text.
    """
    z = np.zeros(index.n_tokens, dtype=np.int16 if 2 * len(label_ids) + 1 < 32767 else np.int32)
    (d_arr, s_arr, e_arr, l_arr), dropped = _span_arrays(index, spans_by_doc, label_ids, annotator)
    if not len(d_arr):
        return z, dropped
    # Global character coordinates: shift every document past the previous one.
    doc_len = np.fromiter((len(doc.text) + 1 for doc in index.documents), dtype=np.int64)
    base = np.zeros(len(doc_len), dtype=np.int64)
    np.cumsum(doc_len[:-1], out=base[1:])
    tok_base = base[index.doc_of_token]
    gs, ge, l_arr = _unique(s_arr + base[d_arr], e_arr + base[d_arr], l_arr)
    ts = np.searchsorted(index.char_end + tok_base, gs, side="right")  # first token ending after the span start
    te = np.searchsorted(index.char_start + tok_base, ge, side="left")  # first token starting at/after the span end
    ok = te > ts
    dropped["no_token"] += int((~ok).sum())
    ts, te, l_arr = ts[ok], te[ok], l_arr[ok]
    # spans are sorted by start: they overlap iff a start precedes the running max end
    prev_max = np.maximum.accumulate(np.r_[0, te[:-1]]) if len(te) else te
    if len(te) and np.any(ts[1:] < prev_max[1:]):
        keep = _longest_first(ts, te, gs[ok], ge[ok], l_arr, label_ids, index.n_tokens)
        dropped["overlap"] = int((~keep).sum())
        ts, te, l_arr = ts[keep], te[keep], l_arr[keep]
    lengths = te - ts
    inside = np.repeat(2 * l_arr + 2, lengths)  # I tags
    pos = np.repeat(ts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    z[pos] = inside
    z[ts] = 2 * l_arr + 1  # B tags
    return z, dropped


def _span_arrays(index: TokenIndex, spans_by_doc: dict[str, list[Span]], label_ids: dict[str, int], annotator: str
                 ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], dict[str, int]]:
    """(document, start, end, label id) arrays of the spans that can be placed, and the
    counts of those dropped (empty, unknown label); bad ids and offsets raise."""
    dropped = {"unknown_label": 0, "no_token": 0, "overlap": 0}
    rows: list[tuple[int, int, int, int]] = []
    for doc_id, spans in spans_by_doc.items():
        if not spans:
            continue
        d = index.position.get(doc_id)
        if d is None:
            raise InputError(None, None, f"annotator {annotator!r}: unknown document id {doc_id!r}")
        text_len = len(index.documents[d].text)
        for sp in spans:
            if not (0 <= sp.start <= sp.end <= text_len):
                raise InputError(
                    None,
                    None,
                    f"annotator {annotator!r}, document {doc_id!r}: span [{sp.start}, {sp.end}) "
                    f"is outside the text (length {text_len})",
                )
            lid = label_ids.get(sp.label)
            if sp.start == sp.end:
                dropped["no_token"] += 1
            elif lid is None:
                dropped["unknown_label"] += 1
            else:
                rows.append((d, sp.start, sp.end, lid))
    cols = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    return (cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3]), dropped


def _unique(gs: np.ndarray, ge: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted by start, end, label; exact duplicates (same document, start, end, label) placed once, not reported."""
    order = np.lexsort((labels, ge, gs))
    dup = np.zeros(len(order), dtype=bool)
    dup[1:] = (gs[order][1:] == gs[order][:-1]) & (ge[order][1:] == ge[order][:-1]) & (labels[order][1:] == labels[order][:-1])
    order = order[~dup]
    return gs[order], ge[order], labels[order]


def _longest_first(ts: np.ndarray, te: np.ndarray, gs: np.ndarray, ge: np.ndarray, labels: np.ndarray,
                   label_ids: dict[str, int], n_tokens: int) -> np.ndarray:
    """Which of overlapping spans to keep (rare): longest first (characters), then earlier
    start, then label name, then end — the rule of diziner.corpus.bio.spans_to_bio."""
    name_rank = np.empty(len(label_ids), dtype=np.int64)
    name_rank[[label_ids[n] for n in sorted(label_ids)]] = np.arange(len(label_ids))
    greedy = np.lexsort((ge, name_rank[labels], gs, -(ge - gs)))
    occupied = np.zeros(n_tokens, dtype=bool)
    keep = np.zeros(len(ts), dtype=bool)
    for i in greedy.tolist():
        a, b = ts[i], te[i]
        if not occupied[a:b].any():
            occupied[a:b] = True
            keep[i] = True
    return keep


def decode(z: np.ndarray, doc_start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spans of a BIO tag-id row: ``(starts, ends, labels)`` in global token indices.

    ``ends`` are exclusive. Spans never cross a document start. An ``I-l`` that does
    not continue a span of the same label starts a new span (lenient decoding; the
    consensus argmax may produce such a tag).
    """
    z = np.asarray(z)
    n = len(z)
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), e.copy()
    lab = tag_label(z)
    ent = lab >= 0
    is_i = ent & (z % 2 == 0)
    cont = np.zeros(n, dtype=bool)
    cont[1:] = is_i[1:] & (lab[1:] == lab[:-1]) & ~doc_start[1:]
    starts = np.flatnonzero(ent & ~cont)
    next_cont = np.zeros(n, dtype=bool)
    next_cont[:-1] = cont[1:]
    ends = np.flatnonzero(ent & ~next_cont) + 1
    return starts.astype(np.int64), ends.astype(np.int64), lab[starts].astype(np.int64)


def encode(starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, n: int, dtype=np.int16) -> np.ndarray:
    """BIO tag ids of non-overlapping token spans (the inverse of :func:`decode`)."""
    z = np.zeros(n, dtype=dtype)
    starts, ends, labels = (np.asarray(a, dtype=np.int64) for a in (starts, ends, labels))
    lengths = ends - starts
    if lengths.sum() == 0:
        return z
    pos = np.repeat(starts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    z[pos] = np.repeat(2 * labels + 2, lengths)
    z[starts] = 2 * labels + 1
    return z


def span_keys(starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, n: int, n_labels: int) -> np.ndarray:
    """One int64 per span, equal iff (start, end, label) are equal."""
    return (np.asarray(starts, np.int64) * (n + 1) + np.asarray(ends, np.int64)) * max(n_labels, 1) + np.asarray(
        labels, np.int64
    )
