"""`diziner annotate --engine ray`: the local engine's output on a local Ray runtime (2 CPUs) and the
scripted OpenAI-compatible server; resumable; a killed worker loses and duplicates nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_corpus, marker_responder, refined_with_marker

from diziner.corpus.model import Document
from diziner.errors import ConfigError, DizinerError, InputError
from diziner.stream import StreamOptions, annotate_stream
from diziner.testing.faults import title_word_responder

ANNOTATORS = ("a", "b", "c")


def make_docs(n: int, seed: int = 3) -> list[Document]:
    return make_corpus(n, seed, width=5)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def outputs(folder: Path, ids=ANNOTATORS) -> dict[str, list[dict]]:
    return {name: lines(folder / name) for name in ["out.jsonl", "out.failed.jsonl", *(f"out.{a}.jsonl" for a in ids)]}


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory) -> Path:
    """Exists = disarmed; a test removes it to have one Ray worker killed at its 150th result."""
    marker = tmp_path_factory.mktemp("kill") / "killed"
    marker.touch()
    return marker


@pytest.fixture(scope="module")
def ray_runtime(kill_marker):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data.llm")
    env = {"DIZINER_TEST_KILL_AT": "ray_postprocess:150", "DIZINER_TEST_KILL_ONCE": str(kill_marker)}
    os.environ.update(env)  # the workers inherit the environment of the runtime started here
    try:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield ray
    finally:
        ray.shutdown()
        for k in env:
            os.environ.pop(k, None)


def make_pool(srv, ids=ANNOTATORS, **extra):
    from diziner.llm.pool import AnnotatorConfig, Pool

    return Pool(annotators=[AnnotatorConfig(id=a, backend="openai", model=f"m-{a}", base_url=srv.base_url,
                                            max_concurrency=32, timeout_s=60, **extra.get(a, {})) for a in ids])


PRICED = {a: {"price": {"input_per_mtok": 1.0 + i, "output_per_mtok": 4.0}} for i, a in enumerate(ANNOTATORS)}
USAGE_KEYS = ("calls", "ok", "failed", "cached", "tokens_in", "tokens_out", "unknown_cost_calls", "retries",
              "failures_by_kind", "cost_complete")


def same_usage(got: dict, ref: dict) -> None:
    """The figures of two ledger summaries that do not depend on timing."""
    for scope in ("total", *sorted(ref["by_annotator"])):
        g = got["total"] if scope == "total" else got["by_annotator"][scope]
        r = ref["total"] if scope == "total" else ref["by_annotator"][scope]
        assert {k: g[k] for k in USAGE_KEYS} == {k: r[k] for k in USAGE_KEYS}, scope
        assert g["cost_usd"] == (None if r["cost_usd"] is None else pytest.approx(r["cost_usd"], rel=1e-9)), scope
    assert sorted(got["by_purpose"]) == sorted(ref["by_purpose"]) and sorted(got["by_iteration"]) == sorted(ref["by_iteration"])


def run_both(guideline, docs, pool, tmp_path: Path, *, opts: StreamOptions, ray_kwargs: dict | None = None):
    from diziner.scale import RayOptions, annotate_ray

    local = annotate_stream(guideline, iter(docs), pool, tmp_path / "local" / "out.jsonl", quiet=True, options=opts,
                            no_cache=True, cache_path=tmp_path / "cache.sqlite")
    got = annotate_ray(guideline, iter(docs), pool, tmp_path / "ray" / "out.jsonl", quiet=True, options=opts,
                       ray_options=RayOptions(**(ray_kwargs or {})))
    return local, got


# ----------------------------------------------------------------------------- same output as the local engine


def test_ray_engine_equals_the_local_engine_on_10000_documents(ray_runtime, server, guideline, tmp_path: Path):
    docs = make_docs(10_000)
    pool = make_pool(server)
    before = server.counts["requests"]
    local, got = run_both(guideline, docs, pool, tmp_path, opts=StreamOptions(batch_size=256),
                          ray_kwargs={"shard_size": 4000})
    # each engine: every (annotator, document) once; a request that timed out on a loaded machine
    # was retried, and the ledger counts it, so every request the server saw is accounted for
    lu, gu = local["usage"]["total"], got["usage"]["total"]
    assert lu["calls"] == gu["calls"] == 3 * 10_000 and lu["failed"] == gu["failed"] == 0
    assert server.counts["requests"] - before == lu["calls"] + lu["retries"] + gu["calls"] + gu["retries"]
    ref, res = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    for name in ref:
        assert res[name] == ref[name], name
    assert len(res["out.jsonl"]) == 10_000 and any(s["hotspot"] for r in res["out.jsonl"] for s in r["spans"])
    assert got["weights"] == pytest.approx(local["weights"])
    assert got["streaming"]["hotspot_threshold"] == pytest.approx(local["streaming"]["hotspot_threshold"])
    for key in ("documents", "spans", "failed", "failed_documents", "flagged_documents"):
        assert got[key] == local[key], key
    assert got["ray"]["shards"] == 4  # the 512-document weight window, then 4000 + 4000 + 1488
    assert len(lines(tmp_path / "ray" / "out.ledger.jsonl")) == 3 * 10_000 == got["usage"]["total"]["calls"]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted([*ref, "out.ledger.jsonl"])  # no work folder


def test_failed_calls_are_recorded_per_annotator_as_the_local_engine_does(ray_runtime, server, guideline, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    from diziner.llm.pool import AnnotatorConfig, Pool

    pool = make_pool(server, ("a", "b"))
    pool = Pool(annotators=[*pool.annotators, AnnotatorConfig(id="c", backend="openai", model="m-c", base_url=dead,
                                                              max_retries=0, timeout_s=5)])
    docs = make_docs(300, seed=7)
    local, got = run_both(guideline, docs, pool, tmp_path, opts=StreamOptions(batch_size=100))
    ref, res = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    assert res == ref
    assert all(r["status"] == "failed" and "connection refused" in r["reason"] for r in res["out.c.jsonl"])
    assert got["failed"] == local["failed"] == {"a": 0, "b": 0, "c": 300}
    assert got["streaming"]["usable_annotators"] == ["a", "b"]


def test_a_batch_mixing_documents_with_and_without_a_call_sends_only_real_bodies(ray_runtime, guideline, tmp_path):
    """Ray Data batches rows as Arrow tables, which give every row the union of the keys: the
    payload of a document that needs no call must not turn into a request full of nulls, and a
    real body must not carry the no-call marker (a hosted API refuses unknown arguments)."""
    from diziner.scale import RayOptions, annotate_ray
    from diziner.scale.stages import SKIP
    from diziner.testing.server import TestServer

    docs = [Document(f"d{i}", "   " if i % 3 == 1 else f"Nadia Berg {i} met Acme in Oslo.") for i in range(30)]
    with TestServer(title_word_responder) as srv:
        pool = make_pool(srv, ("a", "b"))
        got = annotate_ray(guideline, iter(docs), pool, tmp_path / "ray" / "out.jsonl", quiet=True,
                           options=StreamOptions(batch_size=30), ray_options=RayOptions(), no_cache=True,
                           cache_path=tmp_path / "cache.sqlite")
        bodies = [r["json"] for r in srv.requests]
    real = sum(1 for d in docs if d.text.strip())
    assert len(bodies) == 2 * real == got["usage"]["total"]["calls"]
    for body in bodies:
        assert SKIP not in body and None not in body.values() and body["model"] in ("m-a", "m-b")


# ----------------------------------------------------------------------------- faults and resume


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(ray_runtime, server, guideline, tmp_path, kill_marker):
    docs = make_docs(1500, seed=9)
    pool = make_pool(server)
    kill_marker.unlink()  # arm: the first worker to reach its 150th result is SIGKILLed
    before = server.counts["requests"]
    try:
        local, got = run_both(guideline, docs, pool, tmp_path, opts=StreamOptions(batch_size=100),
                              ray_kwargs={"shard_size": 500})
    finally:
        killed = kill_marker.exists()
        kill_marker.touch()
    assert killed, "no worker was killed"
    ref, res = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    assert [r["id"] for r in res["out.jsonl"]] == [d.id for d in docs]
    for name in ref:
        assert res[name] == ref[name], name
    # Ray ran the killed postprocess task again on the stage's answers (kept in the object store): no call
    # was made twice, and the ledger has each (document, annotator) call once, from the rows that reached the driver
    records = lines(tmp_path / "ray" / "out.ledger.jsonl")
    assert [(r["doc_id"], r["annotator"]) for r in records] == [(d.id, a) for d in docs for a in ANNOTATORS]
    assert server.counts["requests"] - before == 2 * len(records) == 2 * 3 * 1500  # the local engine's, and these
    same_usage(got["usage"], local["usage"])


class Boom(Exception):
    pass


def test_an_interrupted_run_resumes_from_its_finished_shards(ray_runtime, server, guideline, tmp_path):
    from diziner.scale import RayOptions, annotate_ray

    docs = make_docs(1300, seed=13)
    pool = make_pool(server)
    opts = StreamOptions(batch_size=100)
    ropts = RayOptions(shard_size=400)

    def failing(n):
        for i, d in enumerate(docs):
            if i == n:
                raise Boom("driver interrupted")
            yield d

    out = tmp_path / "ray" / "out.jsonl"
    with pytest.raises(Boom):  # the window (200) and shards 1-2 are written, shard 3 is not
        annotate_ray(guideline, failing(1100), pool, out, quiet=True, options=opts, ray_options=ropts)
    assert not out.exists() and len(list((tmp_path / "ray" / "out.jsonl.ray").glob("part-*[0-9].jsonl"))) == 3
    with pytest.raises(DizinerError, match="different shard_size"):  # a changed run is refused, not mixed
        annotate_ray(guideline, iter(docs), pool, out, quiet=True, options=opts, ray_options=RayOptions(shard_size=300))
    hotter = pool.model_copy(deep=True)
    hotter.annotators[0].params = {"temperature": 0.7, "seed": 1}
    with pytest.raises(DizinerError, match="different params"):  # other params make other requests
        annotate_ray(guideline, iter(docs), hotter, out, quiet=True, options=opts, ray_options=ropts)
    before = server.counts["requests"]
    got = annotate_ray(guideline, iter(docs), pool, out, quiet=True, options=opts, ray_options=ropts)
    assert server.counts["requests"] - before == 3 * (1300 - 1000)  # only the unfinished documents
    assert got["ray"]["resumed_shards"] == 3 and got["documents"] == 1300
    annotate_stream(guideline, iter(docs), pool, tmp_path / "local" / "out.jsonl", quiet=True, options=opts,
                    no_cache=True, cache_path=tmp_path / "c.sqlite")
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")


def test_the_driver_holds_at_most_one_shard_of_documents(ray_runtime, server, guideline, tmp_path):
    from diziner.scale import RayOptions, annotate_ray

    docs = make_docs(1200, seed=17)
    work = tmp_path / "out.jsonl.ray"
    lead = []

    def watched():
        for i, d in enumerate(docs):
            written = sum(json.loads(p.read_text())["documents"] for p in work.glob("stats-*.json"))
            lead.append(i - written)
            yield d

    annotate_ray(guideline, watched(), make_pool(server), tmp_path / "out.jsonl", quiet=True,
                 options=StreamOptions(batch_size=100), ray_options=RayOptions(shard_size=300))
    assert max(lead) <= 300  # documents read but not yet written: at most one shard (or the 200-document window)
    assert len(lines(tmp_path / "out.jsonl")) == 1200


def test_cli_reads_parquet_and_writes_parquet_shards(ray_runtime, server, guideline, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from diziner.cli import main

    docs = make_docs(450, seed=21)
    texts = tmp_path / "texts.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": d.id, "body": d.text} for d in docs]), texts)
    gpath = tmp_path / "guideline.yaml"
    gpath.write_text(guideline.to_yaml())
    pool = tmp_path / "pool.yaml"
    pool.write_text("annotators:\n" + "".join(
        f"  - {{id: {a}, backend: openai, model: m-{a}, base_url: '{server.base_url}', max_concurrency: 16}}\n"
        for a in ANNOTATORS))
    out = tmp_path / "res"
    common = ["annotate", "--guideline", str(gpath), "--pool", str(pool), "--texts", str(texts), "--text-field", "body",
              "--batch-size", "100", "--json"]
    assert main([*common, "--out", str(out), "--engine", "ray", "--output-format", "parquet", "--shard-size", "200",
                 "--cache", str(tmp_path / "ray-cache.sqlite")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents"] == 450 and summary["ray"]["shards"] == 3
    assert summary["usage"]["total"]["calls"] == 3 * 450 == len(lines(tmp_path / "res.ledger.jsonl"))  # JSONL beside
    assert (tmp_path / "ray-cache.sqlite").exists()
    assert main([*common, "--out", str(tmp_path / "local.jsonl"), "--no-cache", "--cache", str(tmp_path / "c.sqlite")]) == 0
    capsys.readouterr()
    parts = sorted(out.glob("part-*[0-9].parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    rows = [r for p in parts for r in pq.read_table(p).to_pylist()]
    ref = lines(tmp_path / "local.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in ref]
    assert [[(s["start"], s["end"], s["label"], s["support"]["weight"]) for s in r["spans"]] for r in rows] == \
           [[(s["start"], s["end"], s["label"], s["support"]["weight"]) for s in r["spans"]] for r in ref]
    assert sorted(p.name for p in out.glob("part-00000.*")) == [
        "part-00000.a.parquet", "part-00000.b.parquet", "part-00000.c.parquet", "part-00000.failed.parquet",
        "part-00000.parquet"]


# ----------------------------------------------------------------------------- pool file: vllm-engine


VLLM_POOL = """\
annotators:
  - id: qwen
    backend: vllm-engine
    model: Qwen/Qwen2.5-7B-Instruct
    engine_kwargs: {max_model_len: 8192, gpu_memory_utilization: 0.9}
    replicas: 4
    gpus: 2
    params: {temperature: 0.0, max_tokens: 512}
  - id: llama
    backend: vllm-engine
    model: meta-llama/Llama-3.1-8B-Instruct
    prompt_style: fewshot
  - id: hosted
    backend: openai
    model: gpt-4o-mini
    base_url: http://127.0.0.1:8000/v1
