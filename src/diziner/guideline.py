"""The guideline state Θ(t) shared by all annotators: Σ (fixed), C(t), Rk(t), G(t).

- ``common``: the common instructions C as a hierarchy (ids "1", "1.1", ...), each with
  worked examples (text, correct annotation, rationale) and provenance.
- ``model_specific``: Rk per annotator id.
- ``goal``: G(t); ``schema.goal`` keeps the original G(0).

This module holds the data model and its YAML I/O; rendering to Markdown and diffs
live in :mod:`diziner.guideline_render`.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from diziner.schema import ExampleMention, Schema, WorkedExample, load_yaml_model

__all__ = ["ExampleMention", "WorkedExample", "Provenance", "Instruction", "Guideline", "load_guideline"]


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    added_in: int = 0  # iteration that added the instruction
    changed_in: list[int] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)  # hotspot pattern ids / descriptions that motivated it
    source: str = "initial"  # initial | consensus | llm | gold


class Instruction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    text: str
    examples: list[WorkedExample] = Field(default_factory=list)
    children: list["Instruction"] = Field(default_factory=list)
    provenance: Provenance = Field(default_factory=Provenance)

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


class Guideline(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Schema = Field(alias="schema")
    goal: str
    common: list[Instruction] = Field(default_factory=list)
    model_specific: dict[str, list[Instruction]] = Field(default_factory=dict)
    iteration: int = 0
    changelog: list[str] = Field(default_factory=list)

    @classmethod
    def initial(cls, schema: Schema) -> "Guideline":
        """Iteration-0 guideline: Σ and G only, no refined instructions."""
        return cls(schema=schema, goal=schema.goal, common=[], model_specific={}, iteration=0)

    def all_common(self) -> list[Instruction]:
        return [i for top in self.common for i in top.walk()]

    def for_annotator(self, annotator_id: str) -> list[Instruction]:
        return [i for top in self.model_specific.get(annotator_id, []) for i in top.walk()]

    def to_yaml(self) -> str:
        data = self.model_dump(by_alias=True, mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def load_guideline(path: str | Path) -> Guideline:
    """Read and validate a guideline file; a worked example must use the schema's labels and quote
    its own text (as the schema's demonstrations must, and as every revision's examples are kept)."""
    g: Guideline = load_yaml_model(path, Guideline, "guideline")  # type: ignore[assignment]
    labels = set(g.schema_.label_names)
    lists = [(("common",), g.common)] + [(("model_specific", k), v) for k, v in g.model_specific.items()]
    for loc, items in lists:
        for where, ex in _examples(loc, items):
            for m, mention in enumerate(ex.mentions):
                if mention.label not in labels:
                    problem = f"label {mention.label!r} is not in the schema ({', '.join(sorted(labels))})"
                elif not mention.text.strip() or mention.text not in ex.text:
                    problem = f"mention {mention.text!r} does not occur in the example text"
                else:
                    continue
                _bad_example(Path(path), (*where, "mentions", m), problem)
    return g


def _examples(loc: tuple, items: list[Instruction]):
    """(YAML location, example) of every worked example under ``items``, children included."""
    for i, ins in enumerate(items):
        for k, ex in enumerate(ins.examples):
            yield (*loc, i, "examples", k), ex
        yield from _examples((*loc, i, "children"), ins.children)


def _bad_example(path: Path, loc: tuple, problem: str) -> None:
    from diziner.errors import InputError
    from diziner.schema import _yaml_line

    where = ".".join(str(x) for x in loc)
    raise InputError(path, _yaml_line(path, path.read_text(encoding="utf-8"), loc), f"{where}: {problem}")
