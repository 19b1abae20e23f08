"""The refinement loop end to end with scripted annotators (no network, no model)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from diziner.corpus.readers import read_corpus
from diziner.errors import DizinerError
from diziner.llm.base import CallableClient, LLMRequest
from diziner.llm.ledger import Ledger
from diziner.llm.pool import pool_from_dict
from diziner.loop import RefineOptions, refine
from diziner.stream import annotate_corpus
from diziner.schema import load_schema

FENCE = re.compile(r"<<<DOCUMENT>>>\n?(.*?)\n?<<<END OF DOCUMENT>>>", re.S)


def _doc_text(req: LLMRequest) -> str:
    body = req.messages[-1]["content"] if req.messages else req.prompt
    m = list(FENCE.finditer(body))
    if m:
        return m[-1].group(1)
    return body.rsplit("Text:", 1)[-1].split("\nEntities:")[0].strip()


class Scripted:
    """An annotator that answers from gold, keeping only some labels; it learns labels from worked examples.

    ``keep`` labels are always found; a label of ``learnable`` is found once the prompt
    shows a worked example with that label (as the refined guideline does).
    """

    def __init__(self, gold_by_text: dict[str, list[dict]], keep: set[str], learnable: set[str] = frozenset(), spurious: bool = False):
        self.gold = gold_by_text
        self.keep = keep
        self.learnable = learnable
        self.spurious = spurious
        self.calls = 0

    def __call__(self, req: LLMRequest) -> str:
        self.calls += 1
        text = _doc_text(req)
        body = json.dumps(req.messages or req.prompt)
        labels = set(self.keep) | {lab for lab in self.learnable if f'"label": "{lab}"' in body.replace('\\"', '"') and "Rule" in body or f"→ {lab}" in body}
        spans = [s for s in self.gold.get(text, []) if s["label"] in labels]
        mentions = [{"text": s["text"], "label": s["label"]} for s in spans]
        if self.spurious and text.split():
            mentions.append({"text": text.split()[0], "label": "LOC"})
        if req.messages is not None:
            return json.dumps({"mentions": mentions})
        return json.dumps(mentions)


@pytest.fixture()
def example(examples_dir: Path):
    schema = load_schema(examples_dir / "schema.yaml")
    gold_corpus = read_corpus(examples_dir / "gold.jsonl")
    docs = read_corpus(examples_dir / "texts.jsonl").documents
    gold = {d.id: gold_corpus.spans_of(d.id) for d in docs}
    by_text = {d.text: [s.to_dict() for s in gold[d.id]] for d in docs}
    return schema, docs, gold, by_text


def _pool(ids=("a", "b", "c")):
    return pool_from_dict({
        "annotators": [{"id": i, "backend": "openai", "model": f"m-{i}", "base_url": "http://127.0.0.1:9/v1",
                        "prompt_style": "chat" if n % 2 == 0 else "fewshot"} for n, i in enumerate(ids)],
        "supervisor": {"backend": "consensus"},
    })


def _clients(scripts: dict):
    return ({k: CallableClient(v, name=k) for k, v in scripts.items()}, None, Ledger())


def test_refine_writes_documented_run_directory(tmp_path, example):
    schema, docs, gold, by_text = example
    scripts = {"a": Scripted(by_text, {"PER", "ORG", "LOC", "PRODUCT"}),
               "b": Scripted(by_text, {"PER", "ORG"}),
               "c": Scripted(by_text, {"PER", "LOC"}, spurious=True)}
    opts = RefineOptions(iterations=3, sample_size=8, seed=1)
    res = refine(schema, docs, _pool(), tmp_path / "run", opts, gold=gold, clients=_clients(scripts), quiet=True)
    out = tmp_path / "run"
    for rel in ["run.json", "schema.yaml", "metrics.json", "final/guideline.yaml", "final/guideline.md",
                "final/annotations.jsonl", "final/by_annotator/a.jsonl", "iterations/0/sample.jsonl",
                "iterations/0/guideline.yaml", "iterations/0/analysis.json", "iterations/0/report.md",
                "iterations/0/annotations/b.jsonl", "iterations/0/metrics.json", "iterations/0/supervisor/consensus.json"]:
        assert (out / rel).is_file(), rel
    metrics = json.loads((out / "metrics.json").read_text())
    agreements = [r["mean_pairwise_f1"] for r in metrics["iterations"]]
    # label-free selection: the iteration with the highest agreement (ties: the earlier one)
    assert metrics["selected_iteration"] == agreements.index(max(agreements)) == res.selected_iteration
    # samples are disjoint and of the requested size
    samples = [set(r["documents"]) for r in metrics["iterations"]]
    assert all(len(s) == 8 for s in samples)
    assert not set.intersection(*samples) if len(samples) > 1 else True
    # every final line carries support; spans match their text
    lines = [json.loads(x) for x in (out / "final/annotations.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [d.id for d in docs]
    for x in lines:
        for s in x["spans"]:
            assert x["text"][s["start"]:s["end"]] == s["text"]
            assert set(s["support"]["annotators"]) <= {"a", "b", "c", "a@it0", "b@it0", "c@it0"}
            assert isinstance(s["hotspot"], bool)
    # a refined guideline was selected: the final annotation also ran the iteration-0 guideline, and the
    # delivered union is over the runs of both (each annotator's file under each guideline)
    assert res.selected_iteration > 0 and metrics["final_guidelines"] == ["final/guideline.yaml",
                                                                          "iterations/0/guideline.yaml"]
    done = json.loads((out / "final/done.json").read_text())
    assert {"a", "b", "a@it0", "b@it0"} <= set(done["annotators"])
    from diziner.commands.refine import same_delivery_command

    assert same_delivery_command(out, metrics, Path("pool.yaml")) == (
        f"diziner annotate --guideline {out / 'final/guideline.yaml'} --guideline {out / 'iterations/0/guideline.yaml'}"
        " --pool pool.yaml --texts TEXTS --out OUT")
    assert same_delivery_command(out, {"final_guidelines": ["final/guideline.yaml"]}, Path("p.yaml")) is None
    assert (out / "final/by_annotator/a@it0.jsonl").is_file()
    assert any("a@it0" in s["support"]["annotators"] for x in lines for s in x["spans"])
    # gold is reported, never used: F1 recorded per iteration and for the final annotation
    assert "consensus" in metrics["iterations"][0]["f1"]
    assert metrics["final_f1"]["a"] == pytest.approx(1.0)
    # the guideline of each later iteration was written by the supervisor and is valid YAML
    for r in metrics["iterations"][1:]:
        g = yaml.safe_load((out / "iterations" / str(r["iteration"]) / "guideline.yaml").read_text())
        assert g["iteration"] == r["iteration"]


def test_rerun_resumes_without_calls_and_refuses_other_configs(tmp_path, example):
    schema, docs, gold, by_text = example
    scripts = {"a": Scripted(by_text, {"PER", "ORG"}), "b": Scripted(by_text, {"PER", "LOC"})}
    opts = RefineOptions(iterations=2, sample_size=6, seed=3)
    pool = _pool(("a", "b"))
    r1 = refine(schema, docs, pool, tmp_path / "run", opts, clients=_clients(scripts), quiet=True)
    calls = {k: s.calls for k, s in scripts.items()}
    first = (tmp_path / "run/final/annotations.jsonl").read_text()
    r2 = refine(schema, docs, pool, tmp_path / "run", opts, clients=_clients(scripts), quiet=True)
    assert {k: s.calls for k, s in scripts.items()} == calls  # everything finished is read back
    assert (tmp_path / "run/final/annotations.jsonl").read_text() == first
    assert r2.selected_iteration == r1.selected_iteration
    with pytest.raises(DizinerError, match=r"different settings \(.*iterations: \d+ in the run, 3 now"):
        refine(schema, docs, pool, tmp_path / "run", RefineOptions(iterations=3, sample_size=6, seed=3),
               clients=_clients(scripts), quiet=True)


def test_rerun_refuses_a_pool_whose_params_changed(tmp_path, example):
    """An annotator's params decide its requests: a run made with other params is not resumed."""
    schema, docs, gold, by_text = example
    scripts = {"a": Scripted(by_text, {"PER", "ORG"}), "b": Scripted(by_text, {"PER", "LOC"})}
    opts = RefineOptions(iterations=1, sample_size=6, seed=3)
    pool = _pool(("a", "b"))
    refine(schema, docs, pool, tmp_path / "run", opts, clients=_clients(scripts), quiet=True)
    assert "params" not in json.dumps(json.loads((tmp_path / "run/run.json").read_text())["pool"])  # none set
    hotter = pool.model_copy(deep=True)
    hotter.annotators[1].params = {"temperature": 0.7}
    with pytest.raises(DizinerError, match=r"different settings \(pool.annotators: .*'params': \{'temperature': 0.7"):
        refine(schema, docs, hotter, tmp_path / "run", opts, clients=_clients(scripts), quiet=True)


