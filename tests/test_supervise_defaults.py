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


def test_every_option_reads_its_default_from_the_one_tree():
    """The command line, RefineOptions, Limits, StreamOptions and the analysis take their
    defaults from diziner.options.DEFAULTS: change one there and every place follows."""
    import dataclasses

    from diziner.analysis import analyze
    from diziner.options import DEFAULTS
    from diziner.stream import StreamOptions

    pilot, limits, analysis, annotation = DEFAULTS.pilot, DEFAULTS.limits, DEFAULTS.analysis, DEFAULTS.annotation
    for f in dataclasses.fields(limits):
        assert Limits.model_fields[f.name].default is getattr(limits, f.name), f.name
    ro = RefineOptions.__dataclass_fields__
    for group in (pilot, analysis, annotation, limits):
        for f in dataclasses.fields(group):
            if f.name in ro:
                assert ro[f.name].default is getattr(group, f.name), f.name
    cli = {("refine", "iterations"): pilot.iterations, ("refine", "sample_size"): pilot.sample_size,
           ("refine", "seed"): pilot.seed, ("refine", "patience"): pilot.patience,
           ("refine", "percentile"): analysis.percentile, ("refine", "weights"): analysis.weights,
           ("refine", "max_change_ratio"): limits.max_change_ratio,
           ("annotate", "batch_size"): annotation.batch_size, ("annotate", "weights"): analysis.weights,
           ("annotate", "percentile"): analysis.percentile,
           ("analyze", "percentile"): analysis.percentile, ("analyze", "weights"): analysis.weights,
           ("analyze", "examples"): analysis.examples_per_pattern,
           ("bench", "seed"): pilot.seed, ("bench", "iterations"): pilot.iterations,
           ("bench", "sample_size"): pilot.sample_size}
    for (command, param), want in cli.items():
        assert _cli_default(command, param) is want, (command, param)
    so = StreamOptions()
    assert (so.batch_size, so.weights, so.percentile, so.reask, so.max_mentions, so.prefetch) == (
        annotation.batch_size, analysis.weights, analysis.percentile, annotation.reask, annotation.max_mentions,
        annotation.prefetch)
    sig = inspect.signature(analyze).parameters
    assert sig["weights"].default is analysis.weights and sig["percentile"].default is analysis.percentile
