"""Pilot output size against agreement and pilot F1, per iteration of finished bench runs.

For each ``DATASET.json`` in the given ``diziner bench --out`` folders: the mean spans per
answered pilot sentence over the annotators (iteration 0 -> iteration i), agreement (overall
and over labels) and the annotators' mean pilot F1 (dev gold; reported only). Used in
BENCHMARKS.md §1 to test whether "the pilot output shrank" tells a harmful refinement from a
useful one without labels.

    python scripts/pilot_output_size.py BENCH-OUT [BENCH-OUT ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from diziner.atomic import read_jsonl


def spans_per_sentence(folder: Path) -> float | None:
    rates = []
    for f in sorted((folder / "annotations").glob("*.jsonl")):
        ok = [r for r in read_jsonl(f) if r.get("status", "ok") == "ok"]
        if ok:
            rates.append(sum(len(r.get("spans") or []) for r in ok) / len(ok))
    return sum(rates) / len(rates) if rates else None


def mean_annotator_f1(scores: dict[str, float]) -> float:
    vals = [v for k, v in scores.items() if k != "consensus"]
    return sum(vals) / len(vals)


def report(result: Path) -> None:
    d = json.loads(result.read_text(encoding="utf-8"))
    runs = result.with_suffix("") / "run" / "iterations"
    if "pilot_f1_by_iteration" not in d or not runs.is_dir():
        return
    m0 = spans_per_sentence(runs / "0")
    agr, lab, pf = d["agreement_by_iteration"], d.get("label_agreement_by_iteration", {}), d["pilot_f1_by_iteration"]
    for it in sorted((p.name for p in runs.iterdir()), key=int)[1:]:
        m = spans_per_sentence(runs / it)
        if m0 is None or m is None or it not in pf:
            continue
        mark = "  selected" if str(d["selected_iteration"]) == it else ""
        print(f"{result.parent.name}/{result.stem} it{it}: spans/sentence {m0:.2f} -> {m:.2f} ({m / m0 - 1:+.0%}); "
              f"agreement {agr['0']:.3f} -> {agr[it]:.3f}, over labels {lab.get('0', 0):.3f} -> {lab.get(it, 0):.3f}; "
              f"pilot F1 {mean_annotator_f1(pf['0']):.3f} -> {mean_annotator_f1(pf[it]):.3f}{mark}")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    for out in argv:
        for result in sorted(Path(out).glob("*.json")):
            report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
