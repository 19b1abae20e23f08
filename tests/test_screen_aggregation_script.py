"""scripts/screen_aggregation.py: every delivered rule over the same per-annotator files, hand-computed.

The script scores what the engine would deliver (its Aggregator, one reading per token) for each
rule, on the annotator files a ``diziner bench`` run leaves; the delivered and failed files beside
them are not annotators.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from diziner.corpus.model import Document, Span

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "screen_aggregation.py"
_spec = importlib.util.spec_from_file_location("screen_aggregation", _PATH)
sa = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sa)

TEXT = "Ada met Bob in Paris ."


def _write(folder: Path, name: str, spans: list[tuple[int, int, str]]) -> None:
    (folder / f"{name}.jsonl").write_text(json.dumps({"id": "d1", "text": TEXT, "status": "ok", "spans": [
        {"start": s, "end": e, "label": lab, "text": TEXT[s:e]} for s, e, lab in spans]}) + "\n")


def test_annotator_files_leave_out_the_delivered_and_failed_files(tmp_path):
    for name in ("a", "b", "delivered", "failed"):
        _write(tmp_path, name, [])
    assert [p.stem for p in sa.annotator_files(tmp_path)] == ["a", "b"]


def test_each_rule_is_the_engines_aggregation_of_the_same_files(tmp_path):
    # a: Ada, Bob; b: Ada, Paris; c: Ada. Pairwise strict F1: ab 1/2, ac 2/3, bc 2/3 -> nearly equal weights.
    _write(tmp_path, "a", [(0, 3, "PER"), (8, 11, "PER")])
    _write(tmp_path, "b", [(0, 3, "PER"), (15, 20, "LOC")])
    _write(tmp_path, "c", [(0, 3, "PER")])
    _write(tmp_path, "delivered", [(0, 3, "ORG")])  # never read as an annotator
    docs = [Document("d1", TEXT)]
    gold = {"d1": [Span("d1", 0, 3, "PER"), Span("d1", 8, 11, "PER"), Span("d1", 15, 20, "LOC")]}
    row = sa.screen_rules(docs, sa.annotator_files(tmp_path), ["PER", "LOC"], gold)
    f1 = row["f1"]
    assert f1["alone:a"] == 0.8 and f1["alone:b"] == 0.8 and f1["alone:c"] == 0.5 and f1["best alone"] == 0.8
    assert f1["union"] == 1.0                       # every span one of them proposed: all three gold spans
    assert f1["vote:0.5"] == 0.5                    # only Ada is held by more than half the weight
    assert set(f1) >= {"consensus", "union", "vote:0.25", "vote:0.5", "reliability", "reliability:label"}
    assert set(row["weights"]) == {"a", "b", "c"} and 0 < row["agreement"] < 1
