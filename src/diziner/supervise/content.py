"""Content checks of the LLM supervisor's answers: what a well-formed answer can still get wrong.

A weak model fills the JSON schema with the format example's placeholders ("...") or with
sentences about nothing ("This is a new task."), under ids such as ",1.2,text: ". Every
phase's parsed answer is therefore checked here, and each problem is one short line that
goes back to the model in the one re-ask (:meth:`diziner.supervise.llm.LLMSupervisor._phase`):

- **Placeholders** (:func:`is_placeholder`): an empty text, "...", "…", "TODO", "string",
  "text", "description", "<text>", text without a letter, or a few words around "...".
- **Instruction ids** (:data:`ID_FORM`): "1", "2.1", "3.4.1" — digits joined by dots.
- **Grounding of a rule** (:meth:`Vocabulary.ties`): a new or changed instruction must share
  a content word, a label or a mention text with a phase-1 pattern or a shown hotspot (for
  model-specific instructions also with that annotator's diagnosis and error profile).
  Citing a pattern id is not enough on its own: "This is a new task." citing P1 is not tied.
- **Labels** (:func:`unknown_labels`): an all-capitals word used as a label ("as DATE",
  "DATE mentions") that is not a label of the schema.
- **Worked examples** (:func:`example_problems`): the text is not a placeholder, every
  mention's text occurs in it, every mention's label is in the schema.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from diziner.analysis.records import Hotspot, hotspots_of

__all__ = ["ID_FORM", "Vocabulary", "content_words", "example_problems", "is_placeholder", "text_problems",
           "unknown_labels"]

ID_FORM = re.compile(r"^[1-9]\d*(?:\.[1-9]\d*)*$")

_PLACEHOLDERS = frozenset({
    "", "...", "…", "todo", "tbd", "fixme", "string", "str", "text", "none", "null", "nil", "n/a", "na", "-", "?",
    "example", "examples", "description", "reason", "root cause", "root_cause", "rationale", "instruction",
    "instructions", "goal", "pattern", "label", "id", "xxx", "x", "placeholder", "lorem ipsum", "your text here",
    "insert text here", "sentence", "the instruction", "the goal", "the full new goal", "a sentence", "issue",
    "issues", "annotator", "mention", "value", "undefined", "unknown", "not applicable",
})
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*", re.UNICODE)

# Words that tie any rule to any report: function words and the vocabulary of the task itself.
_STOP = frozenset("""
a an the and or but nor not no yes of in on at to for from by with without within into onto over under about as
than then so such that this these those there here it its they them their he she his her we our you your i me my
is are was were be been being am do does did done have has had can could shall should will would may might must
also only just even very more most less least much many few some any all each every both either neither other
another same own one two three first second last next new old when where which who whom whose what why how while
if else whether because since until unless though although however thus therefore always never often sometimes
use used using make makes made write written add added adds step steps task tasks thing things way ways case cases
entity entities mention mentions name names named label labels labelled labeled tag tags tagged tagging annotate
annotates annotated annotation annotations annotator annotators example examples instruction instructions rule rules
guideline guidelines text texts sentence sentences word words token tokens span spans type types pattern patterns
hotspot hotspots reading readings consensus correct correctly incorrect wrong right good bad clear unclear please
note notes should must like just
""".split())


def _norm(s: str) -> str:
    return " ".join(str(s).split()).casefold()


def is_placeholder(text: Any) -> bool:
    """True for an empty or placeholder text ("...", "TODO", "string", "<text>", no letter at all)."""
    if not isinstance(text, str):
        return text is None
    t = _norm(text).strip("\"'`*_ ")
    if t.rstrip(".:;!") in _PLACEHOLDERS or t in _PLACEHOLDERS:
        return True
    if not _LETTER.search(t):
        return True
    if re.fullmatch(r"[<\[{(].{0,40}[>\]})]", t):
        return True
    if "lorem ipsum" in t:
        return True
    if ("..." in t or "…" in t) and len(_WORD.findall(t)) <= 3:
        return True
    return False


def content_words(text: str) -> set[str]:
    """Casefolded words of three or more characters that are not function words or task words."""
    out = set()
    for w in _WORD.findall(str(text)):
        c = w.casefold().strip(".-'’")
        if len(c) >= 3 and c not in _STOP and not c.isdigit():
            out.add(c)
    return out


def text_problems(text: Any, where: str, *, min_words: int = 3) -> list[str]:
    """A placeholder text or one of fewer than ``min_words`` words."""
    if is_placeholder(text):
        return [f"{where}: {text!r} is empty or a placeholder"]
    if len(_WORD.findall(text)) < min_words:
        return [f"{where}: {text!r} is too short to say anything (fewer than {min_words} words)"]
    return []


_LABEL_BEFORE = {"as", "label", "labelled", "labeled", "type", "types", "category", "class"}
_LABEL_AFTER = {"label", "labels", "type", "types", "mention", "mentions", "entity", "entities", "tag", "tags",
                "span", "spans", "category"}
_CAPS = re.compile(r"(?<![\w-])([A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)*)(?![\w-])")


def unknown_labels(text: str, labels: Iterable[str], known_strings: Iterable[str] = ()) -> list[str]:
    """All-capitals words used as labels in ``text`` ("as DATE", "DATE mentions") that are not schema labels.

    ``known_strings`` (mention texts, hotspot texts) are never taken for labels: "tag US as LOC".
    """
    labels = list(labels)
    lab_fold = {lab.casefold() for lab in labels}
    known = {_norm(k) for k in known_strings}
    words = re.findall(r"\S+", text)
    bare = [w.strip(".,;:!?()[]{}\"'“”‘’`") for w in words]
    out: list[str] = []
    for i, w in enumerate(bare):
        if len(w) < 2 or not _CAPS.fullmatch(w) or w.casefold() in lab_fold or _norm(w) in known:
            continue
        core = re.sub(r"^[BI]-", "", w)
        if core.casefold() in lab_fold:
            continue
        prev = bare[i - 1].casefold() if i else ""
        prev2 = bare[i - 2].casefold() if i > 1 else ""
        nxt = bare[i + 1].casefold() if i + 1 < len(bare) else ""
        before = prev in _LABEL_BEFORE and not (prev == "as" and prev2 == "such") and nxt != "as"
        if before or nxt in _LABEL_AFTER:
            if w not in out:
                out.append(w)
    return out


def example_problems(ex: Any, labels: Iterable[str], where: str) -> list[str]:
    """Problems of one worked example: placeholder text, mentions not in the text, labels not in Σ."""
    labels = list(labels)
    lab_fold = {lab.casefold() for lab in labels}
    text = getattr(ex, "text", None)
    if is_placeholder(text):
        return [f"{where}: example text {text!r} is empty or a placeholder"]
    out = []
    for m in getattr(ex, "mentions", []) or []:
        if is_placeholder(m.text) or m.text not in text:
            out.append(f"{where}: mention {m.text!r} does not occur in the example text {text!r}")
        if m.label.casefold() not in lab_fold:
            out.append(f"{where}: mention label {m.label!r} is not a label of the schema ({', '.join(labels)})")
    if is_placeholder(getattr(ex, "rationale", "x")) and getattr(ex, "rationale", ""):
        out.append(f"{where}: rationale {ex.rationale!r} is a placeholder")
    return out


class Vocabulary:
    """What a rule can be tied to: content words, labels and mention texts of the report."""

    def __init__(self, labels: Iterable[str]):
        self.labels = list(labels)
        self.words: set[str] = set()
        self.strings: set[str] = set()  # mention / hotspot texts (normalised)
        self.used_labels: set[str] = set()

    def copy(self) -> Vocabulary:
        v = Vocabulary(self.labels)
        v.words, v.strings, v.used_labels = set(self.words), set(self.strings), set(self.used_labels)
        return v

    def add_text(self, text: Any) -> None:
        if isinstance(text, str) and not is_placeholder(text):
            self.words |= content_words(text)
            for lab in self.labels:
                if re.search(r"(?<![\w-])" + re.escape(lab) + r"(?![\w-])", text):
                    self.used_labels.add(lab)

    def add_string(self, s: Any, label: Any = None) -> None:
        """A mention or hotspot text ("Ada Lovelace"), optionally "text/LABEL"."""
        if not isinstance(s, str):
            return
        if label is None and "/" in s:
            s, _, label = s.rpartition("/")
        if isinstance(label, str) and label in self.labels:
            self.used_labels.add(label)
        n = _norm(s)
        if len(n) >= 2 and n != "o" and not is_placeholder(s):  # "O": no entity, not a mention
            self.strings.add(n)
            self.words |= content_words(s)

    def add_hotspot(self, h: Hotspot | dict) -> None:
        """A hotspot's text, error readings, consensus and readings (a dict is parsed first)."""
        h = hotspots_of([h])[0]
        self.add_string(h.text)
        for e in h.errors:
            self.add_string(e.reading)
            self.add_string(e.consensus)
        for s in [*(h.consensus or []), *(s for v in h.readings.values() for s in v)]:
            self.add_string(s.text, s.label)

    def ties(self, text: str, mention_texts: Iterable[str] = ()) -> bool:
        """Does the rule share a content word, a used label or a mention text with the report?"""
        if content_words(text) & self.words:
            return True
        for lab in self.used_labels:
            if re.search(r"(?<![\w-])" + re.escape(lab) + r"(?![\w-])", text):
                return True
        nt = _norm(text)
        if any(re.search(r"(?<!\w)" + re.escape(s) + r"(?!\w)", nt) for s in self.strings):
            return True
        return any(_norm(m) in self.strings for m in mention_texts if isinstance(m, str))
