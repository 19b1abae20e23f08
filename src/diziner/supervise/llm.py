"""The LLM supervisor: four phases, as in the paper (see ``docs/supervisor.md``).

1. **Pattern analysis** — the hotspots → at most ``max_patterns`` disagreement patterns
   (description, root cause, competing readings, hotspot examples).
2. **Annotator diagnosis** — for each non-elite annotator (``diagnose="all"``: every
   annotator), its error profile → issues and suggested instructions.
3. **Instruction generation** — new or changed common instructions with worked examples
   (conflicts resolved by the goal G), model-specific instructions, and a conditional goal
   update ``{update_goal, goal, reason}``.
4. **Organisation** — the full new hierarchy of common instructions, preserving what
   still works.

Each phase is a versioned template (``templates/supervisor_phase{1..4}.v2.j2``) and a
pydantic output model whose JSON schema is sent as ``LLMRequest.json_schema``. Answers
are parsed leniently (think blocks and code fences stripped, the first JSON object
taken), validated, and checked for content (:mod:`diziner.supervise.content`:
placeholders, id form, rules tied to the report, schema labels, grounded examples); an
unusable answer gets one re-ask carrying the reasons, then the phase fails: the result
has ``ok=False``, ``error`` names the phase and the reason, and the previous guideline is
kept. Every limit is enforced in code after the phases, on the per-instruction diff of
Θ(t) and Θ(t+1) matched by content (:class:`_Assembly`,
:mod:`diziner.supervise.validate`): a new text under an old id is an addition, and an
earlier instruction is deleted only with the supervisor's reason.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import cache
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diziner.analysis.records import ErrorProfile, Hotspot, hotspots_of, profiles_of
from diziner.errors import LLMCallError
from diziner.guideline import Guideline, Instruction, Provenance
from diziner.llm.base import LLMClient, LLMRequest
from diziner.schema import ExampleMention, WorkedExample
from diziner.supervise.base import Limits, SupervisionResult, apply_goal_switches
from diziner.supervise.content import (
    ID_FORM,
    Vocabulary,
    example_problems,
    is_placeholder,
    text_problems,
    unknown_labels,
)
from diziner.supervise.validate import (
    Addition,
    Deletion,
    ValidationCounts,
    enforce_change_ratio,
    merge_model_specific,
    restore_instruction,
    validate_instructions,
)
from diziner.faultpoints import maybe_kill

__all__ = [
    "TEMPLATE_VERSION",
    "Diagnosis",
    "ExampleOut",
    "GoalUpdate",
    "InstructionOut",
    "LLMSupervisor",
    "ModelSpecificOut",
    "NodeOut",
    "PatternOut",
    "Phase1Output",
    "Phase2Output",
    "Phase3Output",
    "Phase4Output",
    "PhaseError",
    "RemovedOut",
    "extract_json",
]

TEMPLATE_VERSION = "v2"  # v1 templates stay in templates/ for the record of earlier runs
PHASE_NAMES = {1: "pattern analysis", 2: "annotator diagnosis", 3: "instruction generation", 4: "organisation"}
#: Word-sequence similarity from which a node is the same instruction reworded (a change), not a new one.
CHANGE_SIMILARITY = 0.5
_CATEGORY_RANK = {"both": 0, "elite_split": 1, "systematic_bias": 2, "minor": 3}


# --------------------------------------------------------------------------- output models

class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PatternOut(_Out):
    id: str
    description: str
    root_cause: str = ""
    competing_readings: list[str] = Field(default_factory=list)
    hotspots: list[int | str] = Field(default_factory=list, description="ids of the hotspots that show the pattern")
    examples: list[str] = Field(default_factory=list, description="short quotes of hotspot contexts")
    support: int = Field(0, description="number of hotspots that show the pattern")


class Phase1Output(_Out):
    patterns: list[PatternOut]


class Diagnosis(_Out):
    annotator: str
    issues: list[str] = Field(default_factory=list)
    suggested_instructions: list[str] = Field(default_factory=list)


class Phase2Output(_Out):
    diagnoses: list[Diagnosis]


class MentionOut(_Out):
    text: str
    label: str


class ExampleOut(_Out):
    text: str
    mentions: list[MentionOut] = Field(default_factory=list)
    rationale: str = ""

    def to_worked(self) -> WorkedExample:
        return WorkedExample(text=self.text, mentions=[ExampleMention(text=m.text, label=m.label) for m in self.mentions],
                             rationale=self.rationale)


class InstructionOut(_Out):
    id: str | None = Field(None, description="id of the existing instruction this changes; null for a new one")
    text: str
    examples: list[ExampleOut] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list, description="ids of the patterns it addresses")
    reason: str = Field("", description="for a change: why the existing instruction is changed or replaced")


class ModelSpecificOut(_Out):
    annotator: str
    instructions: list[InstructionOut] = Field(default_factory=list)


class GoalUpdate(_Out):
    update_goal: bool = False
    goal: str = ""
    reason: str = ""


class Phase3Output(_Out):
    common: list[InstructionOut] = Field(default_factory=list)
    model_specific: list[ModelSpecificOut] = Field(default_factory=list)
    goal: GoalUpdate = Field(default_factory=GoalUpdate)


class NodeOut(_Out):
    id: str
    text: str
    examples: list[ExampleOut] = Field(default_factory=list)
    children: list[NodeOut] = Field(default_factory=list)


class RemovedOut(_Out):
    id: str
    reason: str = ""


class Phase4Output(_Out):
    common: list[NodeOut]
    removed: list[RemovedOut] = Field(default_factory=list,
                                      description="existing instructions left out (merged or obsolete), each with its reason")


PHASE_MODELS: dict[int, type[BaseModel]] = {1: Phase1Output, 2: Phase2Output, 3: Phase3Output, 4: Phase4Output}


# --------------------------------------------------------------------------- parsing

_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def extract_json(text: str) -> Any:
    """The first JSON object in a model's answer (think blocks and fences stripped).

    Raises ``ValueError`` with a short reason when there is none.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the answer is empty")
    body = _THINK.sub(" ", text)
    closes = list(_THINK_CLOSE.finditer(body))
    if closes:
        body = body[closes[-1].end():]
    cands = [m.group(1) for m in _FENCE.finditer(body) if m.group(1).strip()] + [body]
    dec = json.JSONDecoder()
    first_err = None
    for cand in cands:
        for variant in (cand, _TRAILING_COMMA.sub(r"\1", cand)):
            for m in re.finditer(r"\{", variant):
                try:
                    obj, _ = dec.raw_decode(variant, m.start())
                except json.JSONDecodeError as e:
                    first_err = first_err or f"invalid JSON ({e.msg} at char {e.pos})"
                    continue
                if isinstance(obj, dict):
                    return obj
    raise ValueError(first_err or "no JSON object found in the answer")


