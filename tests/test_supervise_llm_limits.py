"""The LLM supervisor's limits hold on the per-instruction diff of Θ(t) → Θ(t+1) (issue 13, item 5).

Each test scripts supervisor answers that try one way around a limit: a new text under an
old id, a deletion without a reason, renumbering, too many model-specific instructions,
and a deletion that breaks the change-ratio bound.
"""
from __future__ import annotations

import asyncio
import json

from diziner.guideline import Guideline, Instruction, Provenance
from diziner.llm.base import CallableClient, LLMRequest
from diziner.schema import LabelDef, Schema
from diziner.supervise.base import Limits
from diziner.supervise.llm import LLMSupervisor

OLD1 = "Leave titles such as Dr. out of person names."
OLD2 = "Tag every occurrence of an organisation name, also the second one."


def _schema():
    return Schema(name="tech", goal="Tag people and organisations.", labels=[
        LabelDef(name="PER", definition="A named person."), LabelDef(name="ORG", definition="A named organisation.")])


def _prev():
    return Guideline(schema=_schema(), goal="Tag people and organisations.", iteration=1, common=[
        Instruction(id="1", text=OLD1, provenance=Provenance(added_in=1, source="llm")),
        Instruction(id="2", text=OLD2, provenance=Provenance(added_in=1, source="llm"))],
        model_specific={"gamma": [Instruction(id="1", text="You often miss ORG names such as Acme.",
                                              provenance=Provenance(added_in=1, source="llm"))]})


ANALYSIS = {
    "annotators": ["alpha", "beta", "gamma"], "weights": {"alpha": 0.4, "beta": 0.4, "gamma": 0.2},
    "elite": ["alpha", "beta"], "mean_pairwise_f1": 0.3, "summary": {"n_hotspots": 1},
    "hotspots": [{"id": 0, "document": "d1", "text": "Dr. Ada Lovelace", "context": "Dr. Ada Lovelace joined Acme.",
                  "category": "both", "elite_agree": True, "mean_u_star": 0.8,
                  "errors": [{"type": "boundary", "reading": "Dr. Ada Lovelace/PER", "consensus": "Ada Lovelace/PER",
                              "annotators": ["gamma"]}],
                  "readings": {"alpha": [{"start": 4, "end": 16, "label": "PER", "text": "Ada Lovelace"}],
                               "gamma": [{"start": 0, "end": 16, "label": "PER", "text": "Dr. Ada Lovelace"}]},
                  "consensus": [{"start": 4, "end": 16, "label": "PER", "text": "Ada Lovelace"}]}],
    "profiles": {"gamma": {"spurious": 0, "missed": 2, "type_confusion": 0, "boundary": 1, "examples": {}}},
}
DOCS = {"d1": "Dr. Ada Lovelace joined Acme."}
PHASE1 = {"patterns": [{"id": "P1", "description": "Annotators disagree whether the title Dr. belongs to a person name.",
                        "root_cause": "The guideline does not say whether titles are part of PER mentions.",
                        "competing_readings": ["Dr. Ada Lovelace/PER", "Ada Lovelace/PER"], "hotspots": [0],
                        "examples": ["Dr. Ada Lovelace joined Acme."], "support": 1}]}
PHASE2 = {"diagnoses": [{"annotator": "gamma", "issues": ["includes titles in PER spans"],
                         "suggested_instructions": ["Leave the title Dr. out of PER spans."]}]}
NEW = ["Tag Ada Lovelace as PER without the title Dr. in front of the name.",
       "Tag Acme as ORG when a person joined it.",
       "A title like Dr. before a name is never part of the PER mention."]


def _ex(text, *ms):
    return {"text": text, "mentions": [{"text": t, "label": lab} for t, lab in ms], "rationale": "As in the hotspot."}


def _p3(texts=NEW, ms=None):
    return {"common": [{"id": None, "text": t, "patterns": ["P1"],
                        "examples": [_ex("Dr. Ada Lovelace joined Acme.", ("Ada Lovelace", "PER"), ("Acme", "ORG"))]}
                       for t in texts],
            "model_specific": ms or [], "goal": {"update_goal": False, "goal": "", "reason": ""}}


def _node(iid, text, children=()):
    return {"id": iid, "text": text, "examples": [], "children": list(children)}


def _run(p4, p3=None, limits=None):
    answers = {1: PHASE1, 2: PHASE2, 3: p3 or _p3(), 4: p4}
    seen: list[LLMRequest] = []

    def fn(req: LLMRequest) -> str:
        seen.append(req)
        return json.dumps(answers[int(req.purpose.removeprefix("supervise:phase"))])

    lim = limits or Limits(max_change_ratio=1.0, max_new_common=1)
    return asyncio.run(LLMSupervisor(CallableClient(fn)).revise(_prev(), ANALYSIS, DOCS, iteration=2, limits=lim))


