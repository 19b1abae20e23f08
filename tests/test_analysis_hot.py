"""Hotspots with discrete U* (K = 2, 3, 8) and agreement that does not reward silence."""
from __future__ import annotations

import pytest

from diziner.analysis import analyze
from diziner.corpus.model import Document, Span

DOC = Document("d", "X0 went to X1 and X2 and X3 , then with Tango today .")
DOCS = [DOC]


def sp(text: str, label: str) -> Span:
    i = DOC.text.index(text)
    return Span("d", i, i + len(text), label, text)


def group(n_major: int, n_minor: int) -> dict:
    """n_major annotators: X0..X3/LOC and Tango/ORG; n_minor: X0/LOC and Tango/PER.

    The minor group's weight share q is the minority on X1..X3 (entity vs O) and on
    Tango (ORG vs PER): the same two-way split. U_bnd(X) = 4q(1-q) while
    U*(Tango) = D_type = 2q(1-q): before, the type confusion never reached the threshold.
    """
    major = [sp(x, "LOC") for x in ("X0", "X1", "X2", "X3")] + [sp("Tango", "ORG")]
    minor = [sp("X0", "LOC"), sp("Tango", "PER")]
    ann = {f"m{i}": {"d": list(major)} for i in range(n_major)}
    ann.update({f"n{i}": {"d": list(minor)} for i in range(n_minor)})
    return ann


def hot_texts(r) -> list[str]:
    return [h["text"] for h in r.hotspots]


def test_k2_type_confusion_is_a_hotspot():
    # two annotators, equal weights: Tango U* = .5, X1..X3 U* = 1; the 80th percentile
    # of U* over disputed tokens was 1.0 and Tango never hot.
    r = analyze(DOCS, group(1, 1))
    assert "Tango" in hot_texts(r)
    tango = next(h for h in r.hotspots if h["text"] == "Tango")
    assert [e["type"] for e in tango["errors"]] == ["type_confusion"]
    assert r.summary["hotspot_threshold"] == pytest.approx(1.0)


def test_k3_type_confusion_is_a_hotspot():
    # F1: m0-m1 = 1, m-n = 2*1/7 -> weights (9/14, 9/14, 4/14)/(22/14): q = 4/22
    # U_bnd(X1..3) = 4q(1-q) = .595 ; D_type(Tango) = 2q(1-q) = .298 -> 2*D_type = .595
    r = analyze(DOCS, group(2, 1))
    q = 4 / 22
    assert r.weights["n0"] == pytest.approx(q)
    assert r.summary["hotspot_threshold"] == pytest.approx(4 * q * (1 - q), abs=1e-4)
    assert "Tango" in hot_texts(r)
    tango = next(h for h in r.hotspots if h["text"] == "Tango")
    assert tango["mean_u_star"] == pytest.approx(2 * q * (1 - q), abs=1e-4)


def test_k8_type_confusion_is_a_hotspot():
    # six major, two minor: F1 major-major 1, major-minor 2/7, minor-minor 1
    # w(major) ∝ (5 + 2*2/7)/7 = 39/49, w(minor) ∝ (6*2/7 + 1)/7 = 19/49 -> q = 38/272
    r = analyze(DOCS, group(6, 2))
    q = 38 / 272
    assert r.weights["n0"] + r.weights["n1"] == pytest.approx(q)
    assert r.summary["hotspot_threshold"] == pytest.approx(4 * q * (1 - q), abs=1e-4)
    assert "Tango" in hot_texts(r)
    # a milder one-annotator type split is not hot: one major annotator says MISC on X0
    ann = group(6, 2)
    ann["m0"]["d"][0] = sp("X0", "MISC")
    r = analyze(DOCS, ann)
    assert "X0" not in hot_texts(r)


# ----------------------------------------------------------------------------- silence


SIL_DOCS = [Document(f"s{i}", f"Person{i} met Person{i}b in Town{i} .") for i in range(3)]


def _s(d: Document, text: str, label: str) -> Span:
    i = d.text.index(text)
    return Span(d.id, i, i + len(text), label, text)


def test_silence_does_not_win_selection():
    # iteration A: 9 spans each, 8 shared -> F1 = 16/18 = .889 ; iteration B: nobody tags anything
    a = {d.id: [_s(d, f"Person{i}", "PER"), _s(d, f"Person{i}b", "PER"), _s(d, f"Town{i}", "LOC")]
         for i, d in enumerate(SIL_DOCS)}
    b = {k: list(v) for k, v in a.items()}
    b["s2"][2] = _s(SIL_DOCS[2], "Town2", "ORG")
    it_a = analyze(SIL_DOCS, {"x": a, "y": b}).to_json()["mean_pairwise_f1"]
    it_b = analyze(SIL_DOCS, {"x": {d.id: [] for d in SIL_DOCS}, "y": {d.id: [] for d in SIL_DOCS}}).to_json()
    assert it_a == pytest.approx(16 / 18)
    assert it_b["mean_pairwise_f1"] == 0.0  # was 1.0: silence scored as perfect agreement
    assert it_b["mean_pairwise_f1"] < it_a
    assert it_b["weights"] == pytest.approx({"x": 0.5, "y": 0.5})  # all F1 0 -> uniform


def test_empty_documents_do_not_raise_agreement():
    a = {"s0": [_s(SIL_DOCS[0], "Person0", "PER"), _s(SIL_DOCS[0], "Town0", "LOC")]}
    b = {"s0": [_s(SIL_DOCS[0], "Person0", "PER")]}
    base = analyze(SIL_DOCS[:1], {"x": a, "y": b}).mean_agreement  # 2*1/3
    a2 = dict(a, s1=[], s2=[])
    b2 = dict(b, s1=[], s2=[])
    more = analyze(SIL_DOCS, {"x": a2, "y": b2}).mean_agreement
    assert base == pytest.approx(2 / 3) and more == pytest.approx(2 / 3)