"""


def test_vllm_engine_annotators_become_vllm_processor_configs(tmp_path, guideline):
    pytest.importorskip("ray.data.llm")
    from diziner.llm.pool import load_pool
    from diziner.scale import processors as P
    from diziner.scale.stages import AnnotatorSpec, engine_request, first_request

    path = tmp_path / "pool.yaml"
    path.write_text(VLLM_POOL)
    pool = load_pool(path)
    specs = [AnnotatorSpec(i, a, pool.ids, guideline) for i, a in enumerate(pool.annotators)]
    qwen = P.vllm_config(specs[0], batch_size=64)
    assert qwen.model_source == "Qwen/Qwen2.5-7B-Instruct" and qwen.concurrency == 4 and qwen.batch_size == 64
    assert {k: v for k, v in qwen.engine_kwargs.items() if k != "task_type"} == {
        "max_model_len": 8192, "gpu_memory_utilization": 0.9, "tensor_parallel_size": 2}
    assert qwen.chat_template_stage["enabled"] is True and qwen.placement_group_config is None
    llama = P.vllm_config(specs[1], batch_size=64)
    assert llama.engine_kwargs["tensor_parallel_size"] == 1 and llama.concurrency == 1
    assert llama.chat_template_stage["enabled"] is False  # a few-shot prompt goes to the completion path, untemplated
    http = P.http_config(specs[2], batch_size=32)
    assert http.url == "http://127.0.0.1:8000/v1/chat/completions" and http.max_retries == 0

    doc = Document("x", "Nadia met Acme in Oslo.")
    row = engine_request(specs[0], first_request(specs[0], doc))
    assert row["messages"][-1]["content"].endswith("Nadia met Acme in Oslo.") or "Nadia met Acme" in json.dumps(row)
    # the pool's params are defaults under the request's own (as ManagedClient.effective)
    assert row["sampling_params"]["temperature"] == 0.0 and row["sampling_params"]["max_tokens"] > 0
    assert json.loads(row["sampling_params"]["structured_outputs"]["json"])["type"] == "object"
    assert "prompt" in engine_request(specs[1], first_request(specs[1], doc))
    assert engine_request(specs[0], first_request(specs[0], Document("e", "  "))) ["no_call"] is True

    # the engine's answer goes through the local engine's parsing and grounding
    from diziner.scale.stages import FinishEngine

    answer = json.dumps({"mentions": [{"text": "Oslo", "label": guideline.schema_.label_names[0]}]})
    got = json.loads(FinishEngine(specs[0])({"seq": 0, "id": "x", "text": doc.text, "generated_text": answer})["ann_0"])
    assert got["status"] == "ok" and [(s["start"], s["end"]) for s in got["spans"]] == [(18, 22)] and got["calls"] == 1
    bad = json.loads(FinishEngine(specs[0])({"seq": 0, "id": "x", "text": doc.text, "generated_text": "no json"})["ann_0"])
    assert bad["status"] == "failed" and "one call per document" in bad["reason"]  # a re-ask has no endpoint

    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ConfigError, match="needs vLLM"):
            P.build(specs[0], batch_size=64)


def test_a_cpu_replica_reserves_cpus_not_gpus_and_the_light_stages_their_share(tmp_path, guideline):
    """gpus: 0 = vLLM's CPU build: each replica is one bundle of `cpus` CPUs (no GPU asked for), and the
    chat-template, tokenize and detokenize actors reserve the engine's stage share, so that a small node
    (2 CPUs) holds the whole pipeline instead of waiting on its own actors."""
    pytest.importorskip("ray.data.llm")
    from diziner.llm.pool import load_pool
    from diziner.scale import processors as P
    from diziner.scale.stages import AnnotatorSpec

    path = tmp_path / "pool.yaml"
    path.write_text("annotators:\n  - {id: q, backend: vllm-engine, model: m, gpus: 0, cpus: 2, replicas: 3,\n"
                    "     engine_kwargs: {kv_cache_memory_bytes: 1073741824}}\n")
    spec = AnnotatorSpec(0, load_pool(path).annotators[0], ["q"], guideline)
    cfg = P.vllm_config(spec, batch_size=8, stage_num_cpus=0.25)
    [bundle] = cfg.placement_group_config["bundles"]
    assert bundle["CPU"] == 2.0 and not bundle.get("GPU") and cfg.concurrency == 3
    assert cfg.engine_kwargs["tensor_parallel_size"] == 1 and cfg.accelerator_type is None
    for stage in (cfg.chat_template_stage, cfg.tokenize_stage, cfg.detokenize_stage):
        assert stage["num_cpus"] == 0.25 and stage["enabled"] is True
    # that Ray then schedules the replica on CPUs alone is run for real in tests/test_vllm_engine.py


@pytest.mark.parametrize("style", ["chat", "fewshot"])
def test_engine_rows_of_one_annotator_survive_arrow_as_one_batch(tmp_path, guideline, style):
    """Ray Data carries a batch of rows as one Arrow table: a key one row lacks comes back as None
    in it (vLLM's SamplingParams(temperature=None) then fails the whole batch), and dicts are merged
    field by field. So a document that needs no call has the same keys as a real one (its prompt on
    the annotator's own path), and the JSON schema travels as a string."""
    pa = pytest.importorskip("pyarrow")
    from diziner.llm.pool import AnnotatorConfig
    from diziner.scale.stages import AnnotatorSpec, PrepareEngine, engine_request, first_request

    cfg = AnnotatorConfig(id="q", backend="vllm-engine", model="m", prompt_style=style,
                          params={"temperature": 0.0, "repetition_penalty": 1.1})
    spec = AnnotatorSpec(0, cfg, ["q"], guideline)
    rows = [engine_request(spec, first_request(spec, Document(i, t))) for i, t in
            (("a", "Nadia met Acme in Oslo."), ("b", "  "), ("c", "Paris."))]
    assert [r["no_call"] for r in rows] == [False, True, False]
    prepare = PrepareEngine(spec)  # what the workers run: the one-token row built once, the same each time
    assert [prepare({"id": i, "text": t}) for i, t in (("b", "  "), ("a", "Nadia met Acme in Oslo."), ("d", ""))] == [
        rows[1], rows[0], rows[1]]
    back = pa.Table.from_pylist(rows).to_pylist()
    for sent, got in zip(rows, back):
        assert set(got) == set(sent) and None not in got.values()
        sampling = {k: v for k, v in got["sampling_params"].items() if k != "structured_outputs"}
        assert None not in sampling.values() and sampling == {k: v for k, v in sent["sampling_params"].items()
                                                              if k != "structured_outputs"}
    assert back[1]["sampling_params"]["max_tokens"] == 1 and not back[1]["sampling_params"].get("structured_outputs")
    schema = json.loads(back[0]["sampling_params"]["structured_outputs"]["json"])
    assert schema == first_request(spec, Document("a", "x")).json_schema


@pytest.mark.parametrize("extra, problem", [
    ("    gpus: 0\n    engine_kwargs: {tensor_parallel_size: 2}\n", "a CPU replica .gpus: 0. is one process"),
    ("    gpus: 0\n    accelerator_type: H100\n", "accelerator_type is for GPU replicas"),
    ("    cpus: 0\n", "greater than 0"),
    ("    base_url: http://127.0.0.1:8000/v1\n", "takes no base_url"),
    ("    engine_kwargs: {tensor_parallel_size: 2}\n    gpus: 4\n", r"gpus \(4\) must equal"),
    ("    engine_kwargs: {tensor_parallel_size: two}\n", "must be integers"),
])
def test_bad_vllm_engine_entries_are_one_line_errors(tmp_path, extra, problem):
    from diziner.llm.pool import load_pool

    path = tmp_path / "pool.yaml"
    path.write_text("annotators:\n  - id: q\n    backend: vllm-engine\n    model: m\n" + extra)
    with pytest.raises(InputError, match=problem) as e:
        load_pool(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_engine_fields_are_refused_on_other_backends_and_the_local_engine_names_the_ray_engine(tmp_path):
    from diziner.llm.factory import make_adapter
    from diziner.llm.pool import load_pool

    path = tmp_path / "pool.yaml"
    path.write_text("annotators:\n  - {id: h, backend: openai, model: m, base_url: 'http://127.0.0.1:1/v1', replicas: 2}\n")
    with pytest.raises(InputError, match="only for backend 'vllm-engine'"):
        load_pool(path)
    path.write_text("annotators:\n  - {id: q, backend: vllm-engine, model: m}\n")
    with pytest.raises(ConfigError, match="--engine ray"):
        make_adapter(load_pool(path).annotators[0])


# ----------------------------------------------------------------------------- light and optional


def test_import_diziner_and_the_cli_do_not_import_ray():
    code = "import sys, diziner, diziner.cli, diziner.scale, diziner.aggregator; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_parquet_reader_reads_rows_like_jsonl_records(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from diziner.corpus.readers import detect_format, iter_documents

    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "Ada in Paris.", "id": None}, {"text": "Bob.", "id": "b7"}]), path)
    docs = [d for d, _ in iter_documents(path)]
    assert detect_format(path) == "parquet"
    assert [(d.id, d.text) for d in docs] == [("docs:0", "Ada in Paris."), ("b7", "Bob.")]
    with pytest.raises(InputError, match='no "body" column'):
        list(iter_documents(path, text_field="body"))
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(iter_documents(bad))


