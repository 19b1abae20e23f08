"""Streaming `diziner annotate`: equal to the in-memory path, resumable, never a partial file at a final path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_corpus, marker_responder, refined_with_marker
from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.corpus.model import Document, Span
from diziner.errors import DizinerError, InputError
from diziner.stream import (
    StreamOptions,
    StreamPaths,
    _good_prefix,
    annotate_stream,
    batch_hotspots,
    batched,
)

pytest.importorskip("openai")



def make_docs(n: int, seed: int = 3) -> list[Document]:
    return make_corpus(n, seed, width=4)


def make_pool(srv):
    from diziner.llm.pool import AnnotatorConfig, Pool

    return Pool(annotators=[
        AnnotatorConfig(id=a, backend="openai", model=f"m-{a}", base_url=srv.base_url, max_concurrency=32, timeout_s=60)
        for a in ("a", "b")
    ], global_concurrency=64)


def cli_files(tmp_path: Path, server, guideline, docs, extra: str = "") -> tuple[Path, Path, Path, str]:
    """texts.jsonl, guideline.yaml and a two-annotator pool.yaml (plus ``extra`` lines) for the CLI;
    returns their paths and the pool file's body."""
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    gpath = tmp_path / "guideline.yaml"
    gpath.write_text(guideline.to_yaml())
    pool = tmp_path / "pool.yaml"
    body = "annotators:\n" + "".join(
        f"  - {{id: {a}, backend: openai, model: m-{a}, base_url: '{server.base_url}', max_concurrency: 16}}\n"
        for a in ("a", "b"))
    pool.write_text(body + extra)
    return texts, gpath, pool, body


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name or p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- end to end


def reference_annotation(guideline, docs, pool, cache: Path) -> tuple[dict[str, list[dict]], list[dict]]:
    """What the engine must deliver, computed from its building blocks and not through it: every
    annotator on every document (:func:`annotate_documents`), the analysis of the whole corpus
    (weights, hotspots), the token consensus, the delivered rows. Returns (annotator id -> its
    result lines, consensus rows)."""
    import asyncio

    from diziner.analysis import aggregate, analyze
    from diziner.annotate.runner import annotate_documents
    from diziner.llm.factory import PoolClients
    from diziner.aggregator import delivered_rows

    async def run():
        async with PoolClients.build(pool, cache_path=cache) as pc:
            return await annotate_documents(docs, guideline, {a.id: (pc.annotators[a.id], a.prompt_style)
                                                              for a in pool.annotators})

    runs = asyncio.run(run())
    spans = {a: run.spans_by_doc() for a, run in runs.items()}
    labels = guideline.schema_.label_names
    res = analyze(docs, spans, labels=labels)
    cons = aggregate(docs, spans, res.weights, hotspots=res.hotspots, labels=labels)
    rows, lost = delivered_rows(docs, runs, cons, list(runs))
    assert lost == []
    per = {a: [run.results[d.id].to_json() | {"text": d.text} for d in docs] for a, run in runs.items()}
    return per, rows


def test_streaming_equals_the_analysis_of_the_whole_corpus(server, guideline, tmp_path: Path):
    docs = make_docs(600)
    pool = make_pool(server)
    per, rows = reference_annotation(guideline, docs, pool, tmp_path / "cache.sqlite")
    before = server.counts["requests"]
    got = annotate_stream(guideline, iter(docs), pool, tmp_path / "st" / "out.jsonl", cache_path=tmp_path / "c2.sqlite",
                          quiet=True, options=StreamOptions(batch_size=100, weight_sample=600))
    assert server.counts["requests"] - before == 1200  # every (annotator, document) once
    assert lines(tmp_path / "st" / "out.jsonl") == json.loads(json.dumps(rows))
    for a in ("a", "b"):
        assert lines(tmp_path / "st" / f"out.{a}.jsonl") == json.loads(json.dumps(per[a])), a
    assert got["spans"] == sum(len(r["spans"]) for r in rows) > 0
    assert got["failed"] == {"a": 0, "b": 0}
    assert got["streaming"]["batches_this_run"] == 6
    assert got["usage"]["total"]["calls"] == got["usage_this_run"]["total"]["calls"] == 1200
    assert got["faults"]["documents"] == 1200 and got["faults"]["ok"] == 1200
    assert got["faults"]["calls"]["calls"] == 1200
    cons = lines(tmp_path / "st" / "out.jsonl")
    assert [r["id"] for r in cons] == [d.id for d in docs]
    assert any(s["hotspot"] for r in cons for s in r["spans"])  # the annotators disagree somewhere
    assert leftovers(tmp_path / "st") == []


