"""Supervisors: from Θ(t) and the disagreement analysis to Θ(t+1) (``docs/supervisor.md``).

- :class:`ConsensusSupervisor` — label-free rules and worked examples from the pool's
  consensus (or gold); no LLM.
- :class:`LLMSupervisor` — the paper's four LLM phases.
- :mod:`diziner.supervise.validate` — example validation and limit enforcement shared by both.
- :mod:`diziner.supervise.defaults` — the default limits, defined once.

The names below are imported lazily, so that ``diziner.supervise.defaults`` stays cheap
to import (the CLI reads it at start-up).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diziner.supervise.defaults import DEFAULT_MAX_CHANGE_RATIO

if TYPE_CHECKING:
    from diziner.supervise.base import Limits, SupervisionResult, Supervisor, apply_goal_switches
    from diziner.supervise.consensus import ConsensusSupervisor
    from diziner.supervise.llm import LLMSupervisor

__all__ = ["DEFAULT_MAX_CHANGE_RATIO", "ConsensusSupervisor", "LLMSupervisor", "Limits", "SupervisionResult",
           "Supervisor", "apply_goal_switches"]

_WHERE = {"Limits": "base", "SupervisionResult": "base", "Supervisor": "base", "apply_goal_switches": "base",
          "ConsensusSupervisor": "consensus", "LLMSupervisor": "llm"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"diziner.supervise.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'diziner.supervise' has no attribute {name!r}")