def _validation_message(e: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in e.errors()[:limit]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(e.errors()) - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class PhaseError(Exception):
    def __init__(self, phase: int, reason: str):
        super().__init__(f"phase {phase} ({PHASE_NAMES[phase]}): {reason}")
        self.phase = phase
        self.reason = reason


# --------------------------------------------------------------------------- templates

@cache
def _template(phase: int | str) -> Any:
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False, indent=1)
    env.filters["q"] = lambda v: json.dumps(v, ensure_ascii=False)
    name = f"supervisor_phase{phase}.{TEMPLATE_VERSION}.j2"
    return env.from_string(files("diziner").joinpath("templates", name).read_text(encoding="utf-8")).module


def template_id(phase: int) -> str:
    return f"supervisor_phase{phase}.{TEMPLATE_VERSION}"


# --------------------------------------------------------------------------- helpers

def _ex_json(ex: WorkedExample) -> dict:
    return {"text": ex.text, "mentions": [{"text": m.text, "label": m.label} for m in ex.mentions],
            "rationale": ex.rationale}


def _ins_json(ins: Instruction) -> dict:
    d: dict[str, Any] = {"id": ins.id, "text": ins.text}
    if ins.examples:
        d["examples"] = [_ex_json(e) for e in ins.examples]
    if ins.children:
        d["children"] = [_ins_json(c) for c in ins.children]
    return d


def guideline_brief(g: Guideline) -> dict:
    """The current guideline as the supervisor sees it (JSON-ready)."""
    return {
        "goal": g.goal,
        "original_goal": g.schema_.goal,
        "labels": [{"name": lab.name, "definition": lab.definition,
                    "is": lab.positive_examples, "is_not": lab.negative_examples} for lab in g.schema_.labels],
        "common": [_ins_json(i) for i in g.common],
        "model_specific": {a: [_ins_json(i) for i in v] for a, v in sorted(g.model_specific.items())},
    }


def _hotspot_brief(h: Hotspot) -> dict:
    return {
        "id": h.id,
        "document": h.document,
        "text": h.text,
        "context": h.context,
        "category": h.category,
        "elite_agree": h.elite_agree,
        "errors": [e.model_dump(include={"type", "reading", "consensus", "annotators"}) for e in h.errors],
        "consensus": [s.reading for s in h.consensus or []],
        "readings": {a: [s.reading for s in v] for a, v in h.readings.items()},
    }


def select_hotspots(hotspots: list[Hotspot], n: int) -> list[Hotspot]:
    """The ``n`` hotspots shown to the supervisor: by category (both, elite_split,
    systematic_bias, minor), then by mean U*, keeping the analysis order for ties (a
    hotspot without id gets its index)."""
    idx = sorted(range(len(hotspots)), key=lambda i: (_CATEGORY_RANK.get(hotspots[i].category, 9),
                                                      -(hotspots[i].mean_u_star or 0.0), i))
    return [hotspots[i] if hotspots[i].id is not None else hotspots[i].model_copy(update={"id": i}) for i in idx[:n]]


_COUNTS = {"spurious", "missed", "type_confusion", "boundary", "matched", "n_spans"}
_EXAMPLE_KEYS = {"text", "label", "consensus", "context"}


def _profile_brief(p: ErrorProfile | None, n_examples: int = 4) -> dict:
    """The counts the profile records (an older one may lack some) and a few examples per error type."""
    out = p.model_dump(include=_COUNTS, exclude_unset=True) if p is not None else {}
    exs = p.examples if p is not None else {}
    out["examples"] = {t: [e.model_dump(include=_EXAMPLE_KEYS) for e in v[:n_examples]] for t, v in exs.items() if v}
    return out


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, _norm(a).split(), _norm(b).split(), autojunk=False).ratio()


# --------------------------------------------------------------------------- the supervisor

