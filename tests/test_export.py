"""Exports: every format round-trips to the same spans; bad input is a one-line error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_report_fixtures import make_run

from diziner.cli import main
from diziner.errors import ConfigError, InputError
from diziner.export import export, load_source
from diziner.export.formats import (
    read_argilla,
    read_doccano,
    read_label_studio,
    read_prodigy,
    read_spacy,
)
from diziner.export.source import ExportDoc, ExportSource, ExportSpan

READERS = {"label-studio": read_label_studio, "doccano": read_doccano, "prodigy": read_prodigy,
           "argilla": read_argilla, "spacy": read_spacy}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("e") / "run")


def _expected(src: ExportSource) -> dict[str, list[tuple[int, int, str]]]:
    return {d.id: sorted(s.key() for s in d.spans) for d in src.docs}


def _read_jsonl_spans(path: Path) -> dict[str, list[tuple[int, int, str]]]:
    from diziner.corpus.readers import read_corpus

    c = read_corpus(path, "jsonl")
    return {d.id: sorted((s.start, s.end, s.label) for s in c.spans_of(d.id)) for d in c.documents}


@pytest.mark.parametrize("fmt", list(READERS))
@pytest.mark.parametrize("source", ["consensus", "claude"])
def test_round_trip(run_dir: Path, tmp_path: Path, fmt: str, source: str) -> None:
    out = tmp_path / f"out.{fmt}"
    res = export(run_dir, fmt, out, source=source)
    src = load_source(run_dir, source)
    assert res["documents"] == len(src.docs) and res["spans"] == sum(len(d.spans) for d in src.docs)
    assert READERS[fmt](out) == _expected(src)


def test_jsonl_and_conll(run_dir: Path, tmp_path: Path) -> None:
    src = load_source(run_dir)
    export(run_dir, "jsonl", tmp_path / "o.jsonl")
    assert _read_jsonl_spans(tmp_path / "o.jsonl") == _expected(src)
    first = json.loads((tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert {"support", "hotspot"} <= set(first["spans"][1])  # Charles Babbage: 2 of 3 annotators
    res = export(run_dir, "conll", tmp_path / "o.conll")
    from diziner.corpus.readers import read_corpus

    c = read_corpus(tmp_path / "o.conll", "conll")
    got = sorted((s.text, s.label) for s in c.all_spans())
    assert got == sorted((s.text, s.label) for d in src.docs for s in d.spans)
    assert res["dropped_overlapping"] == 0


def test_label_studio_scores_and_model_version(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, "label-studio", tmp_path / "ls.json")
    tasks = json.loads((tmp_path / "ls.json").read_text(encoding="utf-8"))
    pred = tasks[0]["predictions"][0]
    assert pred["model_version"] == "diziner:run:consensus"
    regions = {r["value"]["text"]: r for r in pred["result"]}
    assert regions["Ada Lovelace"]["score"] == 1.0
    assert regions["Charles Babbage"]["score"] == pytest.approx(2 / 3, abs=1e-4)
    assert regions["Ada Lovelace"]["value"] == {"start": 0, "end": 12, "text": "Ada Lovelace", "labels": ["PER"]}
    # the injected document stays plain data
    evil = next(t for t in tasks if t["data"]["doc_id"] == "d3")
    assert "<script>" in evil["data"]["text"]


def test_argilla_suggestions(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, "argilla", tmp_path / "a.jsonl")
    rec = json.loads((tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()[0])
    sg = rec["suggestions"]["spans"]
    assert sg["agent"] == "diziner:run:consensus" and sg["type"] == "model"
    assert sg["score"] == [1.0, 0.6667, 0.6667] and rec["metadata"]["hotspot_spans"] == [1, 2]
    assert rec["metadata"]["n_hotspot_spans"] == 2


@pytest.mark.parametrize("source", ["consensus", "claude", "file"])
def test_argilla_records_load_with_argillas_own_models(run_dir: Path, tmp_path: Path, source: str) -> None:
    rg = pytest.importorskip("argilla")  # the client library only: its Settings need a server, its records do not

    if source == "file":  # a plain JSONL spans file: no support scores
        export(run_dir, "jsonl", tmp_path / "plain.jsonl")
        lines = [json.loads(x) for x in (tmp_path / "plain.jsonl").read_text(encoding="utf-8").splitlines()]
        for x in lines:
            for sp in x["spans"]:
                sp.pop("support", None)
        (tmp_path / "plain.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        export(tmp_path / "plain.jsonl", "argilla", tmp_path / "a.jsonl")
    else:
        export(run_dir, "argilla", tmp_path / "a.jsonl", source=source)
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    for row in rows:
        record = rg.Record.from_dict(row)  # Argilla 2.x's record and suggestion models validate it
        (sug,) = list(record.suggestions)
        assert sug.question_name == "spans" and sug.type == "model"
        assert [(v["start"], v["end"], v["label"]) for v in sug.value] == \
            [(v["start"], v["end"], v["label"]) for v in row["suggestions"]["spans"]["value"]]
        assert all(v["label"] in ("PER", "ORG", "LOC") for v in sug.value)
        assert record.fields["text"] == row["fields"]["text"]
        if source == "consensus":
            assert len(sug.score) == len(sug.value)
        for name in ("source", "n_spans", "n_hotspot_spans"):
            assert name in record.metadata
    assert len(rows) > 0


def test_failed_documents_left_out(run_dir: Path, tmp_path: Path) -> None:
    res = export(run_dir, "doccano", tmp_path / "l.jsonl", source="llama")
    assert res["skipped_failed"] == 1 and res["documents"] == 3
    assert "d2" not in read_doccano(tmp_path / "l.jsonl")


def test_guideline_markdown(run_dir: Path, tmp_path: Path) -> None:
    res = export(run_dir, "guideline-md", tmp_path / "g.md")
    md = (tmp_path / "g.md").read_text(encoding="utf-8")
    assert "Tag the full official name of an organisation" in md and res["common_instructions"] == 2


def test_plain_jsonl_input(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    rows = [{"id": "a", "text": "Zoë Müller lives in 東京.", "spans": [{"start": 0, "end": 10, "label": "PER"},
                                                                        {"start": 20, "end": 22, "label": "LOC"}]},
            {"text": "nothing here", "spans": []}]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    export(f, "prodigy", tmp_path / "p.jsonl")
    assert read_prodigy(tmp_path / "p.jsonl") == {"a": [(0, 10, "PER"), (20, 22, "LOC")], "2": []}
    export(f, "spacy", tmp_path / "p.spacy")
    assert read_spacy(tmp_path / "p.spacy") == {"a": [(0, 10, "PER"), (20, 22, "LOC")], "2": []}
    with pytest.raises(ConfigError, match="needs a run directory"):
        export(f, "doccano", tmp_path / "d.jsonl", source="gpt")


def test_spacy_expands_partial_tokens_and_keeps_nested(tmp_path: Path) -> None:
    text = "New York City is big."
    src = ExportSource([ExportDoc("x", text, [ExportSpan(0, 13, "LOC", "New York City"),
                                              ExportSpan(0, 8, "LOC", "New York"),
                                              ExportSpan(14, 15, "MISC", "i")])], "file", tmp_path / "x")
    from diziner.export.formats import write_spacy

    res = write_spacy(src, tmp_path / "x.spacy")
    assert res["expanded"] == 1 and res["not_in_ents"] == 1
    assert read_spacy(tmp_path / "x.spacy")["x"] == [(0, 8, "LOC"), (0, 13, "LOC"), (14, 16, "MISC")]
    assert read_spacy(tmp_path / "x.spacy", key="ents")["x"] == [(0, 13, "LOC"), (14, 16, "MISC")]


def test_spacy_missing_is_one_line(monkeypatch, run_dir: Path, tmp_path: Path, capsys) -> None:
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "spacy" or name.startswith("spacy."):
            raise ImportError("no spacy")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    assert main(["export", str(run_dir), "--format", "spacy", "--out", str(tmp_path / "s.spacy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install" in err and "spacy" in err


def test_overwrite_rules(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    export(run_dir, "doccano", out)
    with pytest.raises(InputError, match="already exists"):
        export(run_dir, "doccano", out)
    export(run_dir, "doccano", out, force=True)
    before = (run_dir / "final" / "annotations.jsonl").read_bytes()
    with pytest.raises(InputError, match="input file"):
        export(run_dir, "jsonl", run_dir / "final" / "annotations.jsonl", force=True)
    assert (run_dir / "final" / "annotations.jsonl").read_bytes() == before
    f = tmp_path / "in.jsonl"
    f.write_text('{"id": "a", "text": "x", "spans": []}\n', encoding="utf-8")
    with pytest.raises(InputError, match="input file"):
        export(f, "jsonl", f, force=True)


@pytest.mark.parametrize("line,problem", [
    ("{bad", ":1: invalid JSON"),
    ('{"id": "a"}', ':1: missing "text"'),
    ('{"id": "a", "text": "abc", "spans": [{"start": 0, "end": 9, "label": "X"}]}', "outside the text"),
    ('{"id": "a", "text": "abc", "spans": [{"start": 0, "end": 2, "label": "X", "text": "bc"}]}', "does not match"),
    ('{"id": "a", "text": "abc", "spans": [{"start": "0", "end": 2, "label": "X"}]}', "must be integers"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys, line: str, problem: str) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(line + "\n", encoding="utf-8")
    assert main(["export", str(f), "--format", "doccano", "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert problem in err and str(f) in err and "Traceback" not in err


def test_cli(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(run_dir), "--format", "prodigy", "--out", str(tmp_path / "p.jsonl"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["format"] == "prodigy" and res["documents"] == 4
    assert main(["export", str(run_dir), "--format", "nope", "--out", str(tmp_path / "n")]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "doccano", "--source", "zzz", "--out", str(tmp_path / "z")]) == 2
    assert "available: claude, gpt, llama" in capsys.readouterr().err
    assert main(["export", "--help"]) == 0
    assert "Example:" in capsys.readouterr().out


# --------------------------------------------------------------------------- property test

_texts = st.text(alphabet=st.sampled_from(list("ab cé東<>&\"'\n")), min_size=1, max_size=30)


@st.composite
def _docs(draw):
    docs = []
    for i in range(draw(st.integers(1, 4))):
        text = draw(_texts)
        spans = set()
        for _ in range(draw(st.integers(0, 4))):
            a = draw(st.integers(0, len(text) - 1))
            b = draw(st.integers(a + 1, len(text)))
            spans.add((a, b, draw(st.sampled_from(["PER", "LOC", "X-Y"]))))
        docs.append(ExportDoc(f"d{i}", text, [ExportSpan(a, b, lab, text[a:b], 0.5) for a, b, lab in sorted(spans)]))
    return docs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_docs())
def test_property_round_trip_json_formats(tmp_path: Path, docs: list[ExportDoc]) -> None:
    from diziner.export.formats import (
        write_argilla,
        write_doccano,
        write_label_studio,
        write_prodigy,
    )

    src = ExportSource(docs, "file", tmp_path / "x.jsonl")
    expected = _expected(src)
    for fmt, writer in (("label-studio", write_label_studio), ("doccano", write_doccano),
                        ("prodigy", write_prodigy), ("argilla", write_argilla)):
        out = tmp_path / f"p.{fmt}"
        writer(src, out)
        assert READERS[fmt](out) == expected, fmt


def test_only_the_doubtful_documents_go_to_review(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from diziner.cli import main

    src = load_source(run_dir)
    scores = sorted({sp.score for d in src.docs for sp in d.spans if sp.score is not None})
    assert len(scores) >= 2  # the fixture has spans of different support
    cut = scores[0]
    low = {d.id for d in src.docs if any(sp.score is not None and sp.score <= cut for sp in d.spans)}
    hot = {d.id for d in src.docs if any(sp.hotspot for sp in d.spans)}
    assert 0 < len(low) < len(src.docs)
    res = export(run_dir, "jsonl", tmp_path / "low.jsonl", max_support=cut)
    got = _read_jsonl_spans(tmp_path / "low.jsonl")
    assert set(got) == low and res["selected_documents"] == len(low) and res["of_documents"] == len(src.docs)
    assert all(got[d] == _expected(src)[d] for d in low)  # every span of a kept document stays
    export(run_dir, "jsonl", tmp_path / "hot.jsonl", hotspots_only=True)
    assert set(_read_jsonl_spans(tmp_path / "hot.jsonl")) == hot
    export(run_dir, "jsonl", tmp_path / "either.jsonl", max_support=cut, hotspots_only=True)
    assert set(_read_jsonl_spans(tmp_path / "either.jsonl")) == low | hot
    assert main(["export", str(run_dir), "-f", "label-studio", "-o", str(tmp_path / "ls.json"),
                 "--max-support", str(cut)]) == 0
    assert f"(the doubtful {len(low)} of {len(src.docs)})" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "ls.json").read_text())) == len(low)
    assert main(["export", str(run_dir), "-f", "jsonl", "-o", str(tmp_path / "x.jsonl"), "--max-support", "2"]) == 2
    assert "--max-support must be within [0, 1]" in capsys.readouterr().err


def test_prodigy_tasks_carry_tokens_and_token_indexes(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, "prodigy", tmp_path / "p.jsonl")
    for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        toks = task["tokens"]
        assert [t["id"] for t in toks] == list(range(len(toks)))
        for t in toks:
            assert task["text"][t["start"]:t["end"]] == t["text"]
        # the text is rebuilt from the tokens and their trailing whitespace flags (single spaces here)
        assert "".join(t["text"] + (" " if t["ws"] else "") for t in toks).strip() == " ".join(task["text"].split())
        for sp in task["spans"]:
            first, last = toks[sp["token_start"]], toks[sp["token_end"]]
            assert first["start"] <= sp["start"] and sp["end"] <= last["end"] and sp["token_start"] <= sp["token_end"]


def test_label_studio_config_matches_the_tasks(run_dir: Path, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from diziner.schema import load_schema

    res = export(run_dir, "label-studio-config", tmp_path / "config.xml")
    root = ET.parse(tmp_path / "config.xml").getroot()
    labels = root.find("Labels")
    text = root.find("Text")
    assert root.tag == "View" and labels.get("name") == "label" and labels.get("toName") == "text"
    assert text.get("name") == "text" and text.get("value") == "$text"
    names = [x.get("value") for x in labels.findall("Label")]
    assert names == load_schema(run_dir / "schema.yaml").label_names == res["labels"]
    export(run_dir, "label-studio", tmp_path / "tasks.json")
    for task in json.loads((tmp_path / "tasks.json").read_text()):
        for r in task["predictions"][0]["result"]:  # every region names the config's controls and labels
            assert r["from_name"] == "label" and r["to_name"] == "text" and r["value"]["labels"][0] in names


def test_conll_export_reads_in_seqeval_with_our_scores(tmp_path: Path) -> None:
    """The CoNLL export as seqeval (its real consumer) reads it: same spans, same strict scores."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    from diziner.corpus.readers import read_corpus
    from diziner.evaluate import evaluate_corpora
    from diziner.export.formats import write_conll

    t1, t2 = "Ada Lovelace met Charles Babbage in London .", "Grace Hopper worked for the US Navy ."

    def src(spans1: list[tuple[str, str]], spans2: list[tuple[str, str]], name: str) -> Path:
        docs = []
        for i, (text, spans) in enumerate(((t1, spans1), (t2, spans2))):
            es = [ExportSpan(text.index(s), text.index(s) + len(s), lab, s) for s, lab in spans]
            docs.append(ExportDoc(f"d{i}", text, es))
        out = tmp_path / f"{name}.conll"
        assert write_conll(ExportSource(docs, "file", out), out)["dropped_overlapping"] == 0
        return out

    gold = src([("Ada Lovelace", "PER"), ("Charles Babbage", "PER"), ("London", "LOC")],
               [("Grace Hopper", "PER"), ("US Navy", "ORG")], "gold")
    # one exact hit in each sentence, a wrong type, a wrong boundary, a miss, a spurious span
    pred = src([("Ada Lovelace", "PER"), ("Charles Babbage", "ORG"), ("met", "LOC")],
               [("Grace Hopper", "PER"), ("Navy", "ORG")], "pred")

    def seqeval_tags(path: Path) -> list[list[str]]:
        sents: list[list[str]] = [[]]
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                sents[-1].append(line.split("\t")[-1])
            elif sents[-1]:
                sents.append([])
        return [s for s in sents if s]

    gt, pt = seqeval_tags(gold), seqeval_tags(pred)
    assert [len(s) for s in gt] == [len(s) for s in pt] == [len(t1.split()), len(t2.split())]
    ours = evaluate_corpora(read_corpus(gold, "conll"), read_corpus(pred, "conll"))
    m = ours["micro"]
    # by hand: 2 correct of 5 predicted, of 5 gold
    assert (m["tp"], m["fp"], m["fn"]) == (2, 3, 3)
    for kw in ({}, {"mode": "strict", "scheme": IOB2}):
        assert precision_score(gt, pt, **kw) == pytest.approx(m["precision"]) == pytest.approx(0.4)
        assert recall_score(gt, pt, **kw) == pytest.approx(m["recall"]) == pytest.approx(0.4)
        assert f1_score(gt, pt, **kw) == pytest.approx(m["f1"])
    report = classification_report(gt, pt, output_dict=True, mode="strict", scheme=IOB2, zero_division=0)
    for label, r in ours["per_label"].items():
        assert report[label]["precision"] == pytest.approx(r["precision"])
        assert report[label]["recall"] == pytest.approx(r["recall"])
        assert report[label]["support"] == r["support"]
