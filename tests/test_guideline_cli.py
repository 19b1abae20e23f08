"""`diziner guideline show|diff`."""
from __future__ import annotations

import json

from diziner.cli import main
from diziner.guideline import Guideline, Instruction, Provenance
from diziner.schema import LabelDef, Schema


def _write(tmp_path, name, g: Guideline):
    p = tmp_path / name
    p.write_text(g.to_yaml(), encoding="utf-8")
    return p


def _pair(tmp_path):
    s = Schema(name="mini", goal="Tag people.", labels=[LabelDef(name="PER", definition="A named person.")])
    a = Guideline.initial(s)
    b = a.model_copy(update={"iteration": 1, "common": [
        Instruction(id="1", text="Leave titles out.", provenance=Provenance(added_in=1, source="consensus"))]})
    return _write(tmp_path, "a.yaml", a), _write(tmp_path, "b.yaml", b)


def test_diff_text_json_quiet(tmp_path, capsys):
    pa, pb = _pair(tmp_path)
    assert main(["guideline", "diff", str(pa), str(pb)]) == 0
    out = capsys.readouterr().out
    assert "+ [1] Leave titles out." in out and "change ratio:" in out
    assert main(["guideline", "diff", str(pa), str(pb), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["common"]["added"] == [{"id": "1", "text": "Leave titles out."}]
    assert 0 < js["change_ratio"] < 1
    assert main(["guideline", "diff", str(pa), str(pb), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("1 added, 0 removed")


def test_show_summary_markdown_json_out(tmp_path, capsys):
    _, pb = _pair(tmp_path)
    assert main(["guideline", "show", str(pb)]) == 0
    assert "1. Leave titles out. [0 examples]" in capsys.readouterr().out
    assert main(["guideline", "show", str(pb), "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("# Annotation guideline: mini")
    assert main(["guideline", "show", str(pb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"]["name"] == "mini"
    out = tmp_path / "g.md"
    assert main(["guideline", "show", str(pb), "--markdown", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# Annotation guideline")
    before = pb.read_text(encoding="utf-8")
    assert main(["guideline", "show", str(pb), "-o", str(pb)]) == 2
    assert pb.read_text(encoding="utf-8") == before
    assert "refusing to overwrite" in capsys.readouterr().err


def test_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema:\n  goal: x\n  labels: []\ngoal: g\n", encoding="utf-8")
    assert main(["guideline", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and len(err.strip().splitlines()) == 1
    assert main(["guideline", "diff", str(tmp_path / "missing.yaml"), str(bad)]) == 2
    assert "guideline file not found" in capsys.readouterr().err


def test_help_has_example(capsys):
    for cmd in (["guideline", "show", "--help"], ["guideline", "diff", "--help"]):
        assert main(cmd) == 0
        assert "Example:" in capsys.readouterr().out
