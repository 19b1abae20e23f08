"""The LLM supervisor checks what each phase says, not only its shape (issue 13, item 11).

Scripted degenerate answers of the kind a weak model gave through llama_cpp.server
(SmolLM2, OpenAI-compatible backend, json_object_schema): placeholders, ids such as
",1.2,text: ", rules about nothing, labels outside the schema. Each gets one re-ask with
the reasons; a second degenerate answer fails the phase and Θ(t) is kept.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from diziner.guideline import Guideline, Instruction, Provenance
from diziner.llm.base import CallableClient, LLMRequest
from diziner.schema import LabelDef, Schema
from diziner.supervise.base import Limits
from diziner.supervise.content import Vocabulary, is_placeholder, unknown_labels
from diziner.supervise.llm import LLMSupervisor

OLD = "Leave titles such as Dr. out of person names."


def _schema():
    return Schema(name="tech", goal="Tag people and organisations.", labels=[
        LabelDef(name="PER", definition="A named person."), LabelDef(name="ORG", definition="A named organisation.")])


def _prev():
    return Guideline(schema=_schema(), goal="Tag people and organisations.", iteration=1, common=[
        Instruction(id="1", text=OLD, provenance=Provenance(added_in=1, source="llm"))])


ANALYSIS = {
    "annotators": ["alpha", "beta", "gamma"], "weights": {"alpha": 0.4, "beta": 0.4, "gamma": 0.2},
    "elite": ["alpha", "beta"], "mean_pairwise_f1": 0.3,
    "hotspots": [{"id": 0, "document": "d1", "text": "Paris Hilton", "context": "Paris Hilton thanked Samsung.",
                  "category": "both", "elite_agree": False, "mean_u_star": 0.5,
                  "errors": [{"type": "type_confusion", "reading": "Paris Hilton/ORG", "consensus": "Paris Hilton/PER",
                              "annotators": ["gamma"]}],
                  "readings": {"alpha": [{"start": 0, "end": 12, "label": "PER", "text": "Paris Hilton"}],
                               "gamma": [{"start": 0, "end": 12, "label": "ORG", "text": "Paris Hilton"}]},
                  "consensus": [{"start": 0, "end": 12, "label": "PER", "text": "Paris Hilton"}]}],
    "profiles": {"gamma": {"spurious": 0, "missed": 0, "type_confusion": 1, "boundary": 0, "examples": {}}},
}
DOCS = {"d1": "Paris Hilton thanked Samsung."}

GOOD = {
    1: {"patterns": [{"id": "P1", "description": "Paris Hilton is read as a person by some annotators and as an "
                                                 "organisation by others.",
                      "root_cause": "A person's name that is also a hotel brand.",
                      "competing_readings": ["Paris Hilton/PER", "Paris Hilton/ORG"], "hotspots": [0], "support": 1}]},
    2: {"diagnoses": [{"annotator": "gamma", "issues": ["labels famous people as ORG"],
                       "suggested_instructions": ["A person's full name is PER even when a brand shares it."]}]},
    3: {"common": [{"id": None, "text": "A person's full name such as Paris Hilton is PER, even when a company "
                                        "shares part of it.", "patterns": ["P1"],
                    "examples": [{"text": "Paris Hilton thanked Samsung.",
                                  "mentions": [{"text": "Paris Hilton", "label": "PER"},
                                               {"text": "Samsung", "label": "ORG"}],
                                  "rationale": "She is a person."}]}],
        "model_specific": [], "goal": {"update_goal": False, "goal": "", "reason": ""}},
    4: {"common": [{"id": "1", "text": OLD, "examples": [], "children": []},
                   {"id": "2", "text": "A person's full name such as Paris Hilton is PER, even when a company shares "
                                       "part of it.", "examples": [], "children": []}]},
}

# what SmolLM2 answered (issue 13): placeholders in phase 1, nonsense under odd ids in phase 3
DEGENERATE = {
    1: {"patterns": [{"id": "P1", "description": "...", "root_cause": "...", "competing_readings": ["..."],
                      "hotspots": [0], "support": 1}]},
    2: {"diagnoses": [{"annotator": "gamma", "issues": ["..."], "suggested_instructions": ["string"]}]},
    3: {"common": [{"id": ",1.2,text: ", "text": "This is a new task.", "examples": [], "patterns": ["P1"]},
                   {"id": ",3.4,mentions:", "text": "The next step will be to add the example of the last instruction.",
                    "examples": [], "patterns": ["P1"]}],
        "model_specific": [], "goal": {"update_goal": False, "goal": "", "reason": ""}},
    4: {"common": [{"id": ",1.2,text: ", "text": "This is a new task.", "examples": [], "children": []},
                   {"id": "1", "text": "...", "examples": [], "children": []}]},
}


def _run(answers: dict[int, list], seen: list | None = None, limits=None):
    seen = seen if seen is not None else []

    def fn(req: LLMRequest) -> str:
        seen.append(req)
        q = answers[int(req.purpose.removeprefix("supervise:phase"))]
        return json.dumps(q.pop(0) if len(q) > 1 else q[0])

    return asyncio.run(LLMSupervisor(CallableClient(fn)).revise(_prev(), ANALYSIS, DOCS, iteration=2,
                                                                limits=limits or Limits(max_change_ratio=1.0)))


def _answers(**over):
    out = {k: [v] for k, v in GOOD.items()}
    for k, v in over.items():
        out[int(k[1:])] = v
    return out


def test_good_answers_pass():
    r = _run(_answers())
    assert r.ok, r.error
    assert [i.text for i in r.guideline.common][-1].startswith("A person's full name such as Paris Hilton is PER")
    assert all(c["ok"] for c in r.outputs["calls"])


@pytest.mark.parametrize("phase, reason", [
    (1, "description: '...' is empty or a placeholder"),
    (2, "issue '...' is a placeholder"),
    (3, "id ',1.2,text: ' is not an instruction id"),
    (3, "'This is a new task.' is not tied to any pattern or hotspot"),
    (3, "'The next step will be to add the example of the last instruction.' is not tied"),
    (4, "instruction ',1.2,text: ': the id is not of the form"),
    (4, "instruction '1': '...' is empty or a placeholder"),
])
def test_degenerate_phase_is_reasked_then_fails_and_keeps_the_guideline(phase, reason):
    seen: list[LLMRequest] = []
    r = _run(_answers(**{f"p{phase}": [DEGENERATE[phase]]}), seen=seen)
    assert not r.ok and r.error.startswith(f"phase {phase} (")
    assert reason in r.error
    asked = [q for q in seen if q.purpose == f"supervise:phase{phase}"]
    assert len(asked) == 2 and reason in asked[1].messages[-1]["content"]  # one re-ask, with the reasons
    assert r.guideline.common == _prev().common and r.guideline.goal == _prev().goal
    assert r.guideline.iteration == 2 and "failed" in r.guideline.changelog[-1]
    texts = [i.text for i in r.guideline.all_common()]
    assert "This is a new task." not in texts


def test_a_degenerate_answer_then_a_good_one_is_used():
    r = _run(_answers(p3=[DEGENERATE[3], GOOD[3]]))
    assert r.ok, r.error
    assert [c["ok"] for c in r.outputs["calls"] if c["phase"] == 3] == [False, True]
    assert r.outputs["calls"][2]["problems"]
    assert "This is a new task." not in [i.text for i in r.guideline.all_common()]


def test_rules_must_use_schema_labels_and_grounded_examples():
    bad = json.loads(json.dumps(GOOD[3]))
    bad["common"][0]["text"] = "Tag Paris Hilton as CELEBRITY, never as PER."
    r = _run(_answers(p3=[bad]))
    assert not r.ok and "'CELEBRITY' is not a label of the schema" in r.error
    bad2 = json.loads(json.dumps(GOOD[3]))
    bad2["common"][0]["examples"][0]["mentions"].append({"text": "Samsung Electronics", "label": "ORG"})
    r2 = _run(_answers(p3=[bad2]))
    assert not r2.ok and "'Samsung Electronics' does not occur in the example text" in r2.error


def test_goal_update_and_removal_reasons_are_checked():
    bad = json.loads(json.dumps(GOOD[3]))
    bad["goal"] = {"update_goal": True, "goal": "...", "reason": "..."}
    r = _run(_answers(p3=[bad]))
    assert not r.ok and "goal: '...' is empty or a placeholder" in r.error
    p4 = {"common": GOOD[4]["common"][1:], "removed": [{"id": "1", "reason": "..."}]}
    r2 = _run(_answers(p4=[p4]))
    assert not r2.ok and "reason for removing '1'" in r2.error


def test_model_specific_instructions_are_checked():
    bad = json.loads(json.dumps(GOOD[3]))
    bad["model_specific"] = [{"annotator": "gamma", "instructions": [{"id": None, "text": "This is a new task."}]}]
    r = _run(_answers(p3=[bad]))
    assert not r.ok and "instruction 1 for gamma" in r.error
    good = json.loads(json.dumps(GOOD[3]))
    good["model_specific"] = [{"annotator": "gamma", "instructions": [
        {"id": None, "text": "You often label famous people as ORG: a person's full name is PER."}]}]
    r2 = _run(_answers(p3=[good]))
    assert r2.ok, r2.error and r2.guideline.model_specific["gamma"]


@pytest.mark.parametrize("text, expected", [
    ("...", True), ("", True), ("  TODO ", True), ("string", True), ("<text>", True), ("—", True),
    ("[description]", True), ("e.g. ...", True), ("Tag Paris Hilton as PER.", False), ("N/A", True),
])
def test_is_placeholder(text, expected):
    assert is_placeholder(text) is expected


def test_unknown_labels():
    labels = ["PER", "ORG", "LOC"]
    assert unknown_labels("Tag dates as DATE.", labels) == ["DATE"]
    assert unknown_labels("GPE mentions are LOC.", labels) == ["GPE"]
    assert unknown_labels("Label mentions such as NASA as ORG, not PER.", labels) == []
    assert unknown_labels("Tag US as LOC.", labels, ["US"]) == []
    assert unknown_labels("Tag B-PER tokens right.", labels) == []


def test_vocabulary_ties():
    v = Vocabulary(["PER", "ORG"])
    v.add_hotspot(ANALYSIS["hotspots"][0])
    assert v.ties("Paris Hilton is a person.")
    assert v.ties("Famous people are PER.")
    assert not v.ties("This is a new task.")
    assert not v.ties("The next step will be to add the example of the last instruction.")
    v.add_hotspot({"text": "on", "errors": [{"reading": "O", "consensus": "Acme/ORG"}], "readings": {"a": []}})
    assert not v.ties("The next step will be to add the example of the last instruction.")  # "O" ties nothing
    assert v.ties("Acme is ORG.")


def test_the_loop_keeps_the_previous_guideline_when_the_supervisor_degenerates(tmp_path, examples_dir):
    """refine with an LLM supervisor that answers like SmolLM2 did: the loop completes, no
    degenerate instruction enters any guideline."""
    from diziner.corpus.readers import read_corpus
    from diziner.llm.ledger import Ledger
    from diziner.llm.pool import pool_from_dict
    from diziner.loop import RefineOptions, refine
    from diziner.schema import load_schema

    schema = load_schema(examples_dir / "schema.yaml")
    docs = read_corpus(examples_dir / "texts.jsonl").documents[:8]
    gold = read_corpus(examples_dir / "gold.jsonl")
    by_text = {d.text: gold.spans_of(d.id) for d in docs}

    def annotator(keep):
        def fn(req: LLMRequest) -> str:
            body = req.messages[-1]["content"] if req.messages else req.prompt
            spans = [s for t, ss in by_text.items() if t in body for s in ss if s.label in keep]
            ms = [{"text": s.text, "label": s.label} for s in spans]
            return json.dumps({"mentions": ms} if req.messages is not None else ms)
        return fn

    def supervisor(req: LLMRequest) -> str:
        return json.dumps(DEGENERATE[int(req.purpose.removeprefix("supervise:phase"))])

    pool = pool_from_dict({"annotators": [
        {"id": a, "backend": "openai", "model": a, "base_url": "http://127.0.0.1:9/v1", "prompt_style": "chat"}
        for a in ("a", "b")], "supervisor": {"backend": "openai", "model": "sup", "base_url": "http://127.0.0.1:9/v1"}})
    clients = ({"a": CallableClient(annotator({"PER", "ORG"}), name="a"),
                "b": CallableClient(annotator({"PER"}), name="b")}, CallableClient(supervisor, name="sup"), Ledger())
    res = refine(schema, docs, pool, tmp_path / "run", RefineOptions(iterations=2, sample_size=4, seed=1, patience=5,
                                                                     final_annotation=False),
                 clients=clients, quiet=True)
    assert res.selected_iteration in (0, 1)
    g1 = (tmp_path / "run" / "iterations" / "1" / "guideline.yaml").read_text()
    assert "This is a new task." not in g1 and ",1.2,text" not in g1
    from diziner.guideline import load_guideline

    assert load_guideline(tmp_path / "run" / "iterations" / "1" / "guideline.yaml").common == []
    sup = json.loads((tmp_path / "run" / "iterations" / "0" / "metrics.json").read_text())
    assert sup["supervisor_ok"] is False
