"""Pool file validation: one-line errors with file and line."""
from __future__ import annotations

import textwrap

import pytest

from diziner.errors import ConfigError, DizinerError, InputError
from diziner.llm.pool import AnnotatorConfig, Pool, load_pool

GOOD = """\
annotators:
  - id: gemma
    backend: local
    model: gemma-3-270m
    prompt_style: fewshot
    n_threads: 2
  - id: qwen
    backend: openai
    model: Qwen/Qwen3-14B
    base_url: http://127.0.0.1:8000/v1/
    api_key_env: VLLM_API_KEY
    max_concurrency: 16
    structured_output: grammar
    params: {temperature: 0, max_tokens: 2048}
    price: {input_per_mtok: 0.1, output_per_mtok: 0.4}
supervisor:
  backend: consensus
global_concurrency: 32
"""


def write(tmp_path, text, name="pool.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_pool_loads(tmp_path):
    pool = load_pool(write(tmp_path, GOOD))
    assert isinstance(pool, Pool)
    assert pool.ids == ["gemma", "qwen"]
    gemma, qwen = pool.annotators
    assert isinstance(gemma, AnnotatorConfig)
    assert gemma.endpoint == "completion"  # fewshot -> plain completion by default
    assert qwen.endpoint == "chat"
    assert qwen.base_url == "http://127.0.0.1:8000/v1"  # trailing slash removed
    assert qwen.price is not None and qwen.price.cost(1_000_000, 1_000_000) == pytest.approx(0.5)
    assert pool.supervisor.backend == "consensus"
    assert pool.global_concurrency == 32
    summary = pool.public_summary()
    assert "VLLM_API_KEY" not in str(summary)


def test_unknown_key_names_line(tmp_path):
    text = GOOD.replace("    n_threads: 2\n", "    n_thread: 2\n")
    with pytest.raises(InputError) as ei:
        load_pool(write(tmp_path, text))
    msg = ei.value.one_line()
    assert "pool.yaml:6:" in msg and "n_thread" in msg and "unknown key" in msg
    assert "\n" not in msg


def test_duplicate_ids_name_second_line(tmp_path):
    text = GOOD.replace("id: qwen", "id: gemma")
    with pytest.raises(InputError) as ei:
        load_pool(write(tmp_path, text))
    assert "pool.yaml:7:" in ei.value.one_line()
    assert "duplicate annotator id 'gemma'" in ei.value.one_line()


def test_missing_env_var_is_config_error_with_line(tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    pool = load_pool(write(tmp_path, GOOD))
    with pytest.raises(ConfigError) as ei:
        pool.check_env()
    msg = ei.value.one_line()
    assert "pool.yaml:11:" in msg and "VLLM_API_KEY" in msg and "qwen" in msg
    monkeypatch.setenv("VLLM_API_KEY", "x")
    pool.check_env()  # now fine


def test_key_pasted_into_api_key_env_is_not_echoed(tmp_path):
    secret = "sk-proj-CANARY-1234567890"
    text = GOOD.replace("api_key_env: VLLM_API_KEY", f"api_key_env: {secret}")
    with pytest.raises(InputError) as ei:
        load_pool(write(tmp_path, text))
    assert secret not in ei.value.one_line()
    assert "pool.yaml:11:" in ei.value.one_line()


@pytest.mark.parametrize("change, expect", [
    (("model: gemma-3-270m", "model: llama-70b"), "not one of"),
    (("backend: openai", "backend: nosuch"), "unknown backend"),
    (("id: qwen", "id: 'qw en'"), "may contain only"),
    (("structured_output: grammar", "structured_output: xml"), "structured_output"),
    (("max_concurrency: 16", "max_concurrency: 0"), "max_concurrency"),
])
def test_bad_values(tmp_path, change, expect):
    with pytest.raises(DizinerError) as ei:
        load_pool(write(tmp_path, GOOD.replace(*change)))
    assert expect in ei.value.one_line()
    assert "pool.yaml:" in ei.value.one_line()


def test_anthropic_defaults_and_supervisor_env(tmp_path):
    text = GOOD.replace("  backend: consensus", "  backend: anthropic\n  model: claude-3-5-haiku-latest")
    pool = load_pool(write(tmp_path, text))
    assert pool.supervisor.api_key_env == "ANTHROPIC_API_KEY"
    with pytest.raises(ConfigError) as ei:
        pool.check_env({"VLLM_API_KEY": "x"})
    assert "ANTHROPIC_API_KEY" in str(ei.value) and "supervisor" in str(ei.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_pool(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="empty"):
        load_pool(write(tmp_path, ""))
    with pytest.raises(InputError, match="annotators"):
        load_pool(write(tmp_path, "annotators: []\n"))


def test_pool_clients_close_what_they_built_once_and_nothing_they_borrowed(tmp_path):
    import asyncio

    from diziner.llm.factory import PoolClients
    from diziner.llm.ledger import Ledger

    closed: list[str] = []

    class C:
        def __init__(self, name):
            self.name = name

        async def aclose(self):
            closed.append(self.name)

    led = Ledger(tmp_path / "l.jsonl")
    built = PoolClients({"a": C("a"), "b": C("b")}, C("sup"), led, owned=True)
    borrowed = PoolClients.borrow(built)
    ann, sup, ledger = built  # unpacks like the older tuple
    assert set(ann) == {"a", "b"} and sup.name == "sup" and ledger is led

    async def go():
        async with borrowed:
            pass
        assert closed == []  # borrowed: nothing closed
        async with built:
            pass
        await built.aclose()  # once only

    asyncio.run(go())
    assert closed == ["a", "b", "sup"] and led._fh is None  # the supervisor and the ledger file too
    assert PoolClients.borrow(({"x": C("x")}, None, Ledger())).owned is False
