"""The consensus supervisor: label-free, no LLM (the default with the embedded pool).

It turns one iteration's hotspots into short rules with worked examples, using the
weighted consensus (a selection among the spans annotators proposed) as the reference (or gold spans in gold-supervised mode), and
writes model-specific notes for annotators whose readings differ from the reference.
The rules are in ``docs/supervisor.md``; in short:

1. Reference spans per document: the consensus of the analysis (``documents[].consensus``
   tags, plus every hotspot's ``consensus`` spans), or the gold spans when ``gold`` is given.
   Without gold, a consensus span that cannot be a mention by the schema's own terms is not
   taught (:func:`implausible_mention`: a pronoun or article, a negative example of its
   label, the whole text of a document of several words, or far longer than any example of
   its label), and a sentence holding one is never an agreed worked example: weak annotators
   do agree on nonsense ("Good morning" as ORG), and agreement alone cannot tell.
   Agreed worked examples come only from documents on which every annotator returned
   exactly the same spans and labels (:meth:`ConsensusSupervisor._unanimous`). No worked
   example tags a text and leaves it untagged elsewhere in the same example
   (:func:`untagged_repeat`): it would teach an incomplete annotation.
2. Each hotspot's readings are compared with the reference inside the hotspot window;
   every difference is a finding keyed by (error type, label): ``missed`` (the reference
   has a span an annotator left out), ``type_confusion`` (same extent, other label),
   ``boundary`` (overlapping, other extent), ``spurious`` (a reading where the reference
   has nothing). Findings are grouped into patterns.
3. Patterns are ranked by (hotspots where the elite agree, hotspots, annotator support of
   the reference) and cut to ``max_patterns``, then ``max_new_common``. Negative patterns
   (``spurious``) are used only with gold, or with ≥ ``min_annotators_for_negative``
   annotators and at least ``min_negative_support`` of them leaving the text untagged
   where the elite agree: with weak, low-recall annotators an untagged consensus is
   mostly a shared miss, not evidence.
4. Each pattern becomes one rule plus worked examples: the sentence around a hotspot and
   every reference span inside it (validated: labels in Σ, mentions occur in the text).
5. Earlier instructions stay unless contradicted: an earlier worked example is removed
   when a strong new reference (elite agree, or gold) labels a string in it otherwise;
   an earlier consensus/gold instruction whose examples were all removed goes too.
6. Model-specific notes: per annotator, its most frequent error types (from ``profiles``,
   or from the hotspot readings against gold), with an example; other annotators are
   never named. Without gold, an error type is taught only with evidence where more than
   half of the pool holds the reference (``min_positive_support``, as for common rules):
   with two annotators a disputed span is one's word against the other's.
7. Limits and the change-ratio bound are enforced by :mod:`diziner.supervise.validate`.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from diziner.analysis.records import ErrorProfile, Hotspot, hotspots_of, profiles_of
from diziner.corpus.bio import iter_bio_entities
from diziner.guideline import Guideline, Instruction, Provenance
from diziner.schema import ExampleMention, WorkedExample
from diziner.supervise.base import Limits, SupervisionResult, apply_goal_switches
from diziner.supervise.validate import (
    Addition,
    ValidationCounts,
    enforce_change_ratio,
    merge_model_specific,
    next_top_id,
    validate_instructions,
)

__all__ = ["ConsensusSupervisor", "MentionPrior", "RefSpan", "implausible_mention", "reference_spans",
           "sentence_window", "untagged_repeat"]

ERROR_ORDER = ("missed", "type_confusion", "boundary", "spurious")  # positive lessons first
_WORD = re.compile(r"\w+", re.UNICODE)
# Closed-class English words that are never a name on their own (schemas are English here).
_FUNCTION_WORDS = frozenset(
    "i me my mine myself you your yours yourself he him his himself she her hers herself it its itself we us our "
    "ours ourselves they them their theirs themselves this that these those a an the".split())


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


class MentionPrior:
    """What the schema Σ says a mention of each label looks like: its negative examples, and
    the longest positive example (in words), from the label definitions and the demonstrations."""

    def __init__(self, schema: Any):
        self.negatives: dict[str, set[str]] = {}
        self.longest: dict[str, int] = {}
        for lab in getattr(schema, "labels", []) or []:
            self.negatives[lab.name] = {" ".join(_words(t)) for t in lab.negative_examples if _words(t)}
            self.longest[lab.name] = max([len(_words(t)) for t in lab.positive_examples] or [0])
        for demo in getattr(schema, "demonstrations", []) or []:
            for m in demo.mentions:
                self.longest[m.label] = max(self.longest.get(m.label, 0), len(_words(m.text)))


def implausible_mention(span_text: str, label: str, document_text: str | None, prior: MentionPrior) -> str | None:
    """Why a consensus span cannot be a mention of ``label`` by the schema's terms, or None.

    Label-free checks only: the span is a pronoun or article alone; it is one of the label's
    negative examples; it is the whole text of a document of two or more words (a greeting, a
    sentence); or it has more than twice the words of the label's longest example plus two.
    """
    words = _words(span_text)
    if not words:
        return "no letters or digits"
    if all(w in _FUNCTION_WORDS for w in words):
        return "a pronoun or article, not a name"
    if " ".join(words) in prior.negatives.get(label, set()):
        return f"a negative example of {label} in the schema"
    if document_text is not None and len(words) >= 2 and words == _words(document_text):
        return "the whole text of the document"
    longest = prior.longest.get(label, 0)
    if longest and len(words) > 2 * longest + 2:
        return f"{len(words)} words, far longer than any {label} example ({longest})"
    return None


def untagged_repeat(text: str, mentions: Iterable[str]) -> str | None:
    """A mention's text that also occurs in ``text`` where no mention covers it, or None.

    Counted case-insensitively at word boundaries, longest mentions first, and an occurrence
    inside a longer mention's occurrence does not count ("Paris" in "Paris Hilton"): an
    example that tags the first of two "headache" and leaves the second shows an
    incomplete annotation as correct.
    """
    folded = text.casefold()
    wanted = Counter(m.casefold() for m in mentions if m.strip())
    covered: list[tuple[int, int]] = []
    for m in sorted(wanted, key=len, reverse=True):
        spots = [(x.start(), x.end()) for x in re.finditer(r"(?<!\w)" + re.escape(m) + r"(?!\w)", folded)]
        free = [(a, b) for a, b in spots if not any(c <= a and b <= d for c, d in covered)]
        if len(free) > wanted[m]:
            return next(x for x in mentions if x.casefold() == m)
        covered += free
    return None


_SENT_END = re.compile(r"[.!?。！？][\"'”’)\]]*\s+(?=[\"“'‘(\[]?[A-Z0-9À-Ý])|\n\s*")


@dataclass(frozen=True, order=True)
class RefSpan:
    start: int
    end: int
    label: str
    text: str

    def overlaps(self, s: int, e: int) -> bool:
        return self.start < e and s < self.end


def _span_of(d: Any) -> tuple[int, int, str, str] | None:
    if isinstance(d, dict):
        try:
            return int(d["start"]), int(d["end"]), str(d["label"]), str(d.get("text", ""))
        except (KeyError, TypeError, ValueError):
            return None
    try:
        return int(d.start), int(d.end), str(d.label), str(getattr(d, "text", ""))
    except (AttributeError, TypeError, ValueError):
        return None


def _clean_spans(raw: Iterable[Any], text: str | None, labels: dict[str, str]) -> list[RefSpan]:
    """Valid, non-overlapping spans (first one wins) with their text taken from the document."""
    out: list[RefSpan] = []
    for d in raw:
        t = _span_of(d)
        if t is None:
            continue
        s, e, lab, surface = t
        lab = labels.get(lab) or labels.get(lab.casefold())
        if lab is None or s < 0 or e <= s:
            continue
        if text is not None:
            if e > len(text):
                continue
            surface = text[s:e]
        out.append(RefSpan(s, e, lab, surface))
    out.sort()
    kept: list[RefSpan] = []
    for sp in out:
        if kept and sp.start < kept[-1].end:
            continue
        kept.append(sp)
    return kept


def _align_tokens(text: str, tokens: list[str]) -> list[tuple[int, int]] | None:
    out, cur = [], 0
    for tok in tokens:
        j = text.find(tok, cur)
        if j < 0 or not tok:
            return None
        out.append((j, j + len(tok)))
        cur = j + len(tok)
    return out


def _consensus_tag_spans(d: dict, text: str | None) -> list[dict]:
    """Character spans of one analysis document's consensus BIO tags ([] when they cannot be placed)."""
    tags, toks = d.get("consensus"), d.get("tokens")
    if text is None or not tags or not toks or len(tags) != len(toks):
        return []
    offs = _align_tokens(text, [str(t) for t in toks])
    if offs is None:
        return []
    return [{"start": offs[a][0], "end": offs[b - 1][1], "label": lab}
            for a, b, lab in iter_bio_entities([str(t) for t in tags])]


