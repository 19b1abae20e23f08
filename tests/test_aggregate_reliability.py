"""Annotator reliabilities fitted without gold (diziner.analysis.reliability) and their use in aggregation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from diziner.analysis import aggregate
from diziner.analysis.reliability import estimate
from diziner.corpus.model import Document, Span


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_one_em_step_by_hand():
    X = np.array([[1, 1, 0], [1, 0, 1]], dtype=bool)
    A = np.ones_like(X)
    r = estimate(X, A, np.array([1.0, 0.5, 0.5]), max_iter=1)
    # M step: s = (1.5 + 1) / (2 + 2), f = (0.5 + 1) / (1 + 2), π = (2 + 1) / (3 + 2)
    assert r.sensitivity == pytest.approx([0.625, 0.625])
    assert r.false_alarm == pytest.approx([0.5, 0.5])
    assert float(r.prior) == pytest.approx(0.6)
    lp = math.log(0.6 / 0.4)
    both = _sig(lp + 2 * math.log(0.625 / 0.5))
    one = _sig(lp + math.log(0.625 / 0.5) + math.log(0.375 / 0.5))
    assert r.posterior == pytest.approx([both, one, one])


def test_an_annotator_that_did_not_answer_says_nothing():
    X = np.array([[1, 1, 0], [1, 0, 1]], dtype=bool)
    A = np.array([[1, 1, 1], [1, 0, 1]], dtype=bool)  # annotator 1 did not answer candidate 1's document
    r = estimate(X, A, np.array([1.0, 1.0, 0.5]), max_iter=1)
    # k1: tp = q0 + q2 = 1.5, at = q0 + q2 = 1.5 → s = 2.5 / 3.5; tn = 0.5 (c2), af = 0.5 → f = 1.5 / 2.5
    assert r.sensitivity[1] == pytest.approx(2.5 / 3.5) and r.false_alarm[1] == pytest.approx(1.5 / 2.5)
    s0, f0 = r.sensitivity[0], r.false_alarm[0]
    lp = math.log(float(r.prior) / (1 - float(r.prior)))
    assert r.posterior[1] == pytest.approx(_sig(lp + math.log(s0 / f0)))  # only k0's evidence


def test_a_noisy_annotator_is_outvoted_and_a_recall_starved_one_is_trusted():
    rng = np.random.default_rng(0)
    c_n = 400
    truth = rng.random(c_n) < 0.5
    # k0, k1: precise, miss half of the true spans; k2: precise, misses most; k3: proposes noise
    X = np.vstack([truth & (rng.random(c_n) < 0.6), truth & (rng.random(c_n) < 0.6),
                   truth & (rng.random(c_n) < 0.25), ~truth & (rng.random(c_n) < 0.9)])
    keep = X.any(0)
    X, truth = X[:, keep], truth[keep]
    r = estimate(X, np.ones_like(X), X.mean(0))
    assert r.false_alarm[3] > 0.8 and r.sensitivity[3] < 0.1
    pred = r.posterior > 0.5
    assert (pred == truth).mean() > 0.95
    # a span only the recall-starved k2 proposed is kept: k2 never raises a false alarm
    only2 = X[2] & ~X[[0, 1, 3]].any(0)
    assert only2.any() and pred[only2].all()


def test_per_label_rates_are_separate():
    # labels 0 and 1; annotator 1 proposes label-1 spans nobody else confirms
    X = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=bool)
    labels = np.array([0, 0, 0, 1, 1, 1])
    r = estimate(X, np.ones_like(X), X.mean(0), labels, n_labels=2, per_label=True)
    assert r.sensitivity.shape == (2, 2) and r.prior.shape == (2,)
    assert r.posterior[:3].min() > r.posterior[3:].max()


def _docs():
    return [Document("d1", "Ada Lovelace met Grace Hopper in London ."), Document("d2", "Alan Turing visited Paris .")]


def _ann():
    def sp(d, s, e, lab, text):
        return Span(d, s, e, lab, text)
    a = {"d1": [sp("d1", 0, 12, "PER", "Ada Lovelace"), sp("d1", 17, 29, "PER", "Grace Hopper")],
         "d2": [sp("d2", 0, 11, "PER", "Alan Turing")]}
    b = {"d1": [sp("d1", 0, 12, "PER", "Ada Lovelace"), sp("d1", 33, 39, "LOC", "London")],
         "d2": [sp("d2", 0, 11, "PER", "Alan Turing"), sp("d2", 20, 25, "LOC", "Paris")]}
    c = {"d1": [sp("d1", 0, 12, "PER", "Ada Lovelace"), sp("d1", 17, 29, "PER", "Grace Hopper")],
         "d2": [sp("d2", 0, 11, "PER", "Alan Turing")]}
    return {"a": a, "b": b, "c": c}


@pytest.mark.parametrize("mode", ["annotator", "label"])
def test_reliability_aggregation_selects_proposed_spans_whatever_the_order(mode):
    docs, ann = _docs(), _ann()
    w = {"a": 1.0, "b": 1.0, "c": 1.0}
    out = aggregate(docs, ann, w, labels=["PER", "LOC"], reliability=mode)
    rev = aggregate(docs, dict(reversed(list(ann.items()))), w, labels=["PER", "LOC"], reliability=mode)
    key = lambda o: {d: [(r["start"], r["end"], r["label"]) for r in rows] for d, rows in o.items()}  # noqa: E731
    assert key(out) == key(rev)
    proposed = {(d, s.start, s.end, s.label) for x in ann.values() for d, ss in x.items() for s in ss}
    got = {(d, r["start"], r["end"], r["label"]) for d, rows in out.items() for r in rows}
    assert got <= proposed
    assert ("d1", 0, 12, "PER") in got and ("d2", 0, 11, "PER") in got  # unanimous spans stay


@pytest.mark.parametrize("text,expect", [
    ("consensus", ("consensus", None, False)), ("union", ("vote", 0.0, False)), ("vote:0.25", ("vote", 0.25, False)),
    ("vote", ("vote", 0.5, False)), ("reliability", ("reliability", None, False)),
    ("Reliability:Label", ("reliability", None, True)),
])
def test_aggregation_text_forms(text, expect):
    from diziner.aggregation import Aggregation

    a = Aggregation.parse(text)
    assert (a.method, a.min_support, a.per_label) == expect
    assert Aggregation.parse(str(a)) == a  # the text form round-trips


def test_aggregation_from_the_older_min_support_and_bad_forms():
    from diziner.aggregation import Aggregation
    from diziner.errors import DizinerError

    assert Aggregation.parse(None, 0.0) == Aggregation("vote", 0.0)
    assert Aggregation.parse("vote", 0.3) == Aggregation("vote", 0.3)
    for bad, why in [("majority", "unknown aggregation"), ("vote:x", "must be a number"),
                     ("vote:1.5", r"within \[0, 1\]")]:
        with pytest.raises(DizinerError, match=why):
            Aggregation.parse(bad)
    with pytest.raises(DizinerError, match="applies to the span vote"):
        Aggregation.parse("reliability", 0.5)


def test_reliability_rows_carry_their_posterior():
    docs, ann = _docs(), _ann()
    out = aggregate(docs, ann, {"a": 1.0, "b": 1.0, "c": 1.0}, labels=["PER", "LOC"], reliability="annotator")
    rows = [r for rows in out.values() for r in rows]
    assert rows and all(0.5 < r["support"]["posterior"] <= 1.0 for r in rows)
    assert all("posterior" not in r["support"] for rows in aggregate(docs, ann, {"a": 1, "b": 1, "c": 1}).values()
               for r in rows)


def test_cli_rejects_an_unknown_aggregation_in_one_line(tmp_path, examples_dir, capsys):
    from diziner.cli import main

    rc = main(["refine", "--schema", str(examples_dir / "schema.yaml"), "--texts", str(examples_dir / "texts.jsonl"),
               "--pool", str(examples_dir / "pool-local.yaml"), "--out", str(tmp_path / "r"), "--aggregation", "majority"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown aggregation 'majority'" in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "r").exists()
