"""End-to-end tests of `diziner analyze`."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from diziner.cli import main

TEXTS = {
    "d1": "Barack Obama visited Paris and Berlin yesterday .",
    "d2": "Apple sued Samsung in New York City .",
}


def span(doc: str, text: str, label: str) -> dict:
    i = TEXTS[doc].index(text)
    return {"start": i, "end": i + len(text), "label": label, "text": text}


def write_jsonl(path: Path, spans: dict[str, list[dict]], texts: dict[str, str] = TEXTS) -> Path:
    lines = [json.dumps({"id": d, "text": t, "spans": spans.get(d, [])}) for d, t in texts.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def jsonl_files(tmp_path: Path) -> list[Path]:
    a = write_jsonl(tmp_path / "a.jsonl", {
        "d1": [span("d1", "Barack Obama", "PER"), span("d1", "Paris", "LOC"), span("d1", "Berlin", "LOC")],
        "d2": [span("d2", "Apple", "ORG"), span("d2", "Samsung", "ORG"), span("d2", "New York City", "LOC")],
    })
    b = write_jsonl(tmp_path / "b.jsonl", {
        "d1": [span("d1", "Barack Obama", "PER"), span("d1", "Paris", "LOC")],
        "d2": [span("d2", "Apple", "ORG"), span("d2", "Samsung", "ORG"), span("d2", "New York", "LOC")],
    })
    c = write_jsonl(tmp_path / "c.jsonl", {
        "d1": [span("d1", "Obama", "PER"), span("d1", "Paris", "ORG"), span("d1", "Berlin", "LOC")],
        "d2": [span("d2", "Apple", "ORG"), span("d2", "New York City", "LOC")],
    })
    return [a, b, c]


def test_analyze_jsonl_writes_files_and_json_summary(jsonl_files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["analyze", *map(str, jsonl_files), "--out", str(out), "--names", "gpt,qwen,llama", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["annotators"] == ["gpt", "qwen", "llama"]
    assert summary["elite"] == ["gpt", "qwen"]
    data = json.loads((out / "analysis.json").read_text())
    assert data["annotators"] == ["gpt", "qwen", "llama"]
    assert data["weights"]["gpt"] == pytest.approx(70 / 162)
    assert [d["id"] for d in data["documents"]] == ["d1", "d2"]
    assert data["hotspots"] and all("readings" in h and "errors" in h for h in data["hotspots"])
    assert set(data["profiles"]) == {"gpt", "qwen", "llama"}
    report = (out / "report.md").read_text()
    assert report.startswith("# Disagreement analysis")
    assert not list(out.glob("*.tmp"))  # atomic writes leave nothing behind


def test_analyze_rich_and_quiet_output(jsonl_files, tmp_path, capsys):
    rc = main(["analyze", *map(str, jsonl_files), "--out", str(tmp_path / "o1"), "--weights", "hybrid",
               "--percentile", "50"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "hotspots" in text and "a" in text
    rc = main(["analyze", *map(str, jsonl_files[:2]), "--out", str(tmp_path / "o2"), "--quiet"])
    assert rc == 0 and capsys.readouterr().out == ""
    assert (tmp_path / "o2" / "analysis.json").is_file()


def test_analyze_errors_are_one_line(jsonl_files, tmp_path, capsys):
    other = write_jsonl(tmp_path / "other.jsonl", {}, {"d1": TEXTS["d1"], "d2": "A different text ."})
    rc = main(["analyze", str(jsonl_files[0]), str(other), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "other.jsonl" in err and "d2" in err and "Traceback" not in err

    fewer = write_jsonl(tmp_path / "fewer.jsonl", {}, {"d1": TEXTS["d1"]})
    rc = main(["analyze", str(jsonl_files[0]), str(fewer), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing" in err and "d2" in err

    extra = write_jsonl(tmp_path / "extra.jsonl", {}, {**TEXTS, "d3": "More ."})
    rc = main(["analyze", str(jsonl_files[0]), str(extra), "--out", str(tmp_path / "o")])
    assert rc == 2 and "d3" in capsys.readouterr().err

    rc = main(["analyze", *map(str, jsonl_files), "--out", str(tmp_path / "o"), "--names", "x,y"])
    assert rc == 2 and "--names" in capsys.readouterr().err

    rc = main(["analyze", str(jsonl_files[0]), "--out", str(tmp_path / "o")])
    assert rc == 2 and "two" in capsys.readouterr().err

    rc = main(["analyze", str(jsonl_files[0]), str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "not found" in capsys.readouterr().err

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "d1", "text": "x"\n')
    rc = main(["analyze", str(jsonl_files[0]), str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.jsonl" in err and "Traceback" not in err


def test_analyze_help_has_example(capsys):
    rc = main(["analyze", "--help"])
    assert rc == 0 and "Example:" in capsys.readouterr().out


def _perturb(lines: list[str], noise: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    labels = ["algorithm", "field", "task", "product", "person"]
    out = []
    for line in lines:
        if "\t" in line:
            tok, tag = line.split("\t")
            r = rng.random()
            if tag.startswith("B-") and r < noise:
                tag = "B-" + rng.choice(labels)
            elif tag == "O" and r < noise / 10:
                tag = "B-misc"
            line = f"{tok}\t{tag}"
        out.append(line)
    return out


def test_analyze_perturbed_copies_of_a_benchmark(shared_benchmarks, tmp_path, capsys):
    src = (shared_benchmarks / "crossner_ai" / "dev.txt").read_text(encoding="utf-8").split("\n")
    src = src[:3000]  # a few hundred sentences keep the test fast
    while src and src[-1].strip():
        src.pop()  # end on a sentence break
    files = []
    for k, noise in enumerate([0.0, 0.1, 0.3]):
        p = tmp_path / f"ann{k}.txt"
        p.write_text("\n".join(_perturb(src, noise, k)) + "\n", encoding="utf-8")
        files.append(p)
    out = tmp_path / "out"
    rc = main(["analyze", *map(str, files), "--out", str(out), "--json"])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "analysis.json").read_text())
    w = data["weights"]
    # the cleaner the copy, the higher its weight
    assert w["ann0"] > w["ann1"] > w["ann2"]
    assert data["elite"][0] == "ann0"
    assert data["pairwise_f1"]["ann0"]["ann1"] > data["pairwise_f1"]["ann0"]["ann2"]
    assert data["summary"]["n_hotspots"] > 0
    types = {e["type"] for h in data["hotspots"] for e in h["errors"]}
    assert "type_confusion" in types and "spurious" in types
    # ann0 is the gold copy: its profile vs the consensus is the cleanest
    p0, p2 = data["profiles"]["ann0"], data["profiles"]["ann2"]
    assert p0["type_confusion"] + p0["spurious"] < p2["type_confusion"] + p2["spurious"]

    # a copy with other sentences is refused with one line
    shifted = tmp_path / "shifted.txt"
    shifted.write_text("\n".join(src[40:]) + "\n", encoding="utf-8")
    rc = main(["analyze", str(files[0]), str(shifted), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "shifted.txt" in err and err.count("\n") == 1