def test_the_in_memory_path_is_the_engine_with_the_corpus_as_window(server, guideline, tmp_path: Path):
    from diziner.stream import annotate_corpus

    docs = make_docs(250, seed=11)
    pool = make_pool(server)
    per, rows = reference_annotation(guideline, docs, pool, tmp_path / "cache.sqlite")
    summary = annotate_corpus(guideline, docs, pool, tmp_path / "mem" / "out.jsonl", cache_path=tmp_path / "c2.sqlite",
                              quiet=True)
    assert lines(tmp_path / "mem" / "out.jsonl") == json.loads(json.dumps(rows))
    assert lines(tmp_path / "mem" / "out.b.jsonl") == json.loads(json.dumps(per["b"]))
    assert summary["streaming"]["batches_this_run"] == 1
    assert summary["streaming"]["weight_window_documents"] == 250
    assert len(lines(tmp_path / "mem" / "out.ledger.jsonl")) == summary["usage"]["total"]["calls"] == 500


def test_weights_fixed_from_the_window(server, guideline, tmp_path: Path):
    from diziner.analysis import analyze

    docs = make_docs(300, seed=5)
    pool = make_pool(server)
    got = annotate_stream(guideline, iter(docs), pool, tmp_path / "out.jsonl", cache_path=tmp_path / "cache.sqlite",
                          quiet=True, options=StreamOptions(batch_size=50, weight_sample=100))
    # the window is the first two batches; the analysis of their annotations gives the weights
    spans = {a: {r["id"]: [Span(r["id"], s["start"], s["end"], s["label"]) for s in r["spans"]]
                 for r in lines(tmp_path / f"out.{a}.jsonl")[:100]} for a in ("a", "b")}
    res = analyze(docs[:100], spans, labels=guideline.schema_.label_names)
    assert got["weights"] == pytest.approx(res.weights)
    assert got["streaming"]["hotspot_threshold"] == pytest.approx(res.arrays.threshold)
    assert got["streaming"]["weight_window_documents"] == 100
    assert len(lines(tmp_path / "out.jsonl")) == 300


class Boom(Exception):
    pass


def failing_after(docs, n):
    for i, d in enumerate(docs):
        if i == n:
            raise Boom("killed")
        yield d


