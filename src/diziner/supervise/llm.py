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

Each phase is a versioned template (``templates/supervisor_phase{1..4}.v1.j2``) and a
pydantic output model whose JSON schema is sent as ``LLMRequest.json_schema``. Answers
are parsed leniently (think blocks and code fences stripped, the first JSON object
taken) and validated; an invalid answer gets one repair re-ask with the error appended,
then the phase fails: the result has ``ok=False``, ``error`` names the phase and the
reason, and the previous guideline is kept. Every limit is enforced in code after the
phases (:mod:`diziner.supervise.validate`).
"""
from __future__ import annotations

import difflib
import json
import re
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diziner.errors import LLMCallError
from diziner.guideline import Guideline, Instruction, Provenance
from diziner.llm.base import LLMClient, LLMRequest
from diziner.schema import ExampleMention, WorkedExample
from diziner.supervise.base import Limits, SupervisionResult, apply_goal_switches
from diziner.supervise.validate import (
    Addition,
    ValidationCounts,
    enforce_change_ratio,
    merge_model_specific,
    remove_instruction,
    validate_instructions,
)
from diziner.testing.faults import maybe_kill

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
    "extract_json",
]

TEMPLATE_VERSION = "v1"
PHASE_NAMES = {1: "pattern analysis", 2: "annotator diagnosis", 3: "instruction generation", 4: "organisation"}
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


class Phase4Output(_Out):
    common: list[NodeOut]


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
    async def _phase(self, phase: int, ctx: dict, iteration: int, log: list[dict]) -> BaseModel:
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
                log.append({"phase": phase, "attempt": attempt, "ok": True})
                maybe_kill(f"supervise_phase{phase}")
                return parsed
            except ValueError as e:  # includes ValidationError
                err = _validation_message(e) if isinstance(e, ValidationError) else str(e)
                log.append({"phase": phase, "attempt": attempt, "ok": False, "error": err,
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

        # phase 1
        p1: Phase1Output = await self._phase(1, base, iteration, calls)  # type: ignore[assignment]
        patterns = list(p1.patterns)
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

        # phase 2
        targets = annotators if self.diagnose == "all" else [a for a in annotators if a not in elite]
        profiles = analysis.get("profiles") or {}
        diagnoses: list[dict] = []
        if targets:
            ctx2 = dict(base, patterns=pat_json, targets=targets,
                        profiles={a: _profile_brief(profiles.get(a) or {}) for a in targets})
            p2: Phase2Output = await self._phase(2, ctx2, iteration, calls)  # type: ignore[assignment]
            diagnoses = [d.model_dump(mode="json") for d in p2.diagnoses if d.annotator in annotators]
            if len(diagnoses) < len(p2.diagnoses):
                notes.append("phase 2: diagnoses for unknown annotators ignored")
            outputs["phase2"] = {"template": template_id(2), "output": p2.model_dump(mode="json")}
        else:
            outputs["phase2"] = {"template": template_id(2), "skipped": "no annotator to diagnose (all are elite)"}

        # phase 3
        ctx3 = dict(base, patterns=pat_json, diagnoses=diagnoses)
        p3: Phase3Output = await self._phase(3, ctx3, iteration, calls)  # type: ignore[assignment]
        prev_ids = {i.id for i in prev.all_common()}
        new_items = [c for c in p3.common if not c.id or c.id not in prev_ids]
        changed_items = [c for c in p3.common if c.id and c.id in prev_ids]
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
        p4: Phase4Output = await self._phase(4, ctx4, iteration, calls)  # type: ignore[assignment]
        outputs["phase4"] = {"template": template_id(4), "output": p4.model_dump(mode="json")}

        # assemble Θ(t+1)
        counts = ValidationCounts()
        common, added_ids = self._assemble(prev, p4.common, new_items + changed_items, iteration, limits, notes, support)
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
        if goal != prev.goal:
            log += f"; goal updated ({' '.join(g.reason.split()) or 'no reason given'})"
        if ms_new:
            log += "; model-specific instructions for " + ", ".join(sorted(ms_new))
        new = prev.model_copy(update={"common": common, "model_specific": model_specific, "goal": goal,
                                      "iteration": iteration, "changelog": list(prev.changelog) + [log]})
        existing = {i.id for i in new.all_common()}
        additions = [Addition("common", i) for i in added_ids if i in existing] + ms_additions
        final, report = enforce_change_ratio(prev, new, additions, limits.max_change_ratio)
        if report["trimmed"]:
            notes.append(f"change ratio {report['ratio_proposed']:.3f} > {limits.max_change_ratio}: trimmed "
                         + ", ".join(report["trimmed"]))
        if report["goal_reverted"]:
            notes.append("goal update reverted to stay within the change-ratio bound")
        if report["rejected"]:
            notes.append("revision rejected by the change-ratio bound; previous guideline kept")
        notes += counts.problems[:50]
        outputs["enforcement"] = {**report, "dropped_examples": counts.dropped_examples,
                                  "dropped_mentions": counts.dropped_mentions,
                                  "trimmed_examples": counts.trimmed_examples, "problems": counts.problems,
                                  "notes": notes}
        return SupervisionResult(guideline=final, outputs=outputs, dropped_examples=counts.dropped_examples,
                                 dropped_mentions=counts.dropped_mentions, notes=notes, ok=True,
                                 rejected=bool(report["rejected"]))

    # ------------------------------------------------------------------ assembly
    def _assemble(self, prev: Guideline, nodes: list[NodeOut], requested: list[InstructionOut], iteration: int,
                  limits: Limits, notes: list[str], support: dict[str, int]) -> tuple[list[Instruction], list[str]]:
        """Phase-4 nodes → instructions with provenance; new nodes beyond ``max_new_common`` dropped.

        A node is *unchanged* (same id and text as before: provenance kept), *changed*
        (same id, other text: ``changed_in`` gets this iteration) or *new* (provenance
        from the phase-3 instruction it matches best, ``source="llm"``). New nodes that
        match no phase-3 instruction are dropped first when there are too many.
        """
        before = {i.id: i for i in prev.all_common()}
        before_text = {_norm(i.text): i for i in prev.all_common()}
        flat = [n for top in nodes for n in _walk_nodes(top)]
        ids = [n.id for n in flat]
        renumbered = len(set(ids)) != len(ids) or any(not str(i).strip() for i in ids)
        if renumbered:
            notes.append("phase 4: duplicate or empty instruction ids; the hierarchy was renumbered")
            nodes = _renumber_nodes(nodes)
        new_nodes: list[tuple[tuple, str]] = []  # (priority key, id)
        # one-to-one matching of new nodes to the phase-3 instructions, best text similarity first
        cands = [n for top in nodes for n in _walk_nodes(top)
                 if _norm(n.text) not in before_text and (renumbered or n.id not in before)]
        pairs = sorted(((_similar(r.text, n.text), k, j) for k, n in enumerate(cands) for j, r in enumerate(requested)),
                       key=lambda x: (-x[0], x[1], x[2]))
        match: dict[int, InstructionOut] = {}
        used: set[int] = set()
        for score, k, j in pairs:
            if score < 0.5:
                break
            if id(cands[k]) in match or j in used:
                continue
            match[id(cands[k])] = requested[j]
            used.add(j)

        def convert(n: NodeOut, pos: tuple) -> Instruction:
            exs = [e.to_worked() for e in n.examples]
            old = None if renumbered else before.get(n.id)
            same = before_text.get(_norm(n.text))
            if same is not None:  # unchanged text (possibly renumbered): provenance kept
                prov = same.provenance
                if not exs:
                    exs = list(same.examples)
            elif old is not None:  # same id, new text: a change
                prov = old.provenance.model_copy(update={"changed_in": [*old.provenance.changed_in, iteration]})
            else:
                best = match.get(id(n))
                matched = best is not None
                prov = Provenance(added_in=iteration, patterns=list(best.patterns) if matched and best else [],
                                  source="llm")
                if matched and best is not None and not exs:
                    exs = [e.to_worked() for e in best.examples]
                pri = sum(support.get(p, 0) for p in prov.patterns) if matched else -1
                new_nodes.append(((0 if matched else 1, -pri, pos), n.id))
            return Instruction(id=n.id, text=n.text, examples=exs, provenance=prov,
                               children=[convert(c, (*pos, k)) for k, c in enumerate(n.children)])

        items = [convert(n, (k,)) for k, n in enumerate(nodes)]
        new_nodes.sort()
        keep = {i for _, i in new_nodes[: limits.max_new_common]}
        drop = [i for _, i in new_nodes[limits.max_new_common:]]
        if drop:
            notes.append(f"phase 4: {len(new_nodes)} new instructions; dropped {', '.join(drop)} (max_new_common)")
            for d in drop:
                items = remove_instruction(items, d)
        # additions in priority order (the last one is trimmed first by the change-ratio bound)
        present = {i.id for t in items for i in t.walk()}
        return items, [i for _, i in new_nodes if i in keep and i in present]

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


def _renumber_nodes(nodes: list[NodeOut], prefix: str = "") -> list[NodeOut]:
    return [n.model_copy(update={"id": f"{prefix}{k}", "children": _renumber_nodes(n.children, f"{prefix}{k}.")})
            for k, n in enumerate(nodes, start=1)]


NodeOut.model_rebuild()
