"""Typed records the analysis hands to the later stages: hotspots (with their readings,
errors, consensus spans and window), per-annotator error profiles, and aggregated spans
with their support.

The analysis builds them; ``analysis.json`` and the aggregated JSONL hold their
``to_json()`` dumps, unchanged in format (``docs/analysis-format.md``). Consumers (the
supervisors, the HTML report, the loop) parse a JSON object once at their boundary
(:func:`hotspots_of`, :func:`profiles_of`) and then read attributes. Parsing is lenient
about what older or hand-written analyses leave out: every field but a span's extent and
label has a default, and a hotspot without a reading window reads its own extent as one.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from diziner.corpus.model import Span
from diziner.errors import InputError

__all__ = ["AggregatedSpan", "ErrorExample", "ErrorProfile", "HotRun", "Hotspot", "HotspotError", "SpanRecord",
           "Support", "hot_runs_of", "hotspots_of", "profiles_of"]


class _Record(BaseModel):
    """Lenient input (unknown keys ignored, numbers read as strings where a string is due)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON object (fields that are None are left out)."""
        return self.model_dump(exclude_none=True)


class SpanRecord(_Record):
    """A span in character offsets of its document (a reading or a consensus span)."""

    start: int
    end: int
    label: str
    text: str = ""

    @property
    def reading(self) -> str:
        """``"text/label"``, as error readings are written."""
        return f"{self.text}/{self.label}"


class HotspotError(_Record):
    """One distinct erroneous reading of a hotspot against the elite consensus."""

    type: str = ""  # spurious / missed / type_confusion / boundary
    reading: str = ""  # "text/label" of the annotators' span, "O" for missed
    consensus: str = ""  # "text/label" of the elite-consensus span involved, "O" for spurious
    labels: str = ""  # the label (or "GOLD→READ") patterns are grouped by
    annotators: list[str] = []


class Hotspot(_Record):
    """A hot run of one document with its reading window and what every annotator read there."""

    id: int | str | None = None  # index in the analysis' list
    document: str = ""
    token_start: int | None = None  # None (here and below): not recorded
    token_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    window_char_start: int | None = None  # default: char_start
    window_char_end: int | None = None  # default: char_end
    text: str = ""
    context: str = ""
    category: str = ""
    elite_agree: bool | None = None
    bias: float | None = None
    mean_u_star: float | None = None
    errors: list[HotspotError] = []
    readings: dict[str, list[SpanRecord]] = {}  # annotators who answered the document
    unanswered: list[str] = []
    consensus: list[SpanRecord] | None = None  # weighted consensus in the window
    elite_consensus: list[SpanRecord] | None = None  # the reference of ``errors``

    @model_validator(mode="after")
    def _window(self) -> Hotspot:
        if self.window_char_start is None:
            self.window_char_start = self.char_start
        if self.window_char_end is None:
            self.window_char_end = self.char_end
        return self

    @property
    def window(self) -> tuple[int, int]:
        """The reading window in characters (0 where not recorded)."""
        return int(self.window_char_start or 0), int(self.window_char_end or 0)

    @property
    def reference(self) -> list[SpanRecord]:
        """The consensus spans, or the elite consensus when there are none."""
        return self.consensus or self.elite_consensus or []


class HotRun(_Record):
    """Just the tokens of a hotspot (what aggregation needs to flag spans in hotspots)."""

    document: str = ""
    token_start: int = 0
    token_end: int = 0


class ErrorExample(_Record):
    """An example of one error type in an annotator's profile (``[text]`` marked in context)."""

    document: str = ""
    text: str = ""
    label: str = ""
    consensus: str = ""
    context: str = ""


class ErrorProfile(_Record):
    """An annotator's errors against the weighted consensus of the documents it answered."""

    spurious: int = 0
    missed: int = 0
    type_confusion: int = 0
    boundary: int = 0
    matched: int = 0
    n_spans: int = 0
    consensus_spans: int = 0
    documents: int = 0
    examples: dict[str, list[ErrorExample]] = {}

    def count(self, error_type: str) -> int:
        return int(getattr(self, error_type))


class Support(_Record):
    """Who proposed an aggregated span and with what weight."""

    annotators: list[str] = []
    weight: float = 0.0
    token_support: float = 0.0
    posterior: float | None = None  # reliability mode only


class AggregatedSpan(_Record):
    """A delivered span with its support and whether it overlaps a hotspot."""

    start: int
    end: int
    label: str
    text: str = ""
    support: Support = Support()
    hotspot: bool = False

    def to_span(self, doc_id: str) -> Span:
        return Span(doc_id, self.start, self.end, self.label, self.text)


def _parse(model: type[_Record], raw: Any, where: str) -> Any:
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise InputError(None, None, f"{where}{'.' + loc if loc else ''}: {err['msg']}") from None


def hotspots_of(analysis: Mapping[str, Any] | Iterable[Any] | None) -> list[Hotspot]:
    """The hotspots of an analysis (its JSON object, or a list of hotspot dicts or records)."""
    raw = (analysis.get("hotspots") or []) if isinstance(analysis, Mapping) else (analysis or [])
    return [_parse(Hotspot, h, f"hotspots[{i}]") for i, h in enumerate(raw)]


def hot_runs_of(hotspots: Iterable[Any]) -> list[HotRun | Hotspot]:
    """Hotspots as records with ``document``, ``token_start`` and ``token_end`` (dicts are parsed)."""
    return [h if isinstance(h, (HotRun, Hotspot)) else _parse(HotRun, h, f"hotspots[{i}]")
            for i, h in enumerate(hotspots)]


def profiles_of(analysis: Mapping[str, Any] | None) -> dict[str, ErrorProfile]:
    """Error profiles by annotator from an analysis' JSON object (an empty one is no profile)."""
    raw = (analysis or {}).get("profiles") or {}
    return {str(a): _parse(ErrorProfile, p, f"profiles.{a}") for a, p in raw.items() if p}
