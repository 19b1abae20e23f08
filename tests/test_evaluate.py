"""Strict span scores, views, corpus alignment, `diziner evaluate`, and equality with seqeval."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from diziner.cli import main
from diziner.corpus.bio import bio_to_spans, spans_to_bio
from diziner.corpus.model import AnnotatedCorpus, Document, Span
from diziner.corpus.readers import read_corpus
from diziner.errors import DizinerError
from diziner.evaluate import align_corpora, evaluate_corpora, match_spans, prf, score_spans, score_views

GOLD = [
    Span("d1", 0, 3, "PER"),
    Span("d1", 4, 8, "LOC"),
    Span("d1", 10, 14, "ORG"),
    Span("d2", 0, 5, "PER"),
]
PRED = [
    Span("d1", 0, 3, "PER"),  # correct
    Span("d1", 4, 8, "ORG"),  # relabelled
    Span("d1", 10, 13, "ORG"),  # boundary shifted
    Span("d2", 0, 5, "PER"),  # correct
    Span("d2", 6, 9, "MISC"),  # spurious, label not in gold
]


def test_prf_zero_division():
    assert prf(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert prf(1, 2, 4) == {"precision": 0.5, "recall": 0.25, "f1": pytest.approx(1 / 3)}


def test_score_spans_hand_computed():
    r = score_spans(GOLD, PRED)
    m = r["micro"]
    assert (m["tp"], m["fp"], m["fn"]) == (2, 3, 2)
    assert m["precision"] == 0.4 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    pl = r["per_label"]
    assert list(pl) == ["LOC", "MISC", "ORG", "PER"]
    assert pl["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "tp": 2, "fp": 0, "fn": 0}
    assert pl["ORG"]["precision"] == 0.0 and pl["ORG"]["fp"] == 2 and pl["ORG"]["support"] == 1
    assert pl["MISC"]["support"] == 0 and pl["MISC"]["fp"] == 1
    # macro over labels present in gold (LOC, ORG, PER): MISC is not averaged in
    assert r["macro"]["labels"] == 3
    for k in ("precision", "recall", "f1"):
        assert r["macro"][k] == pytest.approx(1 / 3)


def test_score_spans_duplicates_count_once_and_empty():
    r = score_spans(GOLD + GOLD[:1], PRED + PRED[:1])
    assert r["micro"]["tp"] == 2 and r["micro"]["fp"] == 3
    e = score_spans([], [])
    assert e["micro"]["f1"] == 0.0 and e["macro"]["labels"] == 0 and e["per_label"] == {}


def test_views_hand_computed():
    v = score_views(GOLD, PRED)
    assert (v["strict"]["correct"], v["strict"]["incorrect"], v["strict"]["spurious"], v["strict"]["missed"]) == (2, 2, 1, 0)
    assert v["strict"]["precision"] == 0.4 and v["strict"]["recall"] == 0.5
    assert (v["exact"]["correct"], v["exact"]["incorrect"]) == (3, 1)
    assert v["exact"]["precision"] == 0.6 and v["exact"]["recall"] == 0.75
    assert (v["partial"]["correct"], v["partial"]["partial"]) == (3, 1)
    assert v["partial"]["precision"] == pytest.approx(0.7) and v["partial"]["recall"] == pytest.approx(0.875)
    assert (v["type"]["correct"], v["type"]["incorrect"]) == (3, 1)
    assert v["type"]["precision"] == 0.6 and v["type"]["recall"] == 0.75


def test_match_spans_is_one_to_one():
    gold = [Span("d", 0, 10, "A")]
    pred = [Span("d", 0, 4, "A"), Span("d", 5, 10, "A"), Span("d", 0, 10, "B")]
    pairs = match_spans(gold, pred)
    assert (gold[0], Span("d", 0, 10, "B")) in pairs  # same boundaries beat same label
    assert sum(1 for g, p in pairs if g is None) == 2
    v = score_views(gold, pred)
    assert v["exact"]["correct"] == 1 and v["exact"]["spurious"] == 2 and v["type"]["incorrect"] == 1


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(1, 5), st.sampled_from("ABC")), max_size=15),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(1, 5), st.sampled_from("ABC")), max_size=15))
@settings(max_examples=200, deadline=None)
def test_strict_view_equals_score_spans(g, p):
    gold = [Span(f"d{d}", s, s + n, lab) for d, s, n, lab in g]
    pred = [Span(f"d{d}", s, s + n, lab) for d, s, n, lab in p]
    r = score_spans(gold, pred)["micro"]
    v = score_views(gold, pred)["strict"]
    assert v["precision"] == pytest.approx(r["precision"]) and v["recall"] == pytest.approx(r["recall"])
    assert v["correct"] == r["tp"]
    for view in score_views(gold, pred).values():
        assert view["correct"] + view["incorrect"] + view["partial"] + view["missed"] == len(set(gold))
        assert view["correct"] + view["incorrect"] + view["partial"] + view["spurious"] == len(set(pred))


# --------------------------------------------------------------------------- seqeval equality


def doc_of(words: list[str], doc_id: str) -> Document:
    toks, pos = [], 0
    for w in words:
        toks.append((pos, pos + len(w)))
        pos += len(w) + 1
    return Document(doc_id, " ".join(words), toks)


tag_st = st.lists(st.lists(st.sampled_from(["O", "O", "B-A", "I-A", "B-B", "I-B"]), min_size=1, max_size=10), min_size=1, max_size=6)


@given(tag_st, tag_st)
@settings(max_examples=200, deadline=None)
def test_micro_equals_seqeval_on_random_bio(gt, pt):
    n = min(len(gt), len(pt))
    gt, pt = gt[:n], [p[: len(g)] + ["O"] * (len(g) - len(p)) for g, p in zip(gt[:n], pt[:n])]
    docs = [doc_of([f"w{i}" for i in range(len(g))], f"s{k}") for k, g in enumerate(gt)]
    gold = [s for d, t in zip(docs, gt) for s in bio_to_spans(d, t)]
    pred = [s for d, t in zip(docs, pt) for s in bio_to_spans(d, t)]
    m = score_spans(gold, pred)["micro"]
    assert m["precision"] == precision_score(gt, pt, zero_division=0)
    assert m["recall"] == recall_score(gt, pt, zero_division=0)
    assert m["f1"] == f1_score(gt, pt, zero_division=0)


def raw_tag_sentences(path: Path) -> list[list[str]]:
    """An independent minimal CoNLL tag reader (empty-token lines skipped, as the corpus reader does)."""
    sents: list[list[str]] = []
    cur: list[str] = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            if cur:
                sents.append(cur)
                cur = []
            continue
        tok, tag = line.split("\t")
        if tok == "-DOCSTART-" or not tok.strip():
            continue
        cur.append(tag)
    if cur:
        sents.append(cur)
    return sents


def perturb(corpus: AnnotatedCorpus, labels: list[str], seed: int) -> list[Span]:
    """Drop, relabel, shift boundaries of gold entities and add spurious ones."""
    rng = random.Random(seed)
    out: list[Span] = []
    for d in corpus.documents:
        toks = d.tokens or []
        for s in corpus.spans_of(d.id):
            x = rng.random()
            if x < 0.15:
                continue  # dropped
            if x < 0.30:
                others = [lab for lab in labels if lab != s.label] or [s.label]
                out.append(d.span(s.start, s.end, rng.choice(others)))
            elif x < 0.45:
                ends = [e for _, e in toks if e > s.start]
                i = next(k for k, e in enumerate(ends) if e == s.end)
                j = min(len(ends) - 1, i + 1) if rng.random() < 0.5 or i == 0 else i - 1
                out.append(d.span(s.start, ends[j], s.label))
            else:
                out.append(s)
        if toks and rng.random() < 0.2:
            ts, te = toks[rng.randrange(len(toks))]
            out.append(d.span(ts, te, rng.choice(labels)))
    return out


FLAT = [
    "crossner_ai/test.txt",
    "broad_twitter_corpus/btc.test",
    "anatem/devel.tsv",
    "jnlpba/test.tsv",
]


@pytest.mark.benchmarks
@pytest.mark.parametrize("rel", FLAT)
def test_micro_equals_seqeval_on_shared_benchmarks(shared_benchmarks, rel):
    path = shared_benchmarks / rel
    gold_c = read_corpus(path)
    raw = raw_tag_sentences(path)
    assert len(raw) == len(gold_c.documents)
    labels = sorted({s.label for s in gold_c.all_spans()})
    pred = perturb(gold_c, labels, seed=len(rel))
    by_doc: dict[str, list[Span]] = {}
    for s in pred:
        by_doc.setdefault(s.doc_id, []).append(s)
    pred_tags, kept = [], []
    for d in gold_c.documents:
        tags, dropped = spans_to_bio(d, by_doc.get(d.id, []))
        pred_tags.append(tags)
        kept += [s for s in set(by_doc.get(d.id, [])) if s not in set(dropped)]
    r = score_spans(gold_c.all_spans(), kept)
    assert 0.3 < r["micro"]["f1"] < 0.9
    assert r["micro"]["precision"] == precision_score(raw, pred_tags)
    assert r["micro"]["recall"] == recall_score(raw, pred_tags)
    assert r["micro"]["f1"] == f1_score(raw, pred_tags)
    rep = classification_report(raw, pred_tags, output_dict=True, zero_division=0)
    for lab, row in r["per_label"].items():
        assert row["precision"] == pytest.approx(rep[lab]["precision"], abs=1e-12)
        assert row["recall"] == pytest.approx(rep[lab]["recall"], abs=1e-12)
        assert row["f1"] == pytest.approx(rep[lab]["f1-score"], abs=1e-12)
        assert row["support"] == rep[lab]["support"]
    assert r["macro"]["f1"] == pytest.approx(rep["macro avg"]["f1-score"], abs=1e-12)


# --------------------------------------------------------------------------- corpora


def corpus(docs: list[tuple[str, str]], spans: list[Span]) -> AnnotatedCorpus:
    ds = [Document(i, t) for i, t in docs]
    by: dict[str, list[Span]] = {}
    for s in spans:
        by.setdefault(s.doc_id, []).append(s)
    return AnnotatedCorpus(ds, by)


def test_align_by_id_order_and_errors():
    g = corpus([("a", "Ada here"), ("b", "Bob there")], [Span("a", 0, 3, "PER"), Span("b", 0, 3, "PER")])
    p = corpus([("b", "Bob there"), ("a", "Ada here")], [Span("b", 0, 3, "PER")])
    r = evaluate_corpora(g, p)
    assert r["matched_by"] == "id" and r["micro"]["recall"] == 0.5 and r["documents"] == 2
    # same texts, other ids -> by order, pred spans re-keyed to gold ids
    p2 = corpus([("x:0", "Ada here"), ("x:1", "Bob there")], [Span("x:1", 0, 3, "PER")])
    r2 = evaluate_corpora(g, p2, views=True)
    assert r2["matched_by"] == "order" and r2["micro"]["tp"] == 1 and "views" in r2
    # subset: only the gold documents pred has
    p3 = corpus([("a", "Ada here")], [Span("a", 0, 3, "PER")])
    with pytest.raises(DizinerError, match="1 gold ids not in pred"):
        evaluate_corpora(g, p3)
    assert evaluate_corpora(g, p3, subset=True)["micro"]["f1"] == 1.0
    # different texts
    p4 = corpus([("a", "Ada HERE"), ("b", "Bob there")], [])
    with pytest.raises(DizinerError, match="different texts"):
        align_corpora(g, p4)
    with pytest.raises(DizinerError, match="by order"):
        align_corpora(g, p3, by="order")
    with pytest.raises(DizinerError, match="unknown document matching"):
        align_corpora(g, p, by="magic")


CONLL_G = "Ada\tB-PER\nLovelace\tI-PER\nwrote\tO\n\nIn\tO\nLondon\tB-LOC\n"
CONLL_P = "Ada\tB-PER\nLovelace\tO\nwrote\tO\n\nIn\tO\nLondon\tB-LOC\n"


def test_cli_evaluate_json_conll_by_order(tmp_path, capsys):
    g = tmp_path / "gold.tsv"
    p = tmp_path / "pred.tsv"
    g.write_text(CONLL_G)
    p.write_text(CONLL_P)
    assert main(["evaluate", "--gold", str(g), "--pred", str(p), "--json", "--views"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) >= {"micro", "macro", "per_label", "views"}
    assert r["matched_by"] == "order"
    assert r["micro"]["precision"] == 0.5 and r["micro"]["recall"] == 0.5
    assert r["per_label"]["LOC"]["f1"] == 1.0 and r["per_label"]["PER"]["support"] == 1
    assert r["views"]["partial"]["partial"] == 1
    assert main(["evaluate", "--gold", str(g), "--pred", str(p), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == "0.5000"
    assert main(["evaluate", "--gold", str(g), "--pred", str(p)]) == 0
    assert "micro" in capsys.readouterr().out


def test_cli_evaluate_jsonl_pred_by_id(tmp_path, capsys):
    g = tmp_path / "gold.tsv"
    g.write_text(CONLL_G)
    p = tmp_path / "pred.jsonl"
    p.write_text(json.dumps({"id": "gold:1", "text": "In London", "spans": [{"start": 3, "end": 9, "label": "LOC"}]}) + "\n")
    assert main(["evaluate", "-g", str(g), "-p", str(p), "--json", "--subset"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["micro"]["f1"] == 1.0 and r["documents"] == 1


def test_cli_evaluate_errors_one_line(tmp_path, capsys):
    g = tmp_path / "gold.tsv"
    g.write_text(CONLL_G)
    p = tmp_path / "pred.tsv"
    p.write_text("Other\tO\n")
    assert main(["evaluate", "--gold", str(g), "--pred", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gold and pred documents do not match") and err.count("\n") == 1
    p.write_text("x\tB-\n")
    assert main(["evaluate", "--gold", str(g), "--pred", str(p)]) == 2
    err = capsys.readouterr().err
    assert "pred.tsv:1:" in err and err.count("\n") == 1
    assert main(["evaluate", "--help"]) == 0
    assert "Example:" in capsys.readouterr().out


def test_texts_that_look_identical_say_where_they_differ():
    from diziner.corpus.model import AnnotatedCorpus, Document
    from diziner.evaluate import align_corpora

    g = AnnotatedCorpus([Document("a", "Ada Lovelace met Grace Hopper in London.")], {"a": []}, [], None)
    p = AnnotatedCorpus([Document("a", "Ada Lovelace\u00a0met Grace Hopper in London.")], {"a": []}, [], None)
    with pytest.raises(DizinerError) as e:
        align_corpora(g, p)
    msg = e.value.one_line()
    assert "first difference at character 12" in msg
    assert "U+0020 SPACE" in msg and "U+00A0 NO-BREAK SPACE" in msg
    short = AnnotatedCorpus([Document("a", "Ada Lovelace met Grace Hopper in London")], {"a": []}, [], None)
    with pytest.raises(DizinerError, match=r"pred '.*London' has end of text"):
        align_corpora(g, short)
