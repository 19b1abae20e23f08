"""Named points where a reliability test may kill the process (see docs/reliability.md).

``maybe_kill(point)`` sends SIGKILL to the running process when the environment
variable ``DIZINER_TEST_KILL_AT`` names ``point`` (optionally ``point:N`` — the N-th time
the point is reached, 1-based). Otherwise it is a no-op that costs one environment
lookup, so the loop and the supervisor call it at their named points:

============================  ==========================================================
``annotate_doc``              after an (annotator, document) result arrived
``analysis``                  after an iteration's analysis.json / report.md are written
``supervisor``                after an iteration's supervisor outputs are written
``supervise_phase1..4``       inside the LLM supervisor, after phase N answered validly
``final_write``               between final/guideline.yaml and final/guideline.md
``final_annotations``         after final/annotations.jsonl, before final/done.json
``ray_postprocess``           on a Ray worker, after an annotator's result of a document
============================  ==========================================================

``$DIZINER_TEST_KILL_ONCE`` (a path) makes the kill happen once across processes: the process
that creates the file is killed; when the file exists, nobody is.

Shipped code imports this module, never :mod:`diziner.testing` (an import-linter contract).
"""
from __future__ import annotations

import os
import signal

KILL_ENV = "DIZINER_TEST_KILL_AT"
# with several processes (Ray workers): only the first to create this file is killed, and none once it exists
KILL_ONCE_ENV = "DIZINER_TEST_KILL_ONCE"
KILL_POINTS = ("annotate_doc", "analysis", "supervise_phase1", "supervise_phase2", "supervise_phase3",
               "supervise_phase4", "supervisor", "final_write", "final_annotations", "ray_postprocess")
_hits: dict[str, int] = {}


def maybe_kill(point: str) -> None:
    """SIGKILL this process if ``$DIZINER_TEST_KILL_AT`` is ``point`` or ``point:N`` (N-th hit)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= (int(nth) if nth.isdigit() else 1):
        once = os.environ.get(KILL_ONCE_ENV)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
