"""The plain k-shot prompt: what a user does without diziner (the ``naive`` bench row).

No guideline: the label names, the schema's first ``k`` demonstrations that have mentions,
and the sentence; the answer is JSON constrained to the label enum, greedy decoding. A
completion prompt for base models (``fewshot``), a chat prompt with the demonstrations as
earlier turns otherwise. ``diziner bench`` scores it beside iteration 0 and the refined
guideline; ``scripts/bench_embedded.py`` times it as row (c).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from diziner.corpus.model import Document, Span
from diziner.errors import LLMCallError
from diziner.llm.base import LLMClient, LLMRequest

NAIVE_SHOTS = 3
NAIVE_PARAMS = {"temperature": 0.0, "max_tokens": 256, "repeat_penalty": 1.1}


def naive_request(schema: Any, style: str, text: str, k: int = NAIVE_SHOTS) -> LLMRequest:
    """The plain k-shot request for one sentence."""
    from diziner.annotate.prompt import _ordered_mentions

    labels = schema.label_names
    demos = [ex for ex in schema.demonstrations if ex.mentions][:k]
    item = {"type": "object", "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": labels}},
            "required": ["text", "label"]}
    head = f"Named entities. Labels: {', '.join(labels)}."
    if style == "fewshot":
        parts = [head + "\n\n"]
        for ex in demos:
            parts.append(f"Text: {' '.join(ex.text.split())}\nEntities: {json.dumps(_ordered_mentions(ex))}\n\n")
        parts.append(f"Text: {' '.join(text.split())}\nEntities: ")
        return LLMRequest(prompt="".join(parts), json_schema={"type": "array", "items": item},
                          params={**NAIVE_PARAMS, "stop": ["\n"]}, purpose="naive")
    messages = [{"role": "system", "content": head + ' Answer {"mentions": [{"text": ..., "label": ...}]}.'}]
    for ex in demos:
        messages.append({"role": "user", "content": ex.text})
        messages.append({"role": "assistant", "content": json.dumps({"mentions": _ordered_mentions(ex)})})
    messages.append({"role": "user", "content": text})
    schema_obj = {"type": "object", "properties": {"mentions": {"type": "array", "items": item}}, "required": ["mentions"]}
    return LLMRequest(messages=messages, json_schema=schema_obj, params=dict(NAIVE_PARAMS), purpose="naive")


def naive_spans(document: Document, answer: str, labels: list[str]) -> list[Span] | None:
    """The answer's mentions placed in the sentence; None when the answer does not parse."""
    from diziner.annotate.ground import ground_mentions
    from diziner.annotate.parse import parse_mentions

    parsed = parse_mentions(answer, labels)
    if not parsed.ok:
        return None
    return list(ground_mentions(document.text, parsed.mentions, doc_id=document.id).spans)


async def annotate_naive(documents: list[Document], schema: Any, client: LLMClient, style: str, *,
                         annotator: str | None = None, k: int = NAIVE_SHOTS,
                         concurrency: int = 4) -> dict[str, list[Span]]:
    """Annotate with the plain prompt; document id → spans for the documents answered.

    A failed call or an answer that does not parse leaves the document out (it did not
    answer; scored as no entities, like any system's failure).
    """
    labels = schema.label_names
    sem = asyncio.Semaphore(max(1, concurrency))
    out: dict[str, list[Span]] = {}

    async def one(doc: Document) -> None:
        req = naive_request(schema, style, doc.text, k)
        req.annotator = annotator
        async with sem:
            try:
                resp = await client.complete(req)
            except LLMCallError:
                return
        spans = naive_spans(doc, resp.text, labels)
        if spans is not None:
            out[doc.id] = spans

    await asyncio.gather(*(one(d) for d in documents))
    return {d.id: out[d.id] for d in documents if d.id in out}


async def naive_by_model(documents: list[Document], schema: Any, pool: Any, clients: dict[str, LLMClient],
                         k: int = NAIVE_SHOTS) -> dict[str, tuple[str, dict[str, list[Span]]]]:
    """The plain prompt of each pool model (the first annotator of a model gives its client and
    prompt style); model → (annotator id, document id → spans)."""
    first: dict[str, Any] = {}
    for a in pool.annotators:
        first.setdefault(a.model, a)
    return {m: (a.id, await annotate_naive(documents, schema, clients[a.id], a.prompt_style, annotator=a.id, k=k))
            for m, a in first.items()}


def run_naive(documents: list[Document], schema: Any, pool: Any, *, cache_path: Any = None,
              k: int = NAIVE_SHOTS) -> dict[str, tuple[str, dict[str, list[Span]]]]:
    """:func:`naive_by_model` with the pool's own clients (and its response cache)."""
    from diziner.llm.factory import PoolClients

    async def go():
        async with PoolClients.build(pool, cache_path=cache_path) as pc:
            return await naive_by_model(documents, schema, pool, pc.annotators, k)

    return asyncio.run(go())
