"""Guidelines for people: Markdown rendering, diffs between two guidelines, change ratio.

- :func:`render_markdown` — an annotation guideline a human team could adopt: goal,
  entity types with "is" / "is not" examples, demonstrations, the common rules as a
  numbered hierarchy with worked examples, notes per annotator, change log and provenance.
- :func:`diff_guidelines` — what changed between two guidelines (goal, common
  instructions by id, model-specific instructions per annotator), as data
  (:class:`GuidelineDiff`) and as a readable unified-style text.
- :func:`change_ratio` — how much of the guideline text changed, in [0, 1] (see
  ``docs/guideline.md``): ``1 − difflib.SequenceMatcher(a, b).ratio()`` over the word and
  punctuation tokens of the guideline text an annotator reads (Σ, G, C with its worked
  examples, every Rk). Σ is fixed during refinement and is part of the text by default so
  that the ratio is measured against the whole guideline, never against an empty one.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from diziner.guideline import Guideline, Instruction
from diziner.schema import WorkedExample

__all__ = [
    "GuidelineDiff",
    "InstructionChange",
    "InstructionsDiff",
    "change_ratio",
    "diff_guidelines",
    "guideline_text",
    "guideline_tokens",
    "render_example_inline",
    "render_markdown",
]

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


# --------------------------------------------------------------------------- Markdown


def _md_inline(text: str) -> str:
    """One line of Markdown: collapse whitespace (line breaks would break list items)."""
    return " ".join(str(text).split())


def render_example_inline(ex: WorkedExample) -> str:
    """The example text with each mention marked in place: ``[Ada Lovelace]{PER} visited …``.

    Mentions are placed left to right at their first free occurrence; a mention that
    cannot be placed (should not happen for validated examples) is listed after the text.
    """
    text = ex.text
    taken: list[tuple[int, int, str]] = []
    unplaced: list[str] = []
    # longer mentions first so that "New York City" wins over "New York"
    order = sorted(range(len(ex.mentions)), key=lambda i: -len(ex.mentions[i].text))
    for i in order:
        m = ex.mentions[i]
        if not m.text:
            continue
        pos = 0
        placed = False
        while True:
            j = text.find(m.text, pos)
            if j < 0:
                break
            k = j + len(m.text)
            if all(k <= s or j >= e for s, e, _ in taken):
                taken.append((j, k, m.label))
                placed = True
                break
            pos = j + 1
        if not placed:
            unplaced.append(f"{m.text} ({m.label})")
    taken.sort()
    out, cur = [], 0
    for s, e, lab in taken:
        out.append(text[cur:s])
        out.append(f"[{text[s:e]}]{{{lab}}}")
        cur = e
    out.append(text[cur:])
    line = _md_inline("".join(out))
    if unplaced:
        line += " (also: " + ", ".join(unplaced) + ")"
    return line


def _example_lines(ex: WorkedExample, indent: str) -> list[str]:
    lines = [f"{indent}- Example: “{_md_inline(ex.text)}”"]
    if ex.mentions:
        ann = "; ".join(f"`{_md_inline(m.text)}` → {m.label}" for m in ex.mentions)
        lines.append(f"{indent}  - Correct annotation: {ann}")
        lines.append(f"{indent}  - Marked: {render_example_inline(ex)}")
    else:
        lines.append(f"{indent}  - Correct annotation: nothing to tag")
    if ex.rationale.strip():
        lines.append(f"{indent}  - Why: {_md_inline(ex.rationale)}")
    return lines


def _provenance_note(ins: Instruction) -> str:
    p = ins.provenance
    bits = []
    if p.source != "initial" or p.added_in:
        bits.append(f"added in iteration {p.added_in}")
    if p.changed_in:
        bits.append("changed in " + ", ".join(str(i) for i in p.changed_in))
    if p.source and p.source != "initial":
        bits.append(f"source: {p.source}")
    return f" _({'; '.join(bits)})_" if bits else ""


def _instruction_lines(items: list[Instruction], depth: int = 0) -> list[str]:
    lines: list[str] = []
    indent = "  " * depth
    for ins in items:
        lines.append(f"{indent}- **{ins.id}** {_md_inline(ins.text)}{_provenance_note(ins)}")
        for ex in ins.examples:
            lines.extend(_example_lines(ex, indent + "  "))
        if ins.children:
            lines.extend(_instruction_lines(ins.children, depth + 1))
    return lines


def render_markdown(guideline: Guideline, *, title: str | None = None) -> str:
    """The guideline as a Markdown document for people (see ``docs/guideline.md``)."""
    g = guideline
    out: list[str] = [f"# {title or f'Annotation guideline: {g.schema_.name}'}", ""]
    for part in (_md_head, _md_labels, _md_demonstrations, _md_rules, _md_changelog, _md_provenance):
        out += part(g)
    return "\n".join(out) + "\n"


def _specific(g: Guideline) -> dict[str, list[Instruction]]:
    return {k: v for k, v in g.model_specific.items() if v}


def _md_head(g: Guideline) -> list[str]:
    s = g.schema_
    out = [f"Iteration {g.iteration}. Labels: {', '.join(s.label_names)}."]
    if s.description.strip():
        out += ["", _md_inline(s.description)]
    out += ["", "## Goal", ""]
    out.append(_md_inline(g.goal) if g.goal.strip() else "_No goal is given to the annotators (removed)._")
    if s.goal.strip() and g.goal.strip() and _md_inline(s.goal) != _md_inline(g.goal):
        out += ["", f"Original goal: {_md_inline(s.goal)}"]
    return out


def _md_labels(g: Guideline) -> list[str]:
    out = ["", "## Entity types"]
    for lab in g.schema_.labels:
        out += ["", f"### {lab.name}", "", _md_inline(lab.definition)]
        if lab.positive_examples or lab.negative_examples:
            out.append("")
        if lab.positive_examples:
            out.append(f"- **Is {lab.name}:** " + ", ".join(f"“{_md_inline(x)}”" for x in lab.positive_examples))
        if lab.negative_examples:
            out.append(f"- **Is not {lab.name}:** " + ", ".join(f"“{_md_inline(x)}”" for x in lab.negative_examples))
    return out


def _md_demonstrations(g: Guideline) -> list[str]:
    if not g.schema_.demonstrations:
        return []
    out = ["", "## Demonstrations", ""]
    for ex in g.schema_.demonstrations:
        out.extend(_example_lines(ex, ""))
    return out


def _md_rules(g: Guideline) -> list[str]:
    out = ["", "## Rules", ""]
    out += _instruction_lines(g.common) if g.common else ["_No common rules yet._"]
    specific = _specific(g)
    if specific:
        out += ["", "## Notes for individual annotators"]
        for ann in sorted(specific):
            out += ["", f"### {ann}", ""]
            out.extend(_instruction_lines(specific[ann]))
    return out


def _md_changelog(g: Guideline) -> list[str]:
    out = ["", "## Change log", ""]
    if g.changelog:
        out.extend(f"- {_md_inline(c)}" for c in g.changelog)
    else:
        out.append("_No changes recorded._")
    return out


def _md_provenance(g: Guideline) -> list[str]:
    rows = [("common", ins) for ins in g.all_common()]
    for ann in sorted(_specific(g)):
        rows += [(ann, ins) for ins in g.for_annotator(ann)]
    if not rows:
        return []
    out = ["", "### Provenance", "", "| scope | id | added in | changed in | source | patterns |", "|---|---|---|---|---|---|"]
    for scope, ins in rows:
        p = ins.provenance
        pats = ", ".join(_md_inline(x).replace("|", "\\|") for x in p.patterns) or "–"
        changed = ", ".join(str(i) for i in p.changed_in) or "–"
        out.append(f"| {scope} | {ins.id} | {p.added_in} | {changed} | {p.source} | {pats} |")
    return out


# --------------------------------------------------------------------------- change ratio


def _example_text(ex: WorkedExample) -> str:
    ms = " ".join(f"{m.text} {m.label}" for m in ex.mentions)
    return f"{ex.text} {ms} {ex.rationale}"


def _instructions_text(items: Iterable[Instruction]) -> list[str]:
    out: list[str] = []
    for ins in items:
        out.append(ins.text)
        out.extend(_example_text(ex) for ex in ins.examples)
    return out


def guideline_text(guideline: Guideline, *, include_schema: bool = True) -> str:
    """The plain text :func:`change_ratio` compares: (Σ,) G, C, then each Rk by annotator id.

    Instruction ids are left out, so renumbering alone is no change.
    """
    g = guideline
    parts: list[str] = []
    if include_schema:
        for lab in g.schema_.labels:
            parts += [lab.name, lab.definition, " ".join(lab.positive_examples), " ".join(lab.negative_examples)]
        parts.extend(_example_text(ex) for ex in g.schema_.demonstrations)
    parts.append(g.goal)
    parts.extend(_instructions_text(g.all_common()))
    for ann in sorted(g.model_specific):
        parts.append(ann)
        parts.extend(_instructions_text(g.for_annotator(ann)))
    return "\n".join(p for p in parts if p)


def guideline_tokens(guideline: Guideline, *, include_schema: bool = True) -> list[str]:
    return _TOKEN.findall(guideline_text(guideline, include_schema=include_schema))


def change_ratio(a: Guideline, b: Guideline, *, include_schema: bool = True) -> float:
    """``1 − SequenceMatcher(tokens(a), tokens(b)).ratio()``, in [0, 1]; 0 for identical texts.

    ``ratio = 2·M / (|a| + |b|)`` with M the matched tokens. Adding X tokens to a guideline
    of n tokens gives X / (2n + X). Both texts empty: 0.
    """
    ta = guideline_tokens(a, include_schema=include_schema)
    tb = guideline_tokens(b, include_schema=include_schema)
    if not ta and not tb:
        return 0.0
    return 1.0 - difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()


# --------------------------------------------------------------------------- diff


@dataclass
class InstructionChange:
    """One instruction that was added, removed, changed or renumbered."""

    id: str
    text: str = ""
    old_id: str | None = None  # moved (renumbered): the id it had before
    old_text: str | None = None  # changed: the text before
    examples_added: int = 0
    examples_removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.old_id is not None:
            d["old_id"] = self.old_id
        if self.old_text is not None:
            d["old_text"] = self.old_text
        if self.examples_added or self.examples_removed:
            d["examples_added"] = self.examples_added
            d["examples_removed"] = self.examples_removed
        return d


@dataclass
class InstructionsDiff:
    added: list[InstructionChange] = field(default_factory=list)
    removed: list[InstructionChange] = field(default_factory=list)
    changed: list[InstructionChange] = field(default_factory=list)
    moved: list[InstructionChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.moved)

    def to_dict(self) -> dict[str, Any]:
        return {k: [c.to_dict() for c in getattr(self, k)] for k in ("added", "removed", "changed", "moved")}


def _norm(text: str) -> str:
    return " ".join(text.split())


def _ex_keys(ins: Instruction) -> list[str]:
    return [repr((_norm(e.text), [(m.text, m.label) for m in e.mentions], _norm(e.rationale))) for e in ins.examples]


def _flat(items: list[Instruction]) -> dict[str, Instruction]:
    out: dict[str, Instruction] = {}
    for top in items:
        for ins in top.walk():
            out.setdefault(ins.id, ins)
    return out


def _diff_instructions(a: list[Instruction], b: list[Instruction]) -> InstructionsDiff:
    fa, fb = _flat(a), _flat(b)
    d = InstructionsDiff()
    removed = [fa[i] for i in fa if i not in fb]
    added = [fb[i] for i in fb if i not in fa]
    for i in fb:
        if i not in fa:
            continue
        x, y = fa[i], fb[i]
        ka, kb = _ex_keys(x), _ex_keys(y)
        if _norm(x.text) != _norm(y.text) or ka != kb:
            sa, sb = set(ka), set(kb)
            d.changed.append(InstructionChange(
                id=i, text=y.text, old_text=x.text if _norm(x.text) != _norm(y.text) else None,
                examples_added=len([k for k in kb if k not in sa]),
                examples_removed=len([k for k in ka if k not in sb])))
    # an instruction removed under one id and added under another with the same text was renumbered
    by_text: dict[str, list[Instruction]] = {}
    for ins in removed:
        by_text.setdefault(_norm(ins.text), []).append(ins)
    for ins in added:
        cands = by_text.get(_norm(ins.text))
        if cands:
            old = cands.pop(0)
            d.moved.append(InstructionChange(id=ins.id, text=ins.text, old_id=old.id))
        else:
            d.added.append(InstructionChange(id=ins.id, text=ins.text, examples_added=len(ins.examples)))
    for lst in by_text.values():
        d.removed += [InstructionChange(id=o.id, text=o.text, examples_removed=len(o.examples)) for o in lst]
    d.removed.sort(key=lambda c: _id_key(c.id))
    return d


def _id_key(i: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in i.split("."))


@dataclass
class GuidelineDiff:
    """What changed from guideline ``a`` to guideline ``b``."""

    iteration_a: int
    iteration_b: int
    goal_a: str
    goal_b: str
    common: InstructionsDiff
    model_specific: dict[str, InstructionsDiff]
    annotators_added: list[str]
    annotators_removed: list[str]
    change_ratio: float
    name_a: str = "a"
    name_b: str = "b"

    @property
    def goal_changed(self) -> bool:
        return _norm(self.goal_a) != _norm(self.goal_b)

    @property
    def empty(self) -> bool:
        return (not self.goal_changed and self.common.empty
                and all(d.empty for d in self.model_specific.values()))

    def summary(self) -> str:
        """One line: counts and the change ratio."""
        ms = [d for d in self.model_specific.values()]
        n = lambda attr: len(getattr(self.common, attr)) + sum(len(getattr(d, attr)) for d in ms)
        goal = "goal changed" if self.goal_changed else "goal unchanged"
        return (f"{n('added')} added, {n('removed')} removed, {n('changed')} changed, {n('moved')} renumbered; "
                f"{goal}; change ratio {self.change_ratio:.3f}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": {"name": self.name_a, "iteration": self.iteration_a},
            "b": {"name": self.name_b, "iteration": self.iteration_b},
            "goal": {"changed": self.goal_changed, "a": self.goal_a, "b": self.goal_b},
            "common": self.common.to_dict(),
            "model_specific": {k: v.to_dict() for k, v in sorted(self.model_specific.items())},
            "annotators_added": list(self.annotators_added),
            "annotators_removed": list(self.annotators_removed),
            "change_ratio": round(self.change_ratio, 6),
            "empty": self.empty,
        }

    def to_text(self) -> str:
        """A readable unified-style diff: ``-`` removed, ``+`` added, ``~`` changed, ``>`` renumbered."""
        out = [f"--- {self.name_a} (iteration {self.iteration_a})", f"+++ {self.name_b} (iteration {self.iteration_b})"]
        if self.goal_changed:
            out += ["@@ goal @@", f"- {_norm(self.goal_a) or '(no goal)'}", f"+ {_norm(self.goal_b) or '(no goal)'}"]
        if not self.common.empty:
            out.append("@@ common instructions @@")
            out += _section_lines(self.common)
        for ann in sorted(self.model_specific):
            d = self.model_specific[ann]
            if d.empty:
                continue
            tag = " (new annotator)" if ann in self.annotators_added else " (annotator removed)" if ann in self.annotators_removed else ""
            out.append(f"@@ model-specific instructions: {ann}{tag} @@")
            out += _section_lines(d)
        if self.empty:
            out.append("(no changes)")
        out.append(f"change ratio: {self.change_ratio:.3f}")
        return "\n".join(out) + "\n"


def _section_lines(d: InstructionsDiff) -> list[str]:
    rows: list[tuple[tuple, list[str]]] = []
    for c in d.removed:
        rows.append((_id_key(c.id), [f"- [{c.id}] {_norm(c.text)}"]))
    for c in d.added:
        extra = f" (+{c.examples_added} examples)" if c.examples_added else ""
        rows.append((_id_key(c.id), [f"+ [{c.id}] {_norm(c.text)}{extra}"]))
    for c in d.changed:
        lines = [f"~ [{c.id}]"]
        if c.old_text is not None:
            lines += [f"  - {_norm(c.old_text)}", f"  + {_norm(c.text)}"]
        else:
            lines[0] += f" {_norm(c.text)}"
        if c.examples_added or c.examples_removed:
            lines.append(f"  examples: +{c.examples_added} -{c.examples_removed}")
        rows.append((_id_key(c.id), lines))
    for c in d.moved:
        rows.append((_id_key(c.id), [f"> [{c.old_id} → {c.id}] {_norm(c.text)}"]))
    rows.sort(key=lambda r: r[0])
    return [line for _, lines in rows for line in lines]


def diff_guidelines(a: Guideline, b: Guideline, *, name_a: str = "a", name_b: str = "b") -> GuidelineDiff:
    """Compare two guidelines (instructions matched by id; same text under a new id = renumbered)."""
    anns = sorted(set(a.model_specific) | set(b.model_specific))
    ms = {k: _diff_instructions(a.model_specific.get(k, []), b.model_specific.get(k, [])) for k in anns}
    return GuidelineDiff(
        iteration_a=a.iteration,
        iteration_b=b.iteration,
        goal_a=a.goal,
        goal_b=b.goal,
        common=_diff_instructions(a.common, b.common),
        model_specific=ms,
        annotators_added=[k for k in anns if k not in a.model_specific and b.model_specific.get(k)],
        annotators_removed=[k for k in anns if k not in b.model_specific and a.model_specific.get(k)],
        change_ratio=change_ratio(a, b),
        name_a=name_a,
        name_b=name_b,
    )
