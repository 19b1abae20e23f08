"""The defaults of a run's options, each defined once, as one tree.

``DEFAULTS.pilot`` (the loop's iterations), ``DEFAULTS.limits`` (bounds on one revision),
``DEFAULTS.analysis`` (weights, hotspot threshold) and ``DEFAULTS.annotation`` (one
annotator on one document, and the streamed batches). The objects that carry options
take their defaults from here: :class:`diziner.supervise.base.Limits`,
:class:`diziner.loop.RefineOptions` (flat, as ``run.json`` records it),
:func:`diziner.analysis.analyze`, ``bench_dataset``, the API, and the options of the
command line. :class:`diziner.stream.StreamOptions` has the same values (a test holds
them equal).

Standard library only: the command line reads this module at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULTS", "DEFAULT_MAX_CHANGE_RATIO", "AnalysisDefaults", "AnnotationDefaults", "LimitDefaults",
           "OptionDefaults", "PilotDefaults"]

#: Bound on ``change_ratio(Θ(t), Θ(t+1))``. 0.6 is what every ``refine``, ``bench`` and demo
#: run used (BENCHMARKS.md); ``Limits`` said 0.4 until the two defaults were made one.
DEFAULT_MAX_CHANGE_RATIO = 0.6


@dataclass(frozen=True)
class PilotDefaults:
    """The refinement loop: how many pilot iterations, on how many documents, when to stop."""

    iterations: int = 4
    sample_size: int = 25
    seed: int = 13
    patience: int = 1
    min_delta: float = 0.0
    drop_margin: float = 0.10
    min_annotators: int = 2


@dataclass(frozen=True)
class LimitDefaults:
    """Bounds on one revision of the guideline (:class:`diziner.supervise.base.Limits`)."""

    max_patterns: int = 5
    max_new_common: int = 5
    max_model_specific: int = 3
    max_change_ratio: float = DEFAULT_MAX_CHANGE_RATIO
    max_examples_per_instruction: int = 3


@dataclass(frozen=True)
class AnalysisDefaults:
    """The disagreement analysis: annotator weights and the hotspot threshold."""

    weights: str = "f1"  # f1 | hybrid
    percentile: float = 80.0
    examples_per_pattern: int = 10


@dataclass(frozen=True)
class AnnotationDefaults:
    """One annotator on one document, and the batches of a streamed run."""

    max_mentions: int = 32
    reask: int = 1
    batch_size: int = 256
    prefetch: int = 1


@dataclass(frozen=True)
class OptionDefaults:
    pilot: PilotDefaults = field(default_factory=PilotDefaults)
    limits: LimitDefaults = field(default_factory=LimitDefaults)
    analysis: AnalysisDefaults = field(default_factory=AnalysisDefaults)
    annotation: AnnotationDefaults = field(default_factory=AnnotationDefaults)


DEFAULTS = OptionDefaults()
