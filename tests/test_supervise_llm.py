"""The four-phase LLM supervisor with a scripted client."""
from __future__ import annotations

import asyncio
import json

import pytest

from diziner.errors import LLMCallError
from diziner.guideline import Guideline, Instruction, Provenance
from diziner.llm.base import CallableClient, LLMRequest
from diziner.schema import LabelDef, Schema
from diziner.supervise.base import Limits, Supervisor
from diziner.supervise.llm import (
    LLMSupervisor,
    Phase1Output,
    Phase3Output,
    extract_json,
)

ANNS = ["alpha", "beta", "gamma"]


def _schema():
    return Schema(name="tech", goal="Tag people and organisations.", labels=[
        LabelDef(name="PER", definition="A named person."), LabelDef(name="ORG", definition="A named organisation.")])


def _prev():
    return Guideline(schema=_schema(), goal="Tag people and organisations.", iteration=1, common=[
        Instruction(id="1", text="Leave titles out.", provenance=Provenance(added_in=1, source="llm")),
        Instruction(id="2", text="Tag every occurrence.", provenance=Provenance(added_in=1, source="llm"))])


ANALYSIS = {
    "annotators": ANNS, "weights": {"alpha": 0.4, "beta": 0.4, "gamma": 0.2}, "elite": ["alpha", "beta"],
    "mean_pairwise_f1": 0.3, "summary": {"n_hotspots": 1},
    "hotspots": [{"id": 0, "document": "d1", "text": "Dr. Ada Lovelace", "context": "Dr. Ada Lovelace joined Acme.",
                  "category": "both", "elite_agree": True, "mean_u_star": 0.8,
                  "errors": [{"type": "boundary", "reading": "Dr. Ada Lovelace/PER", "consensus": "Ada Lovelace/PER",
                              "annotators": ["gamma"]}],
                  "readings": {"alpha": [{"start": 4, "end": 16, "label": "PER", "text": "Ada Lovelace"}]},
                  "consensus": [{"start": 4, "end": 16, "label": "PER", "text": "Ada Lovelace"}]}],
    "profiles": {"gamma": {"spurious": 1, "missed": 2, "type_confusion": 0, "boundary": 1,
                           "examples": {"boundary": [{"text": "Dr. Ada Lovelace", "label": "PER",
                                                      "consensus": "Ada Lovelace/PER",
                                                      "context": "[Dr. Ada Lovelace] joined Acme."}]}}},
}
DOCS = {"d1": "Dr. Ada Lovelace joined Acme."}


def _ex(text, *ms, why="because"):
    return {"text": text, "mentions": [{"text": t, "label": lab} for t, lab in ms], "rationale": why}


PHASE1 = {"patterns": [{"id": f"P{i}", "description": f"Annotators disagree whether the title Dr. is part of a PER name ({i}).",
                        "root_cause": "The guideline says nothing about titles.", "competing_readings": [],
                        "hotspots": [0], "support": i} for i in range(1, 8)]}
PHASE2 = {"diagnoses": [{"annotator": "gamma", "issues": ["includes titles"], "suggested_instructions": ["Drop titles."]},
                        {"annotator": "nobody", "issues": [], "suggested_instructions": []}]}
NEW_TEXTS = ["Tag Ada Lovelace as PER without the title Dr. in front.",
             "A title such as Dr. or Prof. is never part of a PER mention.",
             "Tag Acme as ORG when a person joins it.",
             "Tag a surname alone, such as Lovelace, as PER.",
             "Honorifics like Mrs. stay outside the PER span.",
             "Tag a company name after the verb joined as ORG."]
PHASE3 = {
    "common": [{"id": None, "text": t, "patterns": [f"P{7 - i}"],
                "examples": [_ex(f"Ada Lovelace met Bob {i}.", ("Ada Lovelace", "PER"))]} for i, t in enumerate(NEW_TEXTS)]
    + [{"id": "1", "text": "Leave titles and honorifics out.", "patterns": ["P7"],
        "examples": [_ex("Dr. Ada Lovelace spoke.", ("Ada Lovelace", "PER")),
                     _ex("Acme Corp hired Ada.", ("Acme Corp", "ORG"))]}],
    "model_specific": [{"annotator": "gamma", "instructions": [
        {"text": f"Unlike alpha, you should drop titles ({i}).", "examples": []} for i in range(4)]},
        {"annotator": "ghost", "instructions": [{"text": "x"}]}],
    "goal": {"update_goal": True, "goal": "Tag people and organisations by name, without titles.",
             "reason": "Pattern P7 shows that titles are unclear."},
}