def test_aggregator_state_round_trips_and_refuses_to_predict_unfitted(guideline):
    from diziner.aggregator import Aggregator

    labels = guideline.schema_.label_names
    with pytest.raises(DizinerError, match="not fitted"):
        Aggregator(labels).predict([], {})
    state = {"usable": ["a", "b"], "weights": {"a": 0.6, "b": 0.4}, "threshold": 0.5}
    assert Aggregator(labels).load_state(state).state() == state


def test_unusable_first_answers_are_asked_again_with_the_local_retry_policy(ray_runtime, server, guideline, tmp_path):
    from diziner.scale import RayOptions, annotate_ray
    from diziner.testing.server import Faults, TestServer

    docs = make_docs(200, seed=23)
    opts = StreamOptions(batch_size=100)
    annotate_stream(guideline, iter(docs), make_pool(server), tmp_path / "local" / "out.jsonl", quiet=True,
                    options=opts, no_cache=True, cache_path=tmp_path / "c.sqlite")
    faults = Faults(sequence=["truncated", "malformed", "500", "503", "close"] * 8)
    with TestServer(title_word_responder, faults=faults, keep_requests=False) as flaky:
        pool = make_pool(flaky, **{a: {"max_retries": 3} for a in ANNOTATORS})
        for a in pool.annotators:
            a.timeout_s = 5
        annotate_ray(guideline, iter(docs), pool, tmp_path / "ray" / "out.jsonl", quiet=True, options=opts,
                     ray_options=RayOptions())
        assert flaky.counts["requests"] >= 3 * 200 + 40  # the 40 faulty answers were asked again
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")