def test_resume_after_an_interrupted_run(server, guideline, tmp_path: Path):
    docs = make_docs(600, seed=7)
    pool = make_pool(server)
    opts = StreamOptions(batch_size=100, weight_sample=200)
    out = tmp_path / "run" / "out.jsonl"
    with pytest.raises(Boom):
        annotate_stream(guideline, failing_after(docs, 450), pool, out, cache_path=tmp_path / "c.sqlite",
                        quiet=True, options=opts)
    folder = out.parent
    assert not out.exists() and not (folder / "out.a.jsonl").exists()  # never a partial file at a final path
    assert {"out.jsonl.partial", "out.a.jsonl.partial", "out.b.jsonl.partial",
            "out.jsonl.partial-state.json"} <= set(leftovers(folder))
    done = [r["id"] for r in lines(folder / "out.jsonl.partial")]
    assert done == [d.id for d in docs[: len(done)]] and len(done) % 100 == 0 and 200 <= len(done) < 450
    # a run killed mid-write: a torn consensus line, an annotator line of an unfinished document
    with open(folder / "out.jsonl.partial", "a") as fh:
        fh.write('{"id": "d0999", "text": "x", "spa')
    with open(folder / "out.a.jsonl.partial", "a") as fh:
        fh.write(json.dumps({"id": docs[len(done)].id, "status": "ok", "spans": []}) + "\n")

    before = server.counts["requests"]
    got = annotate_stream(guideline, iter(docs), pool, out, cache_path=tmp_path / "c.sqlite", no_cache=True,
                          quiet=True, options=opts)
    assert server.counts["requests"] - before == 2 * (600 - len(done))  # finished documents are skipped
    assert got["streaming"]["resumed_documents"] == len(done)
    assert got["documents"] == 600
    assert leftovers(folder) == []
    # usage: the whole ledger file (both processes) and this process's calls; faults count every document once
    assert got["usage_this_run"]["total"]["calls"] == 2 * (600 - len(done))
    assert got["usage"]["total"]["calls"] == len(lines(folder / "out.ledger.jsonl")) > 2 * (600 - len(done))
    assert got["faults"]["documents"] == 1200 and got["faults"]["ok"] == 1200

    ref = tmp_path / "ref" / "out.jsonl"
    annotate_stream(guideline, iter(docs), pool, ref, cache_path=tmp_path / "c.sqlite", quiet=True, options=opts)
    for name in ("out.jsonl", "out.a.jsonl", "out.b.jsonl"):
        assert lines(folder / name) == lines(ref.parent / name), name
    assert got["spans"] == sum(len(r["spans"]) for r in lines(out))


def test_resume_refuses_a_different_run(server, guideline, tmp_path: Path):
    """Other options, or other annotator params (they decide the requests), are refused; the same run resumes."""
    docs = make_docs(120, seed=8)
    pool = make_pool(server)
    out = tmp_path / "out.jsonl"
    opts = StreamOptions(batch_size=50, weight_sample=50)
    with pytest.raises(Boom):
        annotate_stream(guideline, failing_after(docs, 110), pool, out, cache_path=tmp_path / "c.sqlite", quiet=True,
                        options=opts)
    with pytest.raises(DizinerError, match="different weight_sample"):
        annotate_stream(guideline, iter(docs), pool, out, cache_path=tmp_path / "c.sqlite", quiet=True,
                        options=StreamOptions(batch_size=50, weight_sample=60))
    hotter = pool.model_copy(deep=True)
    hotter.annotators[0].params = {"temperature": 0.7, "seed": 1}
    with pytest.raises(DizinerError, match="different params"):
        annotate_stream(guideline, iter(docs), hotter, out, cache_path=tmp_path / "c.sqlite", quiet=True, options=opts)
    assert not out.exists()
    done = len(lines(out.parent / "out.jsonl.partial"))
    got = annotate_stream(guideline, iter(docs), pool, out, cache_path=tmp_path / "c.sqlite", quiet=True, options=opts)
    assert done > 0 and got["streaming"]["resumed_documents"] == done


def test_duplicate_ids_and_empty_input_are_input_errors(server, guideline, tmp_path: Path):
    pool = make_pool(server)
    docs = make_docs(30)
    with pytest.raises(InputError, match="duplicate document id 'd0003'"):
        annotate_stream(guideline, iter(docs + [docs[3]]), pool, tmp_path / "o.jsonl",
                        cache_path=tmp_path / "c.sqlite", quiet=True, options=StreamOptions(batch_size=10))
    with pytest.raises(InputError, match="no documents"):
        annotate_stream(guideline, iter([]), pool, tmp_path / "e.jsonl", cache_path=tmp_path / "c.sqlite", quiet=True)
    assert not (tmp_path / "e.jsonl").exists()


