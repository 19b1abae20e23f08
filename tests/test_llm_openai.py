"""What the OpenAI-compatible and Anthropic adapters send, and that keys never leak."""
from __future__ import annotations

import asyncio
import json

import pytest

from diziner.errors import LLMCallError
from diziner.testing import call_once
from diziner.llm.base import LLMRequest
from diziner.llm.factory import build_pool_clients
from diziner.llm.pool import pool_from_dict
from diziner.testing.server import TestServer

SCHEMA = {"title": "NER output", "type": "object",
          "properties": {"mentions": {"type": "array", "items": {"type": "object", "properties": {
              "text": {"type": "string"}, "label": {"type": "string", "enum": ["PER", "LOC"]}}}}},
          "required": ["mentions"]}
MSGS = [{"role": "system", "content": "You tag names."}, {"role": "user", "content": "Ada met Bob in Paris."}]


@pytest.fixture(scope="module")
def server():
    with TestServer() as srv:
        yield srv


def one_call(server, tmp_path, request, **cfg):
    pool = pool_from_dict({"annotators": [{"id": "a", "backend": "openai", "model": "m", "base_url": server.base_url,
                                           **cfg}]})
    clients, _, ledger = build_pool_clients(pool, use_cache=False)
    server.reset()
    resp = call_once(clients["a"], request)
    assert len(server.requests) == 1
    return resp, server.requests[0]


@pytest.mark.parametrize("mode, key, expected", [
    ("json_schema", "response_format",
     {"type": "json_schema", "json_schema": {"name": "NER_output", "schema": SCHEMA, "strict": False}}),
    ("json_object_schema", "response_format", {"type": "json_object", "schema": SCHEMA}),
    ("grammar", "guided_json", SCHEMA),
    ("ollama_format", "format", SCHEMA),
])
def test_structured_output_chat_bodies(server, tmp_path, mode, key, expected):
    resp, got = one_call(server, tmp_path, LLMRequest(messages=MSGS, json_schema=SCHEMA), structured_output=mode)
    assert got["path"] == "/v1/chat/completions"
    body = got["json"]
    assert body[key] == expected
    assert body["messages"] == MSGS and body["model"] == "m"
    others = {"response_format", "guided_json", "format"} - {key}
    assert not others & set(body)
    assert json.loads(resp.text) == {"mentions": []}


def test_mode_none_sends_no_schema(server, tmp_path):
    _, got = one_call(server, tmp_path, LLMRequest(messages=MSGS, json_schema=SCHEMA), structured_output="none")
    assert not {"response_format", "guided_json", "format"} & set(got["json"])


def test_completion_endpoint_and_params(server, tmp_path):
    req = LLMRequest(prompt="Text: Ada\nEntities:", json_schema=SCHEMA, params={"max_tokens": 64, "top_k": 1})
    resp, got = one_call(server, tmp_path, req, prompt_style="fewshot", structured_output="json_object_schema",
                         params={"temperature": 0, "repeat_penalty": 1.1, "max_tokens": 2048})
    assert got["path"] == "/v1/completions"
    body = got["json"]
    assert body["prompt"] == "Text: Ada\nEntities:"
    assert body["response_format"] == {"type": "json_object", "schema": SCHEMA}
    # pool params are defaults, request params win; non-OpenAI params travel in the body
    assert body["max_tokens"] == 64 and body["temperature"] == 0 and body["top_k"] == 1 and body["repeat_penalty"] == 1.1
    assert resp.text == '{"mentions": []}'


def test_prompt_on_chat_endpoint_becomes_user_message(server, tmp_path):
    _, got = one_call(server, tmp_path, LLMRequest(prompt="hi"), endpoint="chat")
    assert got["json"]["messages"] == [{"role": "user", "content": "hi"}]


def test_messages_on_completion_endpoint_are_flattened(server, tmp_path):
    _, got = one_call(server, tmp_path, LLMRequest(messages=MSGS), endpoint="completion")
    assert got["json"]["prompt"].startswith("System: You tag names.") and got["json"]["prompt"].endswith("Assistant:")


CANARY = "sk-CANARY-7f3a9b2c4d5e6f708192"


def test_canary_key_never_leaks(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DIZINER_TEST_KEY", CANARY)
    pool = pool_from_dict({"annotators": [{"id": "a", "backend": "openai", "model": "m", "base_url": server.base_url,
                                           "api_key_env": "DIZINER_TEST_KEY", "max_retries": 0,
                                           "price": {"input_per_mtok": 1, "output_per_mtok": 1}}]})
    cache_path, ledger_path = tmp_path / "cache.sqlite", tmp_path / "ledger.jsonl"
    clients, _, ledger = build_pool_clients(pool, cache_path=cache_path, ledger=ledger_path)
    server.reset()
    c = clients["a"]
    call_once(c, LLMRequest(messages=MSGS, json_schema=SCHEMA))
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {CANARY}"  # it was really sent
    server.set_faults(sequence=["401"])  # the server echoes the key in its error message
    with pytest.raises(LLMCallError) as ei:
        call_once(c, LLMRequest(messages=[{"role": "user", "content": "other"}]))
    server.set_faults()
    assert ei.value.kind == "http_401"
    assert CANARY not in str(ei.value) and CANARY not in ei.value.reason and "***" in ei.value.reason
    ledger.close()
    c.cache.close()
    for p in tmp_path.iterdir():  # cache, its WAL files, ledger
        assert CANARY.encode() not in p.read_bytes(), p
    assert CANARY not in json.dumps(ledger.summary())
    assert CANARY not in repr(pool) and CANARY not in str(pool.public_summary())


def test_anthropic_forced_tool(server, tmp_path, monkeypatch):
    pytest.importorskip("anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    pool = pool_from_dict({"annotators": [{"id": "claude", "backend": "anthropic", "model": "claude-3-5-haiku-latest",
                                           "base_url": server.base_url}]})
    clients, _, ledger = build_pool_clients(pool, use_cache=False)
    server.reset()
    server.set_responder(['{"mentions": [{"text": "Ada", "label": "PER"}]}'])
    try:
        resp = asyncio.run(clients["claude"].complete(LLMRequest(messages=MSGS, json_schema=SCHEMA,
                                                                 params={"temperature": 0, "seed": 1})))
    finally:
        server.set_responder(None)
    got = server.requests[0]
    assert got["path"] == "/v1/messages"
    body = got["json"]
    assert body["system"] == "You tag names."
    assert body["messages"] == [{"role": "user", "content": "Ada met Bob in Paris."}]
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": body["tools"][0]["name"]}
    assert "seed" not in body and body["temperature"] == 0
    assert json.loads(resp.text) == {"mentions": [{"text": "Ada", "label": "PER"}]}
    h = got["headers"]
    assert CANARY in (h.get("x-api-key", ""), h.get("authorization", "").removeprefix("Bearer "))
    assert resp.cost_usd is not None and resp.cost_usd > 0  # priced from prices.yaml
