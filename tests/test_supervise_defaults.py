"""One default for each limit of a revision (issue 13, item 9)."""
from __future__ import annotations

import inspect

from diziner.loop import RefineOptions
from diziner.supervise.base import Limits
from diziner.supervise.defaults import DEFAULT_MAX_CHANGE_RATIO


def _cli_default(command: str, param: str):
    from diziner.cli import app

    cmd = next(c for c in app.registered_commands if c.name == command)
    return inspect.signature(cmd.callback).parameters[param].default.default


def test_change_ratio_has_one_default():
    cli = _cli_default("refine", "max_change_ratio")
    assert Limits().max_change_ratio == RefineOptions().max_change_ratio == cli == DEFAULT_MAX_CHANGE_RATIO
    assert Limits.model_fields["max_change_ratio"].default is DEFAULT_MAX_CHANGE_RATIO
    assert RefineOptions.__dataclass_fields__["max_change_ratio"].default is DEFAULT_MAX_CHANGE_RATIO
    assert cli is DEFAULT_MAX_CHANGE_RATIO


def test_docs_state_the_same_default():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "supervisor.md").read_text(encoding="utf-8")
    assert f"| `max_change_ratio` | {DEFAULT_MAX_CHANGE_RATIO} |" in doc