def test_refuses_to_write_into_a_foreign_folder(tmp_path, example):
    schema, docs, gold, by_text = example
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    scripts = {"a": Scripted(by_text, {"PER"}), "b": Scripted(by_text, {"ORG"})}
    with pytest.raises(DizinerError, match="not a diziner run"):
        refine(schema, docs, _pool(("a", "b")), tmp_path / "mine", RefineOptions(iterations=1, sample_size=4),
               clients=_clients(scripts), quiet=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_stop_rule_stops_when_agreement_does_not_rise(tmp_path, example):
    schema, docs, gold, by_text = example
    # identical annotators: agreement is 1.0 from the start and cannot rise
    scripts = {"a": Scripted(by_text, {"PER", "ORG"}), "b": Scripted(by_text, {"PER", "ORG"})}
    res = refine(schema, docs, _pool(("a", "b")), tmp_path / "run", RefineOptions(iterations=4, sample_size=5),
                 clients=_clients(scripts), quiet=True)
    assert len(res.iterations) == 2
    assert "did not rise" in res.stopped_because
    assert res.selected_iteration == 0


def test_failed_annotator_dropped_and_too_few_stop(tmp_path, example):
    schema, docs, gold, by_text = example
    from diziner.errors import LLMCallError

    def broken(req):
        raise LLMCallError("HTTP 503 from server", kind="http_5xx")

    scripts = {"a": Scripted(by_text, {"PER"}), "b": Scripted(by_text, {"ORG"}), "c": broken}
    res = refine(schema, docs, _pool(), tmp_path / "run", RefineOptions(iterations=1, sample_size=4),
                 clients=_clients(scripts), quiet=True)
    assert res.iterations[0].annotators == ["a", "b"]
    assert res.iterations[0].failures["c"] == 4
    failed = [json.loads(x) for x in (tmp_path / "run/iterations/0/annotations/c.jsonl").read_text().splitlines()]
    assert all(x["status"] == "failed" and "503" in x["reason"] for x in failed)
    scripts2 = {"a": Scripted(by_text, {"PER"}), "b": broken}
    with pytest.raises(DizinerError, match="at least 2"):
        refine(schema, docs, _pool(("a", "b")), tmp_path / "run2", RefineOptions(iterations=1, sample_size=4),
               clients=_clients(scripts2), quiet=True)


def test_annotate_corpus_with_fixed_guideline(tmp_path, example):
    from diziner.guideline import Guideline

    schema, docs, gold, by_text = example
    scripts = {"a": Scripted(by_text, {"PER", "ORG"}), "b": Scripted(by_text, {"PER", "LOC"})}
    out = tmp_path / "out.jsonl"
    summary = annotate_corpus(Guideline.initial(schema), docs, _pool(("a", "b")), out, clients=_clients(scripts),
                              quiet=True, min_support=0.0)
    assert summary["documents"] == len(docs)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    # union (min_support 0) keeps PER, ORG and LOC; PER found by both carries both supporters
    labels = {s["label"] for r in rows for s in r["spans"]}
    assert labels == {"PER", "ORG", "LOC"}
    per = [s for r in rows for s in r["spans"] if s["label"] == "PER"]
    assert per and all(sorted(s["support"]["annotators"]) == ["a", "b"] for s in per)
    assert (tmp_path / "out.a.jsonl").is_file() and (tmp_path / "out.b.jsonl").is_file()


def test_cli_refine_bad_inputs_are_one_line(tmp_path, examples_dir, capsys):
    from diziner.cli import main

    bad = tmp_path / "schema.yaml"
    bad.write_text("goal: g\nlabels:\n  - name: PER\n    definition: ''\n")
    rc = main(["refine", "--schema", str(bad), "--texts", str(examples_dir / "texts.txt"),
               "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "schema.yaml:4" in err and "definition" in err
    rc = main(["refine", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(tmp_path / "missing.txt"),
               "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "missing.txt" in err and "\n" not in err


def test_cli_dry_run_plans_calls_without_calling(tmp_path, examples_dir, capsys):
    from diziner.cli import main

    args = ["refine", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(examples_dir / "texts.jsonl"),
            "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "r"), "--dry-run",
            "--iterations", "2", "--sample-size", "10"]
    rc = main(args)
    plan = json.loads(capsys.readouterr().out)
    assert rc == 0
    # 2 annotators x 40 documents under the selected and the iteration-0 guideline (at most)
    assert plan["pilot"]["calls"] == 2 * 20 and plan["final"]["calls"] == 2 * 2 * 40
    assert plan["pilot"]["tokens_in_est"] > 0
    assert main(args + ["--selected-only"]) == 0
    assert json.loads(capsys.readouterr().out)["final"]["calls"] == 2 * 40
    assert not (tmp_path / "r").exists()


def test_iterations_zero_annotates_the_corpus_with_the_iteration0_guideline(tmp_path, example):
    from diziner.guideline import Guideline, load_guideline

    schema, docs, gold, by_text = example
    scripts = {"a": Scripted(by_text, {"PER", "ORG"}), "b": Scripted(by_text, {"PER", "LOC"})}
    res = refine(schema, docs, _pool(("a", "b")), tmp_path / "run", RefineOptions(iterations=0), gold=gold,
                 clients=_clients(scripts), quiet=True)
    out = tmp_path / "run"
    assert res.selected_iteration == 0 and res.iterations == [] and "no pilot" in res.stopped_because
    assert not (out / "iterations").exists()
    assert load_guideline(out / "final" / "guideline.yaml").to_yaml() == Guideline.initial(schema).to_yaml()
    assert {k: s.calls for k, s in scripts.items()} == {"a": len(docs), "b": len(docs)}  # the corpus once, no pilot
    rows = [json.loads(x) for x in (out / "final" / "annotations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [d.id for d in docs] and any(r["spans"] for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == [] and metrics["selected_iteration"] == 0 and metrics["final_f1"]["consensus"] > 0
    assert metrics["final_guidelines"] == ["final/guideline.yaml"]  # nothing to pair the iteration-0 guideline with
    from diziner.cli import main

    assert main(["report", str(out), "--out", str(tmp_path / "report.html")]) == 0  # a run without a pilot renders
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "no iterations/ found" in html  # says so, does not fail


def test_a_noop_resume_keeps_the_runs_usage_in_metrics(tmp_path, example):
    from diziner.llm.ledger import LedgerRecord

    schema, docs, gold, by_text = example
    scripts = {"a": Scripted(by_text, {"PER", "ORG"}), "b": Scripted(by_text, {"PER", "LOC"})}
    opts = RefineOptions(iterations=2, sample_size=5, seed=2)
    path = tmp_path / "run" / "ledger.jsonl"
    led = Ledger(path)
    for _ in range(3):  # the calls of the first run (scripted clients do not go through the ledger)
        led.record(LedgerRecord(ts=0.0, annotator="a", purpose="annotate", backend="openai", model="m-a", tokens_in=10,
                                tokens_out=5, ok=True))
    refine(schema, docs, _pool(("a", "b")), tmp_path / "run", opts,
           clients=({k: CallableClient(v, name=k) for k, v in scripts.items()}, None, led), quiet=True)
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())["usage"]["total"]
    assert first["calls"] == 3
    led2 = Ledger(path)  # the resumed process: nothing new is called
    refine(schema, docs, _pool(("a", "b")), tmp_path / "run", opts,
           clients=({k: CallableClient(v, name=k) for k, v in scripts.items()}, None, led2), quiet=True)
    again = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert again["usage"]["total"]["calls"] == 3 and again["usage_this_run"]["total"]["calls"] == 0


def test_stop_rule_and_selection_by_hand():
    from diziner.loop import IterationRecord, StopRule, select_iteration

    rule = StopRule(patience=2, min_delta=0.01)
    assert rule.update(0.30, 0) is None and rule.best == 0.30
    assert not rule.would_stop(0.305, 1)  # not a rise (≤ 0.31), but patience 2 is not used up
    assert rule.update(0.305, 1) is None and rule.since_best == 1
    assert rule.would_stop(0.2, 2)
    assert rule.update(0.2, 2) == "agreement did not rise for 2 iteration(s) after iteration 0"
    first = StopRule(patience=1)
    assert not first.would_stop(0.0, 0) and first.update(-5.0, 0) is None  # never after iteration 0

    def rec(t, a):
        return IterationRecord(iteration=t, documents=[], annotators=["a", "b"], mean_pairwise_f1=a,
                               per_annotator_agreement={}, weights={}, elite=[], hotspots=0, hotspots_by_category={},
                               failures={})
    assert select_iteration([rec(0, 0.2), rec(1, 0.5), rec(2, 0.5), rec(3, 0.4)]).iteration == 1  # tie: earlier
    assert select_iteration([]) is None


def test_selection_by_agreement_on_every_label():
    """BC5CDR at the paper's sizes: iteration 1's pilot agreement rose 0.24 -> 0.42 because both
    models tagged everything as Disease (Chemical agreement 0.19 -> 0); dev F1 fell 0.43 -> 0.13.
    Selection uses the agreement averaged over the schema's labels (a label the pool abandons
    scores 0), so iteration 0 is kept; Broad Twitter's rise on PER (0.07 -> 0.23) still wins.
    Records without the per-label figure (older runs) fall back to the overall agreement."""
    from diziner.loop import IterationRecord, select_iteration

    def rec(t, micro, by_label):
        return IterationRecord(iteration=t, documents=[], annotators=["a", "b"], mean_pairwise_f1=micro,
                               per_annotator_agreement={}, weights={}, elite=[], hotspots=0, hotspots_by_category={},
                               failures={}, agreement_by_label=by_label)
    bc5cdr = [rec(0, 0.240, {"Chemical": 0.19, "Disease": 0.276}), rec(1, 0.424, {"Chemical": 0.0, "Disease": 0.438}),
              rec(2, 0.171, {"Chemical": 0.0, "Disease": 0.171})]
    assert select_iteration(bc5cdr).iteration == 0
    bt = [rec(0, 0.082, {"PER": 0.2, "ORG": 0.0, "LOC": 0.0}), rec(1, 0.143, {"PER": 0.194, "ORG": 0.0, "LOC": 0.0}),
          rec(2, 0.564, {"PER": 0.647, "ORG": 0.0, "LOC": 0.0}), rec(3, 0.647, {"PER": 0.688, "ORG": 0.0, "LOC": 0.0})]
    assert select_iteration(bt).iteration == 3
    assert bt[3].label_macro_f1 == pytest.approx(0.688 / 3)
    old = [rec(0, 0.2, None), rec(1, 0.5, None)]
    assert select_iteration(old).iteration == 1


def test_an_unchanged_guideline_does_not_count_towards_stopping():
    """Broad Twitter, commit 75c1548: iteration 0 gave the supervisor nothing it may teach, so
    iteration 1 ran the same guideline on new tweets; its agreement (0.056 < 0.082) only
    measured other sentences, yet the stop rule ended the pilot. An iteration whose guideline
    equals the previous one's neither stops the loop nor moves the best score."""
    from diziner.guideline import Guideline
    from diziner.loop import StopRule, same_guideline_content

    rule = StopRule(patience=1)
    assert rule.update(0.082, 0) is None
    assert not rule.would_stop(0.056, 1, changed=False)
    assert rule.update(0.056, 1, changed=False) is None and rule.best == 0.082 and rule.since_best == 0
    assert rule.update(0.5, 2, changed=False) is None and rule.best == 0.082  # a lucky sample is no rise either
    assert rule.update(0.3, 3) is None and rule.best == 0.3  # a changed guideline is judged as before
    assert rule.update(0.2, 4) == "agreement did not rise for 1 iteration(s) after iteration 3"

    from diziner.schema import Schema

    schema = Schema(goal="Tag names.", labels=[{"name": "PER", "definition": "persons"}])
    g0 = Guideline.initial(schema)
    g1 = g0.model_copy(update={"iteration": 1, "changelog": ["iteration 1: consensus supervisor (consensus): no change"]})
    assert same_guideline_content(g0, g1)
    g2 = g1.model_copy(update={"goal": "Tag the names of people."})
    assert not same_guideline_content(g1, g2)


def test_selected_only_delivers_the_selected_guideline_alone(tmp_path, example):
    """``final_with_initial=False`` (``--selected-only``): the final annotation runs the selected guideline only."""
    schema, docs, gold, by_text = example
    scripts = {"a": Scripted(by_text, {"PER", "ORG", "LOC", "PRODUCT"}), "b": Scripted(by_text, {"PER", "ORG"}),
               "c": Scripted(by_text, {"PER", "LOC"}, spurious=True)}
    opts = RefineOptions(iterations=3, sample_size=8, seed=1, final_with_initial=False)
    res = refine(schema, docs, _pool(), tmp_path / "run", opts, gold=gold, clients=_clients(scripts), quiet=True)
    assert res.selected_iteration > 0
    done = json.loads((tmp_path / "run/final/done.json").read_text())
    assert done["guidelines"] == ["final/guideline.yaml"] and not any("@" in a for a in done["annotators"])
    assert sorted(p.name for p in (tmp_path / "run/final/by_annotator").iterdir()) == ["a.jsonl", "b.jsonl", "c.jsonl"]


def test_iteration0_kept_is_delivered_with_its_companion(tmp_path, example):
    """When selection keeps iteration 0 the final annotation also runs its companion (iteration 0 plus
    the mentions its pilot agreed on, BENCHMARKS.md §15) and delivers over both; ``--selected-only`` does not."""
    from diziner.guideline import Guideline, load_guideline

    schema, docs, gold, by_text = example
    prompts: list[str] = []

    def seen(script):
        def call(req: LLMRequest) -> str:
            prompts.append(json.dumps(req.messages or req.prompt, ensure_ascii=False))
            return script(req)
        return call

    scripts = {"a": Scripted(by_text, {"PER", "ORG"}), "b": Scripted(by_text, {"PER", "LOC"})}
    opts = RefineOptions(iterations=1, sample_size=6, seed=3)
    res = refine(schema, docs, _pool(("a", "b")), tmp_path / "run", opts, gold=gold,
                 clients=({k: CallableClient(seen(v), name=k) for k, v in scripts.items()}, None, Ledger()), quiet=True)
    out = tmp_path / "run"
    assert res.selected_iteration == 0
    done = json.loads((out / "final" / "done.json").read_text())
    assert done["guidelines"] == ["final/guideline.yaml", "final/companion-guideline.yaml"]
    assert sorted(done["annotators"]) == ["a", "a@companion", "b", "b@companion"]
    companion = load_guideline(out / "final" / "companion-guideline.yaml")
    g0 = Guideline.initial(schema)
    assert companion.common[:-1] == g0.common and companion.goal == g0.goal
    rule = companion.common[-1].text
    assert rule.startswith("Mentions every annotator tagged the same way in this corpus: ") and "(PER)" in rule
    assert "Mentions every annotator tagged" in (out / "final" / "companion-guideline.md").read_text()
    # only the companion runs asked with the rule: once per document and annotator
    assert sum(1 for p in prompts if "Mentions every annotator tagged" in p) == 2 * len(docs)
    assert {p.name for p in (out / "final" / "by_annotator").iterdir()} >= {"a@companion.jsonl", "b@companion.jsonl"}
    again = refine(schema, docs, _pool(("a", "b")), tmp_path / "alone", RefineOptions(iterations=1, sample_size=6, seed=3,
                   final_with_initial=False), gold=gold, clients=_clients(scripts), quiet=True)
    assert again.selected_iteration == 0
    assert json.loads((tmp_path / "alone" / "final" / "done.json").read_text())["guidelines"] == ["final/guideline.yaml"]