def reference_spans(analysis: dict, documents: dict[str, str], labels: Iterable[str],
                    gold: dict | None = None, hotspots: list[Hotspot] | None = None) -> dict[str, list[RefSpan]]:
    """Reference spans per document id: gold when given, else the analysis consensus
    (``hotspots``: the analysis' hotspots when already parsed)."""
    lmap = {lab: lab for lab in labels}
    lmap.update({k.casefold(): v for k, v in list(lmap.items())})
    if gold is not None:
        return {str(doc): _clean_spans(spans or [], documents.get(str(doc)), lmap) for doc, spans in gold.items()}
    raw: dict[str, list[Any]] = {}
    for d in analysis.get("documents") or []:
        doc_id = str(d.get("id"))
        spans = _consensus_tag_spans(d, documents.get(doc_id))
        if spans:
            raw.setdefault(doc_id, []).extend(spans)
    for h in hotspots_of(analysis) if hotspots is None else hotspots:
        raw.setdefault(h.document, []).extend(h.reference)
    return {doc: _clean_spans(spans, documents.get(doc), lmap) for doc, spans in raw.items()}


def sentence_window(text: str, start: int, end: int, max_chars: int = 300,
                    spans: Iterable[RefSpan] = ()) -> tuple[int, int]:
    """Character range of the sentence around ``text[start:end]``, at most about ``max_chars``.

    Sentences end at ``.!?`` followed by space and a capital or digit, or at a line break.
    A long sentence is cut at spaces around the span. The range is widened so that no
    span of ``spans`` is cut in half.
    """
    lo, hi = 0, len(text)
    for m in _SENT_END.finditer(text):
        if m.end() <= start:
            lo = m.end()
        elif m.start() >= end:
            hi = m.start() + (1 if text[m.start()] in ".!?。！？" else 0)
            while hi < m.end() and not text[hi].isspace():
                hi += 1
            break
    if hi - lo > max_chars:
        half = max(0, (max_chars - (end - start)) // 2)
        a, b = max(lo, start - half), min(hi, end + half)
        if a > lo:
            sp = text.find(" ", a, start)
            a = sp + 1 if sp != -1 else a
        if b < hi:
            sp = text.rfind(" ", end, b)
            b = sp if sp != -1 else b
        lo, hi = a, b
    for sp in spans:
        if sp.start < lo < sp.end:
            lo = sp.start
        if sp.start < hi < sp.end:
            hi = sp.end
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    return lo, hi


def _q(s: str) -> str:
    return f"“{' '.join(s.split())}”"


def _qlist(items: list[str]) -> str:
    items = [_q(x) for x in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


@dataclass
class _Finding:
    hotspot: Hotspot
    kind: str
    label: str  # pattern label: "PER", or "ORG→PER" for type confusion
    ref: RefSpan | None  # the reference span (None for spurious)
    reading: RefSpan | None  # an annotator's reading (None for missed)
    annotators: list[str]
    support: float  # fraction of annotators that agree with the reference here


@dataclass
class _Pattern:
    kind: str
    label: str
    findings: list[_Finding] = field(default_factory=list)
    id: str = ""

    @property
    def hotspot_ids(self) -> list:
        seen: list = []
        for f in self.findings:
            hid = f.hotspot.id
            if hid not in seen:
                seen.append(hid)
        return seen

    @property
    def elite_hotspots(self) -> int:
        return len({id(f.hotspot) for f in self.findings if f.hotspot.elite_agree})

    @property
    def support(self) -> float:
        return sum(f.support for f in self.findings) / max(1, len(self.findings))

    def priority(self) -> tuple:
        return (self.elite_hotspots, len(self.hotspot_ids), round(self.support, 6), -ERROR_ORDER.index(self.kind))

    def describe(self) -> str:
        return f"{self.kind} {self.label} ({len(self.hotspot_ids)} hotspots, {self.elite_hotspots} with elite agreement)"


def _difference(r: RefSpan, reading: list[RefSpan]) -> tuple[str, str, RefSpan | None]:
    """How one annotator's reading differs from reference span ``r``: (error type, pattern
    label, the overlapping reading span or None)."""
    over = [s for s in reading if s.overlaps(r.start, r.end)]
    if not over:
        return "missed", r.label, None
    s = over[0]
    if (s.start, s.end) != (r.start, r.end) and s.label == r.label:
        return "boundary", r.label, s
    return "type_confusion", f"{r.label}→{s.label}", s


def _classify_window(h: Hotspot, ref: list[RefSpan], readings: dict[str, list[RefSpan]], annotators: list[str]) -> list[_Finding]:
    """Findings of one hotspot: every way an annotator's reading differs from the reference."""
    k = max(1, len(annotators))
    out: list[_Finding] = []
    for r in ref:
        agree = [a for a in annotators if r in readings.get(a, [])]
        groups: dict[tuple, list[str]] = {}
        for a in annotators:
            if a not in agree:
                groups.setdefault(_difference(r, readings.get(a, [])), []).append(a)
        for (kind, lab, s), anns in groups.items():
            out.append(_Finding(h, kind, lab, r, s, anns, len(agree) / k))
    seen: set[RefSpan] = set()
    for a in annotators:
        for s in readings.get(a, []):
            if s in seen or any(r.overlaps(s.start, s.end) for r in ref):
                continue
            seen.add(s)
            taggers = [b for b in annotators if any(x.overlaps(s.start, s.end) for x in readings.get(b, []))]
            out.append(_Finding(h, "spurious", s.label, None, s, taggers, 1 - len(taggers) / k))
    return out


def _same_spans(annotators: list[str], annotations: dict[str, dict[str, list]], doc: str, text: str,
                lmap: dict[str, str]) -> list[RefSpan] | None:
    """The spans every annotator returned on ``doc`` (all answered, identical, all valid), or None."""
    sets = set()
    for a in annotators:
        by_doc = annotations.get(a)
        if by_doc is None or doc not in by_doc:
            return None
        raw = [_span_of(x) for x in by_doc[doc] or []]
        if any(t is None for t in raw):
            return None
        sets.add(frozenset((t[0], t[1], t[2]) for t in raw if t is not None))
    if len(sets) != 1:
        return None
    agreed = next(iter(sets))
    spans = _clean_spans([{"start": s, "end": e, "label": lab} for s, e, lab in agreed], text, lmap)
    return spans if agreed and len(spans) == len(agreed) else None


def _undisputed_spans(d: dict, text: str, lmap: dict[str, str]) -> list[RefSpan] | None:
    """From one document of the analysis: its consensus spans when no token is disputed
    (``d_conf == u_star == 0`` everywhere, nothing hot), every span valid; else None."""
    toks, tags = d.get("tokens"), d.get("consensus")
    d_conf, u_star = d.get("d_conf"), d.get("u_star")
    if not toks or not tags or d_conf is None or u_star is None or not (
            len(toks) == len(tags) == len(d_conf) == len(u_star)):
        return None
    if any(float(x) != 0.0 for x in d_conf) or any(float(x) != 0.0 for x in u_star) or any(d.get("hot") or []):
        return None
    offs = _align_tokens(text, [str(t) for t in toks])
    if offs is None:
        return None
    raw = [{"start": offs[a][0], "end": offs[b - 1][1], "label": lab}
           for a, b, lab in iter_bio_entities([str(t) for t in tags])]
    spans = _clean_spans(raw, text, lmap)
    return spans if spans and len(spans) == len(raw) else None


def _for_example(kind: str, f: _Finding | None) -> str:
    """The ", e.g. ..." of a model-specific note ("" when the finding cannot give one)."""
    if f is None:
        return ""
    if kind == "missed" and f.ref:
        return f", e.g. {_q(f.ref.text)} ({f.ref.label})"
    if kind == "type_confusion" and f.ref and f.reading:
        return f", e.g. {_q(f.ref.text)} is {f.ref.label}, not {f.reading.label}"
    if kind == "boundary" and f.ref and f.reading:
        return f", e.g. tag {_q(f.ref.text)}, not {_q(f.reading.text)}"
    if kind == "spurious" and f.reading:
        return f", e.g. {_q(f.reading.text)} as {f.reading.label}"
    return ""


def _hotspot_window(h: Hotspot, readings: dict[str, list[RefSpan]]) -> tuple[int, int]:
    """Character range of a hotspot, widened to every reading that overlaps it."""
    ws, we = h.window
    for v in readings.values():
        for sp in v:
            ws, we = min(ws, sp.start), max(we, sp.end)
    return ws, we


@dataclass
class _Round:
    """What the steps of one revision read (set up by :meth:`ConsensusSupervisor._start`;
    the analysis' hotspots and error profiles parsed once); ``refs``, ``notes`` and
    ``implausible`` are filled as the steps go."""

    prev: Guideline
    analysis: dict
    hotspots: list[Hotspot]
    profiles: dict[str, ErrorProfile]
    documents: dict[str, str]
    iteration: int
    limits: Limits
    gold: dict | None
    annotations: dict | None
    labels: list[str]
    lmap: dict[str, str]
    annotators: list[str]
    refs: dict[str, list[RefSpan]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    implausible: list[dict[str, Any]] = field(default_factory=list)

    @property
    def has_gold(self) -> bool:
        return self.gold is not None

    @property
    def mode(self) -> str:
        return "gold" if self.gold is not None else "consensus"

    @property
    def k(self) -> int:
        return len(self.annotators)


class ConsensusSupervisor:
    """Rules and worked examples from the pool's consensus (or gold); no LLM calls."""

    name = "consensus"

    def __init__(self, *, max_example_chars: int = 300, min_annotators_for_negative: int = 3,
                 min_negative_support: float = 0.6, min_profile_errors: int = 1,
                 example_texts_per_rule: int = 3, min_positive_support: float = 0.5,
                 agreed_examples: bool = True):
        self.max_example_chars = max_example_chars
        self.min_annotators_for_negative = min_annotators_for_negative
        self.min_negative_support = min_negative_support
        self.min_profile_errors = min_profile_errors
        self.example_texts_per_rule = example_texts_per_rule
        self.min_positive_support = min_positive_support
        self.agreed_examples = agreed_examples

    async def revise(self, guideline: Guideline, analysis: dict, documents: dict[str, str], *,
                     iteration: int, limits: Limits, gold: dict | None = None,
                     annotations: dict[str, dict[str, list]] | None = None) -> SupervisionResult:
        return self.revise_sync(guideline, analysis, documents, iteration=iteration, limits=limits, gold=gold,
                                annotations=annotations)

    # ------------------------------------------------------------------ main
    def revise_sync(self, guideline: Guideline, analysis: dict, documents: dict[str, str], *,
                    iteration: int, limits: Limits, gold: dict | None = None,
                    annotations: dict[str, dict[str, list]] | None = None) -> SupervisionResult:
        """The synchronous body of :meth:`revise`: the steps of the module docstring in order.

        ``annotations`` (annotator → document id → spans, only the documents the annotator
        answered) lets agreed worked examples be checked span by span; without it they are
        read from the analysis' per-token scores (see :meth:`_unanimous`).
        """
        rd = self._start(guideline, analysis, documents, iteration, limits, gold, annotations)
        findings = self._findings(rd)                                   # 1-2
        ranked = self._patterns(rd, findings)                           # 3
        counts = ValidationCounts()
        existing = self._existing_texts(rd.prev)
        new_rules = self._new_rules(rd, ranked, existing)               # 4
        common, model_specific, contradicted = self._keep_earlier(rd, findings)  # 5
        start = next_top_id(common)
        added_common = validate_instructions(
            [ins.model_copy(update={"id": str(start + n)}) for n, ins in enumerate(new_rules)],
            rd.labels, limits.max_examples_per_instruction, counts)
        new_specific = self._model_specific(rd, findings, existing)     # 6
        model_specific, additions_ms = self._merge_specific(rd, model_specific, new_specific, counts)
        new = rd.prev.model_copy(update={
            "common": common + added_common, "model_specific": model_specific, "iteration": iteration,
            "changelog": list(rd.prev.changelog) + [self._changelog(rd, added_common, additions_ms, contradicted)]})
        final, report = self._enforce(rd, new, added_common, additions_ms)  # 7
        rd.notes += counts.problems[:50]
        output = {
            "supervisor": self.name,
            "mode": rd.mode,
            "iteration": iteration,
            "patterns": [self._pattern_json(p) for p in ranked],
            "new_common": [i.model_dump(mode="json") for i in added_common],
            "model_specific": {a: [i.model_dump(mode="json") for i in v] for a, v in new_specific.items()},
            "contradicted": contradicted,
            "validation": {"dropped_examples": counts.dropped_examples, "dropped_mentions": counts.dropped_mentions,
                           "trimmed_examples": counts.trimmed_examples, "problems": counts.problems},
            "enforcement": report,
            "implausible": rd.implausible,
            "notes": rd.notes,
        }
        return SupervisionResult(guideline=final, outputs={"consensus": output}, dropped_examples=counts.dropped_examples,
                                 dropped_mentions=counts.dropped_mentions, notes=rd.notes, ok=True,
                                 rejected=bool(report["rejected"]))

    # ------------------------------------------------------------------ steps
    def _start(self, guideline: Guideline, analysis: dict, documents: dict[str, str], iteration: int, limits: Limits,
               gold: dict | None, annotations: dict | None) -> _Round:
        """Step 1: the reference (gold, or the plausible part of the consensus)."""
        prev = apply_goal_switches(guideline, limits)
        labels = prev.schema_.label_names
        lmap = {lab: lab for lab in labels}
        lmap.update({k.casefold(): v for k, v in list(lmap.items())})
        annotators = [str(a) for a in (analysis.get("annotators") or list(analysis.get("weights") or {}))]
        hotspots = [h if h.id is not None else h.model_copy(update={"id": n})
                    for n, h in enumerate(hotspots_of(analysis))]  # a hotspot without id: its index
        rd = _Round(prev, analysis, hotspots, profiles_of(analysis), documents, iteration, limits, gold, annotations,
                    labels, lmap, annotators, refs=reference_spans(analysis, documents, labels, gold, hotspots))
        if gold is None:
            rd.refs, rd.implausible = self._plausible(rd.refs, documents, MentionPrior(prev.schema_))
            if rd.implausible:
                rd.notes.append(f"{len(rd.implausible)} consensus span(s) not taught: implausible as mentions by the "
                                "schema (see 'implausible')")
        return rd

    def _findings(self, rd: _Round) -> list[_Finding]:
        """Step 2: every way an annotator's reading differs from the reference, hotspot by hotspot."""
        findings: list[_Finding] = []
        for h in rd.hotspots:
            doc = h.document
            if rd.has_gold and doc not in rd.refs:
                continue  # gold mode: no reference for this document
            text = rd.documents.get(doc)
            readings = {a: _clean_spans(v, text, rd.lmap) for a, v in h.readings.items()}
            ws, we = _hotspot_window(h, readings)
            ref = [r for r in rd.refs.get(doc, []) if r.overlaps(ws, we)]
            if rd.has_gold:
                h = h.model_copy(update={"elite_agree": True})  # gold is the reference: every finding is trusted
            # an annotator that did not answer this document has no reading here: it missed nothing
            unanswered = set(h.unanswered)
            anns = [a for a in (rd.annotators or sorted(readings)) if a not in unanswered]
            findings += _classify_window(h, ref, readings, anns)
        return findings

    def _patterns(self, rd: _Round, findings: list[_Finding]) -> list[_Pattern]:
        """Step 3: findings that may be taught, grouped by (error type, label), ranked and cut."""
        patterns: dict[tuple[str, str], _Pattern] = {}
        for f in findings:
            if f.kind == "spurious" and not self._negative_ok(f, rd.k, rd.has_gold):
                continue
            if f.kind != "spurious" and not rd.has_gold and f.support <= self.min_positive_support:
                continue  # a reading only half the pool (or less) holds is not taught as the rule
            patterns.setdefault((f.kind, f.label), _Pattern(f.kind, f.label)).findings.append(f)
        ranked = sorted(patterns.values(), key=lambda p: p.priority(), reverse=True)
        kept = ranked[: rd.limits.max_patterns]
        for i, p in enumerate(kept, start=1):
            p.id = f"it{rd.iteration}-P{i}"
        if len(ranked) > len(kept):
            rd.notes.append(f"{len(ranked)} patterns found; kept the {len(kept)} with the highest priority (max_patterns)")
        return kept

    @staticmethod
    def _existing_texts(prev: Guideline) -> set[str]:
        """Texts already shown as examples (demonstrations and every instruction's): never reused."""
        out = {" ".join(e.text.split()) for e in prev.schema_.demonstrations}
        for ins in prev.all_common() + [i for a in prev.model_specific for i in prev.for_annotator(a)]:
            out |= {" ".join(e.text.split()) for e in ins.examples}
        return out

    def _new_rules(self, rd: _Round, ranked: list[_Pattern], existing: set[str]) -> list[Instruction]:
        """Step 4: one rule per pattern (when it has a valid example), then the agreed examples."""
        rules: list[Instruction] = []
        for p in ranked:
            ins = self._rule(p, rd.refs, rd.documents, rd.iteration, rd.limits, existing, rd.mode, rd.k)
            if ins is None:
                rd.notes.append(f"pattern {p.id} ({p.describe()}): no valid worked example, no rule written")
            else:
                rules.append(ins)
        if self.agreed_examples and not rd.has_gold:
            agreed = self._agreed_rule(rd, existing)
            if agreed is not None:
                rules.append(agreed)
        if len(rules) > rd.limits.max_new_common:
            rd.notes.append(f"{len(rules)} new rules; kept {rd.limits.max_new_common} (max_new_common)")
            rules = rules[: rd.limits.max_new_common]
        return rules

    def _keep_earlier(self, rd: _Round, findings: list[_Finding]
                      ) -> tuple[list[Instruction], dict[str, list[Instruction]], list[str]]:
        """Step 5: earlier instructions stay unless the new reference contradicts them."""
        claims = self._claims(findings, rd.k, rd.has_gold)
        common, contradicted = self._drop_contradicted(rd.prev.common, claims, "common")
        model_specific: dict[str, list[Instruction]] = {}
        for ann, items in rd.prev.model_specific.items():
            kept, c2 = self._drop_contradicted(items, claims, ann)
            contradicted += c2
            if kept:
                model_specific[ann] = kept
        if contradicted:
            rd.notes.append(f"{len(contradicted)} earlier worked examples or instructions contradicted by the new "
                            "reference were removed")
        return common, model_specific, contradicted

    def _merge_specific(self, rd: _Round, earlier: dict[str, list[Instruction]],
                        new_specific: dict[str, list[Instruction]], counts: ValidationCounts
                        ) -> tuple[dict[str, list[Instruction]], dict[str, list[Addition]]]:
        """Step 6: each annotator's new notes (validated) merged with its kept ones, within the limit."""
        merged_all = dict(earlier)
        additions: dict[str, list[Addition]] = {}
        for ann in sorted(set(new_specific) | set(earlier)):
            fresh = validate_instructions(new_specific.get(ann, []), rd.labels, rd.limits.max_examples_per_instruction,
                                          counts, scope=ann)
            merged, ms_notes = merge_model_specific(ann, earlier.get(ann, []), fresh, rd.limits.max_model_specific,
                                                    rd.annotators)
            rd.notes += ms_notes
            if merged:
                merged_all[ann] = merged
            else:
                merged_all.pop(ann, None)
            n_new = min(len(fresh), rd.limits.max_model_specific)
            additions[ann] = [Addition(ann, merged[i].id) for i in range(n_new)]
        return merged_all, additions

    def _changelog(self, rd: _Round, added_common: list[Instruction], additions_ms: dict[str, list[Addition]],
                   contradicted: list[str]) -> str:
        bits = []
        if added_common:
            bits.append("added common " + ", ".join(
                f"{ins.id} ({ins.provenance.patterns[0] if ins.provenance.patterns else ''})" for ins in added_common))
        if any(additions_ms.values()):
            bits.append("model-specific notes for " + ", ".join(a for a, v in additions_ms.items() if v))
        if contradicted:
            bits.append("removed contradicted " + ", ".join(contradicted))
        return f"iteration {rd.iteration}: {self.name} supervisor ({rd.mode}): " + ("; ".join(bits) if bits else "no change")

    @staticmethod
    def _enforce(rd: _Round, new: Guideline, added_common: list[Instruction],
                 additions_ms: dict[str, list[Addition]]) -> tuple[Guideline, dict]:
        """Step 7: the change-ratio bound; newest additions are trimmed first (model-specific
        round-robin over annotators, last in first out, then common)."""
        additions = [Addition("common", i.id) for i in added_common]
        queues = [list(v) for _, v in sorted(additions_ms.items())]
        while any(queues):
            for q in queues:
                if q:
                    additions.append(q.pop(0))
        final, report = enforce_change_ratio(rd.prev, new, additions, rd.limits.max_change_ratio)
        if report["trimmed"]:
            rd.notes.append(f"change ratio {report['ratio_proposed']:.3f} > {rd.limits.max_change_ratio}: trimmed "
                            + ", ".join(report["trimmed"]))
            final = final.model_copy(update={"changelog": final.changelog[:-1] + [
                final.changelog[-1] + f" (trimmed to the change-ratio bound: {', '.join(report['trimmed'])})"]})
        if report["rejected"]:
            rd.notes.append("revision rejected by the change-ratio bound; previous guideline kept")
        return final, report

    # ------------------------------------------------------------------ helpers
    def _agreed_rule(self, rd: _Round, existing_texts: set[str]) -> Instruction | None:
        """Worked examples from sentences on which every annotator returned exactly the same spans.

        With weak, low-recall annotators few hotspots have majority support, but the spans
        the pool agrees on are its most precise signal: shown as in-domain worked examples,
        they teach each annotator what the others find. Only a document (of at most
        ``max_example_chars``) that **every** annotator answered, with the same spans and
        labels from all of them, is used (:meth:`_unanimous`): a token disputed below the
        hotspot threshold is not agreement, and a partial annotation shown as correct teaches
        the annotators to leave the disputed entities out (measured on crossner_politics, see
        BENCHMARKS.md). Nor is a document where the pool agreed on an implausible span: the
        agreement there is not evidence. Documents with the most agreed entities first; at
        most ``max_examples_per_instruction``.
        """
        analysis, documents, annotations, iteration, limits, notes = (
            rd.analysis, rd.documents, rd.annotations, rd.iteration, rd.limits, rd.notes)
        prior = MentionPrior(rd.prev.schema_)
        unanimous, how = self._unanimous(analysis, documents, annotations, rd.lmap)
        hot_docs = {h.document for h in rd.hotspots}
        cands = []
        incomplete = 0
        for doc, spans in unanimous.items():
            text = documents.get(doc)
            if not text or not spans or len(text) > self.max_example_chars or doc in hot_docs:
                continue
            if " ".join(text.split()) in existing_texts:
                continue
            if any(implausible_mention(sp.text, sp.label, text, prior) for sp in spans):
                continue  # the pool agreed on something that cannot be a mention here
            if untagged_repeat(text, [sp.text for sp in spans]) is not None:
                incomplete += 1  # tagged once, left untagged elsewhere in the same text
                continue
            cands.append((-len(spans), doc, text, spans))
        cands.sort()
        k = len(self._annotators(analysis, annotations))
        examples = []
        for _, doc, text, spans in cands[: max(0, limits.max_examples_per_instruction)]:
            examples.append(WorkedExample(
                text=text, mentions=[ExampleMention(text=sp.text, label=sp.label) for sp in sorted(spans, key=lambda r: r.start)],
                rationale=f"Every annotator of the pool ({k}) answered this text and returned exactly these spans "
                          "with these labels."))
        if incomplete:
            notes.append(f"{incomplete} unanimous document(s) not taught: a tagged text occurs untagged elsewhere in it")
        if not examples:
            return None
        notes.append(f"agreed worked examples: {len(examples)} of {len(unanimous)} unanimous document(s), checked {how}")
        return Instruction(id="0", text="Tag names the way these examples do: in them every annotator agreed on every entity.",
                           examples=examples,
                           provenance=Provenance(added_in=iteration, patterns=[f"it{iteration}-agreement"], source="consensus"))

    @staticmethod
    def _annotators(analysis: dict, annotations: dict[str, dict[str, list]] | None) -> list[str]:
        names = [str(a) for a in (analysis.get("annotators") or list(analysis.get("weights") or {}))]
        return names or sorted(str(a) for a in (annotations or {}))

    @staticmethod
    def _answered(analysis: dict, annotators: list[str]) -> dict[str, set[str]] | None:
        """Documents each annotator answered, from ``analysis["unanswered"]`` (annotator →
        [document id], as :func:`diziner.analysis.analyze` writes it) and ``documents[].id``;
        None when the analysis does not record it."""
        ids = [str(d.get("id")) for d in (analysis.get("documents") or []) if isinstance(d, dict)]
        missing = analysis.get("unanswered")
        if not isinstance(missing, dict) or not ids:
            return None
        return {a: set(ids) - {str(x) for x in (missing.get(a) or [])} for a in annotators}

    def _unanimous(self, analysis: dict, documents: dict[str, str], annotations: dict[str, dict[str, list]] | None,
                   lmap: dict[str, str]) -> tuple[dict[str, list[RefSpan]], str]:
        """Documents on which every annotator returned the same spans and labels → those spans.

        With ``annotations``: every annotator of the analysis must have the document (a
        missing document is one it did not answer) with the same set of ``(start, end,
        label)``, every span valid (label in Σ, inside the text, no overlap). Without them,
        from the analysis: every annotator must have answered the document (when the analysis
        records it) and carry weight (an annotator of weight 0 leaves no trace in the scores),
        and every token must have ``d_conf == 0`` and ``u_star == 0`` — every annotator gave
        it the same BIO tag; the spans are then the consensus tags.
        """
        annotators = self._annotators(analysis, annotations)
        if not annotators:
            return {}, "(no annotators)"
        if annotations is not None:
            out = {}
            for doc, text in documents.items():
                spans = _same_spans(annotators, annotations, doc, text, lmap)
                if spans:
                    out[doc] = spans
            return out, "span by span on every annotator's answers"
        weights = analysis.get("weights") or {}
        if any(float(weights.get(a, 0.0) or 0.0) < 1e-3 for a in annotators):
            return {}, "(an annotator without weight: the analysis cannot show unanimity)"
        answered = self._answered(analysis, annotators)
        out = {}
        for d in analysis.get("documents") or []:
            doc = str(d.get("id"))
            text = documents.get(doc)
            if text is None or (answered is not None and any(doc not in answered[a] for a in annotators)):
                continue
            spans = _undisputed_spans(d, text, lmap)
            if spans:
                out[doc] = spans
        return out, "token by token on the analysis scores"

    @staticmethod
    def _plausible(refs: dict[str, list[RefSpan]], documents: dict[str, str], prior: MentionPrior
                   ) -> tuple[dict[str, list[RefSpan]], list[dict[str, Any]]]:
        """The reference without implausible consensus spans, and what was left out (and why)."""
        kept: dict[str, list[RefSpan]] = {}
        dropped: list[dict[str, Any]] = []
        for doc, spans in refs.items():
            ok = []
            for sp in spans:
                why = implausible_mention(sp.text, sp.label, documents.get(doc), prior)
                if why is None:
                    ok.append(sp)
                else:
                    dropped.append({"document": doc, "text": sp.text, "label": sp.label, "reason": why})
            kept[doc] = ok
        return kept, dropped

    def _negative_ok(self, f: _Finding, k: int, gold: bool) -> bool:
        if gold:
            return True
        return (k >= self.min_annotators_for_negative and f.support >= self.min_negative_support
                and bool(f.hotspot.elite_agree))

    def _example(self, doc: str, text: str | None, focus: tuple[int, int], refs: dict[str, list[RefSpan]],
                 rationale: str, hotspot: Hotspot) -> WorkedExample | None:
        if text is None:  # no document text: fall back to the hotspot context (mentions by text)
            ctx = hotspot.context.strip("…").strip()
            if not ctx:
                return None
            ms = [ExampleMention(text=s.text, label=s.label) for s in refs.get(doc, []) if s.text and s.text in ctx]
            return WorkedExample(text=ctx, mentions=ms, rationale=rationale)
        spans = refs.get(doc, [])
        lo, hi = sentence_window(text, focus[0], focus[1], self.max_example_chars, spans)
        inside = [s for s in spans if lo <= s.start and s.end <= hi]
        raw = text[lo:hi]
        ex_text = " ".join(raw.split())
        ms = [ExampleMention(text=" ".join(s.text.split()), label=s.label) for s in inside]
        if untagged_repeat(ex_text, [m.text for m in ms]) is not None:
            return None  # the reference tags a text here and leaves it untagged a few words on
        return WorkedExample(text=ex_text, mentions=ms, rationale=rationale)

    def _rule(self, p: _Pattern, refs: dict[str, list[RefSpan]], documents: dict[str, str], iteration: int,
              limits: Limits, existing: set[str], mode: str, k: int) -> Instruction | None:
        ordered = sorted(p.findings, key=lambda f: (bool(f.hotspot.elite_agree), f.support), reverse=True)
        examples: list[WorkedExample] = []
        shown: list[_Finding] = []
        for f in ordered:
            if len(examples) >= limits.max_examples_per_instruction:
                break
            doc = f.hotspot.document
            anchor = f.ref or f.reading
            assert anchor is not None
            ex = self._example(doc, documents.get(doc), (anchor.start, anchor.end), refs,
                               self._rationale(f, mode, k), f.hotspot)
            if ex is None or ex.text in existing:
                continue
            if f.kind != "spurious" and not ex.mentions:
                continue
            existing.add(ex.text)
            examples.append(ex)
            shown.append(f)
        if not examples:
            return None
        text = self._rule_text(p, shown or ordered, mode, k)
        return Instruction(id="0", text=text, examples=examples,
                           provenance=Provenance(added_in=iteration, patterns=[p.id], source=mode))

    @staticmethod
    def _support_phrase(fs: list[_Finding], mode: str, k: int) -> str:
        if mode == "gold":
            return "reference annotation"
        best = max(fs, key=lambda f: f.support)
        n = round(best.support * k)
        elite = any(f.hotspot.elite_agree for f in fs)
        if best.kind == "spurious":
            s = f"left untagged by {n} of {k} annotators"
        else:
            s = f"{n} of {k} annotators"
        return s + ("; the most reliable annotators agree" if elite else "")

    def _rule_text(self, p: _Pattern, fs: list[_Finding], mode: str, k: int) -> str:
        sup = self._support_phrase(fs, mode, k)
        uniq = lambda xs: list(dict.fromkeys(xs))[: self.example_texts_per_rule]
        if p.kind == "missed":
            names = uniq([f.ref.text for f in fs if f.ref])
            return f"Tag {p.label} mentions such as {_qlist(names)} as {p.label}; they are easy to miss ({sup})."
        if p.kind == "type_confusion":
            gold_lab, _, wrong = p.label.partition("→")
            names = uniq([f.ref.text for f in fs if f.ref])
            return f"Label mentions such as {_qlist(names)} as {gold_lab}, not {wrong} ({sup})."
        if p.kind == "boundary":
            f = fs[0]
            assert f.ref is not None and f.reading is not None
            r, s = f.ref, f.reading
            if s.start <= r.start and r.end <= s.end:
                how = f"tag only the name itself: {_q(r.text)}, not {_q(s.text)}"
            elif r.start <= s.start and s.end <= r.end:
                how = f"tag the whole name as one span: {_q(r.text)}, not just {_q(s.text)}"
            else:
                how = f"mark the exact extent: {_q(r.text)}, not {_q(s.text)}"
            return f"For {p.label} mentions, {how} ({sup})."
        names = uniq([f.reading.text for f in fs if f.reading])
        return f"Do not tag {_qlist(names)} as {p.label}: it is not a {p.label} mention here ({sup})."

    @staticmethod
    def _rationale(f: _Finding, mode: str, k: int) -> str:
        who = "The reference annotation" if mode == "gold" else "The annotators' consensus"
        if f.kind == "missed" and f.ref:
            return f"{who} tags {_q(f.ref.text)} as {f.ref.label}; it was left untagged by some annotators."
        if f.kind == "type_confusion" and f.ref and f.reading:
            return f"{who} labels {_q(f.ref.text)} as {f.ref.label}, not {f.reading.label}."
        if f.kind == "boundary" and f.ref and f.reading:
            return f"{who} tags {_q(f.ref.text)}; {_q(f.reading.text)} has the wrong extent."
        if f.reading:
            return f"{who} does not tag {_q(f.reading.text)} as {f.reading.label}."
        return ""

    @staticmethod
    def _pattern_json(p: _Pattern) -> dict:
        return {
            "id": p.id, "error_type": p.kind, "label": p.label, "description": p.describe(),
            "hotspots": p.hotspot_ids, "elite_hotspots": p.elite_hotspots, "support": round(p.support, 4),
            "findings": [{"document": f.hotspot.document,
                          "reference": f"{f.ref.text}/{f.ref.label}" if f.ref else "O",
                          "reading": f"{f.reading.text}/{f.reading.label}" if f.reading else "O",
                          "n_annotators": len(f.annotators), "support": round(f.support, 4)} for f in p.findings],
        }

    # ---- contradiction
    def _claims(self, findings: list[_Finding], k: int, gold: bool) -> dict[str, str | None]:
        """Surface text → label (None: not an entity) from strong evidence; ambiguous texts are left out."""
        seen: dict[str, set] = {}
        for f in findings:
            if not (gold or f.hotspot.elite_agree):
                continue
            if f.ref is not None:
                seen.setdefault(f.ref.text, set()).add(f.ref.label)
            elif f.kind == "spurious" and f.reading is not None and self._negative_ok(f, k, gold):
                seen.setdefault(f.reading.text, set()).add(None)
        return {t: next(iter(v)) for t, v in seen.items() if len(v) == 1 and t.strip()}

    @staticmethod
    def _contradicts(ex: WorkedExample, claims: dict[str, str | None]) -> str | None:
        for m in ex.mentions:
            if m.text in claims and claims[m.text] != m.label:
                want = claims[m.text] or "untagged"
                return f"{m.text!r} is {m.label} in the example but {want} in the new reference"
        mtexts = [m.text for m in ex.mentions]
        for t, lab in claims.items():
            if lab is None or t in mtexts or any(t in mt for mt in mtexts):
                continue
            if re.search(r"(?<!\w)" + re.escape(t) + r"(?!\w)", ex.text):
                return f"{t!r} is untagged in the example but {lab} in the new reference"
        return None

    def _drop_contradicted(self, items: list[Instruction], claims: dict[str, str | None], scope: str
                           ) -> tuple[list[Instruction], list[str]]:
        removed: list[str] = []
        if not claims:
            return list(items), removed
        out: list[Instruction] = []
        for ins in items:
            keep_ex = []
            for n, ex in enumerate(ins.examples):
                why = self._contradicts(ex, claims)
                if why:
                    removed.append(f"{scope} {ins.id} example {n + 1} ({why})")
                else:
                    keep_ex.append(ex)
            children, r2 = self._drop_contradicted(ins.children, claims, scope)
            removed += r2
            if ins.examples and not keep_ex and ins.provenance.source in ("consensus", "gold") and not children:
                removed.append(f"{scope} {ins.id} (all its examples were contradicted)")
                continue
            out.append(ins.model_copy(update={"examples": keep_ex, "children": children}))
        return out, removed

    # ---- model-specific
    def _model_specific(self, rd: _Round, findings: list[_Finding], existing: set[str]) -> dict[str, list[Instruction]]:
        """Per annotator, up to ``max_model_specific`` notes on its most frequent error types."""
        if rd.limits.max_model_specific <= 0:
            return {}
        out: dict[str, list[Instruction]] = {}
        for ann in rd.annotators:
            evidence, tally = self._errors_of(rd, ann, findings)
            items: list[Instruction] = []
            for t in sorted(tally, key=lambda t: (-tally[t], ERROR_ORDER.index(t))):
                if len(items) >= rd.limits.max_model_specific:
                    break
                ins = self._specific_instruction(rd, ann, t, tally[t], evidence[t], existing)
                if ins is not None:
                    items.append(ins)
            if items:
                out[ann] = items
        return out

    def _errors_of(self, rd: _Round, ann: str, findings: list[_Finding]
                   ) -> tuple[dict[str, list[_Finding]], dict[str, int]]:
        """An annotator's evidence per error type, and the error types it may be taught with
        their counts (from ``profiles``, or the evidence in gold mode / without profiles)."""
        evidence: dict[str, list[_Finding]] = {t: [] for t in ERROR_ORDER}
        for f in findings:
            # without gold, a lesson needs the reference held by more than half of the pool
            # (as a common rule does): with two annotators it is one's word against the other's
            if ann in f.annotators and (rd.has_gold or f.support > self.min_positive_support):
                evidence[f.kind].append(f)
        profile = rd.profiles.get(ann)
        if rd.has_gold or profile is None:
            counts = {t: len(v) for t, v in evidence.items()}
        else:
            counts = {t: profile.count(t) for t in ERROR_ORDER}
        return evidence, {t: counts[t] for t in ERROR_ORDER
                          if self._may_teach(rd, t, evidence[t]) and counts[t] >= self.min_profile_errors}

    def _may_teach(self, rd: _Round, kind: str, evidence: list[_Finding]) -> bool:
        """Gold teaches every error type; without it a note needs evidence, and a ``spurious``
        note at least ``min_annotators_for_negative`` annotators."""
        if rd.has_gold:
            return True
        return bool(evidence) and (kind != "spurious" or rd.k >= self.min_annotators_for_negative)

    def _specific_instruction(self, rd: _Round, ann: str, kind: str, n: int, evidence: list[_Finding],
                              existing: set[str]) -> Instruction | None:
        ev = sorted(evidence, key=lambda f: (bool(f.hotspot.elite_agree), f.support), reverse=True)
        examples: list[WorkedExample] = []
        first: _Finding | None = None
        for f in ev:
            if len(examples) >= min(1, rd.limits.max_examples_per_instruction):
                break
            doc = f.hotspot.document
            anchor = f.ref or f.reading
            assert anchor is not None
            ex = self._example(doc, rd.documents.get(doc), (anchor.start, anchor.end), rd.refs,
                               self._rationale(f, rd.mode, rd.k), f.hotspot)
            if ex is None or ex.text in existing or (kind != "spurious" and not ex.mentions):
                continue
            existing.add(ex.text)
            examples.append(ex)
            first = f
        mode, iteration = rd.mode, rd.iteration
        ref = "the reference annotation" if mode == "gold" else "the consensus"
        if first is None and ev:
            first = ev[0]
        eg = _for_example(kind, first)
        text = {
            "missed": f"You often leave entities untagged that {ref} tags ({n} in the last round){eg}. "
                      "Tag every name of the listed types, also when you are unsure.",
            "type_confusion": f"You often give a mention another label than {ref} ({n} in the last round){eg}. "
                              "Check each label against the definitions.",
            "boundary": f"Your spans often have another extent than in {ref} ({n} in the last round){eg}. "
                        "Tag the whole name and nothing more.",
            "spurious": f"You often tag text that {ref} leaves untagged ({n} in the last round){eg}. "
                        "Tag names of the listed types only.",
        }[kind]
        return Instruction(id="0", text=text, examples=examples,
                           provenance=Provenance(added_in=iteration, patterns=[f"it{iteration}-{kind}"], source=mode))
