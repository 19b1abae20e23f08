"""Supervisors: from Θ(t) and the disagreement analysis to Θ(t+1) (``docs/supervisor.md``).

- :class:`ConsensusSupervisor` — label-free rules and worked examples from the pool's
  consensus (or gold); no LLM.
- :class:`LLMSupervisor` — the paper's four LLM phases.
- :mod:`diziner.supervise.validate` — example validation and limit enforcement shared by both.
"""
from diziner.supervise.base import (
    Limits,
    SupervisionResult,
    Supervisor,
    apply_goal_switches,
)
from diziner.supervise.consensus import ConsensusSupervisor
from diziner.supervise.llm import LLMSupervisor

__all__ = ["ConsensusSupervisor", "LLMSupervisor", "Limits", "SupervisionResult", "Supervisor", "apply_goal_switches"]
