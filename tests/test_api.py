"""The in-memory API (diziner.api.Annotator) and the spaCy component, against the scripted server."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from diziner.testing.faults import annotator_responder, server_pool
from diziner.testing.server import TestServer

TEXTS = ["Ada Lovelace met Grace Hopper in London .", "Alan Turing visited Paris and Berlin .",
         "Nothing to see here .", "Linus Torvalds wrote Linux in Helsinki ."]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, examples_dir: Path):
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    tmp = tmp_path_factory.mktemp("api")
    schema = load_schema(examples_dir / "schema.yaml")
    g = tmp / "guideline.yaml"
    g.write_text(Guideline.initial(schema).to_yaml())
    with TestServer(responder=annotator_responder(schema.label_names)) as srv:
        pool = server_pool(srv.base_url, ["m-one", "m-two", "m-three"], key_env="API_TEST_KEY")
        p = tmp / "pool.yaml"
        p.write_text(yaml.safe_dump(pool))
        yield tmp, g, p, srv


def test_predict_equals_the_annotate_engine(setup, monkeypatch):
    from diziner.api import Annotator
    from diziner.corpus.model import Document
    from diziner.guideline import load_guideline
    from diziner.llm.pool import load_pool
    from diziner.stream import annotate_corpus

    tmp, g, p, srv = setup
    monkeypatch.setenv("API_TEST_KEY", "sk-test")
    with Annotator(g, p, cache_path=tmp / "c1.sqlite") as ann:
        got = ann.predict(TEXTS)
        again = ann.predict(TEXTS)  # the same clients and loop, a second time
    docs = [Document(f"text-{i}", t) for i, t in enumerate(TEXTS)]
    annotate_corpus(load_guideline(g), docs, load_pool(p), tmp / "ref" / "out.jsonl", cache_path=tmp / "c2.sqlite",
                    quiet=True)
    ref = [json.loads(x)["spans"] for x in (tmp / "ref" / "out.jsonl").read_text().splitlines()]
    assert got == again == ref
    assert any(got) and all(set(s["support"]) >= {"annotators", "weight", "token_support"} for r in got for s in r)


def test_fit_then_predict_keeps_the_fitted_weights_and_works_inside_a_running_loop(setup, monkeypatch):
    from diziner.api import Annotator

    tmp, g, p, srv = setup
    monkeypatch.setenv("API_TEST_KEY", "sk-test")
    ann = Annotator(g, p, cache_path=tmp / "c3.sqlite", aggregation="union").fit(TEXTS)
    assert set(ann.weights_) == {"ann0", "ann1", "ann2"} and abs(sum(ann.weights_.values()) - 1) < 1e-9

    async def in_a_notebook():  # an event loop is already running in this thread
        return ann.predict(TEXTS[:1])

    (one,) = asyncio.run(in_a_notebook())
    ann.close()
    assert one and all(s["text"] in TEXTS[0] for s in one)
    with pytest.raises(Exception, match="closed"):
        ann.predict(TEXTS)


def test_a_fitted_annotator_predicts_each_text_as_the_whole_batch_would(setup, monkeypatch):
    """fit/predict: weights and hotspot threshold fitted once; a text predicted alone gets the
    spans (support, hotspot flags) it gets when the fit sample is predicted as one batch."""
    from diziner.api import Annotator

    tmp, g, p, srv = setup
    monkeypatch.setenv("API_TEST_KEY", "sk-test")
    with Annotator(g, p, cache_path=tmp / "c5.sqlite") as ann:
        whole = ann.predict(TEXTS)
        ann.fit(TEXTS)
        assert ann.aggregator_.usable_ == ["ann0", "ann1", "ann2"]
        one_by_one = [ann.predict([t])[0] for t in TEXTS]
    assert one_by_one == whole and any(whole)
    assert any(s["hotspot"] for r in whole for s in r) and not all(s["hotspot"] for r in whole for s in r)


def test_a_text_nobody_answered_is_none_not_empty(setup, monkeypatch, tmp_path):
    from diziner.api import Annotator

    tmp, g, p, srv = setup
    monkeypatch.setenv("API_TEST_KEY", "sk-test")
    pool = yaml.safe_load(p.read_text())
    for a in pool["annotators"]:
        a["base_url"] = "http://127.0.0.1:9/v1"  # nothing listens there
        a["max_retries"] = 0
        a["timeout_s"] = 0.5
    dead = tmp_path / "dead.yaml"
    dead.write_text(yaml.safe_dump(pool))
    with Annotator(g, dead, cache_path=tmp_path / "c.sqlite") as ann:
        assert ann.predict(["Ada Lovelace ."]) == [None]


def test_spacy_component_sets_ents_and_span_groups(setup, monkeypatch):
    spacy = pytest.importorskip("spacy")
    import diziner.spacy_component  # noqa: F401  (registers the factory)

    tmp, g, p, srv = setup
    monkeypatch.setenv("API_TEST_KEY", "sk-test")
    nlp = spacy.blank("en")
    nlp.add_pipe("diziner", config={"guideline": str(g), "pool": str(p), "cache_path": str(tmp / "c4.sqlite")})
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    single = nlp(TEXTS[0])
    from diziner.api import Annotator

    with Annotator(g, p, cache_path=tmp / "c4.sqlite") as ann:  # weights come from each batch of the pipe
        rows = ann.predict(TEXTS[:2]) + ann.predict(TEXTS[2:])
    for doc, r in zip(docs, rows):
        group = doc.spans["diziner"]
        assert [(s.start_char, s.end_char, s.label_) for s in group] == [(x["start"], x["end"], x["label"]) for x in r]
        assert group.attrs["support"] == [x["support"]["weight"] for x in r] and group.attrs["failed"] is False
        assert {(e.start_char, e.end_char) for e in doc.ents} <= {(s.start_char, s.end_char) for s in group}
    assert any(doc.ents for doc in docs)
    assert [(e.text, e.label_) for e in single.ents] == [(e.text, e.label_) for e in docs[0].ents]
    nlp.get_pipe("diziner").annotator.close()


def test_top_level_name_is_lazy():
    import subprocess
    import sys

    code = ("import sys, diziner; assert 'diziner.api' not in sys.modules; "
            "from diziner import Annotator; assert Annotator.__module__ == 'diziner.api'; print('ok')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"


def test_predict_with_a_second_guideline_equals_the_engine_with_both(setup, monkeypatch):
    """``also=``: the API delivers as refine and ``annotate --guideline A --guideline B`` do."""
    from diziner.api import Annotator
    from diziner.corpus.model import Document
    from diziner.guideline import Instruction, load_guideline
    from diziner.llm.pool import load_pool
    from diziner.stream import annotate_corpus

    tmp, g, p, srv = setup
    monkeypatch.setenv("API_TEST_KEY", "sk-test")
    g0 = load_guideline(g)
    refined = g0.model_copy(update={"iteration": 2, "common": [Instruction(id="1", text="Tag surnames alone too.")]})
    with Annotator(refined, p, cache_path=tmp / "c6.sqlite", also=[g]) as ann:
        got = ann.predict(TEXTS)
    docs = [Document(f"text-{i}", t) for i, t in enumerate(TEXTS)]
    annotate_corpus(refined, docs, load_pool(p), tmp / "ref2" / "out.jsonl", cache_path=tmp / "c7.sqlite", quiet=True,
                    also=[g0])
    ref = [json.loads(x)["spans"] for x in (tmp / "ref2" / "out.jsonl").read_text().splitlines()]
    assert got == ref
    assert {a for r in got for s in r for a in s["support"]["annotators"]} >= {"ann0", "ann0@it0"}
