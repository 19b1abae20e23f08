"""What every supervisor shares: the :class:`Supervisor` protocol, :class:`Limits` and
:class:`SupervisionResult`.

A supervisor turns the current guideline Θ(t) and the disagreement analysis of the
annotations made with it into Θ(t+1). ``iteration`` is the number the *new* guideline
gets (t+1 when the analysis comes from iteration t); new instructions carry
``provenance.added_in = iteration``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from diziner.guideline import Guideline
from diziner.options import DEFAULT_MAX_CHANGE_RATIO, DEFAULTS

__all__ = ["DEFAULT_MAX_CHANGE_RATIO", "Limits", "SupervisionResult", "Supervisor", "apply_goal_switches"]


class Limits(BaseModel):
    """Bounds on one revision, enforced in code (prompts state them too).

    - ``max_patterns``: disagreement patterns considered per iteration.
    - ``max_new_common``: new common instructions per iteration.
    - ``max_model_specific``: model-specific instructions an annotator has after the
      revision (new ones first, then earlier ones while there is room).
    - ``max_change_ratio``: bound on :func:`diziner.guideline_render.change_ratio`
      between Θ(t) and Θ(t+1); over it, the newest additions are trimmed, and if that
      is not enough the revision is rejected (Θ(t) is kept). Default
      :data:`~diziner.supervise.defaults.DEFAULT_MAX_CHANGE_RATIO` (0.6), the same as
      ``RefineOptions`` and ``diziner refine``.
    - ``max_examples_per_instruction``: worked examples per instruction.
    - ``freeze_goal``: G is never updated. ``remove_goal``: G is blanked to ``""`` (the
      ablation without a goal); it wins over ``freeze_goal``.
    """

    model_config = ConfigDict(extra="forbid")

    max_patterns: int = Field(DEFAULTS.limits.max_patterns, ge=0)
    max_new_common: int = Field(DEFAULTS.limits.max_new_common, ge=0)
    max_model_specific: int = Field(DEFAULTS.limits.max_model_specific, ge=0)
    max_change_ratio: float = Field(DEFAULTS.limits.max_change_ratio, ge=0.0, le=1.0)
    max_examples_per_instruction: int = Field(DEFAULTS.limits.max_examples_per_instruction, ge=0)
    freeze_goal: bool = False
    remove_goal: bool = False


@dataclass
class SupervisionResult:
    """Θ(t+1) plus what the supervisor did.

    ``outputs`` are JSON-ready objects saved as ``iterations/<t>/supervisor/<name>.json``
    (``consensus`` for the consensus supervisor, ``phase1`` … ``phase4`` for the LLM
    supervisor, plus ``enforcement``). When ``ok`` is False, ``guideline`` is the
    previous guideline (content unchanged) and ``error`` says which step failed and why.
    """

    guideline: Guideline
    outputs: dict[str, Any] = field(default_factory=dict)
    dropped_examples: int = 0
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    error: str | None = None
    dropped_mentions: int = 0
    rejected: bool = False  # the change-ratio bound rejected the revision (Θ(t) kept, ok stays True)


@runtime_checkable
class Supervisor(Protocol):
    """``await supervisor.revise(...)`` → :class:`SupervisionResult`.

    ``annotations`` (optional): annotator → document id → spans of the analysed documents,
    only those the annotator answered (``AnnotatorRun.spans_by_doc``). The consensus
    supervisor uses it to check agreed worked examples span by span.
    """

    name: str

    async def revise(
        self,
        guideline: Guideline,
        analysis: dict,
        documents: dict[str, str],
        *,
        iteration: int,
        limits: Limits,
        gold: dict | None = None,
        annotations: dict[str, dict[str, list]] | None = None,
    ) -> SupervisionResult: ...


def apply_goal_switches(guideline: Guideline, limits: Limits) -> Guideline:
    """Θ with the goal ablations applied: ``remove_goal`` blanks G to ``""``.

    Call it on the initial guideline too, so that iteration 0 already runs without G.
    """
    if limits.remove_goal and guideline.goal != "":
        return guideline.model_copy(update={"goal": ""})
    return guideline
