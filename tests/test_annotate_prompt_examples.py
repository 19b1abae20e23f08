"""Which worked examples reach an annotator's prompt (issue 13, item 4).

Guidelines of three refinement iterations are built by hand: each iteration adds one common
instruction with two worked examples and one instruction for the annotator "gemma" with one
worked example (``provenance.added_in`` = the iteration), on a schema with three
demonstrations, as the supervisors do.
"""
from __future__ import annotations

import json

import pytest

from diziner.annotate.chunk import approx_tokens
from diziner.annotate.prompt import (
    EXAMPLE_TOKEN_BUDGET,
    build_request,
    example_tokens,
    select_examples,
)
from diziner.guideline import Guideline, Instruction, Provenance
from diziner.schema import Schema, WorkedExample

STYLES = [("chat", "v1"), ("chat", "v2"), ("fewshot", "v1"), ("fewshot", "v2")]
DOC = "Grace Hopper joined the Navy."


def _schema() -> Schema:
    return Schema.model_validate({
        "goal": "Tag people and organisations.",
        "labels": [{"name": "PER", "definition": "A named person."},
                   {"name": "ORG", "definition": "A named organisation."}],
        "demonstrations": [
            {"text": "IBM hired Ada.", "mentions": [{"text": "IBM", "label": "ORG"}, {"text": "Ada", "label": "PER"}]},
            {"text": "Bob left Acme.", "mentions": [{"text": "Bob", "label": "PER"}, {"text": "Acme", "label": "ORG"}]},
            {"text": "Kim met Lee.", "mentions": [{"text": "Kim", "label": "PER"}, {"text": "Lee", "label": "PER"}]},
        ],
    })


def _ex(text: str, *mentions: tuple[str, str]) -> WorkedExample:
    return WorkedExample(text=text, mentions=[{"text": t, "label": lab} for t, lab in mentions])


def _added(t: int) -> dict[str, list[WorkedExample]]:
    """The worked examples iteration t adds: two common, one for gemma."""
    return {"common": [_ex(f"Zed{t} sued Orbit{t}.", (f"Zed{t}", "PER"), (f"Orbit{t}", "ORG")),
                       _ex(f"Vox{t} bought Nim{t}.", (f"Vox{t}", "ORG"), (f"Nim{t}", "ORG"))],
            "gemma": [_ex(f"Uma{t} wrote.", (f"Uma{t}", "PER"))]}


def _guideline(iterations: int) -> Guideline:
    g = Guideline.initial(_schema())
    for t in range(1, iterations + 1):
        add = _added(t)
        g.common.append(Instruction(id=str(t), text=f"Rule of iteration {t}.", examples=add["common"],
                                    provenance=Provenance(added_in=t, source="consensus")))
        g.model_specific.setdefault("gemma", []).append(
            Instruction(id=str(t), text=f"Your rule of iteration {t}.", examples=add["gemma"],
                        provenance=Provenance(added_in=t, source="consensus")))
        g.iteration = t
    return g


def _blob(req) -> str:
    return "\n".join(m["content"] for m in req.messages) if req.messages is not None else req.prompt


@pytest.mark.parametrize("style,version", STYLES)
@pytest.mark.parametrize("t", [1, 2, 3])
def test_an_example_added_at_iteration_t_is_in_the_iteration_t_prompt(style, version, t):
    g = _guideline(t)
    for annotator in ("gemma", "smol"):
        blob = _blob(build_request(g, annotator, style, DOC, template_version=version))
        for ex in _added(t)["common"]:
            assert ex.text in blob, (annotator, ex.text)
    blob = _blob(build_request(g, "gemma", style, DOC, template_version=version))
    assert _added(t)["gemma"][0].text in blob
    # another annotator's Rk examples never reach this annotator
    assert _added(t)["gemma"][0].text not in _blob(build_request(g, "smol", style, DOC, template_version=version))


def _shown(blob: str, g: Guideline) -> list[WorkedExample]:
    pool = list(g.schema_.demonstrations)
    for ins in g.all_common() + g.for_annotator("gemma"):
        pool.extend(ins.examples)
    return [ex for ex in pool if ex.text in blob]


@pytest.mark.parametrize("style,version", STYLES)
def test_the_examples_stay_within_the_token_budget_newest_first(style, version):
    g = _guideline(12)  # 12 x 3 refined examples + 3 demonstrations: far more than the budget
    req = build_request(g, "gemma", style, DOC, template_version=version)
    shown = _shown(_blob(req), g)
    assert sum(example_tokens(ex, style, version) for ex in shown) <= EXAMPLE_TOKEN_BUDGET
    texts = {ex.text for ex in shown}
    newest = _added(12)
    assert {ex.text for ex in newest["common"] + newest["gemma"]} <= texts
    assert not {ex.text for ex in _added(1)["common"]} & texts  # the oldest give way
    assert "IBM hired Ada." not in texts  # schema demonstrations are the oldest of all


