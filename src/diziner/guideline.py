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
    return load_yaml_model(path, Guideline, "guideline")  # type: ignore[return-value]
