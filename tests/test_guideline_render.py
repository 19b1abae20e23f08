"""Markdown rendering, diffs and the change ratio of guidelines."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.guideline import Guideline, Instruction, Provenance
from diziner.guideline_render import (
    change_ratio,
    diff_guidelines,
    guideline_tokens,
    render_example_inline,
    render_markdown,
)
from diziner.schema import ExampleMention, LabelDef, Schema, WorkedExample


def _schema(goal: str = "Tag people and places.") -> Schema:
    return Schema(name="mini", goal=goal, labels=[
        LabelDef(name="PER", definition="A named person.", positive_examples=["Ada Lovelace"], negative_examples=["he"]),
        LabelDef(name="LOC", definition="A named place.", positive_examples=["Paris"]),
    ], demonstrations=[WorkedExample(text="Ada Lovelace visited Paris.",
                                     mentions=[ExampleMention(text="Ada Lovelace", label="PER"),
                                               ExampleMention(text="Paris", label="LOC")])])


def _ins(iid: str, text: str, examples=(), children=(), **prov) -> Instruction:
    return Instruction(id=iid, text=text, examples=list(examples), children=list(children),
                       provenance=Provenance(**prov))


def test_markdown_has_every_part():
    ex = WorkedExample(text="Dr. Ada Lovelace spoke.", mentions=[ExampleMention(text="Ada Lovelace", label="PER")],
                       rationale="Titles are not part of the name.")
    g = Guideline(schema=_schema(), goal="Tag people and places in letters.",
                  common=[_ins("1", "Leave titles out.", [ex], [_ins("1.1", "Also honorifics.")],
                               added_in=1, patterns=["it1-P1"], source="consensus")],
                  model_specific={"m1": [_ins("1", "You often miss places.", added_in=1, source="llm")]},
                  iteration=1, changelog=["iteration 1: added 1"])
    md = render_markdown(g)
    assert md.startswith("# Annotation guideline: mini")
    assert "## Goal" in md and "Tag people and places in letters." in md
    assert "Original goal: Tag people and places." in md
    assert "### PER" in md and "**Is PER:** “Ada Lovelace”" in md and "**Is not PER:** “he”" in md
    assert "## Demonstrations" in md and "[Ada Lovelace]{PER} visited [Paris]{LOC}." in md
    assert "- **1** Leave titles out." in md and "  - **1.1** Also honorifics." in md
    assert "Correct annotation: `Ada Lovelace` → PER" in md
    assert "Why: Titles are not part of the name." in md
    assert "### m1" in md and "You often miss places." in md
    assert "- iteration 1: added 1" in md
    assert "| common | 1 | 1 | – | consensus | it1-P1 |" in md
    assert "| m1 | 1 | 1 | – | llm | – |" in md


def test_markdown_without_goal_and_rules():
    g = Guideline(schema=_schema(), goal="")
    md = render_markdown(g)
    assert "No goal is given to the annotators" in md
    assert "_No common rules yet._" in md


def test_inline_marks_longest_first_and_reports_unplaced():
    ex = WorkedExample(text="New York City and New York", mentions=[
        ExampleMention(text="New York", label="LOC"), ExampleMention(text="New York City", label="LOC"),
        ExampleMention(text="Boston", label="LOC")])
    assert render_example_inline(ex) == "[New York City]{LOC} and [New York]{LOC} (also: Boston (LOC))"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab cdé.", min_size=1, max_size=30), st.data())
def test_inline_marking_is_reversible(text, data):
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i + 1, len(text)))
    ex = WorkedExample(text=text, mentions=[ExampleMention(text=text[i:j], label="X")])
    out = render_example_inline(ex)
    if text[i:j].strip():
        plain = re.sub(r"\[(.*?)\]\{X\}", r"\1", out, count=1, flags=re.DOTALL)
        assert " ".join(plain.split()) == " ".join(text.split())


def test_change_ratio_hand_computed():
    a = Guideline(schema=_schema(), goal="a b c")
    b = a.model_copy(update={"common": [_ins("1", "d")]})
    # tokens without Σ: [a b c] vs [a b c d]; M = 3; ratio = 6/7
    assert guideline_tokens(a, include_schema=False) == ["a", "b", "c"]
    assert abs(change_ratio(a, b, include_schema=False) - 1 / 7) < 1e-12
    assert change_ratio(a, a) == 0.0
    # renumbering alone is no change
    c = b.model_copy(update={"common": [_ins("7", "d")]})
    assert change_ratio(b, c) == 0.0
    # with Σ the same addition is a smaller share of the guideline
    assert 0 < change_ratio(a, b) < 1 / 7


def test_change_ratio_empty_texts():
    s = Schema(name="x", goal="g", labels=[LabelDef(name="A", definition="d")])
    a = Guideline(schema=s, goal="")
    assert change_ratio(a, a, include_schema=False) == 0.0
    b = a.model_copy(update={"goal": "new goal"})
    assert change_ratio(a, b, include_schema=False) == 1.0


words = st.lists(st.sampled_from(["tag", "names", "not", "the", "PER", "LOC", "."]), max_size=12).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(words, words, st.lists(words, max_size=3))
def test_change_ratio_bounds(g1, g2, texts):
    a = Guideline(schema=_schema(), goal=g1)
    b = Guideline(schema=_schema(), goal=g2, common=[_ins(str(i + 1), t or "x") for i, t in enumerate(texts)])
    r = change_ratio(a, b)
    assert 0.0 <= r <= 1.0
    assert change_ratio(b, b) == 0.0


def test_diff_added_removed_changed_moved_goal():
    ex = WorkedExample(text="Paris is nice.", mentions=[ExampleMention(text="Paris", label="LOC")])
    a = Guideline(schema=_schema(), goal="Old goal.", iteration=0,
                  common=[_ins("1", "Rule one."), _ins("2", "Rule two."), _ins("3", "Rule three.")],
                  model_specific={"m1": [_ins("1", "Note.")]})
    b = Guideline(schema=_schema(), goal="New goal.", iteration=1,
                  common=[_ins("1", "Rule one, reworded.", [ex]), _ins("4", "Rule three."), _ins("5", "Rule five.")],
                  model_specific={"m2": [_ins("1", "Other note.")]})
    d = diff_guidelines(a, b, name_a="A.yaml", name_b="B.yaml")
    assert d.goal_changed
    assert [c.id for c in d.common.added] == ["5"]
    assert [c.id for c in d.common.removed] == ["2"]
    assert [(c.id, c.old_text, c.examples_added) for c in d.common.changed] == [("1", "Rule one.", 1)]
    assert [(c.old_id, c.id) for c in d.common.moved] == [("3", "4")]
    assert d.annotators_added == ["m2"] and d.annotators_removed == ["m1"]
    assert [c.text for c in d.model_specific["m1"].removed] == ["Note."]
    text = d.to_text()
    assert text.splitlines()[:2] == ["--- A.yaml (iteration 0)", "+++ B.yaml (iteration 1)"]
    assert "- Old goal." in text and "+ New goal." in text
    assert "+ [5] Rule five." in text and "- [2] Rule two." in text
    assert "> [3 → 4] Rule three." in text
    assert "  - Rule one." in text and "  + Rule one, reworded." in text
    assert "@@ model-specific instructions: m2 (new annotator) @@" in text
    js = d.to_dict()
    assert js["goal"]["changed"] and js["common"]["added"][0]["id"] == "5" and not js["empty"]
    assert d.summary().startswith("2 added, 2 removed, 1 changed, 1 renumbered; goal changed")


def test_diff_identical_is_empty():
    a = Guideline(schema=_schema(), goal="g", common=[_ins("1", "r", children=[_ins("1.1", "s")])])
    d = diff_guidelines(a, a)
    assert d.empty and d.change_ratio == 0.0 and "(no changes)" in d.to_text()