def test_selection_prefers_own_rk_then_newest_and_is_first_fit():
    g = _guideline(2)
    cost = {ex.text: example_tokens(ex, "fewshot", "v2") for ex in _added(2)["gemma"] + _added(2)["common"]}
    own = _added(2)["gemma"][0].text
    # room for exactly one example: the annotator's own Rk of the newest iteration wins
    one = select_examples(g, "gemma", "fewshot", budget=cost[own])
    assert [ex.text for ex in one] == [own]
    # another annotator has no Rk: the newest common example (first of its instruction) wins
    first_common = _added(2)["common"][0].text
    other = select_examples(g, "smol", "fewshot", budget=cost[first_common])
    assert [ex.text for ex in other] == [first_common]
    assert select_examples(g, "gemma", "fewshot", budget=0) == []
    # no budget: everything, each text once, in guideline order (schema, C, Rk)
    everything = select_examples(g, "gemma", "fewshot", budget=None)
    assert [ex.text for ex in everything] == [
        "IBM hired Ada.", "Bob left Acme.", "Kim met Lee.",
        *(ex.text for ex in _added(1)["common"]), *(ex.text for ex in _added(2)["common"]),
        _added(1)["gemma"][0].text, own]


def test_a_changed_instruction_counts_as_new():
    g = _guideline(3)
    cost = example_tokens(g.common[0].examples[0], "chat", "v2")  # all refined examples cost the same here
    assert [ex.text for ex in select_examples(g, "smol", "chat", budget=cost)] == ["Zed3 sued Orbit3."]
    g.common[0].provenance.changed_in = [3]  # iteration 3 rewrote the rule of iteration 1
    # now it ties with the rule of iteration 3 and comes first in guideline order
    assert [ex.text for ex in select_examples(g, "smol", "chat", budget=cost)] == ["Zed1 sued Orbit1."]


def test_example_tokens_is_characters_over_four_of_the_rendered_example():
    ex = _ex("Zed sued Orbit.", ("Zed", "PER"), ("Orbit", "ORG"))
    answer = json.dumps([{"text": "Zed", "label": "PER"}, {"text": "Orbit", "label": "ORG"}])
    assert example_tokens(ex, "fewshot", "v2") == approx_tokens(f"Text: Zed sued Orbit.\nEntities:\n{answer}\n\n")
    chat = json.dumps({"mentions": [{"text": "Zed", "label": "PER"}, {"text": "Orbit", "label": "ORG"}]})
    assert example_tokens(ex, "chat", "v2") == approx_tokens(
        f"<<<DOCUMENT>>>\nZed sued Orbit.\n<<<END OF DOCUMENT>>>{chat}")


@pytest.mark.parametrize("style,version", STYLES)
def test_same_guideline_same_prompt(style, version):
    a = build_request(_guideline(3), "gemma", style, DOC, template_version=version)
    b = build_request(_guideline(3).model_copy(deep=True), "gemma", style, DOC, template_version=version)
    assert a.cache_payload() == b.cache_payload()


@pytest.mark.parametrize("style,version", STYLES)
def test_iteration_0_prompt_keeps_every_schema_demonstration(style, version):
    blob = _blob(build_request(_guideline(0), "gemma", style, DOC, template_version=version))
    assert all(ex.text in blob for ex in _schema().demonstrations)


def test_fewshot_v2_shows_a_rule_example_without_mentions_under_its_rule():
    g = _guideline(1)
    g.model_specific["gemma"].append(Instruction(id="2", text="Pronouns are not names.",
                                                 examples=[_ex("He left early.")],
                                                 provenance=Provenance(added_in=1, source="consensus")))
    p = build_request(g, "gemma", "fewshot", DOC).prompt
    rule = p.index("- Pronouns are not names.")
    assert p.index('Example: "He left early." -> no names', rule) < p.index("Text: ")
    assert "Text: He left early." not in p  # a base model copies an empty answer: no empty block
    assert "[]" not in p and "none" not in p.lower()


def test_default_budget_holds_every_shipped_schemas_demonstrations():
    """The default keeps iteration-0 prompts as they were: all demonstrations of every shipped schema."""
    from pathlib import Path

    from diziner.schema import load_schema

    root = Path(__file__).resolve().parents[1]
    paths = [root / "examples" / "schema.yaml", *sorted((root / "src/diziner/benchmarks/schemas").glob("*.yaml"))]
    assert len(paths) >= 11
    for path in paths:
        schema = load_schema(path)
        for style, version in STYLES:
            chosen = select_examples(Guideline.initial(schema), "a", style, template_version=version)
            assert chosen == list(schema.demonstrations), (path.name, style, version)