# ----------------------------------------------------------------------------- the per-call ledger, cache, budget


def test_the_ledger_records_every_call_once_in_input_order_and_usage_equals_the_local_engines(
        ray_runtime, server, guideline, tmp_path):
    from diziner.llm.ledger import Ledger, summarise
    from diziner.scale import RayOptions, annotate_ray

    docs = make_docs(600, seed=29)
    pool = make_pool(server, **PRICED)
    opts = StreamOptions(batch_size=100)
    local = annotate_stream(guideline, iter(docs), pool, tmp_path / "local" / "out.jsonl", quiet=True, options=opts,
                            no_cache=True, cache_path=tmp_path / "c.sqlite")
    before = server.counts["requests"]
    got = annotate_ray(guideline, iter(docs), pool, tmp_path / "ray" / "out.jsonl", quiet=True, options=opts,
                       ray_options=RayOptions(shard_size=250))
    made = server.counts["requests"] - before
    records = lines(tmp_path / "ray" / "out.ledger.jsonl")
    assert len(records) == made == 3 * 600
    # one record per (document, annotator), in input order, then annotator order: a stable file
    assert [(r["doc_id"], r["annotator"]) for r in records] == [(d.id, a) for d in docs for a in ANNOTATORS]
    assert all(r["ok"] and not r["cached"] and r["backend"] == "openai" and r["purpose"] == "annotate"
               and r["cost_usd"] > 0 and r["latency_s"] > 0 for r in records)
    ref = Ledger.read(tmp_path / "local" / "out.ledger.jsonl")
    assert sorted((r["doc_id"], r["annotator"], r["model"], r["tokens_in"], r["tokens_out"]) for r in records) == \
           sorted((r.doc_id, r.annotator, r.model, r.tokens_in, r.tokens_out) for r in ref)  # both name the document
    same_usage(got["usage"], local["usage"])
    assert got["usage"] == summarise(Ledger.read(tmp_path / "ray" / "out.ledger.jsonl"))
    assert got["faults"] == local["faults"] and got["faults"]["documents"] > 0  # the same faults section
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())


