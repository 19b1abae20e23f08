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
Θ(t) and Θ(t+1) matched by content (:meth:`LLMSupervisor._assemble`,
:mod:`diziner.supervise.validate`): a new text under an old id is an addition, and an
earlier instruction is deleted only with the supervisor's reason.
"""
from __future__ import annotations

import difflib
import json
import re
from functools import cache
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def _hotspot_brief(h: dict) -> dict:
    return {
        "id": h.get("id"),
        "document": h.get("document"),
        "text": h.get("text"),
        "context": h.get("context"),
        "category": h.get("category"),
        "elite_agree": h.get("elite_agree"),
        "errors": [{k: e.get(k) for k in ("type", "reading", "consensus", "annotators") if k in e}
                   for e in h.get("errors") or []],
        "consensus": [f"{s.get('text')}/{s.get('label')}" for s in h.get("consensus") or []],
        "readings": {a: [f"{s.get('text')}/{s.get('label')}" for s in v or []]
                     for a, v in (h.get("readings") or {}).items()},
    }


def select_hotspots(hotspots: list[dict], n: int) -> list[dict]:
    """The ``n`` hotspots shown to the supervisor: by category (both, elite_split,
    systematic_bias, minor), then by mean U*, keeping the analysis order for ties."""
    idx = sorted(range(len(hotspots)), key=lambda i: (_CATEGORY_RANK.get(str(hotspots[i].get("category")), 9),
                                                      -float(hotspots[i].get("mean_u_star") or 0.0), i))
    out = []
    for i in idx[:n]:
        h = dict(hotspots[i])
        h.setdefault("id", i)
        out.append(h)
    return out


def _profile_brief(p: dict, n_examples: int = 4) -> dict:
    out = {k: p.get(k) for k in ("spurious", "missed", "type_confusion", "boundary", "matched", "n_spans") if k in p}
    exs = p.get("examples") or {}
    out["examples"] = {t: [{k: e.get(k) for k in ("text", "label", "consensus", "context")} for e in (v or [])[:n_examples]]
                       for t, v in exs.items() if v}
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
        outputs: dict[str, Any] = {}
        notes: list[str] = []
        calls: list[dict] = []
        outputs["calls"] = calls
        try:
            return await self._revise(prev, analysis, documents, iteration, limits, gold, outputs, notes, calls)
        except PhaseError as e:
            kept = prev.model_copy(update={
                "iteration": iteration,
                "changelog": list(prev.changelog) + [f"iteration {iteration}: LLM supervisor failed in {e}; previous guideline kept"],
            })
            return SupervisionResult(guideline=kept, outputs=outputs, notes=notes + [str(e)], ok=False, error=str(e))

    async def _revise(self, prev: Guideline, analysis: dict, documents: dict[str, str], iteration: int,
                      limits: Limits, gold: dict | None, outputs: dict, notes: list[str], calls: list[dict]
                      ) -> SupervisionResult:
        labels = prev.schema_.label_names
        annotators = [str(a) for a in (analysis.get("annotators") or list(analysis.get("weights") or {}))]
        elite = [str(a) for a in analysis.get("elite") or []]
        hot = select_hotspots(list(analysis.get("hotspots") or []), self.max_hotspots)
        base = {
            "guideline": guideline_brief(prev),
            "labels": labels,
            "limits": limits.model_dump(),
            "annotators": annotators,
            "elite": elite,
            "weights": analysis.get("weights") or {},
            "mean_pairwise_f1": analysis.get("mean_pairwise_f1"),
            "summary": analysis.get("summary") or {},
            "n_hotspots": len(analysis.get("hotspots") or []),
            "hotspots": [_hotspot_brief(h) for h in hot],
            "gold": None,
        }
        if gold is not None:
            base["gold"] = self._gold_brief(hot, gold, documents)
        report_vocab = Vocabulary(labels)
        for h in base["hotspots"]:
            report_vocab.add_hotspot(h)
        if gold is not None:
            for spans in base["gold"].values():
                for sp in spans:
                    report_vocab.add_string(sp)
        hot_ids = {str(h.get("id")) for h in base["hotspots"]}
        profiles = analysis.get("profiles") or {}

        # phase 1
        p1: Phase1Output = await self._phase(  # type: ignore[assignment]
            1, base, iteration, calls, lambda out: self._check1(out, hot_ids, report_vocab))
        patterns = list(p1.patterns)
        all_pattern_ids = {p.id for p in patterns}
        if len(patterns) > limits.max_patterns:
            order = sorted(range(len(patterns)),
                           key=lambda i: (-max(patterns[i].support, len(patterns[i].hotspots)), i))
            keep = sorted(order[: limits.max_patterns])
            notes.append(f"phase 1: {len(patterns)} patterns; kept {limits.max_patterns} with the most hotspots (max_patterns)")
            patterns = [patterns[i] for i in keep]
        outputs["phase1"] = {"template": template_id(1), "output": p1.model_dump(mode="json"),
                             "kept": [p.id for p in patterns]}
        pat_json = [p.model_dump(mode="json") for p in patterns]
        support = {p.id: max(p.support, len(p.hotspots)) for p in patterns}
        vocab = report_vocab.copy()
        for p in patterns:
            vocab.add_text(p.description)
            vocab.add_text(p.root_cause)
            for r in p.competing_readings:
                vocab.add_string(r)
            for q in p.examples:
                vocab.add_text(q)

        # phase 2
        targets = annotators if self.diagnose == "all" else [a for a in annotators if a not in elite]
        diagnoses: list[dict] = []
        if targets:
            ctx2 = dict(base, patterns=pat_json, targets=targets,
                        profiles={a: _profile_brief(profiles.get(a) or {}) for a in targets})
            p2: Phase2Output = await self._phase(2, ctx2, iteration, calls,  # type: ignore[assignment]
                                                 lambda out: self._check2(out, targets))
            diagnoses = [d.model_dump(mode="json") for d in p2.diagnoses if d.annotator in annotators]
            if len(diagnoses) < len(p2.diagnoses):
                notes.append("phase 2: diagnoses for unknown annotators ignored")
            outputs["phase2"] = {"template": template_id(2), "output": p2.model_dump(mode="json")}
        else:
            outputs["phase2"] = {"template": template_id(2), "skipped": "no annotator to diagnose (all are elite)"}
        per_annotator: dict[str, Vocabulary] = {}
        for a in annotators:
            v = vocab.copy()
            for d in diagnoses:
                if d["annotator"] == a:
                    for t in d.get("issues", []) + d.get("suggested_instructions", []):
                        v.add_text(t)
            for exs in ((profiles.get(a) or {}).get("examples") or {}).values():
                for e in exs or []:
                    v.add_string(e.get("text"), e.get("label"))
                    v.add_string(e.get("consensus"))
            per_annotator[a] = v

        # phase 3
        ctx3 = dict(base, patterns=pat_json, diagnoses=diagnoses)
        before = {i.id: i for i in prev.all_common()}
        p3: Phase3Output = await self._phase(  # type: ignore[assignment]
            3, ctx3, iteration, calls,
            lambda out: self._check3(out, labels, vocab, per_annotator, all_pattern_ids, set(annotators)))
        new_items, changed_items, replaced = [], [], {}
        for c in p3.common:
            old = before.get(c.id) if c.id else None
            if old is None:
                new_items.append(c)
            elif _similar(old.text, c.text) >= CHANGE_SIMILARITY or _norm(old.text) == _norm(c.text):
                changed_items.append(c)
            else:  # a new text under an existing id: an addition (and a deletion when a reason is given)
                new_items.append(c)
                if c.reason.strip():
                    replaced[old.id] = c.reason.strip()
                notes.append(f"phase 3: the text proposed for {c.id} does not resemble it: counted as a new instruction")
        if len(new_items) > limits.max_new_common:
            order = sorted(range(len(new_items)),
                           key=lambda i: (-sum(support.get(p, 0) for p in new_items[i].patterns), i))
            keep = set(order[: limits.max_new_common])
            notes.append(f"phase 3: {len(new_items)} new common instructions; kept {limits.max_new_common}"
                         " addressing the most hotspots (max_new_common)")
            new_items = [c for i, c in enumerate(new_items) if i in keep]
        ms_new: dict[str, list[InstructionOut]] = {}
        for m in p3.model_specific:
            if m.annotator not in annotators:
                notes.append(f"phase 3: model-specific instructions for unknown annotator {m.annotator!r} ignored")
                continue
            ms_new.setdefault(m.annotator, []).extend(m.instructions)
        for a, items in ms_new.items():
            if len(items) > limits.max_model_specific:
                notes.append(f"phase 3: {len(items)} model-specific instructions for {a}; kept {limits.max_model_specific}"
                             " (max_model_specific)")
                ms_new[a] = items[: limits.max_model_specific]
        outputs["phase3"] = {"template": template_id(3), "output": p3.model_dump(mode="json"),
                             "kept_new": [c.text for c in new_items]}

        # phase 4
        ctx4 = dict(base, patterns=pat_json,
                    changes={"new": [c.model_dump(mode="json") for c in new_items],
                             "changed": [c.model_dump(mode="json") for c in changed_items]})
        requested = new_items + changed_items
        p4: Phase4Output = await self._phase(  # type: ignore[assignment]
            4, ctx4, iteration, calls, lambda out: self._check4(out, prev, list(p3.common), labels, vocab))
        outputs["phase4"] = {"template": template_id(4), "output": p4.model_dump(mode="json")}

        # assemble Θ(t+1) from the per-instruction diff
        counts = ValidationCounts()
        reasons = dict(replaced)
        for rm in p4.removed:
            if rm.reason.strip() and not is_placeholder(rm.reason):
                reasons[rm.id] = rm.reason.strip()
        common, added_ids, diff, deletions = self._assemble(prev, p4.common, requested, iteration, limits, notes,
                                                            support, reasons)
        common = validate_instructions(common, labels, limits.max_examples_per_instruction, counts)
        model_specific = dict(prev.model_specific)
        ms_additions: list[Addition] = []
        for a, items in sorted(ms_new.items()):
            fresh = [Instruction(id=str(n + 1), text=c.text, examples=[e.to_worked() for e in c.examples],
                                 provenance=Provenance(added_in=iteration, patterns=list(c.patterns), source="llm"))
                     for n, c in enumerate(items)]
            fresh = validate_instructions(fresh, labels, limits.max_examples_per_instruction, counts, scope=a)
            merged, ms_notes = merge_model_specific(a, prev.model_specific.get(a, []), fresh, limits.max_model_specific,
                                                    annotators)
            notes += ms_notes
            model_specific[a] = merged
            ms_additions += [Addition(a, merged[i].id) for i in range(min(len(fresh), len(merged)))]
        goal = prev.goal
        g = p3.goal
        if limits.remove_goal:
            goal = ""
        elif g.update_goal and g.goal.strip():
            if limits.freeze_goal:
                notes.append("phase 3 proposed a goal update; ignored (freeze_goal)")
            else:
                goal = g.goal.strip()
        log = (f"iteration {iteration}: LLM supervisor: {len(added_ids)} new common instructions"
               f" ({', '.join(added_ids) or '-'}) for patterns {', '.join(p.id for p in patterns) or '-'}")
        if diff["changed"]:
            log += "; changed " + ", ".join(x["id"] for x in diff["changed"])
        if deletions:
            log += "; removed " + "; ".join(f"{d.instruction.id} ({' '.join(d.reason.split())})" for d in deletions)
        if diff["restored"]:
            log += "; kept " + ", ".join(x["id"] for x in diff["restored"]) + " (removed without a reason)"
        if goal != prev.goal:
            log += f"; goal updated ({' '.join(g.reason.split()) or 'no reason given'})"
        if ms_new:
            log += "; model-specific instructions for " + ", ".join(sorted(ms_new))
        new = prev.model_copy(update={"common": common, "model_specific": model_specific, "goal": goal,
                                      "iteration": iteration, "changelog": list(prev.changelog) + [log]})
        existing = {i.id for i in new.all_common()}
        additions = [Addition("common", i) for i in added_ids if i in existing] + ms_additions
        final, report = enforce_change_ratio(prev, new, additions, limits.max_change_ratio, deletions)
        if report["trimmed"]:
            notes.append(f"change ratio {report['ratio_proposed']:.3f} > {limits.max_change_ratio}: trimmed "
                         + ", ".join(report["trimmed"]))
        if report["goal_reverted"]:
            notes.append("goal update reverted to stay within the change-ratio bound")
        if report["restored"]:
            notes.append("deletions undone to stay within the change-ratio bound: " + ", ".join(report["restored"]))
        if report["rejected"]:
            notes.append("revision rejected by the change-ratio bound; previous guideline kept")
        notes += counts.problems[:50]
        outputs["enforcement"] = {**report, "diff": diff, "dropped_examples": counts.dropped_examples,
                                  "dropped_mentions": counts.dropped_mentions,
                                  "trimmed_examples": counts.trimmed_examples, "problems": counts.problems,
                                  "notes": notes}
        return SupervisionResult(guideline=final, outputs=outputs, dropped_examples=counts.dropped_examples,
                                 dropped_mentions=counts.dropped_mentions, notes=notes, ok=True,
                                 rejected=bool(report["rejected"]))

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

    # ------------------------------------------------------------------ assembly
    def _assemble(self, prev: Guideline, nodes: list[NodeOut], requested: list[InstructionOut], iteration: int,
                  limits: Limits, notes: list[str], support: dict[str, int], reasons: dict[str, str]
                  ) -> tuple[list[Instruction], list[str], dict, list[Deletion]]:
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
        back. Returns (instructions, added ids in priority order, diff, deletions).
        """
        flat = [n for top in nodes for n in _walk_nodes(top)]
        ids = [n.id for n in flat]
        if len(set(ids)) != len(ids) or any(not ID_FORM.match(str(i).strip()) for i in ids):
            notes.append("phase 4: duplicate or malformed instruction ids; the hierarchy was renumbered")
            nodes = _renumber_nodes(nodes)
            flat = [n for top in nodes for n in _walk_nodes(top)]
        olds: list[tuple[Instruction, str | None]] = []

        def walk_old(xs: list[Instruction], parent: str | None) -> None:
            for x in xs:
                olds.append((x, parent))
                walk_old(x.children, x.id)
        walk_old(prev.common, None)

        match: dict[int, tuple[str, Instruction]] = {}  # id(node) -> (kind, old)
        used: set[int] = set()
        for n in flat:  # same text: unchanged or moved (the same id first)
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

        # additions: matched one-to-one to the phase-3 instructions, best text similarity first
        fresh = [n for n in flat if id(n) not in match]
        req_pairs = sorted(((_similar(r.text, n.text), a, b) for a, n in enumerate(fresh) for b, r in enumerate(requested)),
                           key=lambda x: (-x[0], x[1], x[2]))
        req_of: dict[int, InstructionOut] = {}
        taken: set[int] = set()
        for score, a, b in req_pairs:
            if score < CHANGE_SIMILARITY:
                break
            if id(fresh[a]) in req_of or b in taken:
                continue
            req_of[id(fresh[a])] = requested[b]
            taken.add(b)

        diff: dict[str, list] = {"unchanged": [], "moved": [], "changed": [], "added": [], "deleted": [], "restored": [],
                                 "dropped": []}
        new_nodes: list[tuple[tuple, str]] = []

        def convert(n: NodeOut, pos: tuple) -> Instruction:
            exs = [e.to_worked() for e in n.examples]
            kind, old = match.get(id(n), ("added", None))
            if old is not None and kind in ("unchanged", "moved"):
                prov = old.provenance
                if not exs:
                    exs = list(old.examples)
                diff[kind].append({"id": n.id, "was": old.id, "text": n.text} if kind == "moved"
                                  else {"id": n.id, "text": n.text})
            elif old is not None:
                prov = old.provenance.model_copy(update={"changed_in": [*old.provenance.changed_in, iteration]})
                diff["changed"].append({"id": n.id, "was": old.id, "text": n.text, "before": old.text})
            else:
                best = req_of.get(id(n))
                prov = Provenance(added_in=iteration, patterns=list(best.patterns) if best else [], source="llm")
                if best is not None and not exs:
                    exs = [e.to_worked() for e in best.examples]
                pri = sum(support.get(p, 0) for p in prov.patterns) if best else -1
                new_nodes.append(((0 if best else 1, -pri, pos), n.id))
            return Instruction(id=n.id, text=n.text, examples=exs, provenance=prov,
                               children=[convert(c, (*pos, k)) for k, c in enumerate(n.children)])

        items = [convert(n, (k,)) for k, n in enumerate(nodes)]
        new_nodes.sort()
        keep = {i for _, i in new_nodes[: limits.max_new_common]}
        drop = [i for _, i in new_nodes[limits.max_new_common:]]
        if drop:
            notes.append(f"phase 4: {len(new_nodes)} new instructions; dropped {', '.join(drop)} (max_new_common)")
            for d in drop:
                gone = next((i for t in items for i in t.walk() if i.id == d), None)
                if gone is not None:
                    diff["dropped"].append({"id": d, "text": gone.text})
                items = _drop_keep_children(items, d)
        present = {i.id: i for t in items for i in t.walk()}
        added = [i for _, i in new_nodes if i in keep and i in present]
        diff["added"] = [{"id": i, "text": present[i].text} for i in added]

        # deletions: with a reason they stand, without one the instruction is put back
        deletions: list[Deletion] = []
        where: dict[str, str] = {}  # Θ(t) id -> id in Θ(t+1)
        for n in flat:
            if id(n) in match:
                where[match[id(n)][1].id] = n.id
        unreasoned = []
        for k, (o, parent) in enumerate(olds):
            if k in used:
                continue
            reason = reasons.get(o.id, "")
            if reason:
                deletions.append(Deletion("common", o.model_copy(update={"children": []}), where.get(parent or "", parent),
                                          reason))
                diff["deleted"].append({"id": o.id, "text": o.text, "reason": reason})
                continue
            items, got = restore_instruction(items, o.model_copy(update={"children": []}),
                                             where.get(parent) if parent is not None else None)
            where[o.id] = got
            unreasoned.append(o.id)
            diff["restored"].append({"id": got, "was": o.id, "text": o.text})
        if unreasoned:
            notes.append(f"phase 4 left out {', '.join(unreasoned)} without a reason: put back (a deletion needs the "
                         "supervisor's reason)")
        return items, added, diff, deletions

    @staticmethod
    def _gold_brief(hot: list[dict], gold: dict, documents: dict[str, str]) -> dict:
        out: dict[str, list[str]] = {}
        for h in hot:
            doc = str(h.get("document"))
            spans = gold.get(doc) or []
            txt = []
            for s in spans:
                d = s if isinstance(s, dict) else {"text": getattr(s, "text", ""), "label": getattr(s, "label", "")}
                txt.append(f"{d.get('text')}/{d.get('label')}")
            out[doc] = txt
        return out


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


NodeOut.model_rebuild()