class LLMSupervisor:
    """Four LLM phases through an :class:`~diziner.llm.base.LLMClient`."""

    name = "llm"

    def __init__(self, client: LLMClient, *, diagnose: Literal["non_elite", "all"] = "non_elite",
                 max_hotspots: int = 30, params: dict[str, Any] | None = None, max_answer_chars: int = 4000):
        self.client = client
        self.diagnose = diagnose
        self.max_hotspots = max_hotspots
        self.params = {"temperature": 0.0, **(params or {})}
        self.max_answer_chars = max_answer_chars

    # ------------------------------------------------------------------ calls
    async def _phase(self, phase: int, ctx: dict, iteration: int, log: list[dict],
                     check: Callable[[Any], list[str]] | None = None) -> BaseModel:
        """One phase: the call, parsing, the shape and ``check`` (content) of the answer, one re-ask.

        The re-ask carries the reasons (the shape error, or the content problems); a second
        unusable answer fails the phase (:class:`PhaseError`)."""
        tpl = _template(phase)
        model = PHASE_MODELS[phase]
        messages = [{"role": "system", "content": str(tpl.system()).strip()},
                    {"role": "user", "content": str(tpl.user(ctx)).strip()}]
        schema = model.model_json_schema()
        err = ""
        for attempt in (1, 2):
            req = LLMRequest(messages=messages, json_schema=schema, params=dict(self.params),
                             purpose=f"supervise:phase{phase}", iteration=iteration)
            try:
                resp = await self.client.complete(req)
            except LLMCallError as e:
                raise PhaseError(phase, f"LLM call failed ({e.kind}): {e.reason}") from None
            text = resp.text
            try:
                parsed = model.model_validate(extract_json(text))
            except ValueError as e:  # includes ValidationError
                err = _validation_message(e) if isinstance(e, ValidationError) else str(e)
                log.append({"phase": phase, "attempt": attempt, "ok": False, "error": err,
                            "answer": text[: self.max_answer_chars]})
            else:
                problems = check(parsed) if check is not None else []
                if not problems:
                    log.append({"phase": phase, "attempt": attempt, "ok": True})
                    maybe_kill(f"supervise_phase{phase}")
                    return parsed
                err = "; ".join(problems[:8]) + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
                log.append({"phase": phase, "attempt": attempt, "ok": False, "error": err, "problems": problems,
                            "answer": text[: self.max_answer_chars]})
            repair = str(_template("_repair").repair(err)).strip()
            messages = messages + [{"role": "assistant", "content": text[: self.max_answer_chars]},
                                   {"role": "user", "content": repair}]
        raise PhaseError(phase, f"invalid output after one repair: {err}")

    # ------------------------------------------------------------------ revise
    async def revise(self, guideline: Guideline, analysis: dict, documents: dict[str, str], *,
                     iteration: int, limits: Limits, gold: dict | None = None,
                     annotations: dict[str, dict[str, list]] | None = None) -> SupervisionResult:
        prev = apply_goal_switches(guideline, limits)
        run = _Revision(self, prev, iteration, limits)
        try:
            return await run.run(_Brief.of(prev, analysis, documents, limits, gold, self.max_hotspots))
        except PhaseError as e:
            kept = prev.model_copy(update={
                "iteration": iteration,
                "changelog": list(prev.changelog) + [f"iteration {iteration}: LLM supervisor failed in {e}; previous guideline kept"],
            })
            return SupervisionResult(guideline=kept, outputs=run.outputs, notes=run.notes + [str(e)], ok=False,
                                     error=str(e))

    # ------------------------------------------------------------------ content checks
    @staticmethod
    def _check1(out: Phase1Output, hot_ids: set[str], vocab: Vocabulary) -> list[str]:
        probs: list[str] = []
        if hot_ids and not out.patterns:
            probs.append(f"no pattern given although {len(hot_ids)} hotspots were shown")
        seen: set[str] = set()
        for n, p in enumerate(out.patterns, start=1):
            w = f"pattern {n}"
            if is_placeholder(p.id):
                probs.append(f"{w}: id {p.id!r} is empty or a placeholder")
            elif p.id in seen:
                probs.append(f"{w}: id {p.id!r} is used twice")
            seen.add(p.id)
            probs += text_problems(p.description, f"{w} description")
            probs += text_problems(p.root_cause, f"{w} root_cause", min_words=2)
            probs += [f"{w}: competing reading {r!r} is a placeholder" for r in p.competing_readings if is_placeholder(r)]
            bad = [h for h in p.hotspots if str(h) not in hot_ids]
            if bad:
                probs.append(f"{w}: hotspots {bad} were not shown (ids: {', '.join(sorted(hot_ids)) or 'none'})")
            cited = [h for h in p.hotspots if str(h) in hot_ids]
            said = " ".join([p.description, p.root_cause, *p.competing_readings, *p.examples])
            if not cited and not vocab.ties(said, p.competing_readings):
                probs.append(f"{w}: {p.description!r} cites no shown hotspot and shares no word, label or mention "
                             "with them")
        return probs

    @staticmethod
    def _check2(out: Phase2Output, targets: list[str]) -> list[str]:
        probs: list[str] = []
        for d in (d for d in out.diagnoses if d.annotator in targets):  # none at all is an answer: no issue
            for t in d.issues:
                if is_placeholder(t):
                    probs.append(f"diagnosis of {d.annotator}: issue {t!r} is a placeholder")
            for t in d.suggested_instructions:
                if is_placeholder(t):
                    probs.append(f"diagnosis of {d.annotator}: suggested instruction {t!r} is a placeholder")
        return probs

    @staticmethod
    def _rule_problems(text: str, examples: list[ExampleOut], where: str, labels: list[str], vocab: Vocabulary
                       ) -> list[str]:
        probs = text_problems(text, where)
        if probs:
            return probs
        known = [m.text for e in examples for m in e.mentions] + sorted(vocab.strings)
        for lab in unknown_labels(text, labels, known):
            probs.append(f"{where}: {lab!r} is not a label of the schema ({', '.join(labels)})")
        for k, e in enumerate(examples, start=1):
            probs += example_problems(e, labels, f"{where} example {k}")
        if not vocab.ties(text, [m.text for e in examples for m in e.mentions]):
            probs.append(f"{where}: {text!r} is not tied to any pattern or hotspot (no shared word, label or "
                         "mention)")
        return probs

    def _check3(self, out: Phase3Output, labels: list[str], vocab: Vocabulary, per_annotator: dict[str, Vocabulary],
                pattern_ids: set[str], annotators: set[str]) -> list[str]:
        probs: list[str] = []
        for n, c in enumerate(out.common, start=1):
            w = f"common instruction {n}"
            if c.id is not None and str(c.id).strip() and not ID_FORM.match(str(c.id).strip()):
                probs.append(f"{w}: id {c.id!r} is not an instruction id (\"1\", \"2.1\"; null for a new one)")
            unknown = [p for p in c.patterns if p not in pattern_ids]
            if unknown:
                probs.append(f"{w}: patterns {unknown} do not exist (ids: {', '.join(sorted(pattern_ids)) or 'none'})")
            probs += self._rule_problems(c.text, c.examples, w, labels, vocab)
        for m in out.model_specific:
            if m.annotator not in annotators:
                continue
            for n, c in enumerate(m.instructions, start=1):
                probs += self._rule_problems(c.text, c.examples, f"instruction {n} for {m.annotator}", labels,
                                             per_annotator.get(m.annotator, vocab))
        if out.goal.update_goal:
            probs += text_problems(out.goal.goal, "goal", min_words=4)
            probs += text_problems(out.goal.reason, "goal reason", min_words=2)
        return probs

    def _check4(self, out: Phase4Output, prev: Guideline, requested: list[InstructionOut], labels: list[str],
                vocab: Vocabulary) -> list[str]:
        probs: list[str] = []
        old_texts = {_norm(i.text) for i in prev.all_common()}
        old_ids = {i.id for i in prev.all_common()}
        seen: set[str] = set()
        for n in (x for top in out.common for x in _walk_nodes(top)):
            w = f"instruction {n.id!r}"
            if not ID_FORM.match(str(n.id).strip()):
                probs.append(f"{w}: the id is not of the form \"1\", \"2.1\", \"3.4.1\"")
            elif n.id in seen:
                probs.append(f"{w}: the id is used twice")
            seen.add(n.id)
            if _norm(n.text) in old_texts:
                for k, e in enumerate(n.examples, start=1):
                    probs += example_problems(e, labels, f"{w} example {k}")
                continue
            if any(_similar(r.text, n.text) >= CHANGE_SIMILARITY for r in requested):
                probs += text_problems(n.text, w)
                known = [m.text for e in n.examples for m in e.mentions] + sorted(vocab.strings)
                probs += [f"{w}: {lab!r} is not a label of the schema ({', '.join(labels)})"
                          for lab in unknown_labels(n.text, labels, known)]
                for k, e in enumerate(n.examples, start=1):
                    probs += example_problems(e, labels, f"{w} example {k}")
                continue
            probs += self._rule_problems(n.text, n.examples, w, labels, vocab)
        for rm in out.removed:
            if rm.id not in old_ids:
                probs.append(f"removed {rm.id!r}: not an id of the current guideline ({', '.join(sorted(old_ids)) or 'none'})")
            probs += text_problems(rm.reason, f"reason for removing {rm.id!r}")
        return probs