def test_a_resumed_run_keeps_the_finished_shards_ledger_and_records_each_call_once(
        ray_runtime, server, guideline, tmp_path, monkeypatch):
    from diziner.scale import RayOptions, annotate_ray
    from diziner.scale.engine import Shards

    docs = make_docs(900, seed=37)
    pool = make_pool(server, **PRICED)
    opts, ropts = StreamOptions(batch_size=100), RayOptions(shard_size=300)  # shards of 200, 300, 300, 100
    out = tmp_path / "ray" / "out.jsonl"
    write = Shards.write

    def dies_at_shard_2(self, k, *args):
        if k == 2:
            raise Boom("driver killed after shard 2 was annotated")
        return write(self, k, *args)

    monkeypatch.setattr(Shards, "write", dies_at_shard_2)
    before = server.counts["requests"]
    with pytest.raises(Boom):
        annotate_ray(guideline, iter(docs), pool, out, quiet=True, options=opts, ray_options=ropts)
    assert server.counts["requests"] - before == 3 * 800  # shard 2's calls were made, its rows never written
    monkeypatch.setattr(Shards, "write", write)
    work = tmp_path / "ray" / "out.jsonl.ray"
    kept = [(work / f"part-{k:05d}.ledger.jsonl").read_text() for k in (0, 1)]
    assert [len(x.splitlines()) for x in kept] == [3 * 200, 3 * 300]
    assert not (work / "part-00002.ledger.jsonl").exists()

    before = server.counts["requests"]
    got = annotate_ray(guideline, iter(docs), pool, out, quiet=True, options=opts, ray_options=ropts)
    assert server.counts["requests"] - before == 3 * 400 == got["usage_this_run"]["total"]["calls"]  # this run's
    assert got["usage"]["total"]["calls"] == 3 * 900  # the whole ledger: the kept shards' calls and this run's
    assert got["faults"]["documents"] == 3 * 900 and got["faults"]["calls"]["calls"] == 3 * 900
    text = (tmp_path / "ray" / "out.ledger.jsonl").read_text()
    assert text.startswith(kept[0] + kept[1])  # the finished shards' records, kept as they were
    records = [json.loads(x) for x in text.splitlines()]
    assert [(r["doc_id"], r["annotator"]) for r in records] == [(d.id, a) for d in docs for a in ANNOTATORS]
    assert got["ray"]["resumed_shards"] == 2 and got["documents"] == 900


