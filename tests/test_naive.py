"""The plain k-shot prompt of the naive bench row (diziner.annotate.naive)."""
from __future__ import annotations

import asyncio
import json

from diziner.annotate.naive import NAIVE_SHOTS, annotate_naive, naive_request
from diziner.corpus.model import Document
from diziner.errors import LLMCallError
from diziner.llm.base import CallableClient
from diziner.schema import load_schema


def _schema(examples_dir):
    return load_schema(examples_dir / "schema.yaml")


def test_fewshot_request_has_k_demonstrations_labels_and_an_enum(examples_dir):
    schema = _schema(examples_dir)
    req = naive_request(schema, "fewshot", "Ada  Lovelace met\nGrace Hopper.")
    demos = [ex for ex in schema.demonstrations if ex.mentions][:NAIVE_SHOTS]
    assert req.messages is None and req.prompt.startswith(f"Named entities. Labels: {', '.join(schema.label_names)}.")
    assert req.prompt.count("Text: ") == len(demos) + 1 and req.prompt.endswith("Text: Ada Lovelace met Grace Hopper.\nEntities: ")
    assert req.json_schema["items"]["properties"]["label"]["enum"] == schema.label_names
    assert req.params["temperature"] == 0.0 and req.params["stop"] == ["\n"]
    for ex in demos:
        assert " ".join(ex.text.split()) in req.prompt


def test_chat_request_puts_demonstrations_in_earlier_turns(examples_dir):
    schema = _schema(examples_dir)
    req = naive_request(schema, "chat", "Ada Lovelace met Grace Hopper.", k=2)
    roles = [m["role"] for m in req.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert req.messages[-1]["content"] == "Ada Lovelace met Grace Hopper."
    assert "mentions" in json.loads(req.messages[2]["content"])
    assert req.json_schema["properties"]["mentions"]["items"]["properties"]["label"]["enum"] == schema.label_names


def test_annotate_naive_grounds_answers_and_leaves_failures_out(examples_dir):
    schema = _schema(examples_dir)
    label = schema.label_names[0]
    docs = [Document("a", "Ada Lovelace wrote notes."), Document("b", "Nothing here."), Document("c", "Broken."),
            Document("d", "Fails.")]

    def fn(req):
        text = req.messages[-1]["content"]
        if text.startswith("Ada"):
            return json.dumps({"mentions": [{"text": "Ada Lovelace", "label": label}]})
        if text.startswith("Nothing"):
            return json.dumps({"mentions": []})
        if text.startswith("Broken"):
            return "not json at all"
        raise LLMCallError("timeout")

    out = asyncio.run(annotate_naive(docs, schema, CallableClient(fn), "chat"))
    assert list(out) == ["a", "b"]  # c did not parse, d failed: neither answered
    (sp,) = out["a"]
    assert (sp.start, sp.end, sp.label) == (0, 12, label) and out["b"] == []