def _walk_nodes(n: NodeOut):
    yield n
    for c in n.children:
        yield from _walk_nodes(c)


def _drop_keep_children(items: list[Instruction], iid: str) -> list[Instruction]:
    """Copies without the instruction ``iid``; its children take its place."""
    out: list[Instruction] = []
    for ins in items:
        if ins.id == iid:
            out.extend(_drop_keep_children(ins.children, iid))
            continue
        out.append(ins.model_copy(update={"children": _drop_keep_children(ins.children, iid)}) if ins.children else ins)
    return out


def _renumber_nodes(nodes: list[NodeOut], prefix: str = "") -> list[NodeOut]:
    return [n.model_copy(update={"id": f"{prefix}{k}", "children": _renumber_nodes(n.children, f"{prefix}{k}.")})
            for k, n in enumerate(nodes, start=1)]


# --------------------------------------------------------------------------- one revision, phase by phase

@dataclass
class _Brief:
    """What every phase sees, prepared once from the analysis: the shared template context
    (``base``) and the words of the report that rules must be tied to (``vocab``)."""

    base: dict
    labels: list[str]
    annotators: list[str]
    elite: list[str]
    profiles: dict[str, ErrorProfile]
    hot_ids: set[str]
    vocab: Vocabulary

    @classmethod
    def of(cls, prev: Guideline, analysis: dict, documents: dict[str, str], limits: Limits, gold: dict | None,
           max_hotspots: int) -> _Brief:
        labels = prev.schema_.label_names
        annotators = [str(a) for a in (analysis.get("annotators") or list(analysis.get("weights") or {}))]
        elite = [str(a) for a in analysis.get("elite") or []]
        hotspots = hotspots_of(analysis)
        hot = select_hotspots(hotspots, max_hotspots)
        base = {
            "guideline": guideline_brief(prev),
            "labels": labels,
            "limits": limits.model_dump(),
            "annotators": annotators,
            "elite": elite,
            "weights": analysis.get("weights") or {},
            "mean_pairwise_f1": analysis.get("mean_pairwise_f1"),
            "summary": analysis.get("summary") or {},
            "n_hotspots": len(hotspots),
            "hotspots": [_hotspot_brief(h) for h in hot],
            "gold": None if gold is None else _gold_brief(hot, gold, documents),
        }
        vocab = Vocabulary(labels)
        for h in hot:
            vocab.add_hotspot(h)
        for spans in (base["gold"] or {}).values():
            for sp in spans:
                vocab.add_string(sp)
        return cls(base, labels, annotators, elite, profiles_of(analysis), {str(h.id) for h in hot}, vocab)

    def annotator_vocabularies(self, vocab: Vocabulary, diagnoses: list[dict]) -> dict[str, Vocabulary]:
        """Per annotator: ``vocab`` plus its diagnosis and the examples of its error profile
        (what its model-specific instructions may be tied to)."""
        out: dict[str, Vocabulary] = {}
        for a in self.annotators:
            v = vocab.copy()
            for d in (d for d in diagnoses if d["annotator"] == a):
                for t in d.get("issues", []) + d.get("suggested_instructions", []):
                    v.add_text(t)
            profile = self.profiles.get(a)
            for exs in (profile.examples if profile is not None else {}).values():
                for e in exs:
                    v.add_string(e.text, e.label)
                    v.add_string(e.consensus)
            out[a] = v
        return out