def test_retried_first_calls_are_one_record_each_with_the_stage_attempt_among_its_retries(
        ray_runtime, guideline, tmp_path):
    from diziner.scale import RayOptions, annotate_ray
    from diziner.testing.server import Faults, TestServer

    docs = make_docs(200, seed=41)
    faults = Faults(sequence=["500", "503", "close", "malformed"] * 10)
    with TestServer(title_word_responder, faults=faults, keep_requests=False) as flaky:
        pool = make_pool(flaky, **{a: {"max_retries": 3} for a in ANNOTATORS})
        got = annotate_ray(guideline, iter(docs), pool, tmp_path / "out.jsonl", quiet=True,
                           options=StreamOptions(batch_size=100), ray_options=RayOptions())
        made = flaky.counts["requests"]
    usage = got["usage"]["total"]
    assert usage["calls"] == 3 * 200 and usage["failed"] == 0 and got["failed"] == {a: 0 for a in ANNOTATORS}
    assert usage["retries"] == 40 and made == usage["calls"] + usage["retries"]  # every request is in the ledger
    records = lines(tmp_path / "out.ledger.jsonl")
    assert sum(sum(r["retries"].values()) for r in records) == 40 and len(records) == 600


def test_the_response_cache_works_on_ray_and_is_shared_with_the_local_engine(ray_runtime, server, guideline, tmp_path):
    from diziner.scale import RayOptions, annotate_ray

    docs = make_docs(300, seed=31)
    pool = make_pool(server, **PRICED)
    opts = StreamOptions(batch_size=100)
    cache = tmp_path / "cache.sqlite"

    def ray_run(name: str, **kw):
        before = server.counts["requests"]
        got = annotate_ray(guideline, iter(docs), pool, tmp_path / name / "out.jsonl", quiet=True, options=opts,
                           ray_options=RayOptions(shard_size=100), **kw)
        return got["usage"]["total"], server.counts["requests"] - before

    usage, made = ray_run("cold", cache_path=cache)
    assert made == 900 and usage["calls"] == 900 and usage["cached"] == 0
    usage, made = ray_run("warm", cache_path=cache)
    assert made == 0 and usage["calls"] == usage["cached"] == 900 and usage["cost_usd"] == 0
    assert all(r["cached"] for r in lines(tmp_path / "warm" / "out.ledger.jsonl"))
    assert outputs(tmp_path / "warm") == outputs(tmp_path / "cold")
    before = server.counts["requests"]  # the local engine finds what the Ray workers stored, and the other way round
    local = annotate_stream(guideline, iter(docs), pool, tmp_path / "local" / "out.jsonl", quiet=True, options=opts,
                            cache_path=cache)
    assert server.counts["requests"] == before and local["usage"]["total"]["cached"] == 900
    usage, made = ray_run("refresh", cache_path=cache, no_cache=True)  # --no-cache: no lookups, answers stored
    assert made == 900 and usage["cached"] == 0
    usage, made = ray_run("uncached")  # no cache named: none used
    assert made == 900 and usage["cached"] == 0


