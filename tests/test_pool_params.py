"""An annotator's ``params`` in the pool file are how that model is run: they override diziner's
annotation defaults (greedy, an output budget sized to ``max_mentions``) in every engine —
``annotate``, the in-memory API, the refinement loop and the Ray engine — while the other
annotators keep the defaults. Checked on the requests a real local HTTP server receives."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from diziner.annotate.prompt import TOKENS_PER_MENTION
from diziner.testing.faults import annotator_responder, server_pool
from diziner.testing.server import TestServer

TEXTS = ["Ada Lovelace met Grace Hopper in London .", "Alan Turing visited Paris and Berlin ."]
OWN = {"temperature": 0.6, "seed": 5, "max_tokens": 99, "top_p": 0.9}
DEFAULT_MAX_TOKENS = 16 + TOKENS_PER_MENTION * 32


@pytest.fixture()
def setup(tmp_path, examples_dir: Path, monkeypatch):
    from diziner.llm.pool import pool_from_dict
    from diziner.schema import load_schema

    monkeypatch.setenv("PARAMS_TEST_KEY", "sk-test")
    schema = load_schema(examples_dir / "schema.yaml")
    with TestServer(responder=annotator_responder(schema.label_names)) as srv:
        raw = server_pool(srv.base_url, ["m-own", "m-default"], key_env="PARAMS_TEST_KEY")
        raw["annotators"][0]["params"] = dict(OWN)
        yield schema, pool_from_dict(raw), raw, srv


def _bodies(srv, model: str) -> list[dict]:
    return [r["json"] for r in srv.requests if r["json"].get("model") == model]


def _check(srv) -> None:
    own, default = _bodies(srv, "m-own"), _bodies(srv, "m-default")
    assert own and default
    for body in own:
        assert {k: body.get(k) for k in OWN} == OWN
    for body in default:
        assert body["temperature"] == 0.0 and body["max_tokens"] == DEFAULT_MAX_TOKENS and "seed" not in body


def test_annotate_runs_each_annotator_with_its_own_params(setup, tmp_path):
    from diziner.corpus.model import Document
    from diziner.guideline import Guideline
    from diziner.stream import annotate_corpus

    schema, pool, _, srv = setup
    docs = [Document(f"d{i}", t) for i, t in enumerate(TEXTS)]
    annotate_corpus(Guideline.initial(schema), docs, pool, tmp_path / "out.jsonl", no_cache=True, quiet=True)
    _check(srv)


def test_the_api_runs_each_annotator_with_its_own_params(setup, tmp_path):
    import yaml

    from diziner.api import Annotator
    from diziner.guideline import Guideline

    schema, _, raw, srv = setup
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "g.yaml").write_text(Guideline.initial(schema).to_yaml())
    with Annotator(tmp_path / "g.yaml", tmp_path / "pool.yaml", cache_path=tmp_path / "c.sqlite") as ann:
        assert any(ann.predict(TEXTS))
    _check(srv)


def test_the_refinement_loop_runs_each_annotator_with_its_own_params(setup, tmp_path, examples_dir):
    from diziner.corpus.readers import read_corpus
    from diziner.loop import RefineOptions, refine

    schema, pool, _, srv = setup
    docs = read_corpus(examples_dir / "texts.jsonl").documents[:6]
    refine(schema, docs, pool, tmp_path / "run", RefineOptions(iterations=1, sample_size=3, seed=1),
           no_cache=True, quiet=True)
    _check(srv)


def test_the_ray_engine_sends_each_annotator_its_own_params(setup):
    pytest.importorskip("ray")
    from diziner.corpus.model import Document
    from diziner.guideline import Guideline
    from diziner.scale.stages import AnnotatorSpec, engine_request, first_request, openai_body

    schema, pool, _, _ = setup
    ids = [a.id for a in pool.annotators]
    g = Guideline.initial(schema)
    own, default = (AnnotatorSpec(i, a, ids, g) for i, a in enumerate(pool.annotators))
    doc = Document("d0", TEXTS[0])
    _, body = openai_body(own, first_request(own, doc))
    assert {k: body.get(k) for k in OWN} == OWN
    _, body = openai_body(default, first_request(default, doc))
    assert body["temperature"] == 0.0 and body["max_tokens"] == DEFAULT_MAX_TOKENS
    sampling = engine_request(own, first_request(own, doc))["sampling_params"]
    assert sampling["temperature"] == 0.6 and sampling["max_tokens"] == 99 and sampling["seed"] == 5


def test_a_reask_still_raises_the_temperature_over_the_pools(setup):
    """From the second re-ask on the answer must be able to change, whatever the pool asks."""
    from diziner.annotate.prompt import build_reask_request, build_request
    from diziner.guideline import Guideline

    schema, pool, _, _ = setup
    first = build_request(Guideline.initial(schema), "ann0", "chat", TEXTS[0], params={"temperature": 0.0, "seed": 5})
    again = build_reask_request(first, "no json", "not valid JSON", labels=schema.label_names, attempt=2)
    assert again.params["temperature"] > 0 and again.params["seed"] == 2
    assert json.dumps(first.params) != json.dumps(again.params)