@dataclass
class _Patterns:
    """Phase 1's patterns as kept (``max_patterns``), with the hotspots each addresses."""

    kept: list[PatternOut]
    all_ids: set[str]  # every id phase 1 gave (phase 3 may cite any)
    vocab: Vocabulary  # the report's words plus the patterns'

    @property
    def support(self) -> dict[str, int]:
        return {p.id: max(p.support, len(p.hotspots)) for p in self.kept}

    def as_json(self) -> list[dict]:
        return [p.model_dump(mode="json") for p in self.kept]

    def priority(self, ins: InstructionOut) -> int:
        """The hotspots the patterns of ``ins`` cover (which new instructions to keep first)."""
        support = self.support
        return sum(support.get(p, 0) for p in ins.patterns)


@dataclass
class _Proposal:
    """Phase 3's proposal, sorted against Θ(t) and cut to the limits."""

    common: list[InstructionOut]  # every common instruction phase 3 gave
    new: list[InstructionOut]
    changed: list[InstructionOut]
    replaced: dict[str, str]  # Θ(t) id -> reason, for a new text given under that id
    model_specific: dict[str, list[InstructionOut]]
    goal: GoalUpdate


class _Revision:
    """One call of :meth:`LLMSupervisor.revise`: the four phases, then Θ(t+1) assembled and
    held to the limits. ``notes`` and ``outputs`` (with the phases' ``calls``) fill as it goes,
    so a failed phase still reports what happened before it."""

    def __init__(self, supervisor: LLMSupervisor, prev: Guideline, iteration: int, limits: Limits):
        self.sup = supervisor
        self.prev = prev
        self.iteration = iteration
        self.limits = limits
        self.notes: list[str] = []
        self.calls: list[dict] = []
        self.outputs: dict[str, Any] = {"calls": self.calls}

    async def _call(self, phase: int, ctx: dict, check: Callable[[Any], list[str]]) -> Any:
        return await self.sup._phase(phase, ctx, self.iteration, self.calls, check)

    async def run(self, brief: _Brief) -> SupervisionResult:
        pats = await self.patterns(brief)
        diagnoses = await self.diagnoses(brief, pats)
        prop = await self.proposal(brief, pats, diagnoses)
        p4 = await self.organisation(brief, pats, prop)
        return self.finish(brief, pats, prop, p4)

    # ---------------------------------------------------------------- the phases
    async def patterns(self, brief: _Brief) -> _Patterns:
        """Phase 1, cut to ``max_patterns`` (those with the most hotspots kept)."""
        p1: Phase1Output = await self._call(1, brief.base, lambda out: self.sup._check1(out, brief.hot_ids, brief.vocab))
        patterns = list(p1.patterns)
        cap = self.limits.max_patterns
        if len(patterns) > cap:
            order = sorted(range(len(patterns)), key=lambda i: (-max(patterns[i].support, len(patterns[i].hotspots)), i))
            self.notes.append(f"phase 1: {len(patterns)} patterns; kept {cap} with the most hotspots (max_patterns)")
            patterns = [patterns[i] for i in sorted(order[:cap])]
        self.outputs["phase1"] = {"template": template_id(1), "output": p1.model_dump(mode="json"),
                                  "kept": [p.id for p in patterns]}
        vocab = brief.vocab.copy()
        for p in patterns:
            vocab.add_text(p.description)
            vocab.add_text(p.root_cause)
            for r in p.competing_readings:
                vocab.add_string(r)
            for q in p.examples:
                vocab.add_text(q)
        return _Patterns(patterns, {p.id for p in p1.patterns}, vocab)

    async def diagnoses(self, brief: _Brief, pats: _Patterns) -> list[dict]:
        """Phase 2 on the non-elite annotators (or all); skipped when there is none."""
        targets = brief.annotators if self.sup.diagnose == "all" else [a for a in brief.annotators
                                                                       if a not in brief.elite]
        if not targets:
            self.outputs["phase2"] = {"template": template_id(2), "skipped": "no annotator to diagnose (all are elite)"}
            return []
        ctx = dict(brief.base, patterns=pats.as_json(), targets=targets,
                   profiles={a: _profile_brief(brief.profiles.get(a)) for a in targets})
        p2: Phase2Output = await self._call(2, ctx, lambda out: self.sup._check2(out, targets))
        diagnoses = [d.model_dump(mode="json") for d in p2.diagnoses if d.annotator in brief.annotators]
        if len(diagnoses) < len(p2.diagnoses):
            self.notes.append("phase 2: diagnoses for unknown annotators ignored")
        self.outputs["phase2"] = {"template": template_id(2), "output": p2.model_dump(mode="json")}
        return diagnoses

    async def proposal(self, brief: _Brief, pats: _Patterns, diagnoses: list[dict]) -> _Proposal:
        """Phase 3: new, changed and model-specific instructions and the goal, cut to the limits."""
        per_annotator = brief.annotator_vocabularies(pats.vocab, diagnoses)
        ctx = dict(brief.base, patterns=pats.as_json(), diagnoses=diagnoses)
        p3: Phase3Output = await self._call(3, ctx, lambda out: self.sup._check3(
            out, brief.labels, pats.vocab, per_annotator, pats.all_ids, set(brief.annotators)))
        new, changed, replaced = self._sort_common(p3.common)
        prop = _Proposal(list(p3.common), self._cap_new(new, pats), changed, replaced,
                         self._model_specific_proposals(p3.model_specific, brief.annotators), p3.goal)
        self.outputs["phase3"] = {"template": template_id(3), "output": p3.model_dump(mode="json"),
                                  "kept_new": [c.text for c in prop.new]}
        return prop

    async def organisation(self, brief: _Brief, pats: _Patterns, prop: _Proposal) -> Phase4Output:
        """Phase 4: the full new hierarchy of common instructions."""
        ctx = dict(brief.base, patterns=pats.as_json(),
                   changes={"new": [c.model_dump(mode="json") for c in prop.new],
                            "changed": [c.model_dump(mode="json") for c in prop.changed]})
        p4: Phase4Output = await self._call(4, ctx, lambda out: self.sup._check4(out, self.prev, prop.common,
                                                                                 brief.labels, pats.vocab))
        self.outputs["phase4"] = {"template": template_id(4), "output": p4.model_dump(mode="json")}
        return p4

    # ---------------------------------------------------------------- phase 3, sorted and cut
    def _sort_common(self, common: list[InstructionOut]) -> tuple[list[InstructionOut], list[InstructionOut], dict[str, str]]:
        """(new, changed, replaced): a text under an existing id that resembles it is a change;
        one that does not is an addition (and a deletion of the old one when a reason is given)."""
        before = {i.id: i for i in self.prev.all_common()}
        new, changed, replaced = [], [], {}
        for c in common:
            old = before.get(c.id) if c.id else None
            if old is None:
                new.append(c)
            elif _similar(old.text, c.text) >= CHANGE_SIMILARITY or _norm(old.text) == _norm(c.text):
                changed.append(c)
            else:
                new.append(c)
                if c.reason.strip():
                    replaced[old.id] = c.reason.strip()
                self.notes.append(f"phase 3: the text proposed for {c.id} does not resemble it: counted as a new instruction")
        return new, changed, replaced

    def _cap_new(self, new: list[InstructionOut], pats: _Patterns) -> list[InstructionOut]:
        cap = self.limits.max_new_common
        if len(new) <= cap:
            return new
        order = sorted(range(len(new)), key=lambda i: (-pats.priority(new[i]), i))
        keep = set(order[:cap])
        self.notes.append(f"phase 3: {len(new)} new common instructions; kept {cap}"
                          " addressing the most hotspots (max_new_common)")
        return [c for i, c in enumerate(new) if i in keep]

    def _model_specific_proposals(self, given: list[ModelSpecificOut], annotators: list[str]
                                  ) -> dict[str, list[InstructionOut]]:
        out: dict[str, list[InstructionOut]] = {}
        for m in given:
            if m.annotator not in annotators:
                self.notes.append(f"phase 3: model-specific instructions for unknown annotator {m.annotator!r} ignored")
                continue
            out.setdefault(m.annotator, []).extend(m.instructions)
        cap = self.limits.max_model_specific
        for a, items in out.items():
            if len(items) > cap:
                self.notes.append(f"phase 3: {len(items)} model-specific instructions for {a}; kept {cap}"
                                  " (max_model_specific)")
                out[a] = items[:cap]
        return out

    # ---------------------------------------------------------------- Θ(t+1)
    def finish(self, brief: _Brief, pats: _Patterns, prop: _Proposal, p4: Phase4Output) -> SupervisionResult:
        """Θ(t+1) from the per-instruction diff, validated and held to the change-ratio bound."""
        counts = ValidationCounts()
        reasons = dict(prop.replaced)
        reasons.update({rm.id: rm.reason.strip() for rm in p4.removed
                        if rm.reason.strip() and not is_placeholder(rm.reason)})
        asm = _Assembly.of(self.prev, p4.common, prop.new + prop.changed, self.iteration, self.notes)
        common, added_ids = asm.build(pats.support, self.limits.max_new_common, reasons)
        common = validate_instructions(common, brief.labels, self.limits.max_examples_per_instruction, counts)
        model_specific, ms_additions = self._model_specific(prop.model_specific, brief, counts)
        goal = self._next_goal(prop.goal)
        log = self._changelog_line(added_ids, pats, asm, goal, prop)
        new = self.prev.model_copy(update={"common": common, "model_specific": model_specific, "goal": goal,
                                           "iteration": self.iteration, "changelog": list(self.prev.changelog) + [log]})
        existing = {i.id for i in new.all_common()}
        additions = [Addition("common", i) for i in added_ids if i in existing] + ms_additions
        final, report = enforce_change_ratio(self.prev, new, additions, self.limits.max_change_ratio, asm.deletions)
        self._note_enforcement(report)
        self.notes += counts.problems[:50]
        self.outputs["enforcement"] = {**report, "diff": asm.diff, "dropped_examples": counts.dropped_examples,
                                       "dropped_mentions": counts.dropped_mentions,
                                       "trimmed_examples": counts.trimmed_examples, "problems": counts.problems,
                                       "notes": self.notes}
        return SupervisionResult(guideline=final, outputs=self.outputs, dropped_examples=counts.dropped_examples,
                                 dropped_mentions=counts.dropped_mentions, notes=self.notes, ok=True,
                                 rejected=bool(report["rejected"]))

    def _model_specific(self, proposed: dict[str, list[InstructionOut]], brief: _Brief, counts: ValidationCounts
                        ) -> tuple[dict[str, list[Instruction]], list[Addition]]:
        model_specific = dict(self.prev.model_specific)
        additions: list[Addition] = []
        limits = self.limits
        for a, items in sorted(proposed.items()):
            fresh = [Instruction(id=str(n + 1), text=c.text, examples=[e.to_worked() for e in c.examples],
                                 provenance=Provenance(added_in=self.iteration, patterns=list(c.patterns), source="llm"))
                     for n, c in enumerate(items)]
            fresh = validate_instructions(fresh, brief.labels, limits.max_examples_per_instruction, counts, scope=a)
            merged, ms_notes = merge_model_specific(a, self.prev.model_specific.get(a, []), fresh,
                                                    limits.max_model_specific, brief.annotators)
            self.notes += ms_notes
            model_specific[a] = merged
            additions += [Addition(a, merged[i].id) for i in range(min(len(fresh), len(merged)))]
        return model_specific, additions

    def _next_goal(self, g: GoalUpdate) -> str:
        if self.limits.remove_goal:
            return ""
        if g.update_goal and g.goal.strip():
            if not self.limits.freeze_goal:
                return g.goal.strip()
            self.notes.append("phase 3 proposed a goal update; ignored (freeze_goal)")
        return self.prev.goal

    def _changelog_line(self, added_ids: list[str], pats: _Patterns, asm: _Assembly, goal: str, prop: _Proposal) -> str:
        diff = asm.diff
        log = (f"iteration {self.iteration}: LLM supervisor: {len(added_ids)} new common instructions"
               f" ({', '.join(added_ids) or '-'}) for patterns {', '.join(p.id for p in pats.kept) or '-'}")
        if diff["changed"]:
            log += "; changed " + ", ".join(x["id"] for x in diff["changed"])
        if asm.deletions:
            log += "; removed " + "; ".join(f"{d.instruction.id} ({' '.join(d.reason.split())})" for d in asm.deletions)
        if diff["restored"]:
            log += "; kept " + ", ".join(x["id"] for x in diff["restored"]) + " (removed without a reason)"
        if goal != self.prev.goal:
            log += f"; goal updated ({' '.join(prop.goal.reason.split()) or 'no reason given'})"
        if prop.model_specific:
            log += "; model-specific instructions for " + ", ".join(sorted(prop.model_specific))
        return log

    def _note_enforcement(self, report: dict) -> None:
        if report["trimmed"]:
            self.notes.append(f"change ratio {report['ratio_proposed']:.3f} > {self.limits.max_change_ratio}: trimmed "
                              + ", ".join(report["trimmed"]))
        if report["goal_reverted"]:
            self.notes.append("goal update reverted to stay within the change-ratio bound")
        if report["restored"]:
            self.notes.append("deletions undone to stay within the change-ratio bound: " + ", ".join(report["restored"]))
        if report["rejected"]:
            self.notes.append("revision rejected by the change-ratio bound; previous guideline kept")


