"""Checks and bounds applied to every revision, whatever supervisor wrote it.

- Worked examples (:func:`validate_example`): a mention whose label is not in Σ
  (labels are matched exactly, then case-insensitively) or whose text does not occur in
  the example text is dropped and counted; an example that had mentions and keeps none,
  or whose text is empty, is dropped and counted. An example written without mentions is
  a valid negative example ("nothing to tag here"). Duplicate examples are removed.
- Names (:func:`scrub_names`): model-specific instructions never name another annotator.
- Limits: examples per instruction (:func:`validate_instructions`), model-specific
  instructions per annotator (:func:`merge_model_specific`), and the change-ratio bound
  (:func:`enforce_change_ratio`): while ``change_ratio(Θ(t), Θ(t+1))`` exceeds
  ``max_change_ratio``, the newest (lowest-priority) additions first keep only their
  first worked example, then are removed one by one; when no addition is left, a goal
  update is reverted, then deletions (stated by the supervisor) are undone one by one;
  when still over the bound, the revision is rejected and Θ(t) is kept (with the new
  iteration number and a change-log line).
- Restoring (:func:`restore_instruction`): an earlier instruction goes back under its
  earlier parent when that is still there, else at the top level, with a free id.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from diziner.guideline import Guideline, Instruction
from diziner.guideline_render import change_ratio
from diziner.schema import ExampleMention, WorkedExample

__all__ = [
    "Addition",
    "Deletion",
    "ValidationCounts",
    "enforce_change_ratio",
    "merge_model_specific",
    "next_top_id",
    "remove_instruction",
    "renumber",
    "restore_instruction",
    "scrub_names",
    "validate_example",
    "validate_instructions",
]


@dataclass
class ValidationCounts:
    dropped_examples: int = 0
    dropped_mentions: int = 0
    trimmed_examples: int = 0  # valid examples over max_examples_per_instruction
    problems: list[str] = field(default_factory=list)

    def add(self, other: ValidationCounts) -> None:
        self.dropped_examples += other.dropped_examples
        self.dropped_mentions += other.dropped_mentions
        self.trimmed_examples += other.trimmed_examples
        self.problems += other.problems


def _label_map(labels: Iterable[str]) -> dict[str, str]:
    labels = list(labels)
    out = {lab.casefold(): lab for lab in labels}
    out.update({lab: lab for lab in labels})
    return out


def validate_example(ex: WorkedExample, labels: Iterable[str], counts: ValidationCounts | None = None,
                     where: str = "example") -> WorkedExample | None:
    """The example with its invalid mentions dropped, or None when the example itself is dropped."""
    counts = counts if counts is not None else ValidationCounts()
    lmap = labels if isinstance(labels, dict) else _label_map(labels)
    if not ex.text.strip():
        counts.dropped_examples += 1
        counts.dropped_mentions += len(ex.mentions)
        counts.problems.append(f"{where}: empty example text (dropped)")
        return None
    kept: list[ExampleMention] = []
    used: dict[str, int] = {}
    for m in ex.mentions:
        lab = lmap.get(m.label) or lmap.get(m.label.casefold())
        if lab is None:
            counts.dropped_mentions += 1
            counts.problems.append(f"{where}: label {m.label!r} is not in the schema (mention {m.text!r} dropped)")
            continue
        if not m.text.strip() or m.text not in ex.text:
            counts.dropped_mentions += 1
            counts.problems.append(f"{where}: mention {m.text!r} does not occur in the example text (dropped)")
            continue
        if used.get(m.text, 0) >= ex.text.count(m.text):
            counts.dropped_mentions += 1
            counts.problems.append(f"{where}: mention {m.text!r} listed more often than it occurs (dropped)")
            continue
        used[m.text] = used.get(m.text, 0) + 1
        kept.append(ExampleMention(text=m.text, label=lab))
    if ex.mentions and not kept:
        counts.dropped_examples += 1
        counts.problems.append(f"{where}: no valid mention left (example dropped)")
        return None
    return WorkedExample(text=ex.text, mentions=kept, rationale=ex.rationale)


def _ex_key(ex: WorkedExample) -> tuple:
    return (" ".join(ex.text.split()), tuple((m.text, m.label) for m in ex.mentions))


def validate_instructions(items: list[Instruction], labels: Iterable[str], max_examples: int,
                          counts: ValidationCounts | None = None, *, scope: str = "common",
                          seen_examples: set | None = None) -> list[Instruction]:
    """Validated copies: examples checked and capped, empty instructions removed (recursive)."""
    counts = counts if counts is not None else ValidationCounts()
    lmap = _label_map(labels)
    seen = seen_examples if seen_examples is not None else set()
    out: list[Instruction] = []
    for ins in items:
        if not ins.text.strip():
            counts.problems.append(f"{scope} {ins.id}: empty instruction text (removed)")
            continue
        exs: list[WorkedExample] = []
        for n, ex in enumerate(ins.examples):
            v = validate_example(ex, lmap, counts, where=f"{scope} {ins.id} example {n + 1}")
            if v is None:
                continue
            k = _ex_key(v)
            if k in seen:
                continue
            seen.add(k)
            exs.append(v)
        if len(exs) > max_examples:
            counts.trimmed_examples += len(exs) - max_examples
            exs = exs[:max_examples]
        children = validate_instructions(ins.children, labels, max_examples, counts, scope=scope, seen_examples=seen)
        out.append(ins.model_copy(update={"examples": exs, "children": children, "text": ins.text.strip()}))
    return out


def scrub_names(text: str, names: Iterable[str], replacement: str = "another annotator") -> str:
    """Replace whole-word mentions of annotator ids (3+ characters) in ``text``."""
    names = sorted({n for n in names if n and len(n) >= 3}, key=len, reverse=True)
    if not names:
        return text
    rx = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)
    return rx.sub(replacement, text)


def _scrub_instruction(ins: Instruction, names: Iterable[str]) -> Instruction:
    names = list(names)
    return ins.model_copy(update={
        "text": scrub_names(ins.text, names),
        "examples": [e.model_copy(update={"rationale": scrub_names(e.rationale, names)}) for e in ins.examples],
        "children": [_scrub_instruction(c, names) for c in ins.children],
    })


def next_top_id(items: list[Instruction]) -> int:
    """The next free top-level number ("3" after "1", "2")."""
    nums = [int(i.id.split(".")[0]) for i in items if i.id.split(".")[0].isdigit()]
    return max(nums, default=0) + 1


def renumber(items: list[Instruction], prefix: str = "") -> list[Instruction]:
    """Copies with hierarchical ids "1", "1.1", … in list order."""
    out = []
    for n, ins in enumerate(items, start=1):
        iid = f"{prefix}{n}"
        out.append(ins.model_copy(update={"id": iid, "children": renumber(ins.children, iid + ".")}))
    return out


def remove_instruction(items: list[Instruction], iid: str) -> list[Instruction]:
    """Copies without the instruction ``iid`` (and its children)."""
    out = []
    for ins in items:
        if ins.id == iid:
            continue
        out.append(ins.model_copy(update={"children": remove_instruction(ins.children, iid)}) if ins.children else ins)
    return out


def merge_model_specific(annotator: str, previous: list[Instruction], new: list[Instruction], limit: int,
                         other_annotators: Iterable[str] = ()) -> tuple[list[Instruction], list[str]]:
    """Rk(t+1): the new instructions first, then earlier ones whose text is not repeated, up to ``limit``.

    Ids are renumbered "1".."n"; other annotators' ids are scrubbed from the texts.
    Returns (instructions, notes).
    """
    notes: list[str] = []
    others = [o for o in other_annotators if o != annotator]
    merged: list[Instruction] = []
    texts: set[str] = set()
    for ins in list(new) + list(previous):
        key = " ".join(ins.text.split()).casefold()
        if key in texts:
            continue
        texts.add(key)
        merged.append(_scrub_instruction(ins, others))
    if len(merged) > limit:
        dropped = merged[limit:]
        n_new_dropped = sum(1 for d in dropped if any(d is x or d.text == x.text for x in new))
        notes.append(f"model-specific instructions for {annotator}: kept {limit} of {len(merged)}"
                     f" ({n_new_dropped} new ones over the limit dropped)")
        merged = merged[:limit]
    return renumber(merged), notes


@dataclass(frozen=True)
class Addition:
    """One new instruction in Θ(t+1), in priority order (the last one is trimmed first)."""

    scope: str  # "common" or an annotator id
    id: str


@dataclass
class Deletion:
    """An earlier instruction Θ(t+1) leaves out, with the supervisor's reason; undone first-in last-out
    by the change-ratio bound."""

    scope: str  # "common" or an annotator id
    instruction: Instruction  # as it was in Θ(t) (children not included: each is its own entry)
    parent: str | None  # id of its parent in Θ(t), or None at the top level
    reason: str = ""


def restore_instruction(items: list[Instruction], ins: Instruction, parent: str | None) -> tuple[list[Instruction], str]:
    """``items`` with ``ins`` (without children) put back: as the last child of ``parent`` when an
    instruction with that id exists, else as the last top-level instruction; with a free id.
    Returns (items, the id it got)."""
    taken = {i.id for top in items for i in top.walk()}
    if parent is not None and parent in taken:
        def put(xs: list[Instruction]) -> tuple[list[Instruction], str]:
            out, got = [], ""
            for x in xs:
                if x.id == parent:
                    n = max([int(c.id.rsplit(".", 1)[-1]) for c in x.children
                             if c.id.rsplit(".", 1)[-1].isdigit()], default=0) + 1
                    while f"{parent}.{n}" in taken:
                        n += 1
                    got = f"{parent}.{n}"
                    x = x.model_copy(update={"children": [*x.children, ins.model_copy(update={"id": got, "children": []})]})
                elif x.children and not got:
                    kids, got = put(x.children)
                    x = x.model_copy(update={"children": kids})
                out.append(x)
            return out, got
        return put(items)
    n = next_top_id(items)
    while str(n) in taken:
        n += 1
    return [*items, ins.model_copy(update={"id": str(n), "children": []})], str(n)


def _restore(g: Guideline, d: Deletion) -> Guideline:
    if d.scope == "common":
        items, _ = restore_instruction(g.common, d.instruction, d.parent)
        return g.model_copy(update={"common": items})
    ms = dict(g.model_specific)
    ms[d.scope], _ = restore_instruction(ms.get(d.scope, []), d.instruction, d.parent)
    return g.model_copy(update={"model_specific": ms})


def _without(g: Guideline, add: Addition) -> Guideline:
    if add.scope == "common":
        return g.model_copy(update={"common": remove_instruction(g.common, add.id)})
    ms = dict(g.model_specific)
    ms[add.scope] = remove_instruction(ms.get(add.scope, []), add.id)
    if not ms[add.scope]:
        del ms[add.scope]
    return g.model_copy(update={"model_specific": ms})


def _find(g: Guideline, add: Addition) -> Instruction | None:
    items = g.all_common() if add.scope == "common" else g.for_annotator(add.scope)
    return next((i for i in items if i.id == add.id), None)


def _replace_examples(items: list[Instruction], iid: str, examples: list) -> list[Instruction]:
    out = []
    for ins in items:
        if ins.id == iid:
            ins = ins.model_copy(update={"examples": list(examples)})
        elif ins.children:
            ins = ins.model_copy(update={"children": _replace_examples(ins.children, iid, examples)})
        out.append(ins)
    return out


def _with_examples(g: Guideline, add: Addition, examples: list) -> Guideline:
    if add.scope == "common":
        return g.model_copy(update={"common": _replace_examples(g.common, add.id, examples)})
    ms = dict(g.model_specific)
    ms[add.scope] = _replace_examples(ms.get(add.scope, []), add.id, examples)
    return g.model_copy(update={"model_specific": ms})


def enforce_change_ratio(previous: Guideline, new: Guideline, additions: list[Addition],
                         max_ratio: float, deletions: list[Deletion] = ()) -> tuple[Guideline, dict]:  # type: ignore[assignment]
    """Trim examples, drop additions, revert the goal, undo deletions, then reject, until
    ``change_ratio <= max_ratio``.

    Returns (guideline, report) with report keys ``ratio_proposed``, ``ratio``,
    ``trimmed`` (additions removed, ``scope:id``), ``goal_reverted``, ``restored``
    (deletions undone, ``scope:id`` of Θ(t)), ``rejected``.
    """
    r0 = change_ratio(previous, new)
    report: dict = {"max_change_ratio": max_ratio, "ratio_proposed": round(r0, 6), "trimmed": [],
                    "goal_reverted": False, "restored": [], "rejected": False}
    cur, r = new, r0
    # first: newest additions keep only their first worked example
    for add in reversed(additions):
        if r <= max_ratio:
            break
        ins = _find(cur, add)
        if ins is not None and len(ins.examples) > 1:
            cur = _with_examples(cur, add, ins.examples[:1])
            report["trimmed"].append(f"{add.scope}:{add.id} (examples {len(ins.examples)}→1)")
            r = change_ratio(previous, cur)
    # then: newest additions removed
    pending = list(additions)
    while r > max_ratio and pending:
        add = pending.pop()
        cur = _without(cur, add)
        report["trimmed"].append(f"{add.scope}:{add.id}")
        r = change_ratio(previous, cur)
    if r > max_ratio and cur.goal != previous.goal:
        cur = cur.model_copy(update={"goal": previous.goal})
        report["goal_reverted"] = True
        r = change_ratio(previous, cur)
    undo = list(deletions)
    while r > max_ratio and undo:
        d = undo.pop()
        cur = _restore(cur, d)
        report["restored"].append(f"{d.scope}:{d.instruction.id}")
        r = change_ratio(previous, cur)
    if r > max_ratio:
        report["rejected"] = True
        cur = previous.model_copy(update={
            "iteration": new.iteration,
            "changelog": list(previous.changelog) + [
                (f"iteration {new.iteration}: revision rejected (change ratio {r0:.3f} > {max_ratio:.3f}"
                 " even after trimming); previous guideline kept")],
        })
        r = 0.0 if cur.goal == previous.goal else change_ratio(previous, cur)
    report["ratio"] = round(r, 6)
    return cur, report
