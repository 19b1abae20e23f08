"""Example validation, limits and the change-ratio bound."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.guideline import Guideline, Instruction
from diziner.guideline_render import change_ratio
from diziner.schema import ExampleMention, LabelDef, Schema, WorkedExample
from diziner.supervise.base import Limits, apply_goal_switches
from diziner.supervise.validate import (
    Addition,
    ValidationCounts,
    enforce_change_ratio,
    merge_model_specific,
    next_top_id,
    renumber,
    scrub_names,
    validate_example,
    validate_instructions,
)

LABELS = ["PER", "LOC"]


def _m(t, lab):
    return ExampleMention(text=t, label=lab)


def test_example_mentions_checked_and_counted():
    c = ValidationCounts()
    ex = WorkedExample(text="Ada met Bob in Paris.", mentions=[_m("Ada", "PER"), _m("Paris", "DATE"), _m("Rome", "LOC"),
                                                              _m("bob", "PER"), _m("Paris", "loc")])
    v = validate_example(ex, LABELS, c)
    assert [(m.text, m.label) for m in v.mentions] == [("Ada", "PER"), ("Paris", "LOC")]  # case of label normalised
    assert c.dropped_mentions == 3 and c.dropped_examples == 0
    assert any("'DATE' is not in the schema" in p for p in c.problems)


def test_example_dropped_when_nothing_valid_but_negative_examples_kept():
    c = ValidationCounts()
    assert validate_example(WorkedExample(text="x", mentions=[_m("y", "PER")]), LABELS, c) is None
    assert validate_example(WorkedExample(text="  ", mentions=[]), LABELS, c) is None
    assert c.dropped_examples == 2 and c.dropped_mentions == 1
    neg = validate_example(WorkedExample(text="The company said so.", mentions=[]), LABELS, c)
    assert neg is not None and neg.mentions == []


def test_repeated_mention_only_as_often_as_it_occurs():
    c = ValidationCounts()
    v = validate_example(WorkedExample(text="Ada and Ada", mentions=[_m("Ada", "PER")] * 3), LABELS, c)
    assert len(v.mentions) == 2 and c.dropped_mentions == 1


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet="AdaPrs .", max_size=20),
       st.lists(st.tuples(st.text(alphabet="AdaPrs .", max_size=6), st.sampled_from(["PER", "LOC", "ORG", "per"])),
                max_size=5))
def test_validated_examples_are_always_valid(text, ms):
    c = ValidationCounts()
    v = validate_example(WorkedExample(text=text, mentions=[_m(t, lab) for t, lab in ms]), LABELS, c)
    if v is None:
        assert c.dropped_examples == 1
        return
    for m in v.mentions:
        assert m.label in LABELS and m.text and m.text in v.text
    assert len(v.mentions) + c.dropped_mentions == len(ms)


def test_instructions_capped_and_deduplicated():
    exs = [WorkedExample(text=f"Ada {i}", mentions=[_m("Ada", "PER")]) for i in range(5)]
    items = [Instruction(id="1", text="r", examples=exs + [exs[0]]),
             Instruction(id="2", text=" ", examples=exs[:1])]
    c = ValidationCounts()
    out = validate_instructions(items, LABELS, 3, c)
    assert [i.id for i in out] == ["1"] and len(out[0].examples) == 3 and c.trimmed_examples == 2


def test_ids_and_scrub():
    items = [Instruction(id="1", text="a"), Instruction(id="4", text="b")]
    assert next_top_id(items) == 5 and next_top_id([]) == 1
    r = renumber([Instruction(id="x", text="a", children=[Instruction(id="y", text="b")])])
    assert r[0].id == "1" and r[0].children[0].id == "1.1"
    assert scrub_names("Unlike gemma-270m, you miss LOC.", ["gemma-270m", "ab"]) == "Unlike another annotator, you miss LOC."


def test_merge_model_specific_new_first_limit_and_no_other_names():
    prev = [Instruction(id="1", text="old one"), Instruction(id="2", text="old two")]
    new = [Instruction(id="9", text="Unlike smollm, tag places."), Instruction(id="8", text="old one")]
    merged, notes = merge_model_specific("gemma", prev, new, 2, ["gemma", "smollm"])
    assert [i.text for i in merged] == ["Unlike another annotator, tag places.", "old one"]
    assert [i.id for i in merged] == ["1", "2"] and notes


def _schema():
    return Schema(name="s", goal="Tag people.", labels=[LabelDef(name="PER", definition="A person.")])


def test_change_ratio_trims_newest_then_rejects():
    prev = Guideline(schema=_schema(), goal="Tag people.")
    adds = [Instruction(id=str(i + 1), text=f"rule {i} " + "word " * 6) for i in range(4)]
    new = prev.model_copy(update={"common": adds, "iteration": 1})
    additions = [Addition("common", a.id) for a in adds]
    r_full = change_ratio(prev, new)
    # a bound between "two rules" and "three rules" keeps exactly the first two
    two = prev.model_copy(update={"common": adds[:2]})
    three = prev.model_copy(update={"common": adds[:3]})
    bound = (change_ratio(prev, two) + change_ratio(prev, three)) / 2
    out, rep = enforce_change_ratio(prev, new, additions, bound)
    assert [i.id for i in out.common] == ["1", "2"]
    assert rep["trimmed"] == ["common:4", "common:3"] and not rep["rejected"]
    assert rep["ratio_proposed"] == round(r_full, 6) and rep["ratio"] <= bound
    # a change that is not an addition cannot be trimmed: rejected, previous kept
    changed = prev.model_copy(update={"common": [], "goal": "Something else entirely now.", "iteration": 1})
    out2, rep2 = enforce_change_ratio(prev, changed, [], 0.05)
    assert rep2["goal_reverted"] and out2.goal == prev.goal and not rep2["rejected"]
    prev3 = prev.model_copy(update={"common": [Instruction(id="1", text="keep me please")]})
    new3 = prev3.model_copy(update={"common": [Instruction(id="1", text="a totally different rule text")], "iteration": 2})
    out3, rep3 = enforce_change_ratio(prev3, new3, [], 0.01)
    assert rep3["rejected"] and out3.common == prev3.common and out3.iteration == 2
    assert "rejected" in out3.changelog[-1]


def test_limits_defaults_and_goal_switches():
    lim = Limits()
    assert (lim.max_patterns, lim.max_new_common, lim.max_model_specific, lim.max_change_ratio,
            lim.max_examples_per_instruction) == (5, 5, 3, 0.6, 3)
    g = Guideline(schema=_schema(), goal="Tag people.")
    assert apply_goal_switches(g, Limits(remove_goal=True)).goal == ""
    assert apply_goal_switches(g, Limits(freeze_goal=True)).goal == "Tag people."