def test_cli_annotate_streams_a_jsonl_file(server, guideline, tmp_path: Path, capsys):
    from diziner.cli import main

    docs = make_docs(250, seed=11)
    texts, gpath, pool, _ = cli_files(tmp_path, server, guideline, docs)
    out = tmp_path / "res" / "out.jsonl"
    args = ["annotate", "--guideline", str(gpath), "--pool", str(pool), "--texts", str(texts), "--out", str(out),
            "--cache", str(tmp_path / "c.sqlite"), "--batch-size", "64", "--weight-sample", "100", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents"] == 250 and summary["streaming"]["batches_this_run"] == 4
    assert [r["id"] for r in lines(out)] == [d.id for d in docs]
    assert (out.parent / "out.ledger.jsonl").exists()
    assert main(args) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err
    assert main(args[:-1] + ["--force", "--quiet"]) == 0  # served by the cache
    assert main(["annotate", "--help"]) == 0
    assert "Example:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- pure parts


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 60), st.integers(1, 17))
def test_batched_keeps_order_and_sizes(n: int, size: int):
    docs = [Document(f"x{i}", "a b") for i in range(n)]
    out = list(batched(iter(docs), size))
    assert [d for b in out for d in b] == docs
    assert all(len(b) == size for b in out[:-1]) and all(0 < len(b) <= size for b in out)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=8), st.binary(max_size=12))
def test_good_prefix_stops_at_a_torn_line(tmp_path_factory, ids: list[str], tail: bytes):
    path = tmp_path_factory.mktemp("gp") / "f.partial"
    body = "".join(json.dumps({"id": i, "spans": []}) + "\n" for i in ids).encode()
    path.write_bytes(body + tail.replace(b"\n", b""))
    size, rows = _good_prefix(path)
    assert size == len(body) and [r["id"] for r in rows] == ids


def test_batch_hotspots_match_the_analysis():
    from diziner.analysis import analyze

    docs = [Document("a", "Nadia met Ilse in Oslo."), Document("b", "Acme and Zephyr signed."),
            Document("c", "Quiet day.")]

    def sp(doc, word, label):
        i = doc.text.index(word)
        return Span(doc.id, i, i + len(word), label, word)

    A = {"a": [sp(docs[0], "Nadia", "PER"), sp(docs[0], "Oslo", "LOC")], "b": [sp(docs[1], "Acme", "ORG")]}
    B = {"a": [sp(docs[0], "Nadia", "PER"), sp(docs[0], "Oslo", "ORG")], "b": [sp(docs[1], "Zephyr", "ORG")]}
    C = {"a": [sp(docs[0], "Ilse", "PER")], "b": [sp(docs[1], "Acme", "ORG")]}
    ann = {"x": A, "y": B, "z": C}
    labels = ["LOC", "ORG", "PER"]
    res = analyze(docs, ann, labels=labels)
    expect = [(h["document"], h["token_start"], h["token_end"]) for h in res.hotspots]
    assert expect  # the case has disagreement
    got = batch_hotspots(docs, ann, res.weights, labels, res.arrays.threshold)
    assert [(h["document"], h["token_start"], h["token_end"]) for h in got] == expect
    # per batch with the fixed threshold: the union over batches is the same set
    split = batch_hotspots(docs[:1], {k: {"a": v["a"]} for k, v in ann.items()}, res.weights, labels,
                           res.arrays.threshold) + \
        batch_hotspots(docs[1:], {k: {"b": v["b"]} for k, v in ann.items()}, res.weights, labels, res.arrays.threshold)
    assert [(h["document"], h["token_start"], h["token_end"]) for h in split] == expect
    # one annotator, or none with a weight: no hotspots
    assert batch_hotspots(docs, {"x": A}, {"x": 1.0}, labels, None) == []


def test_ledger_keeps_only_totals_when_asked(tmp_path: Path):
    from diziner.llm.ledger import Ledger, summarise

    path = tmp_path / "ledger.jsonl"
    lean, full = Ledger(path, keep_records=False), Ledger()
    for i in range(7):
        fields = {"annotator": "ab"[i % 2], "iteration": None, "tokens_in": 10 * i, "tokens_out": i,
                  "cost_usd": 0.01 if i else None, "cached": i == 3, "ok": i != 5, "ts": float(i)}
        lean.record(**fields)
        full.record(**fields)
    lean.close()
    assert lean.records == []
    assert lean.summary() == full.summary() == summarise(Ledger.read(path))
    assert len(Ledger.read(path)) == 7
    assert lean.summary()["by_annotator"]["a"]["calls"] == 4