# --------------------------------------------------------------------------- assembly of Θ(t+1)'s C

_DIFF_KINDS = ("unchanged", "moved", "changed", "added", "deleted", "restored", "dropped")


class _Assembly:
    """Phase-4 nodes → Θ(t+1)'s C, by a per-instruction diff with Θ(t)'s C, matched by content.

    Each earlier instruction is matched to at most one node: first a node with the same
    text (*unchanged*, or *moved* under another id: provenance kept), then the most
    similar node (word-sequence similarity ≥ :data:`CHANGE_SIMILARITY`: *changed*,
    ``changed_in`` gets this iteration). Ids alone match nothing, so a new text under an
    old id is an addition. Every other node is *added* (provenance from the phase-3
    instruction it matches best, ``source="llm"``); additions beyond ``max_new_common``
    are dropped, unrequested ones first (their children stay). An earlier instruction no
    node matches is *deleted* only when the supervisor gave a reason (``reasons``: id →
    reason, from phase 4's ``removed`` or a phase-3 replacement); otherwise it is put
    back. :meth:`build` returns (instructions, added ids in priority order); ``diff`` and
    ``deletions`` hold the rest.
    """

    def __init__(self, nodes: list[NodeOut], olds: list[tuple[Instruction, str | None]],
                 requested: list[InstructionOut], iteration: int, notes: list[str]):
        self.nodes = nodes
        self.flat = [n for top in nodes for n in _walk_nodes(top)]
        self.olds = olds  # Θ(t)'s instructions with their parent's id, depth first
        self.iteration = iteration
        self.notes = notes
        self.match, self.used = _match_by_content(self.flat, olds)
        self.req_of = _match_requests([n for n in self.flat if id(n) not in self.match], requested)
        self.diff: dict[str, list] = {k: [] for k in _DIFF_KINDS}
        self.deletions: list[Deletion] = []
        self._new_nodes: list[tuple[tuple, str]] = []  # (priority key, id) of each added node

    @classmethod
    def of(cls, prev: Guideline, nodes: list[NodeOut], requested: list[InstructionOut], iteration: int,
           notes: list[str]) -> _Assembly:
        ids = [n.id for top in nodes for n in _walk_nodes(top)]
        if len(set(ids)) != len(ids) or any(not ID_FORM.match(str(i).strip()) for i in ids):
            notes.append("phase 4: duplicate or malformed instruction ids; the hierarchy was renumbered")
            nodes = _renumber_nodes(nodes)
        return cls(nodes, list(_walk_old(prev.common, None)), requested, iteration, notes)

    def build(self, support: dict[str, int], max_new: int, reasons: dict[str, str]) -> tuple[list[Instruction], list[str]]:
        items = [self._convert(n, (k,), support) for k, n in enumerate(self.nodes)]
        items, added = self._cap_additions(items, max_new)
        return self._settle_deletions(items, reasons), added

    def _convert(self, n: NodeOut, pos: tuple, support: dict[str, int]) -> Instruction:
        exs = [e.to_worked() for e in n.examples]
        kind, old = self.match.get(id(n), ("added", None))
        if old is not None and kind in ("unchanged", "moved"):
            prov = old.provenance
            exs = exs or list(old.examples)
            self.diff[kind].append({"id": n.id, "was": old.id, "text": n.text} if kind == "moved"
                                   else {"id": n.id, "text": n.text})
        elif old is not None:
            prov = old.provenance.model_copy(update={"changed_in": [*old.provenance.changed_in, self.iteration]})
            self.diff["changed"].append({"id": n.id, "was": old.id, "text": n.text, "before": old.text})
        else:
            best = self.req_of.get(id(n))
            prov = Provenance(added_in=self.iteration, patterns=list(best.patterns) if best else [], source="llm")
            if best is not None and not exs:
                exs = [e.to_worked() for e in best.examples]
            pri = sum(support.get(p, 0) for p in prov.patterns) if best else -1
            self._new_nodes.append(((0 if best else 1, -pri, pos), n.id))
        return Instruction(id=n.id, text=n.text, examples=exs, provenance=prov,
                           children=[self._convert(c, (*pos, k), support) for k, c in enumerate(n.children)])

    def _cap_additions(self, items: list[Instruction], max_new: int) -> tuple[list[Instruction], list[str]]:
        """Drop the additions beyond ``max_new`` (unrequested, then least support, first); their children stay."""
        ranked = sorted(self._new_nodes)
        keep = {i for _, i in ranked[:max_new]}
        drop = [i for _, i in ranked[max_new:]]
        if drop:
            self.notes.append(f"phase 4: {len(ranked)} new instructions; dropped {', '.join(drop)} (max_new_common)")
        for d in drop:
            gone = next((i for t in items for i in t.walk() if i.id == d), None)
            if gone is not None:
                self.diff["dropped"].append({"id": d, "text": gone.text})
            items = _drop_keep_children(items, d)
        present = {i.id: i for t in items for i in t.walk()}
        added = [i for _, i in ranked if i in keep and i in present]
        self.diff["added"] = [{"id": i, "text": present[i].text} for i in added]
        return items, added

    def _settle_deletions(self, items: list[Instruction], reasons: dict[str, str]) -> list[Instruction]:
        """An unmatched earlier instruction is deleted with a reason, else put back."""
        where = {old.id: nid for nid, old in self._matched_pairs()}  # Θ(t) id -> id in Θ(t+1)
        unreasoned = []
        for k, (o, parent) in enumerate(self.olds):
            if k in self.used:
                continue
            bare = o.model_copy(update={"children": []})
            reason = reasons.get(o.id, "")
            if reason:
                self.deletions.append(Deletion("common", bare, where.get(parent or "", parent), reason))
                self.diff["deleted"].append({"id": o.id, "text": o.text, "reason": reason})
                continue
            items, got = restore_instruction(items, bare, where.get(parent) if parent is not None else None)
            where[o.id] = got
            unreasoned.append(o.id)
            self.diff["restored"].append({"id": got, "was": o.id, "text": o.text})
        if unreasoned:
            self.notes.append(f"phase 4 left out {', '.join(unreasoned)} without a reason: put back (a deletion needs "
                              "the supervisor's reason)")
        return items

    def _matched_pairs(self) -> list[tuple[str, Instruction]]:
        return [(n.id, self.match[id(n)][1]) for n in self.flat if id(n) in self.match]