def test_a_budget_stops_the_ray_run_between_shards_and_the_run_resumes(ray_runtime, server, guideline, tmp_path):
    from diziner.errors import BudgetExceeded
    from diziner.scale import RayOptions, annotate_ray

    docs = make_docs(500, seed=43)
    pool = make_pool(server, **PRICED)
    opts, ropts = StreamOptions(batch_size=100), RayOptions(shard_size=150)  # shards of 200, 150, 150
    out = tmp_path / "out.jsonl"
    before = server.counts["requests"]
    with pytest.raises(BudgetExceeded, match="budget of \\$0.0000 reached before any shard"):
        annotate_ray(guideline, iter(docs), pool, out, quiet=True, options=opts, ray_options=ropts, budget_usd=0)
    assert server.counts["requests"] == before
    with pytest.raises(BudgetExceeded, match="after shard 0") as e:  # shard 0 spends it: shard 1 is not started
        annotate_ray(guideline, iter(docs), pool, out, quiet=True, options=opts, ray_options=ropts, budget_usd=1e-9)
    assert server.counts["requests"] - before == 3 * 200 and "resumes" in e.value.hint
    got = annotate_ray(guideline, iter(docs), pool, out, quiet=True, options=opts, ray_options=ropts, budget_usd=10.0)
    assert server.counts["requests"] - before == 3 * 500 and got["documents"] == 500
    assert got["ray"]["resumed_shards"] == 1 and len(lines(tmp_path / "out.ledger.jsonl")) == 3 * 500