def test_paths_and_options():
    p = StreamPaths.of("x/res.jsonl", ["m1", "m2"])
    assert [q.name for q in p.finals()] == ["res.m1.jsonl", "res.m2.jsonl", "res.failed.jsonl", "res.jsonl"]
    assert [q.name for q in p.partials()] == ["res.m1.jsonl.partial", "res.m2.jsonl.partial", "res.failed.jsonl.partial",
                                              "res.jsonl.partial"]
    assert p.ledger.name == "res.ledger.jsonl" and p.state.name == "res.jsonl.partial-state.json"
    for reserved in ("failed", "ledger"):  # their files would overwrite res.failed.jsonl / res.ledger.jsonl
        with pytest.raises(DizinerError, match="reserved"):
            StreamPaths.of("x/res.jsonl", ["m1", reserved])
    assert StreamOptions(batch_size=10).window() == 20
    for bad in (StreamOptions(batch_size=0), StreamOptions(min_support=2.0), StreamOptions(weights="x"),
                StreamOptions(percentile=101), StreamOptions(aggregation="majority")):
        with pytest.raises(DizinerError):
            bad.check()


def test_batch_hotspots_match_the_analysis_on_a_two_annotator_type_confusion_and_a_failed_document():
    # K = 2: a type-only confusion is hot in the analysis (hot score H), and a document one
    # annotator did not answer has no disagreement; the stream's batches must say the same
    from diziner.analysis import analyze

    docs = [Document("a", "Paris Hilton thanked Samsung."), Document("b", "Acme hired Nadia."),
            Document("c", "Rome is old.")]

    def sp(doc, word, label):
        i = doc.text.index(word)
        return Span(doc.id, i, i + len(word), label, word)

    X = {"a": [sp(docs[0], "Paris Hilton", "PER"), sp(docs[0], "Samsung", "ORG")], "b": [sp(docs[1], "Acme", "ORG")],
         "c": [sp(docs[2], "Rome", "LOC")]}
    Y = {"a": [sp(docs[0], "Paris Hilton", "ORG"), sp(docs[0], "Samsung", "ORG")],  # y did not answer "b"
         "c": [sp(docs[2], "Rome", "LOC")]}
    ann = {"x": X, "y": Y}
    labels = ["PER", "ORG", "LOC"]
    res = analyze(docs, ann, labels=labels)
    expect = [(h["document"], h["token_start"], h["token_end"]) for h in res.hotspots]
    assert expect == [("a", 0, 2)]
    got = batch_hotspots(docs, ann, res.weights, labels, res.arrays.threshold)
    assert [(h["document"], h["token_start"], h["token_end"]) for h in got] == expect


