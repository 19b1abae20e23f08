"""A small but real refine run directory for the report and export tests.

The analysis.json files are produced by :func:`diziner.analysis.analyze` on hand-made
annotations; one document carries script-injection text to test escaping.
"""
from __future__ import annotations

import json
from pathlib import Path

from diziner.corpus.model import Document

EVIL = 'Hi <script>window.__pwned=1</script> and <img src=x onerror="window.__pwned=2"> from Acme Corp in Paris.'

DOCS = {
    "d1": "Ada Lovelace met Charles Babbage in London.",
    "d2": "The Bank of England raised rates; Zoë Müller of Deutsche Bank disagreed.",
    "d3": EVIL,
    "d4": "Barack Obama visited Acme Corp headquarters in New York City.",
}


def _sp(doc: str, frag: str, label: str, nth: int = 0) -> dict:
    text = DOCS[doc]
    start = -1
    for _ in range(nth + 1):
        start = text.index(frag, start + 1)
    return {"start": start, "end": start + len(frag), "label": label, "text": frag}


# annotator -> doc -> spans (iteration 0 disagrees more than iteration 1)
ANN0 = {
    "gpt": {
        "d1": [_sp("d1", "Ada Lovelace", "PER"), _sp("d1", "Charles Babbage", "PER"), _sp("d1", "London", "LOC")],
        "d2": [_sp("d2", "Bank of England", "ORG"), _sp("d2", "Zoë Müller", "PER"), _sp("d2", "Deutsche Bank", "ORG")],
        "d3": [_sp("d3", "Acme Corp", "ORG"), _sp("d3", "Paris", "LOC")],
        "d4": [_sp("d4", "Barack Obama", "PER"), _sp("d4", "Acme Corp", "ORG"), _sp("d4", "New York City", "LOC")],
    },
    "claude": {
        "d1": [_sp("d1", "Ada Lovelace", "PER"), _sp("d1", "Charles Babbage", "PER"), _sp("d1", "London", "LOC")],
        "d2": [_sp("d2", "The Bank of England", "ORG"), _sp("d2", "Zoë Müller", "PER"), _sp("d2", "Deutsche Bank", "ORG")],
        "d3": [_sp("d3", "Acme Corp", "ORG"), _sp("d3", "Paris", "LOC"), _sp("d3", "script", "ORG")],
        "d4": [_sp("d4", "Barack Obama", "PER"), _sp("d4", "Acme Corp headquarters", "LOC"), _sp("d4", "New York", "LOC")],
    },
    "llama": {
        "d1": [_sp("d1", "Ada Lovelace", "PER"), _sp("d1", "London", "ORG")],
        "d2": [_sp("d2", "Bank of England", "LOC"), _sp("d2", "Deutsche Bank", "ORG")],
        "d3": [_sp("d3", "Acme", "ORG"), _sp("d3", "Paris", "LOC")],
        "d4": [_sp("d4", "Obama", "PER"), _sp("d4", "Acme Corp", "ORG"), _sp("d4", "New York City", "LOC")],
    },
}
ANN1 = {
    "gpt": ANN0["gpt"],
    "claude": {**ANN0["gpt"], "d4": ANN0["claude"]["d4"]},
    "llama": {**ANN0["gpt"], "d1": ANN0["llama"]["d1"]},
}

SCHEMA = {
    "name": "news",
    "goal": "Tag every person, organisation and place named in the text.",
    "labels": [
        {"name": "PER", "definition": "A named person.", "positive_examples": ["Ada Lovelace"]},
        {"name": "ORG", "definition": "A named organisation.", "negative_examples": ["the <b>board</b>"]},
        {"name": "LOC", "definition": "A named place."},
    ],
}


def _guideline(t: int) -> dict:
    g = {"schema": SCHEMA, "goal": SCHEMA["goal"], "common": [], "model_specific": {}, "iteration": t, "changelog": []}
    if t >= 1:
        g["goal"] = SCHEMA["goal"] + " Include titles only when capitalised."
        g["common"] = [{
            "id": "1", "text": "Tag the full official name of an organisation, without a leading article.",
            "examples": [{"text": "The Bank of England met.", "mentions": [{"text": "Bank of England", "label": "ORG"}],
                          "rationale": "articles are not part of names"}],
            "provenance": {"added_in": 1, "patterns": ["P1"], "source": "llm"},
            "children": [{"id": "1.1", "text": "Never tag HTML such as <script> as an entity.",
                          "provenance": {"added_in": 1, "patterns": ["H0", "elite_split", "no such pattern"],
                                         "source": "llm"}}],
        }]
        g["model_specific"] = {"llama": [{"id": "L1", "text": "Tag the whole name: 'Barack Obama', not 'Obama'.",
                                          "provenance": {"added_in": 1, "patterns": ["#1"], "source": "llm"}}]}
        g["changelog"] = ["added 1, 1.1, L1"]
    return g


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in obj), encoding="utf-8")
    elif path.suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True), encoding="utf-8")
    else:
        path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


def analysis_json(annotations: dict) -> dict:
    from diziner.analysis import analyze
    from diziner.corpus.model import Span

    docs = [Document(k, v) for k, v in DOCS.items()]
    ann = {a: {d: [Span(d, s["start"], s["end"], s["label"], s["text"]) for s in spans] for d, spans in by.items()}
           for a, by in annotations.items()}
    return analyze(docs, ann, labels=["PER", "ORG", "LOC"]).to_json()


