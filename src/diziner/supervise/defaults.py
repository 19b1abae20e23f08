"""Default limits of a revision, defined once (no imports: the CLI reads them at start-up).

``Limits`` (:mod:`diziner.supervise.base`), ``diziner.loop.RefineOptions`` and the options
of ``diziner refine`` all take their defaults from here.
"""
from __future__ import annotations

__all__ = ["DEFAULT_MAX_CHANGE_RATIO"]

#: Bound on ``change_ratio(Θ(t), Θ(t+1))``. 0.6 is what every ``refine``, ``bench`` and demo
#: run used (BENCHMARKS.md); ``Limits`` said 0.4 until the two defaults were made one.
DEFAULT_MAX_CHANGE_RATIO = 0.6
