"""The companion guideline (supervise/glossary.py): agreed mentions, the glossary rule, pairing, hand-computed."""
from __future__ import annotations

import json
from pathlib import Path

from diziner.annotate.prompt import build_request
from diziner.corpus.model import Span
from diziner.guideline import Guideline
from diziner.loop import paired_guidelines
from diziner.schema import LabelDef, Schema
from diziner.supervise.consensus import MentionPrior
from diziner.supervise.glossary import agreed_mentions, companion_guideline, glossary_guideline

TEXTS = {"d1": "Ada met Bob in Paris .", "d2": "He saw Ada in Rome .", "d3": "Ada left ."}


def schema() -> Schema:
    return Schema(name="t", goal="Tag people and places.", labels=[
        LabelDef(name="PER", definition="A person.", positive_examples=["Ada Lovelace"],
                 negative_examples=["the author"]),
        LabelDef(name="LOC", definition="A place.", positive_examples=["Paris"])])


def spans(doc: str, triples) -> list[Span]:
    return [Span(doc, s, e, lab, TEXTS[doc][s:e]) for s, e, lab in triples]


A = {"d1": spans("d1", [(0, 3, "PER"), (8, 11, "PER"), (15, 20, "LOC")]),
     "d2": spans("d2", [(0, 2, "PER"), (7, 10, "PER"), (14, 18, "LOC")]),
     "d3": spans("d3", [(0, 3, "PER")])}
B = {"d1": spans("d1", [(0, 3, "PER"), (8, 11, "LOC"), (15, 20, "LOC")]),  # Bob: another label
     "d2": spans("d2", [(0, 2, "PER"), (7, 10, "PER"), (14, 17, "LOC")])}  # Rome: another extent; d3 not answered


def test_agreed_mentions_need_the_same_extent_and_label_from_every_annotator():
    # "He" is agreed but a pronoun (implausible); "Ada", agreed twice, comes first; d3 only one annotator answered
    assert agreed_mentions(TEXTS, [A, B], MentionPrior(schema())) == [("Ada", "PER"), ("Paris", "LOC")]
    assert agreed_mentions(TEXTS, [A, B, {"d1": spans("d1", [(15, 20, "LOC")])}], MentionPrior(schema())) == [
        ("Paris", "LOC")]  # three annotators: all three must agree, on documents all three answered
    assert agreed_mentions(TEXTS, [], MentionPrior(schema())) == []


def test_the_glossary_is_one_common_rule_without_examples_and_changes_only_that():
    g0 = Guideline.initial(schema())
    g1 = glossary_guideline(g0, [("Ada", "PER"), ("Paris", "LOC")])
    assert g1.common[:-1] == g0.common and g1.iteration == g0.iteration and g1.goal == g0.goal
    rule = g1.common[-1]
    assert rule.text == 'Mentions every annotator tagged the same way in this corpus: "Ada" (PER), "Paris" (LOC).'
    assert rule.examples == [] and rule.id == "agreed-mentions"
    assert g0.common == Guideline.initial(schema()).common  # the input is untouched
    for style in ("chat", "fewshot"):  # the rule reaches both prompt styles
        req = build_request(g1, "a", style, "Ada is here .")
        prompt = req.prompt if req.messages is None else "".join(m["content"] for m in req.messages)
        assert '"Ada" (PER), "Paris" (LOC)' in prompt


def write_pilot(folder: Path, answers: dict[str, dict[str, list[Span]]]) -> None:
    (folder / "annotations").mkdir(parents=True)
    (folder / "sample.jsonl").write_text("".join(json.dumps({"id": d, "text": t}) + "\n" for d, t in TEXTS.items()))
    for name, by_doc in answers.items():
        rows = [{"id": d, "text": TEXTS[d], "status": "ok" if d in by_doc else "failed", "reason": None,
                 "spans": [s.to_dict() for s in by_doc.get(d, [])]} for d in TEXTS]
        (folder / "annotations" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_companion_from_a_pilot_folder(tmp_path):
    g0 = Guideline.initial(schema())
    write_pilot(tmp_path / "0", {"a": A, "b": B})
    c = companion_guideline(g0, tmp_path / "0", ["a", "b"])
    assert c is not None and c.common[-1].text.endswith('"Ada" (PER), "Paris" (LOC).')
    assert companion_guideline(g0, tmp_path / "0", ["a", "b"], max_mentions=1).common[-1].text.endswith(
        '"Ada" (PER).')
    assert companion_guideline(g0, tmp_path / "0", ["a"]) is None           # one annotator: nothing is agreed
    assert companion_guideline(g0, tmp_path / "0", ["a", "zz"]) is None     # an annotator without a pilot file
    assert companion_guideline(g0, tmp_path / "missing", ["a", "b"]) is None
    write_pilot(tmp_path / "none", {"a": A, "b": {"d1": [], "d2": []}})
    assert companion_guideline(g0, tmp_path / "none", ["a", "b"]) is None  # no agreed mention: no companion


def test_pairing_takes_iteration0_beside_a_refined_guideline_else_the_companion():
    g0 = Guideline.initial(schema())
    comp = glossary_guideline(g0, [("Ada", "PER")])
    refined = g0.model_copy(update={"goal": "Tag people.", "iteration": 2})
    same = g0.model_copy(update={"iteration": 1})                        # selected, prompting as iteration 0
    assert paired_guidelines(refined, g0, True, comp) == [g0]
    assert paired_guidelines(same, g0, True, comp) == [comp]
    assert paired_guidelines(same, g0, True, None) == []
    assert paired_guidelines(same, g0, False, comp) == [] and paired_guidelines(refined, g0, False, comp) == []


def test_companion_runs_are_named_for_it():
    from diziner.annotate.runner import guideline_runs

    g0 = Guideline.initial(schema())
    comp = glossary_guideline(g0, [("Ada", "PER")])
    assert list(guideline_runs(["a"], [g0, comp])) == ["a", "a@companion"]
    assert list(guideline_runs(["a"], [comp, g0])) == ["a", "a@it0"]  # the first guideline's runs keep the ids
    other = glossary_guideline(g0, [("Paris", "LOC")])
    assert list(guideline_runs(["a"], [g0, comp, other])) == ["a", "a@g2", "a@g3"]  # two companions: by position