def make_run(root: Path, with_gold: bool = True) -> Path:
    """Write a two-iteration refine run directory under ``root``; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "run.json", {"command": "refine", "pool": [{"id": "gpt", "backend": "openai", "model": "gpt-4o-mini"},
                                                            {"id": "claude", "backend": "anthropic", "model": "claude-x"},
                                                            {"id": "llama", "backend": "local", "model": "llama"}]})
    _write(root / "schema.yaml", SCHEMA)
    metrics_iters = []
    for t, anns in ((0, ANN0), (1, ANN1)):
        d = root / "iterations" / str(t)
        _write(d / "sample.jsonl", [{"id": k, "text": v} for k, v in DOCS.items()])
        _write(d / "guideline.yaml", _guideline(t))
        for a, by in anns.items():
            _write(d / "annotations" / f"{a}.jsonl",
                   [{"id": k, "text": DOCS[k], "status": "ok", "spans": by.get(k, [])} for k in DOCS])
        an = analysis_json(anns)
        _write(d / "analysis.json", an)
        (d / "report.md").write_text("# analysis\n", encoding="utf-8")
        cats: dict[str, int] = {}
        for h in an["hotspots"]:
            cats[h["category"]] = cats.get(h["category"], 0) + 1
        row = {"iteration": t, "mean_pairwise_f1": an["mean_pairwise_f1"],
               "per_annotator_agreement": {a: sum(v for b, v in an["pairwise_f1"][a].items() if b != a) / 2
                                           for a in an["annotators"]},
               "weights": an["weights"], "elite": an["elite"], "hotspots": len(an["hotspots"]),
               "hotspots_by_category": cats}
        if with_gold:
            row["f1"] = {"consensus": 0.7 + 0.1 * t, "gpt": 0.8, "claude": 0.6 + 0.1 * t, "llama": 0.5 + 0.05 * t}
        metrics_iters.append(row)
        _write(d / "metrics.json", row)
    _write(root / "iterations" / "0" / "supervisor" / "phase1.json",
           {"patterns": [{"id": "P1", "description": "leading article in ORG names", "hotspots": [0, "H1"]}]})
    _write(root / "metrics.json", {"iterations": metrics_iters, "selected_iteration": 1})
    ledger = []
    for t in (0, 1):
        for a, cost in (("gpt", 0.0012), ("claude", None), ("llama", 0.0)):
            for k in DOCS:
                ledger.append({"annotator": a, "purpose": "annotate", "iteration": t, "backend": "x", "model": "m",
                               "tokens_in": 100, "tokens_out": 20, "latency_s": 0.5, "cached": t == 1 and k == "d1",
                               "cost_usd": 0.0 if (t == 1 and k == "d1") else cost, "ok": True, "reason": None})
    ledger.append({"annotator": None, "purpose": "supervise:phase1", "iteration": 0, "backend": "openai",
                   "model": "gpt-4o", "tokens_in": 900, "tokens_out": 300, "latency_s": 3.0, "cached": False,
                   "cost_usd": 0.01, "ok": True, "reason": None})
    ledger.append({"annotator": "claude", "purpose": "annotate", "iteration": 1, "backend": "anthropic", "model": "c",
                   "tokens_in": 0, "tokens_out": 0, "latency_s": 30.0, "cached": False, "cost_usd": None, "ok": False,
                   "reason": "timeout"})
    _write(root / "ledger.jsonl", ledger)
    final = root / "final"
    _write(final / "guideline.yaml", _guideline(1))
    (final / "guideline.md").write_text("# Guideline\n", encoding="utf-8")
    fin = []
    for k, text in DOCS.items():
        spans = []
        for s in ANN1["gpt"][k]:
            sup = [a for a in ANN1 if any(x["start"] == s["start"] and x["end"] == s["end"] and x["label"] == s["label"]
                                          for x in ANN1[a].get(k, []))]
            spans.append({**s, "support": {"annotators": sup, "weight": round(len(sup) / 3, 4)},
                          "hotspot": len(sup) < 3})
        fin.append({"id": k, "text": text, "spans": spans})
    _write(final / "annotations.jsonl", fin)
    for a, by in ANN1.items():
        rows = [{"id": k, "text": DOCS[k], "status": "ok", "spans": by.get(k, [])} for k in DOCS]
        if a == "llama":
            rows[1] = {"id": "d2", "text": DOCS["d2"], "status": "failed", "reason": "timeout", "spans": []}
        _write(final / "by_annotator" / f"{a}.jsonl", rows)
    return root


def make_analysis_folder(root: Path) -> Path:
    """A `diziner analyze`-style folder: analysis.json + report.md."""
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "analysis.json", analysis_json(ANN0))
    (root / "report.md").write_text("# analysis\n", encoding="utf-8")
    return root


def test_fixture_run_is_complete(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    an = json.loads((run / "iterations" / "0" / "analysis.json").read_text(encoding="utf-8"))
    assert an["hotspots"], "the fixture must have hotspots in iteration 0"
    assert set(an["annotators"]) == {"gpt", "claude", "llama"}
    for h in an["hotspots"]:
        assert DOCS[h["document"]][h["char_start"]:h["char_end"]] == h["text"]
