"""Error types of an annotator's spans against a reference (consensus) span set.

Both span sets are flat (non-overlapping), sorted by start, in global token indices.
Each annotator span gets one code:

* ``MATCH`` — same start, end and label as a reference span;
* ``SPURIOUS`` — overlaps no reference span (the reference says O there);
* ``TYPE`` — type confusion: overlaps reference spans, none of them with the same label
  (same extent with another label is the pure case; a different extent with a different
  label is counted here too — the label is the larger error);
* ``BOUNDARY`` — overlaps a reference span with the same label but a different extent.

A reference span that no annotator span overlaps is ``missed`` by that annotator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MATCH, SPURIOUS, TYPE, BOUNDARY = 0, 1, 2, 3
ERROR_NAMES = {SPURIOUS: "spurious", TYPE: "type_confusion", BOUNDARY: "boundary"}
MISSED = "missed"
ERROR_TYPES = ["spurious", "missed", "type_confusion", "boundary"]


@dataclass
class SpanSet:
    """Flat spans as arrays (global token indices, ends exclusive)."""

    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def overlapping(self, start: int, end: int) -> tuple[int, int]:
        """Index range [lo, hi) of spans overlapping [start, end)."""
        lo = int(np.searchsorted(self.ends, start, side="right"))
        hi = int(np.searchsorted(self.starts, end, side="left"))
        return lo, max(lo, hi)


def overlap_ranges(ref: SpanSet, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query range, the index range [lo, hi) of ``ref`` spans overlapping it."""
    lo = np.searchsorted(ref.ends, starts, side="right")
    hi = np.searchsorted(ref.starts, ends, side="left")
    return lo, np.maximum(lo, hi)


@dataclass
class Classification:
    codes: np.ndarray  # per annotator span: MATCH/SPURIOUS/TYPE/BOUNDARY
    ref_index: np.ndarray  # per annotator span: first overlapping reference span (−1 if none)
    missed: np.ndarray  # per reference span: True when no annotator span overlaps it


def classify(ann: SpanSet, ref: SpanSet) -> Classification:
    """Classify every annotator span against the reference; find missed reference spans."""
    n_a = len(ann)
    codes = np.full(n_a, SPURIOUS, dtype=np.int8)
    ref_index = np.full(n_a, -1, dtype=np.int64)
    if len(ref) == 0:
        return Classification(codes, ref_index, np.zeros(0, dtype=bool))
    if n_a == 0:
        return Classification(codes, ref_index, np.ones(len(ref), dtype=bool))
    lo, hi = overlap_ranges(ref, ann.starts, ann.ends)
    count = hi - lo
    has = count > 0
    ref_index[has] = lo[has]
    lo_c = np.minimum(lo, len(ref) - 1)
    exact = has & (ref.starts[lo_c] == ann.starts) & (ref.ends[lo_c] == ann.ends) & (ref.labels[lo_c] == ann.labels)
    same_label = has & (ref.labels[lo_c] == ann.labels)
    for i in np.flatnonzero(count > 1):  # rare: one span across several reference spans
        js = range(lo[i], hi[i])
        same_label[i] = any(ref.labels[j] == ann.labels[i] for j in js)
    codes[has] = np.where(same_label[has], BOUNDARY, TYPE)
    codes[exact] = MATCH
    rlo, rhi = overlap_ranges(ann, ref.starts, ref.ends)
    return Classification(codes, ref_index, rhi == rlo)
