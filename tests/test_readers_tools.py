"""What an annotation tool gives back reads as a corpus: exports of every tool, human corrections, CSV."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from diziner.corpus.readers import read_corpus, read_info
from diziner.errors import InputError
from diziner.export import export, load_source


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from test_report_fixtures import make_run

    return make_run(tmp_path_factory.mktemp("tools") / "run")


@pytest.mark.parametrize("fmt,ext", [("label-studio", "json"), ("doccano", "jsonl"), ("prodigy", "jsonl"),
                                     ("argilla", "jsonl"), ("jsonl", "jsonl")])
def test_every_export_reads_back_as_the_same_corpus(run_dir, tmp_path, fmt, ext):
    out = tmp_path / f"out.{ext}"
    export(run_dir, fmt, out)
    src = load_source(run_dir)
    corpus = read_corpus(out)
    assert [d.id for d in corpus.documents] == [d.id for d in src.docs]
    assert [d.text for d in corpus.documents] == [d.text for d in src.docs]
    for d in src.docs:
        assert sorted((s.start, s.end, s.label) for s in corpus.spans_of(d.id)) == sorted(s.key() for s in d.spans)


def test_a_human_correction_wins_over_the_prediction(run_dir, tmp_path):
    export(run_dir, "label-studio", tmp_path / "ls.json")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    t = tasks[0]
    text = t["data"]["text"]
    t["annotations"] = [{"was_cancelled": True, "result": []},  # a skipped one is not a correction
                        {"result": [{"type": "labels", "from_name": "label", "to_name": "text",
                                     "value": {"start": 0, "end": 3, "text": text[:3], "labels": ["ORG"]}}]}]
    t["annotations"].append({"was_cancelled": True, "result": []})
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    corpus, info = read_info(tmp_path / "ls.json")
    assert info["format"] == "label-studio"
    assert [(s.start, s.end, s.label) for s in corpus.spans_of(t["data"]["doc_id"])] == [(0, 3, "ORG")]
    export(run_dir, "argilla", tmp_path / "a.jsonl")
    recs = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    recs[0]["responses"] = {"spans": [{"user_id": "u1", "status": "submitted",
                                       "value": [{"start": 0, "end": 3, "label": "LOC"}]}]}
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    corpus = read_corpus(tmp_path / "a.jsonl")
    assert [(s.start, s.end, s.label) for s in corpus.spans_of(recs[0]["id"])] == [(0, 3, "LOC")]


def test_evaluate_takes_a_label_studio_export_as_gold(run_dir, tmp_path, capsys):
    from diziner.cli import main

    export(run_dir, "label-studio", tmp_path / "gold.json")
    export(run_dir, "jsonl", tmp_path / "pred.jsonl")
    assert main(["evaluate", "--gold", str(tmp_path / "gold.json"), "--pred", str(tmp_path / "pred.jsonl"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["f1"] == 1.0


def test_csv_with_a_text_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('id,text,source\na1,"Ada Lovelace met Grace Hopper, in London.",web\na2,Second one.,mail\n,,x\n')
    corpus = read_corpus(p)
    assert [(d.id, d.text) for d in corpus.documents] == [("a1", "Ada Lovelace met Grace Hopper, in London."),
                                                          ("a2", "Second one.")]
    assert corpus.documents[0].metadata["source"] == "web"
    bad = tmp_path / "b.csv"
    bad.write_text("body,id\nhello,1\n")
    with pytest.raises(InputError, match="needs a 'text' column"):
        read_corpus(bad)


def test_text_field_names_the_text_of_jsonl_and_csv(tmp_path, capsys, examples_dir):
    from diziner.cli import main

    j = tmp_path / "t.jsonl"
    j.write_text('{"id": "a", "body": "Ada Lovelace wrote."}\n{"id": "b", "body": "Grace Hopper too."}\n')
    with pytest.raises(InputError, match=r'needs a "text" string \(its keys: id, body; see --text-field\)'):
        read_corpus(j)
    assert [d.text for d in read_corpus(j, text_field="body").documents] == ["Ada Lovelace wrote.", "Grace Hopper too."]
    c = tmp_path / "t.csv"
    c.write_text("id,body\na,Ada Lovelace wrote.\n")
    assert read_corpus(c, text_field="body").documents[0].text == "Ada Lovelace wrote."
    assert main(["inspect", str(j), "--text-field", "body", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 2
    assert main(["refine", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(c), "--text-field", "body",
                 "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "r"), "--dry-run",
                 "--iterations", "1", "--sample-size", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["corpus_documents"] == 1
    assert main(["annotate", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(j), "--text-field", "body",
                 "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "o.jsonl"), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 2


def test_text_field_on_evaluate_and_analyze(tmp_path, capsys):
    from diziner.cli import main

    def jsonl(name: str, spans: list[list[tuple[int, int, str]]]) -> Path:
        texts = ["Ada Lovelace met Charles Babbage.", "Grace Hopper lived in New York."]
        f = tmp_path / name
        f.write_text("".join(json.dumps({"id": str(i), "body": t,
                                         "spans": [{"start": a, "end": b, "label": lab} for a, b, lab in sp]}) + "\n"
                             for i, (t, sp) in enumerate(zip(texts, spans))), encoding="utf-8")
        return f

    gold = jsonl("gold.jsonl", [[(0, 12, "PER"), (17, 32, "PER")], [(0, 12, "PER"), (22, 30, "LOC")]])
    pred = jsonl("pred.jsonl", [[(0, 12, "PER")], [(0, 12, "PER"), (22, 30, "PER")]])
    # without the option the records have no "text": the usual one-line error naming the option
    assert main(["evaluate", "--gold", str(gold), "--pred", str(pred), "--json"]) == 2
    assert "see --text-field" in capsys.readouterr().err
    assert main(["evaluate", "--gold", str(gold), "--pred", str(pred), "--text-field", "body", "--json"]) == 0
    micro = json.loads(capsys.readouterr().out)["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (2, 1, 2)
    assert main(["analyze", str(gold), str(pred), "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "see --text-field" in capsys.readouterr().err
    assert main(["analyze", str(gold), str(pred), "--out", str(tmp_path / "a"), "--text-field", "body", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["annotators"] == ["gold", "pred"] and summary["n_documents"] == 2
    analysis = json.loads((tmp_path / "a" / "analysis.json").read_text(encoding="utf-8"))
    assert analysis["summary"]["n_documents"] == 2