def _texts(g):
    return [i.text for i in g.all_common()]


def test_new_texts_under_old_ids_are_additions_and_the_old_ones_stay():
    """The issue's case: max_new_common=1, three new rules written over ids 1, 2 and 3."""
    r = _run({"common": [_node("1", NEW[0]), _node("2", NEW[1]), _node("3", NEW[2])]})
    assert r.ok, r.error
    texts = _texts(r.guideline)
    added = [t for t in texts if t in NEW]
    assert len(added) == 1, texts  # max_new_common holds
    assert OLD1 in texts and OLD2 in texts  # nothing was deleted without a reason
    diff = r.outputs["enforcement"]["diff"]
    assert len(diff["added"]) == 1 and diff["deleted"] == []
    assert sorted(x["text"] for x in diff["restored"]) == sorted([OLD1, OLD2])
    assert any("max_new_common" in n for n in r.notes) and any("without a reason" in n for n in r.notes)
    assert len({i.id for i in r.guideline.all_common()}) == len(texts)  # ids stay unique


def test_deleting_without_a_reason_is_undone_and_with_a_reason_counts():
    r = _run({"common": [_node("1", OLD1)]}, p3=_p3([]))
    assert r.ok and _texts(r.guideline) == [OLD1, OLD2]
    assert [x["id"] for x in r.outputs["enforcement"]["diff"]["restored"]] == ["2"]
    why = "Instruction 2 repeats what the schema already says about ORG names."
    r2 = _run({"common": [_node("1", OLD1)], "removed": [{"id": "2", "reason": why}]}, p3=_p3([]))
    assert r2.ok and _texts(r2.guideline) == [OLD1]
    assert r2.outputs["enforcement"]["diff"]["deleted"] == [{"id": "2", "text": OLD2, "reason": why}]
    assert why in r2.guideline.changelog[-1]


def test_renumbering_does_not_hide_new_instructions():
    # the old instructions moved to 4 and 5, three new ones under 1, 2, 3
    r = _run({"common": [_node("1", NEW[0]), _node("2", NEW[1]), _node("3", NEW[2]), _node("4", OLD1),
                         _node("5", OLD2)]})
    assert r.ok, r.error
    texts = _texts(r.guideline)
    assert len([t for t in texts if t in NEW]) == 1 and OLD1 in texts and OLD2 in texts
    g = r.guideline
    old = {i.text: i for i in g.all_common()}
    assert old[OLD1].provenance.added_in == 1 and old[OLD1].provenance.changed_in == []  # moved, not changed
    # a rewrite of an old instruction under a new id is a change, not an addition
    reworded = "Leave titles such as Dr. or Prof. out of person names."
    r2 = _run({"common": [_node("1", NEW[0]), _node("2", OLD2), _node("3", reworded)]}, p3=_p3(NEW[:1]))
    assert r2.ok
    d = r2.outputs["enforcement"]["diff"]
    assert [x["text"] for x in d["added"]] == [NEW[0]] and [x["text"] for x in d["changed"]] == [reworded]
    ch = next(i for i in r2.guideline.all_common() if i.text == reworded)
    assert ch.provenance.added_in == 1 and ch.provenance.changed_in == [2]


def test_model_specific_limit_holds():
    ms = [{"annotator": "gamma", "instructions": [
        {"id": None, "text": f"Leave the title Dr. out of PER spans, as in Dr. Ada Lovelace (case {i}).", "examples": []}
        for i in range(4)]},
        {"annotator": "gamma", "instructions": [{"id": "1", "text": "Leave the title Dr. out of every PER span.",
                                                  "examples": []}]}]
    r = _run({"common": [_node("1", OLD1), _node("2", OLD2)]}, p3=_p3([], ms=ms),
             limits=Limits(max_change_ratio=1.0, max_new_common=1, max_model_specific=2))
    assert r.ok, r.error
    assert len(r.guideline.model_specific["gamma"]) == 2


def test_a_deletion_counts_towards_the_change_ratio():
    from diziner.guideline_render import change_ratio

    why = "Instruction 2 repeats what the schema already says about ORG names."
    p4 = {"common": [_node("1", OLD1)], "removed": [{"id": "2", "reason": why}]}
    free = _run(p4, p3=_p3([]))
    ratio = change_ratio(_prev(), free.guideline)
    assert ratio > 0 and free.outputs["enforcement"]["diff"]["deleted"]
    r = _run(p4, p3=_p3([]), limits=Limits(max_change_ratio=ratio / 2, max_new_common=1))
    assert r.ok
    assert OLD2 in _texts(r.guideline)  # the deletion was undone to stay within the bound
    assert change_ratio(_prev(), r.guideline) <= ratio / 2