def test_two_guidelines_on_ray_equal_the_local_engine_with_both(ray_runtime, guideline, tmp_path: Path):
    """``also=``: every annotator under each guideline, runs ``<annotator>@it0``, the same files as the
    local engine; a vllm-engine annotator under several guidelines is a one-line error before Ray runs."""
    from diziner.llm.pool import load_pool
    from diziner.scale import RayOptions, annotate_ray
    from diziner.testing.server import TestServer

    docs = make_docs(300, seed=9)
    refined = refined_with_marker(guideline)
    opts = StreamOptions(batch_size=64)
    with TestServer(marker_responder, keep_requests=False) as srv:
        pool = make_pool(srv, ids=("a", "b"))
        local = annotate_stream(refined, iter(docs), pool, tmp_path / "local" / "out.jsonl", quiet=True, options=opts,
                                cache_path=tmp_path / "cache.sqlite", also=[guideline])
        # four HTTP stages on the test's 2-CPU runtime: each actor reserves a tenth of a CPU
        got = annotate_ray(refined, iter(docs), pool, tmp_path / "ray" / "out.jsonl", quiet=True, options=opts,
                           ray_options=RayOptions(shard_size=100, http_num_cpus=0.1), also=[guideline])
    runs = ["a", "b", "a@it0", "b@it0"]
    assert got["annotators"] == local["annotators"] == runs
    ref, res = outputs(tmp_path / "local", runs), outputs(tmp_path / "ray", runs)
    for name in ref:
        assert res[name] == ref[name], name
    assert any(s["text"].islower() for r in res["out.a.jsonl"] for s in r["spans"])  # the refined runs differ
    assert got["weights"] == pytest.approx(local["weights"])
    path = tmp_path / "pool.yaml"
    path.write_text(VLLM_POOL)
    with pytest.raises(ConfigError, match="several guidelines through HTTP annotators only") as e:
        annotate_ray(refined, iter(docs), load_pool(path), tmp_path / "v" / "out.jsonl", quiet=True, also=[guideline])
    assert "\n" not in str(e.value) and not (tmp_path / "v" / "out.jsonl").exists()
