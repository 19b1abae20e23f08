"""The schema Σ (labels with definitions and examples) and the task goal G.

Σ never changes during refinement; G may be clarified by the supervisor.
Schema files are YAML::

    name: news
    goal: Tag every person, organisation and place named in news text ...
    labels:
      - name: PER
        definition: A named person ...
        positive_examples: ["Ada Lovelace", "President Obama"]
        negative_examples: ["the president", "he"]
        source_tags: [PERSON, per]     # optional: the dataset's own tag names

Unknown keys, duplicate labels and empty definitions are errors.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diziner.errors import ConfigError, InputError


class LabelDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    definition: str
    positive_examples: list[str] = Field(default_factory=list)
    negative_examples: list[str] = Field(default_factory=list)
    source_tags: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("label name is empty")
        if any(c.isspace() for c in v):
            raise ValueError(f"label name {v!r} contains whitespace")
        return v

    @field_validator("definition")
    @classmethod
    def _definition_ok(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("definition is empty")
        return v.strip()


class ExampleMention(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    label: str


class WorkedExample(BaseModel):
    """A sentence and its correct annotation; every mention's text must occur in ``text``."""

    model_config = ConfigDict(extra="forbid")
    text: str
    mentions: list[ExampleMention] = Field(default_factory=list)
    rationale: str = ""


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "schema"
    description: str = ""
    goal: str
    labels: list[LabelDef]
    # Optional sentence-level demonstrations written by the schema author (few-shot prompts use them).
    demonstrations: list[WorkedExample] = Field(default_factory=list)

    @field_validator("goal")
    @classmethod
    def _goal_ok(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("goal is empty")
        return v.strip()

    @model_validator(mode="after")
    def _labels_ok(self) -> "Schema":
        if not self.labels:
            raise ValueError("schema has no labels")
        seen: set[str] = set()
        for lab in self.labels:
            if lab.name in seen:
                raise ValueError(f"duplicate label {lab.name!r}")
            seen.add(lab.name)
        for i, demo in enumerate(self.demonstrations):
            for m in demo.mentions:
                if m.label not in seen:
                    raise ValueError(f"demonstration {i + 1}: label {m.label!r} is not in the schema")
                if m.text not in demo.text:
                    raise ValueError(f"demonstration {i + 1}: mention {m.text!r} does not occur in its text")
        return self

    @property
    def label_names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def label(self, name: str) -> LabelDef:
        for lab in self.labels:
            if lab.name == name:
                return lab
        raise KeyError(name)

    def tag_map(self) -> dict[str, str]:
        """Dataset tag name -> schema label name (identity for labels without source_tags)."""
        out: dict[str, str] = {}
        for lab in self.labels:
            out[lab.name] = lab.name
            for t in lab.source_tags:
                out[t] = lab.name
        return out


def _yaml_line(path: Path, text: str, loc: tuple) -> int | None:
    """Best-effort line number of a pydantic error location in the YAML text."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for part in loc:
        if node is None:
            return None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    break
            if nxt is None:
                return node.start_mark.line + 1
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node.start_mark.line + 1
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1 if node is not None else None


def load_yaml_model(path: str | Path, model: type[BaseModel], what: str) -> BaseModel:
    """Load a YAML file into a pydantic model, turning every failure into a one-line error."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(p, None, f"{what} file not found") from None
    except OSError as e:
        raise InputError(p, None, f"cannot read {what} file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(p, line, f"not valid UTF-8 (byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(p, line, f"invalid YAML: {problem}") from None
    if data is None:
        raise InputError(p, None, f"{what} file is empty")
    if not isinstance(data, dict):
        raise InputError(p, 1, f"{what} file must be a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err.get("loc", ()))
        where = ".".join(str(x) for x in loc) or "(top level)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        elif err.get("type") == "missing":
            msg = "missing required key"
        msg = msg.removeprefix("Value error, ")
        raise InputError(p, _yaml_line(p, text, loc), f"{where}: {msg}") from None


def load_schema(path: str | Path) -> Schema:
    return load_yaml_model(path, Schema, "schema")  # type: ignore[return-value]


def dump_schema(schema: Schema) -> str:
    return yaml.safe_dump(schema.model_dump(), sort_keys=False, allow_unicode=True, width=100)


__all__ = ["LabelDef", "ExampleMention", "WorkedExample", "Schema", "load_schema", "dump_schema", "load_yaml_model", "ConfigError"]