# the same answer with worked examples that are not grounded: a label outside the schema, a
# mention that is not in its text (re-asked with the reasons)
PHASE3_UNGROUNDED = json.loads(json.dumps(PHASE3))
PHASE3_UNGROUNDED["common"][-1]["examples"] = [
    _ex("Dr. Ada Lovelace spoke.", ("Ada Lovelace", "PER")), _ex("Prof. Bob spoke on Monday.", ("Monday", "DATE")),
    _ex("Acme Corp hired Ada.", ("Acme Corp", "ORG"), ("Globex", "ORG"))]


def _phase4(p3=PHASE3):
    new_nodes = [{"id": str(3 + i), "text": t, "examples": [], "children": []} for i, t in enumerate(NEW_TEXTS)]
    return {"common": [
        {"id": "1", "text": "Leave titles and honorifics out.",
         "examples": p3["common"][-1]["examples"], "children": []},
        {"id": "2", "text": "Tag every occurrence.", "examples": [], "children": [
            {"id": "2.1", "text": "Tag everything that looks like a PER name, also in lists.", "examples": [],
             "children": []}]},
        *new_nodes]}


def _script(answers: dict[int, list[str]], seen: list[LLMRequest]):
    def fn(req: LLMRequest) -> str:
        seen.append(req)
        phase = int(req.purpose.removeprefix("supervise:phase"))
        queue = answers[phase]
        return queue.pop(0) if len(queue) > 1 else queue[0]
    return CallableClient(fn)


def _answers(over=None):
    base = {1: [json.dumps(PHASE1)], 2: [json.dumps(PHASE2)], 3: [json.dumps(PHASE3)], 4: [json.dumps(_phase4())]}
    base.update(over or {})
    return base


def _run(answers, limits=None, seen=None, client=None, **kw):
    seen = seen if seen is not None else []
    sup = LLMSupervisor(client or _script(answers, seen), **kw)
    return asyncio.run(sup.revise(_prev(), ANALYSIS, DOCS, iteration=2, limits=limits or Limits(max_change_ratio=1.0)))


def test_is_a_supervisor():
    assert isinstance(LLMSupervisor(CallableClient(lambda r: "")), Supervisor)


def test_valid_phases_limits_and_validation():
    seen: list[LLMRequest] = []
    r = _run(_answers({3: [json.dumps(PHASE3_UNGROUNDED), json.dumps(PHASE3)]}), seen=seen)
    assert r.ok and r.error is None, r.error
    assert [q.purpose for q in seen] == [f"supervise:phase{i}" for i in (1, 2, 3, 3, 4)]
    assert seen[0].json_schema == Phase1Output.model_json_schema()
    assert seen[2].json_schema == Phase3Output.model_json_schema()
    # ungrounded worked examples: one re-ask that says what is wrong
    reask = seen[3].messages[-1]["content"]
    assert "'DATE' is not a label of the schema" in reask and "'Globex' does not occur" in reask
    assert all(q.iteration == 2 for q in seen)
    assert "gamma" in seen[1].messages[1]["content"] and "Dr. Ada Lovelace" in seen[0].messages[1]["content"]
    # phase 1: 7 patterns → the 5 with most hotspots
    assert r.outputs["phase1"]["kept"] == ["P3", "P4", "P5", "P6", "P7"]
    g = r.guideline
    ids = [i.id for i in g.all_common()]
    # the unrequested 2.1 and the lowest-priority of the 6 new rules are dropped (max_new_common = 5)
    assert "2.1" not in ids and len([i for i in g.all_common() if i.provenance.added_in == 2]) == 5
    assert NEW_TEXTS[5] not in [i.text for i in g.all_common()]
    one = g.common[0]
    assert one.text == "Leave titles and honorifics out." and one.provenance.changed_in == [2]
    assert one.provenance.added_in == 1
    assert [e.text for e in one.examples] == ["Dr. Ada Lovelace spoke.", "Acme Corp hired Ada."]
    assert [m.text for m in one.examples[1].mentions] == ["Acme Corp"]
    assert r.dropped_examples == 0 and r.dropped_mentions == 0
    new = next(i for i in g.all_common() if i.text == NEW_TEXTS[0])
    assert new.provenance.source == "llm" and new.provenance.patterns == ["P7"]
    assert new.examples and new.examples[0].mentions[0].text == "Ada Lovelace"  # from phase 3
    # model-specific: 3 at most, other annotators never named, unknown annotators ignored
    ms = g.model_specific["gamma"]
    assert len(ms) == 3 and all("alpha" not in i.text for i in ms) and "ghost" not in g.model_specific
    assert g.goal == "Tag people and organisations by name, without titles." and g.iteration == 2
    assert any("max_patterns" in n for n in r.notes) and any("max_new_common" in n for n in r.notes)
    json.dumps(r.outputs)