def _walk_old(xs: list[Instruction], parent: str | None):
    for x in xs:
        yield x, parent
        yield from _walk_old(x.children, x.id)


def _match_by_content(flat: list[NodeOut], olds: list[tuple[Instruction, str | None]]
                      ) -> tuple[dict[int, tuple[str, Instruction]], set[int]]:
    """id(node) -> (unchanged | moved | changed, the earlier instruction), and the indexes of
    ``olds`` matched: same text first (the same id preferred), then the most similar."""
    match: dict[int, tuple[str, Instruction]] = {}
    used: set[int] = set()
    for n in flat:
        cands = [k for k, (o, _) in enumerate(olds) if k not in used and _norm(o.text) == _norm(n.text)]
        cands.sort(key=lambda k: olds[k][0].id != n.id)
        if cands:
            used.add(cands[0])
            o = olds[cands[0]][0]
            match[id(n)] = ("unchanged" if o.id == n.id else "moved", o)
    pairs = sorted(((_similar(o.text, n.text), o.id != n.id, j, k) for j, n in enumerate(flat) if id(n) not in match
                    for k, (o, _) in enumerate(olds) if k not in used), key=lambda x: (-x[0], x[1], x[2], x[3]))
    for score, _, j, k in pairs:
        if score < CHANGE_SIMILARITY:
            break
        if id(flat[j]) in match or k in used:
            continue
        used.add(k)
        match[id(flat[j])] = ("changed", olds[k][0])
    return match, used


def _match_requests(fresh: list[NodeOut], requested: list[InstructionOut]) -> dict[int, InstructionOut]:
    """The added nodes matched one-to-one to phase 3's instructions, best text similarity first."""
    pairs = sorted(((_similar(r.text, n.text), a, b) for a, n in enumerate(fresh) for b, r in enumerate(requested)),
                   key=lambda x: (-x[0], x[1], x[2]))
    req_of: dict[int, InstructionOut] = {}
    taken: set[int] = set()
    for score, a, b in pairs:
        if score < CHANGE_SIMILARITY:
            break
        if id(fresh[a]) in req_of or b in taken:
            continue
        req_of[id(fresh[a])] = requested[b]
        taken.add(b)
    return req_of


def _gold_brief(hot: list[Hotspot], gold: dict, documents: dict[str, str]) -> dict:
    out: dict[str, list[str]] = {}
    for h in hot:
        doc = h.document
        txt = []
        for s in gold.get(doc) or []:
            d = s if isinstance(s, dict) else {"text": getattr(s, "text", ""), "label": getattr(s, "label", "")}
            txt.append(f"{d.get('text')}/{d.get('label')}")
        out[doc] = txt
    return out


NodeOut.model_rebuild()