def test_the_pool_chooses_the_aggregation_and_the_command_line_wins(server, guideline, tmp_path: Path, capsys):
    from diziner.analysis import aggregate
    from diziner.cli import main
    from diziner.corpus.model import Span

    docs = make_docs(120, seed=5)
    texts, gpath, pool, body = cli_files(tmp_path, server, guideline, docs, "aggregation: union\n")
    common = ["--guideline", str(gpath), "--pool", str(pool), "--texts", str(texts), "--cache", str(tmp_path / "c.sqlite"),
              "--batch-size", "200", "--quiet"]
    assert main(["annotate", *common, "--out", str(tmp_path / "u" / "out.jsonl")]) == 0
    assert main(["annotate", *common, "--out", str(tmp_path / "c" / "out.jsonl"), "--aggregation", "consensus"]) == 0

    def spans(path):
        return {r["id"]: [(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in lines(path)}

    per = {a: {r["id"]: [Span(r["id"], s["start"], s["end"], s["label"], s.get("text", "")) for s in r["spans"]]
               for r in lines(tmp_path / "u" / f"out.{a}.jsonl")} for a in ("a", "b")}
    union = aggregate(docs, per, {"a": 0.5, "b": 0.5}, min_support=0.0, labels=guideline.schema_.label_names)
    got_u, got_c = spans(tmp_path / "u" / "out.jsonl"), spans(tmp_path / "c" / "out.jsonl")
    assert got_u == {d: [(s["start"], s["end"], s["label"]) for s in rows] for d, rows in union.items()}
    n_u, n_c = sum(map(len, got_u.values())), sum(map(len, got_c.values()))
    assert n_u > n_c > 0  # the annotators disagree: the union keeps more than the consensus
    # a name the project does not know is the pool file's one-line error
    pool.write_text(body + "aggregation: majority\n")
    assert main(["annotate", *common, "--out", str(tmp_path / "x" / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "pool.yaml" in err and "unknown aggregation 'majority'" in err and len(err.strip().splitlines()) <= 2


def test_annotate_with_just_a_schema_and_a_dry_run(server, guideline, tmp_path: Path, capsys, examples_dir):
    from diziner.cli import main

    docs = make_docs(40, seed=9)
    texts, gpath, pool, _ = cli_files(tmp_path, server, guideline, docs)  # gpath: examples/schema.yaml's iteration 0
    common = ["--pool", str(pool), "--texts", str(texts), "--cache", str(tmp_path / "c.sqlite"), "--quiet"]
    before = server.counts["requests"]
    assert main(["annotate", "--schema", str(examples_dir / "schema.yaml"), *common, "--out", str(tmp_path / "p.jsonl"),
                 "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["calls"] == 80 and plan["documents"] == 40 and set(plan["annotators"]) == {"a", "b"}
    assert plan["aggregation"] == "consensus" and plan["tokens_in_est"] > 0
    assert server.counts["requests"] == before and not (tmp_path / "p.jsonl").exists()
    assert main(["annotate", "--schema", str(examples_dir / "schema.yaml"), *common, "--out", str(tmp_path / "s.jsonl")]) == 0
    assert main(["annotate", "--guideline", str(gpath), *common, "--out", str(tmp_path / "g.jsonl")]) == 0
    assert lines(tmp_path / "s.jsonl") == lines(tmp_path / "g.jsonl") and len(lines(tmp_path / "s.jsonl")) == 40
    capsys.readouterr()
    for both in (["--schema", str(examples_dir / "schema.yaml"), "--guideline", str(gpath)], []):
        assert main(["annotate", *both, *common, "--out", str(tmp_path / "x.jsonl")]) == 2
        assert "give either --guideline" in capsys.readouterr().err


def test_the_local_ledger_names_the_document_of_each_call(server, guideline, tmp_path: Path):
    """Like the Ray engine's, every record of the local engine's ledger names its document."""
    docs = make_docs(40, seed=17)
    annotate_stream(guideline, iter(docs), make_pool(server), tmp_path / "out.jsonl", cache_path=tmp_path / "c.sqlite",
                    quiet=True, options=StreamOptions(batch_size=16))
    records = lines(tmp_path / "out.ledger.jsonl")
    assert sorted((r["doc_id"], r["annotator"]) for r in records) == sorted((d.id, a) for d in docs for a in ("a", "b"))


# ----------------------------------------------------------------------------- several guidelines

def test_guideline_runs_name_each_annotator_under_each_guideline(guideline):
    from diziner.annotate.runner import guideline_runs
    from diziner.schema import LabelDef

    g3 = refined_with_marker(guideline)
    plan = guideline_runs(["a", "b"], [g3, guideline])
    assert list(plan) == ["a", "b", "a@it0", "b@it0"]
    assert plan["a"] == ("a", g3) and plan["b@it0"] == ("b", guideline)
    same = guideline_runs(["a"], [g3, guideline.model_copy(update={"iteration": 3}), guideline])
    assert list(same) == ["a", "a@g2", "a@it0"]  # two guidelines of iteration 3: by position
    other = guideline.schema_.model_copy(update={"labels": [LabelDef(name="X", definition="x")]})
    with pytest.raises(DizinerError, match="different labels"):
        guideline_runs(["a"], [guideline, guideline.model_copy(update={"schema_": other})])


def test_annotating_with_two_guidelines_unions_the_runs_of_both(guideline, tmp_path: Path):
    """The engine with a second guideline: one file per annotator and guideline, every iteration-0
    request identical to the one the iteration-0 guideline alone makes (served by the cache), and
    the union delivers the spans only the refined guideline's runs found, with support counting runs."""
    from diziner.stream import annotate_corpus
    from diziner.testing.server import TestServer

    docs = make_docs(40, seed=21)
    g3 = refined_with_marker(guideline)
    with TestServer(marker_responder, keep_requests=False) as srv:
        pool = make_pool(srv)
        cache = tmp_path / "c.sqlite"
        alone = annotate_corpus(guideline, docs, pool, tmp_path / "g0" / "out.jsonl", cache_path=cache, quiet=True,
                                aggregation="union")
        before = srv.counts["requests"]
        both = annotate_corpus(g3, docs, pool, tmp_path / "both" / "out.jsonl", cache_path=cache, quiet=True,
                               aggregation="union", also=[guideline])
        assert srv.counts["requests"] - before == 2 * len(docs)  # only the refined guideline's calls are new
    assert both["annotators"] == ["a", "b", "a@it0", "b@it0"] and alone["annotators"] == ["a", "b"]
    for a in ("a", "b"):  # the iteration-0 runs are the iteration-0 guideline's annotations
        assert lines(tmp_path / "both" / f"out.{a}@it0.jsonl") == lines(tmp_path / "g0" / f"out.{a}.jsonl")
    lower = {(r["id"], s["text"]) for a in ("a", "b") for r in lines(tmp_path / "both" / f"out.{a}.jsonl")
             for s in r["spans"] if s["text"].islower()}
    assert lower  # the refined guideline's runs found spans the iteration-0 ones did not
    rows = lines(tmp_path / "both" / "out.jsonl")
    delivered = {(r["id"], s["text"]): s for r in rows for s in r["spans"]}
    assert lower <= set(delivered)
    assert {a for s in delivered.values() for a in s["support"]["annotators"]} == {"a", "b", "a@it0", "b@it0"}
    some = delivered[sorted(lower)[0]]
    assert set(some["support"]["annotators"]) <= {"a", "b"}  # found by the refined runs only
    g0_rows = {(r["id"], s["text"]) for r in lines(tmp_path / "g0" / "out.jsonl") for s in r["spans"]}
    assert g0_rows <= set(delivered)  # nothing the iteration-0 union delivered is lost


def test_cli_annotate_with_two_guidelines(guideline, tmp_path: Path, capsys):
    """``--guideline`` twice: the runs of both guidelines beside each other; a guideline of another
    schema is a one-line error and nothing is written."""
    from diziner.cli import main
    from diziner.schema import LabelDef
    from diziner.testing.server import TestServer

    docs = make_docs(30, seed=4)
    with TestServer(marker_responder, keep_requests=False) as srv:
        texts, g0path, pool, _ = cli_files(tmp_path, srv, guideline, docs)
        g3path = tmp_path / "refined.yaml"
        g3path.write_text(refined_with_marker(guideline).to_yaml())
        out = tmp_path / "res" / "out.jsonl"
        base = ["annotate", "--guideline", str(g3path), "--guideline", str(g0path), "--pool", str(pool),
                "--texts", str(texts), "--cache", str(tmp_path / "c.sqlite")]
        assert main(base + ["--out", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["annotators"] == ["a", "b", "a@it0", "b@it0"]
        assert all((out.parent / f"out.{r}.jsonl").is_file() for r in summary["annotators"])
        assert main(base + ["--out", str(tmp_path / "dry.jsonl"), "--dry-run"]) == 0
        assert json.loads(capsys.readouterr().out)["calls"] == 2 * 2 * len(docs)
        other = guideline.schema_.model_copy(update={"labels": [*guideline.schema_.labels,
                                                                LabelDef(name="X", definition="x")]})
        bad = tmp_path / "other.yaml"
        bad.write_text(guideline.model_copy(update={"schema_": other}).to_yaml())
        assert main(["annotate", "--guideline", str(g0path), "--guideline", str(bad), "--pool", str(pool),
                     "--texts", str(texts), "--out", str(tmp_path / "x.jsonl")]) == 2
        err = capsys.readouterr().err.strip()
        assert "different labels" in err and "\n" not in err
    assert not (tmp_path / "x.jsonl").exists()