def test_invalid_json_gets_one_repair():
    seen: list[LLMRequest] = []
    r = _run(_answers({2: ["<think>hmm</think> I cannot answer in JSON", json.dumps(PHASE2)]}), seen=seen)
    assert r.ok, r.error
    repair = [q for q in seen if q.purpose == "supervise:phase2"]
    assert len(repair) == 2
    last = repair[1].messages
    assert last[-2] == {"role": "assistant", "content": "<think>hmm</think> I cannot answer in JSON"}
    assert "could not be used" in last[-1]["content"] and "no JSON object" in last[-1]["content"]
    assert [c["attempt"] for c in r.outputs["calls"] if c["phase"] == 2] == [1, 2]


def test_schema_violation_then_repair_in_fences():
    bad = json.dumps({"patterns": [{"description": "no id"}]})
    good = "```json\n" + json.dumps(PHASE1) + "\n```"
    r = _run(_answers({1: [bad, good]}))
    assert r.ok
    assert "patterns.0.id" in r.outputs["calls"][0]["error"]


def test_failing_phase_keeps_previous_guideline():
    r = _run(_answers({3: ["{not json", '{"common": "wrong type"}']}))
    assert not r.ok and r.error.startswith("phase 3 (instruction generation): invalid output after one repair")
    assert r.guideline.common == _prev().common and r.guideline.goal == _prev().goal
    assert "phase1" in r.outputs and "phase4" not in r.outputs


def test_llm_call_error_fails_loudly():
    def fn(req):
        raise LLMCallError("server down", kind="http_5xx")
    r = _run({}, client=CallableClient(fn))
    assert not r.ok and r.error == "phase 1 (pattern analysis): LLM call failed (http_5xx): server down"


def test_freeze_and_remove_goal():
    r = _run(_answers(), limits=Limits(max_change_ratio=1.0, freeze_goal=True))
    assert r.guideline.goal == _prev().goal and any("freeze_goal" in n for n in r.notes)
    r2 = _run(_answers(), limits=Limits(max_change_ratio=1.0, remove_goal=True))
    assert r2.guideline.goal == ""


def test_change_ratio_bound_trims_llm_additions():
    r = _run(_answers(), limits=Limits(max_change_ratio=0.2))
    rep = r.outputs["enforcement"]
    assert r.ok and rep["ratio"] <= 0.2 and (rep["trimmed"] or rep["rejected"])


def test_phase2_skipped_when_all_elite():
    seen: list[LLMRequest] = []
    analysis = dict(ANALYSIS, elite=ANNS)
    sup = LLMSupervisor(_script(_answers(), seen))
    r = asyncio.run(sup.revise(_prev(), analysis, DOCS, iteration=2, limits=Limits(max_change_ratio=1.0)))
    assert r.ok and "skipped" in r.outputs["phase2"]
    assert [q.purpose for q in seen] == ["supervise:phase1", "supervise:phase3", "supervise:phase4"]


@pytest.mark.parametrize("text,expected", [
    ('<think>{"a": 0}</think>{"a": 1}', {"a": 1}),
    ('Sure:\n```json\n{"a": [1, 2,],}\n```', {"a": [1, 2]}),
    ('prefix {"a": {"b": "}"}} suffix', {"a": {"b": "}"}}),
])
def test_extract_json(text, expected):
    assert extract_json(text) == expected


def test_extract_json_errors():
    for bad in ("", "no json here", "[1, 2]"):
        with pytest.raises(ValueError):
            extract_json(bad)


def test_four_phases_over_a_real_http_server():
    pytest.importorskip("openai")
    from diziner.llm.openai_compat import OpenAICompatClient
    from diziner.llm.pool import BackendConfig
    from diziner.testing.server import TestServer

    answers = {1: PHASE1, 2: PHASE2, 3: PHASE3, 4: _phase4()}

    def responder(body: dict) -> str:
        sysmsg = body["messages"][0]["content"]
        phase = 1 if "recurring patterns" in sysmsg else 2 if "diagnose" in sysmsg else 3 if "write guideline" in sysmsg else 4
        return json.dumps(answers[phase])

    with TestServer() as srv:
        srv.set_responder(responder)
        client = OpenAICompatClient(BackendConfig(backend="openai", model="sup", base_url=srv.base_url, timeout_s=10))
        async def revise():
            try:
                return await LLMSupervisor(client).revise(_prev(), ANALYSIS, DOCS, iteration=2,
                                                          limits=Limits(max_change_ratio=1.0))
            finally:
                await client.aclose()

        r = asyncio.run(revise())
        assert r.ok, r.error
        assert len(srv.requests) == 4
    assert r.guideline.common[0].text == "Leave titles and honorifics out."
