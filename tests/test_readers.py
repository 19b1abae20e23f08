"""Readers, writers and `diziner inspect` (including every kind of bad input)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diziner.cli import main
from diziner.corpus.model import AnnotatedCorpus, Document, Span
from diziner.corpus.readers import detect_format, iter_documents, problem_kind, read_corpus, read_info
from diziner.corpus.writers import atomic_write_text, write_conll, write_jsonl
from diziner.errors import DizinerError, InputError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


# --------------------------------------------------------------------------- conll

CONLL = "-DOCSTART-\tO\n\nAda\tB-PER\nLovelace\tI-PER\nwrote\tO\n\nIn\tO\nLondon\tB-LOC\n\n-DOCSTART-\tO\n\nHi\tO\n"


def test_conll_basic(tmp_path):
    p = write(tmp_path, "news.tsv", CONLL)
    c, info = read_info(p)
    assert info["format"] == "conll" and info["scheme"] == "bio"
    assert [d.id for d in c.documents] == ["news:0", "news:1", "news:2"]
    assert [d.text for d in c.documents] == ["Ada Lovelace wrote", "In London", "Hi"]
    assert c.documents[0].tokens == [(0, 3), (4, 12), (13, 18)]
    assert [d.metadata["group"] for d in c.documents] == [0, 0, 1]
    assert c.groups == 2
    assert c.spans_of("news:0") == [Span("news:0", 0, 12, "PER", "Ada Lovelace")]
    assert c.spans_of("news:1") == [Span("news:1", 3, 9, "LOC", "London")]
    assert c.problems == []


def test_conll_space_separated_multi_column_no_trailing_blank(tmp_path):
    p = write(tmp_path, "x.conll", "EU NNP B-ORG\nrejects VBZ O\nGerman JJ B-MISC\r\ncall NN O")
    c = read_corpus(p)
    assert c.groups is None
    assert c.documents[0].text == "EU rejects German call"
    assert [(s.text, s.label) for s in c.all_spans()] == [("EU", "ORG"), ("German", "MISC")]


def test_conll_keeps_dataset_tokenisation(tmp_path):
    p = write(tmp_path, "t.tsv", "U.S.-based\tB-MISC\nfirm\tO\n")
    d = read_corpus(p).documents[0]
    assert d.token_texts == ["U.S.-based", "firm"]


def test_conll_empty_token_and_whitespace_line(tmp_path):
    p = write(tmp_path, "btc.test", "@\tB-PER\nbob\tB-PER\n \n\tO\nhi\tO\n\nyo\tO\n")
    c = read_corpus(p)
    assert len(c.documents) == 3  # the whitespace-only line splits a sentence
    assert c.documents[1].text == "hi"
    assert [s.text for s in c.all_spans()] == ["@", "bob"]
    kinds = sorted(problem_kind(x) for x in c.problems)
    assert kinds == ["empty-token", "whitespace-line"]
    assert any(":4: empty-token" in x for x in c.problems)


def test_conll_repairs_counted(tmp_path):
    p = write(tmp_path, "r.tsv", "a\tB-X\nb\tO\nc\tI-X\nd\tI-X\n")
    c = read_corpus(p)
    assert [s.text for s in c.all_spans()] == ["a", "c d"]
    assert len(c.problems) == 1 and problem_kind(c.problems[0]) == "repaired-tags"
    assert ":3:" in c.problems[0]


def test_conll_iob1_detected_without_problems(tmp_path):
    p = write(tmp_path, "i.tsv", "a\tI-X\nb\tI-X\nc\tB-X\nd\tO\ne\tI-Y\n")
    c, info = read_info(p)
    assert info["scheme"] == "iob1" and c.problems == []
    assert [(s.text, s.label) for s in c.all_spans()] == [("a b", "X"), ("c", "X"), ("e", "Y")]


@pytest.mark.parametrize(
    "scheme,tags",
    [
        ("iobes", ["B-X", "E-X", "S-Y", "O"]),
        ("bilou", ["B-X", "L-X", "U-Y", "O"]),
        ("iob1", ["I-X", "I-X", "I-Y", "O"]),
    ],
)
def test_conll_other_schemes(tmp_path, scheme, tags):
    p = write(tmp_path, "s.tsv", "".join(f"w{i}\t{t}\n" for i, t in enumerate(tags)))
    c, info = read_info(p)
    assert info["scheme"] == scheme
    assert [(s.text, s.label) for s in c.all_spans()] == [("w0 w1", "X"), ("w2", "Y")]
    assert c.problems == []
    assert read_corpus(p, scheme=scheme).all_spans() == c.all_spans()


@pytest.mark.parametrize(
    "content,line,fragment",
    [
        ("a\tB-X\nb\tO\tx\n", 2, "3 columns, but line 1 has 2"),
        ("a\tB-X\nb\tPERSON\n", 2, "not a BIO-like tag"),
        ("a\tB-X\nlonely\n", 2, "expected a token and a tag"),
        (b"a\tO\nb\xff\xfe\tO\n", 2, "not UTF-8"),
        ("   \n\n", None, "file is empty"),
        ("-DOCSTART-\tO\n\n", None, "no sentences"),
    ],
)
def test_conll_errors(tmp_path, content, line, fragment):
    p = write(tmp_path, "bad.tsv", content)
    with pytest.raises(InputError) as ei:
        read_corpus(p, "conll")
    assert fragment in ei.value.problem
    assert ei.value.line == line
    assert ei.value.path == str(p)


# --------------------------------------------------------------------------- jsonl


def test_jsonl_forms(tmp_path):
    lines = [
        {"id": "a", "text": "Ada met Bob", "spans": [{"start": 0, "end": 3, "label": "PER", "text": "Ada"}]},
        {"id": "b", "text": "Bob in Rome", "entities": [{"start_offset": 7, "end_offset": 11, "label": "LOC"}]},
        {"text": "Rome and Paris", "label": [[0, 4, "LOC"], [9, 14, "LOC"]], "status": "ok"},
        {"id": 7, "text": "x", "tokens": [[0, 1]], "spans": []},
    ]
    p = write(tmp_path, "pred.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    c = read_corpus(p)
    assert [d.id for d in c.documents] == ["a", "b", "pred:2", "7"]
    assert c.spans_of("b") == [Span("b", 7, 11, "LOC", "Rome")]
    assert [s.text for s in c.spans_of("pred:2")] == ["Rome", "Paris"]
    assert c.documents[2].metadata["status"] == "ok"
    assert c.documents[3].tokens == [(0, 1)]


@pytest.mark.parametrize(
    "line,fragment",
    [
        ('{"id": "a", "text": "abc", "spans": [{"start": 0, "end": 9, "label": "X"}]}', "out of range"),
        ('{"id": "a", "text": "abc", "spans": [{"start": 2, "end": 1, "label": "X"}]}', "out of range"),
        ('{"id": "a", "text": "abc", "spans": [{"start": 0, "end": 2, "label": "X", "text": "bc"}]}', "does not match"),
        ('{"id": "a", "text": "abc", "spans": [{"start": "0", "end": 2, "label": "X"}]}', "must be an integer"),
        ('{"id": "a", "text": "abc", "spans": [{"start": 0, "end": 2}]}', "needs"),
        ('{"id": "a", "text": "abc", "spans": [{"start": 0, "end": 2, "label": ""}]}', "label"),
        ('{"id": "a", "spans": []}', '"text"'),
        ('{"id": "a", "text": "abc"', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id": "a", "text": "abc", "label": [[0, 1]]}', "[start, end, label]"),
        ('{"id": "a", "text": "abc", "tokens": [[2, 1]]}', "token"),
    ],
)
def test_jsonl_errors(tmp_path, line, fragment):
    p = write(tmp_path, "bad.jsonl", '{"id": "ok", "text": "fine"}\n' + line + "\n")
    with pytest.raises(InputError) as ei:
        read_corpus(p)
    assert fragment in ei.value.problem
    assert ei.value.line == 2


def test_json_pathological(tmp_path):
    deep = "[" * 100000 + "]" * 100000
    for name, content in [("deep.jsonl", deep), ("deep.json", "[" + deep + "]"), ("big.jsonl", '{"text": "a", "id": ' + "1" * 5000 + "}")]:
        with pytest.raises(InputError, match="invalid JSON"):
            read_corpus(write(tmp_path, name, content))


def test_jsonl_duplicate_id(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(InputError, match="duplicate document id"):
        read_corpus(p)


# --------------------------------------------------------------------------- genia, text


GENIA = [
    {"sentence": ["IL-2", "gene", "expression"], "ner": [{"index": [0, 1], "type": "DNA"}, {"index": [0], "type": "protein"}]},
    {"sentence": ["T", "cells"], "ner": [{"index": [1, 0], "type": "cell_type"}]},
]


def test_genia_nested(tmp_path):
    p = write(tmp_path, "g.json", "[" + ",\n".join(json.dumps(r) for r in GENIA) + "]\n")
    c = read_corpus(p)
    assert detect_format(p) == "genia"
    assert c.documents[0].text == "IL-2 gene expression"
    assert c.spans_of("g:0") == [Span("g:0", 0, 4, "protein", "IL-2"), Span("g:0", 0, 9, "DNA", "IL-2 gene")]
    assert c.spans_of("g:1") == [Span("g:1", 0, 7, "cell_type", "T cells")]


@pytest.mark.parametrize(
    "content,line,fragment",
    [
        ('[{"sentence": ["a", "b"], "ner": []},\n{"sentence": ["a"], "ner": [{"index": [3], "type": "X"}]}]', 2, "out of range"),
        ('[{"sentence": ["a", "b", "c"], "ner": [{"index": [0, 2], "type": "X"}]}]', 1, "not contiguous"),
        ('[{"sentence": "a b", "ner": []}]', 1, '"sentence"'),
        ('[{"sentence": ["a"], "ner": [{"index": [0]}]}]', 1, '"index"'),
        ('[{"sentence": ["a"], "ner": []},\n{"sentence": ["a"], "ner": [}]', 2, "invalid JSON"),
        ('[{"sentence": ["a"], "ner": []}', 1, "unterminated"),
        ('[{"sentence": ["a"], "ner": []}] x', 1, "extra data"),
        ("[]", None, "no sentence records"),
        ('[{"sentence": ["a"], "ner": []} {"sentence": ["b"]}]', 1, "expected ','"),
    ],
)
def test_genia_errors(tmp_path, content, line, fragment):
    p = write(tmp_path, "bad.json", content)
    with pytest.raises(InputError) as ei:
        read_corpus(p)
    assert fragment in ei.value.problem
    assert ei.value.line == line


def test_text_format(tmp_path):
    p = write(tmp_path, "notes.txt", "First line here.\n\nSecond, with punctuation!\n")
    c, info = read_info(p)
    assert info["format"] == "text"
    assert [d.text for d in c.documents] == ["First line here.", "Second, with punctuation!"]
    assert [d.id for d in c.documents] == ["notes:0", "notes:1"]
    assert c.all_spans() == []


def test_format_override_and_unknown(tmp_path):
    p = write(tmp_path, "x.txt", "a\tO\n")
    assert read_corpus(p, "text").documents[0].text == "a\tO"
    assert read_corpus(p).documents[0].text == "a"
    with pytest.raises(DizinerError, match="unknown format"):
        read_corpus(p, "xml")
    with pytest.raises(DizinerError, match="unknown tag scheme"):
        read_corpus(p, scheme="io")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_corpus(tmp_path / "nope.tsv")
    with pytest.raises(InputError, match="directory"):
        read_corpus(tmp_path)


def test_iter_documents_streams(tmp_path):
    p = write(tmp_path, "s.tsv", "a\tO\n\nb\tB-X\n")
    it = iter_documents(p)
    doc, spans = next(it)
    assert doc.text == "a" and spans == []


# --------------------------------------------------------------------------- writers


def test_write_conll_round_trip_and_dropped(tmp_path):
    src = write(tmp_path, "in.tsv", CONLL)
    c = read_corpus(src)
    out = tmp_path / "out.tsv"
    assert write_conll(c, out) == 0
    c2 = read_corpus(out)
    assert [d.text for d in c2.documents] == [d.text for d in c.documents]
    assert [s.key()[1:] for s in c2.all_spans()] == [s.key()[1:] for s in c.all_spans()]
    assert c2.groups == 2
    # iobes output reads back the same
    write_conll(c, out, scheme="iobes")
    assert "S-LOC" in out.read_text() and read_corpus(out).all_spans() == c2.all_spans()
    # nested spans: one is dropped and counted
    d = Document("n", "IL-2 gene", None)
    nested = AnnotatedCorpus([d], {"n": [d.span(0, 4, "protein"), d.span(0, 9, "DNA")]})
    assert write_conll(nested, out) == 1
    assert out.read_text() == "IL-2\tB-DNA\ngene\tI-DNA\n\n"


def test_write_jsonl_round_trip_with_extra_fields(tmp_path):
    d = Document("a", "Ada in Rome", None)
    sp = d.span(7, 11, "LOC")
    c = AnnotatedCorpus([d], {"a": [sp]})
    out = tmp_path / "o.jsonl"
    n = write_jsonl(c, out, span_fields={sp.key(): {"support": {"annotators": ["m1"], "weight": 0.5}}},
                    doc_fields={"a": {"status": "ok"}}, include_tokens=True)
    assert n == 1
    rec = json.loads(out.read_text())
    assert rec["spans"][0]["support"]["weight"] == 0.5 and rec["status"] == "ok"
    assert rec["tokens"] == [[0, 3], [4, 6], [7, 11]]
    c2 = read_corpus(out)
    assert c2.all_spans() == [sp] and c2.documents[0].tokens == d.tokens


def test_atomic_write_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "x")
    atomic_write_text(p, "y")
    assert p.read_text() == "y" and sorted(x.name for x in p.parent.iterdir()) == ["f.txt"]


# --------------------------------------------------------------------------- robustness


@given(st.binary(max_size=300), st.sampled_from([None, "conll", "jsonl", "text", "genia"]),
       st.sampled_from(["x.tsv", "x.jsonl", "x.json", "x.txt"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_readers_only_raise_input_error_on_random_bytes(tmp_path, data, fmt, name):
    p = tmp_path / name
    p.write_bytes(data)
    try:
        read_corpus(p, fmt)
    except InputError:
        pass


line_st = st.one_of(
    st.just(""), st.just(" "), st.just("-DOCSTART- O"),
    st.builds(lambda a, b: f"{a}\t{b}", st.text(max_size=4), st.sampled_from(["O", "B-X", "I-X", "E-Y", "S-Y", "L-X", "U-X", "X", ""])),
    st.builds(lambda a, b, c: f"{a} {b} {c}", st.text("ab", max_size=3), st.text("NV", max_size=2), st.sampled_from(["O", "B-X", "I-Y"])),
    st.builds(json.dumps, st.fixed_dictionaries({"text": st.text(max_size=6)}, optional={
        "id": st.one_of(st.text(max_size=2), st.integers(), st.none()),
        "spans": st.lists(st.fixed_dictionaries({"start": st.integers(-2, 8), "end": st.integers(-2, 8), "label": st.sampled_from(["X", "", 3])}), max_size=2),
        "label": st.lists(st.lists(st.integers(0, 5), max_size=3), max_size=2),
    })),
    st.text(max_size=10),
)


@given(st.lists(line_st, max_size=12), st.sampled_from([None, "conll", "jsonl", "text", "genia"]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_readers_only_raise_input_error_on_random_lines(tmp_path, lines, fmt):
    p = tmp_path / "lines.txt"
    p.write_bytes(
        "\n".join(lines).encode("utf-8", "surrogatepass")
    )
    try:
        c = read_corpus(p, fmt)
    except InputError:
        return
    for d in c.documents:
        for s in c.spans_of(d.id):
            assert 0 <= s.start < s.end <= len(d.text) and s.text == d.text[s.start:s.end]


# --------------------------------------------------------------------------- CLI


def test_cli_inspect_json(tmp_path, capsys):
    p = write(tmp_path, "n.tsv", CONLL)
    assert main(["inspect", str(p), "--json"]) == 0
    out = capsys.readouterr().out
    stats = json.loads(out)
    assert stats["documents"] == 2 and stats["sentences"] == 3 and stats["tokens"] == 6
    assert stats["mentions"] == 2 and stats["labels"] == {"LOC": 1, "PER": 1} and stats["problems"] == 0


def test_cli_inspect_table_and_quiet(tmp_path, capsys):
    p = write(tmp_path, "n.tsv", CONLL)
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "mentions" in out and "PER" in out
    assert main(["inspect", str(p), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "name,content,expect",
    [
        ("cols.tsv", "a\tB-X\nb\tO\tx\n", "cols.tsv:2: 3 columns"),
        ("tag.tsv", "a\tFOO\n", "tag.tsv:1: tag 'FOO' is not a BIO-like tag"),
        ("bytes.tsv", b"a\tO\n\xff\tO\n", "bytes.tsv:2: bytes that are not UTF-8"),
        ("empty.tsv", "", "empty.tsv: file is empty"),
        ("bad.jsonl", '{"text": "ab"}\n{"text": \n', "bad.jsonl:2: invalid JSON"),
        ("off.jsonl", '{"text": "ab", "spans": [{"start": 0, "end": 5, "label": "X"}]}\n', "off.jsonl:1: span offsets"),
        ("mis.jsonl", '{"text": "ab", "spans": [{"start": 0, "end": 1, "label": "X", "text": "b"}]}\n', "mis.jsonl:1: span text"),
        ("g.json", '[{"sentence": ["a"], "ner": [{"index": [1], "type": "X"}]}]', "g.json:1: token id out of range"),
    ],
)
def test_cli_inspect_bad_input_one_line_exit_2(tmp_path, capsys, name, content, expect):
    p = write(tmp_path, name, content)
    assert main(["inspect", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expect in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_inspect_missing_file_and_bad_format(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "none.tsv")]) == 2
    assert "no such file" in capsys.readouterr().err
    p = write(tmp_path, "n.tsv", CONLL)
    assert main(["inspect", str(p), "--format", "xml"]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_cli_inspect_help_has_example(capsys):
    assert main(["inspect", "--help"]) == 0
    assert "Example:" in capsys.readouterr().out
