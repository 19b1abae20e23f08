"""Hand-computed checks of every formula in diziner.analysis.scores / agreement."""
from __future__ import annotations

import numpy as np
import pytest

from diziner.analysis import scores as S
from diziner.analysis.agreement import (
    annotator_span_keys,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_span_f1,
)
from diziner.analysis.tags import decode, encode, tag_names

# tag ids with labels [PER, ORG]: O=0, B-PER=1, I-PER=2, B-ORG=3, I-ORG=4
O, BP, IP, BO, IO = 0, 1, 2, 3, 4


def test_tag_names_order():
    assert tag_names(["PER", "ORG"]) == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]


def test_token_scores_hand_computed():
    w = np.array([0.5, 0.3, 0.2])
    Z = np.array(
        [
            # t0       t1      t2  t3      t4
            [BP, BP, O, O, IO],
            [BO, IP, O, BP, BO],
            [O, IP, O, BP, O],
        ],
        dtype=np.int16,
    )
    ts = S.token_scores(Z, w)
    # t0: p(B-PER)=.5 p(B-ORG)=.3 p(O)=.2
    #   D_conf = 1-(.25+.09+.04) = .62
    #   D_type = 1-((.5/.8)^2+(.3/.8)^2) = 1-(.390625+.140625) = .46875
    #   qs=.8 qi=0 -> U_bnd = 4*.8*.2 = .64 ; U* = .64 ; consensus B-PER (p=.5)
    # t1: p(B-PER)=.5 p(I-PER)=.5 -> D_conf=.5, D_type=0 (one label), qs=qi=.5 -> U_bnd=1, U*=1
    #   tie .5/.5 -> lowest tag id: B-PER
    # t2: all O -> everything 0, consensus O with p=1
    # t3: p(O)=.5 p(B-PER)=.5 -> D_conf=.5 ; D_type = 1-(.5/.5)^2 = 0 ; qs=.5 -> U_bnd=1 ; tie -> O
    # t4: p(I-ORG)=.5 p(B-ORG)=.3 p(O)=.2 -> D_conf=.62 ; D_type=1-(.8/.8)^2=0 ;
    #   qs=.3 -> .84, qi=.5 -> 1 ; U_bnd=1 ; consensus I-ORG
    np.testing.assert_allclose(ts.d_conf, [0.62, 0.5, 0.0, 0.5, 0.62])
    np.testing.assert_allclose(ts.d_type, [0.46875, 0.0, 0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(ts.u_bnd, [0.64, 1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(ts.u_star, [0.64, 1.0, 0.0, 1.0, 1.0])
    assert ts.consensus.tolist() == [BP, BP, O, O, IO]
    np.testing.assert_allclose(ts.p_consensus, [0.5, 0.5, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(ts.p_o, [0.2, 0.0, 1.0, 0.5, 0.2])


def test_d_type_two_labels_no_o():
    # w uniform 1/2: t0 = (B-PER, B-ORG): p_O = 0, m_PER=m_ORG=.5 -> D_type = 1-(.25+.25) = .5
    # D_conf = 1-(.25+.25) = .5 ; qs = 1 -> U_bnd = 0 ; U* = .5
    ts = S.token_scores(np.array([[BP], [BO]]), np.array([0.5, 0.5]))
    assert ts.d_type[0] == pytest.approx(0.5)
    assert ts.d_conf[0] == pytest.approx(0.5)
    assert ts.u_bnd[0] == 0.0
    assert ts.u_star[0] == pytest.approx(0.5)
    assert ts.consensus[0] == BP  # tie: lower tag id


def test_dense_distribution_matches_pairwise_mass():
    w = np.array([0.5, 0.3, 0.2])
    Z = np.array([[BP, O], [BO, O], [BP, IO]])
    p = S.tag_distribution(Z, w, 5)
    np.testing.assert_allclose(p[0], [0, 0.7, 0, 0.3, 0])  # B-PER .5+.2, B-ORG .3
    np.testing.assert_allclose(p[1], [0.8, 0, 0, 0, 0.2])
    mass = S.own_tag_mass(Z, w)
    np.testing.assert_allclose(mass[:, 0], [0.7, 0.3, 0.7])
    np.testing.assert_allclose(mass[:, 1], [0.8, 0.8, 0.2])


def test_pairwise_f1_and_weights_hand_computed():
    # A={s1,s2,s3,s4}, B={s1,s2,s3}, C={s1,s5}
    # F1(A,B)=2*3/7=6/7, F1(A,C)=2*1/6=1/3, F1(B,C)=2*1/5=.4
    keys = [np.array([1, 2, 3, 4]), np.array([1, 2, 3]), np.array([1, 5])]
    f1 = pairwise_span_f1(keys)
    np.testing.assert_allclose(f1[0, 1], 6 / 7)
    np.testing.assert_allclose(f1[0, 2], 1 / 3)
    np.testing.assert_allclose(f1[1, 2], 0.4)
    np.testing.assert_allclose(np.diag(f1), 1.0)
    # means: A=(6/7+1/3)/2=125/210, B=(6/7+.4)/2=132/210, C=(1/3+.4)/2=77/210 ; sum 334/210
    w = S.f1_weights(f1)
    np.testing.assert_allclose(w, [125 / 334, 132 / 334, 77 / 334])
    # elite: B (.395) < .5, + A (.374) -> .770 >= .5
    assert S.elite_set(w) == [1, 0]


def test_f1_of_empty_sets():
    f1 = pairwise_span_f1([np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([7])])
    assert f1[0, 1] == 0.0  # both empty: no evidence of agreement (was 1.0: silence won selection)
    assert f1[0, 2] == 0.0 and f1[1, 2] == 0.0  # empty vs non-empty


def test_all_pairwise_f1_zero_gives_uniform_weights():
    f1 = pairwise_span_f1([np.array([1]), np.array([2]), np.array([3]), np.array([4])])
    np.testing.assert_allclose(S.f1_weights(f1), [0.25] * 4)
    # four equal weights: 0.25 then 0.5 -> the first two by input order
    assert S.elite_set(S.f1_weights(f1)) == [0, 1]


def test_hybrid_weights_hand_computed():
    f1 = np.array([[1, 0.5, 0.5], [0.5, 1, 0.0], [0.5, 0.0, 1]])
    kap = np.array([[1, 0.6, -0.2], [0.6, 1, 0.2], [-0.2, 0.2, 1]])
    # F1 means (.5,.25,.25) -> normalised (.5,.25,.25)
    # κ means (.2,.4,0) -> clipped, normalised (1/3,2/3,0)
    # w = .5*(.5,.25,.25) + .5*(1/3,2/3,0) = (5/12, 11/24, 1/8)
    np.testing.assert_allclose(S.hybrid_weights(f1, kap), [5 / 12, 11 / 24, 1 / 8])
    # all κ ≤ 0 or undefined -> the κ half is uniform
    kap_bad = np.array([[1, np.nan, -0.5], [np.nan, 1, -0.1], [-0.5, -0.1, 1]])
    np.testing.assert_allclose(S.hybrid_weights(f1, kap_bad), 0.5 * np.array([0.5, 0.25, 0.25]) + 0.5 / 3)


def test_elite_set_edge_cases():
    assert S.elite_set(np.array([1.0])) == [0]  # K=1
    assert S.elite_set(np.array([0.5, 0.5])) == [0]  # K=2, tie: input order, .5 reaches .5
    assert S.elite_set(np.array([0.4, 0.6])) == [1]
    assert S.elite_set(np.array([0.2, 0.5, 0.3])) == [1]  # exactly .5 is enough
    assert S.elite_set(np.array([0.3, 0.3, 0.4])) == [2, 0]  # .4 then .7; tie 0/1 -> 0 first
    assert S.elite_set(np.array([])) == []


def test_hotspot_threshold_and_hot_tokens():
    u = np.array([0.0, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # positives [.2,.4,.6,.8,1]; 80th percentile: rank .8*4=3.2 -> .8+.2*(1-.8) = .84
    assert S.hotspot_threshold(u, 80) == pytest.approx(0.84)
    hot, _thr = S.hot_tokens(u, 80)
    assert hot.tolist() == [False] * 6 + [True]
    hot50, thr50 = S.hot_tokens(u, 50)  # median of positives = .6
    assert thr50 == pytest.approx(0.6)
    assert hot50.tolist() == [False] * 4 + [True] * 3
    # percentile 0: every token with U*>0, never a zero token
    assert S.hot_tokens(u, 0)[0].tolist() == [False, False] + [True] * 5


def test_no_disagreement_no_hotspots():
    hot, thr = S.hot_tokens(np.zeros(10), 80)
    assert thr is None and not hot.any()
    # almost all agree: one disputed token among many -> only that one is hot
    u = np.zeros(100)
    u[37] = 0.3
    hot, thr = S.hot_tokens(u, 80)
    assert np.flatnonzero(hot).tolist() == [37]


def test_hotspot_runs_bridge_single_gap_within_documents():
    hot = np.array([1, 0, 1, 0, 0, 1, 1, 0], dtype=bool)
    doc_start = np.zeros(8, dtype=bool)
    doc_start[[0, 5]] = True
    s, e = S.hotspot_runs(hot, doc_start)
    # 0,_,2 bridged -> [0,3); 3,4 two-token gap; [5,7) in the second document
    assert list(zip(s.tolist(), e.tolist())) == [(0, 3), (5, 7)]
    # never bridge or run across a document start
    hot = np.array([1, 0, 1, 1], dtype=bool)
    ds = np.array([1, 0, 1, 0], dtype=bool)
    s, e = S.hotspot_runs(hot, ds)
    assert list(zip(s.tolist(), e.tolist())) == [(0, 1), (2, 4)]
    ds = np.array([1, 1, 0, 0], dtype=bool)  # the gap token starts a document
    s, e = S.hotspot_runs(np.array([1, 0, 1, 0], dtype=bool), ds)
    assert list(zip(s.tolist(), e.tolist())) == [(0, 1), (2, 3)]


def test_elite_rest_tv_hand_computed():
    w = np.array([0.5, 0.3, 0.2])
    Z = np.array([[BP, BP, BP], [BO, BP, BP], [BO, BO, BP]])
    # elite [0]: pE = B-PER 1. Rest {1,2} renormalised (.6,.4).
    # t0: pR = B-ORG 1 -> TV = 1 ; t1: pR = B-PER .6, B-ORG .4 -> TV = .5*(.4+.4) = .4 ; t2: 0
    np.testing.assert_allclose(S.elite_rest_tv(Z, w, [0]), [1.0, 0.4, 0.0])
    # no rest -> 0
    np.testing.assert_allclose(S.elite_rest_tv(Z, w, [0, 1, 2]), [0, 0, 0])


def test_elite_disagreement():
    Z = np.array([[BP, BP, O], [BP, BO, O], [O, O, O]])
    assert S.elite_disagreement(Z, [0, 1]).tolist() == [False, True, False]
    assert not S.elite_disagreement(Z, [2]).any()


def test_cohen_kappa_hand_computed_and_degenerate():
    # po=.75 ; pa=(.5,.5) pb=(.25,.75) -> pe=.125+.375=.5 ; κ=(.75-.5)/.5=.5
    assert cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx(0.5)
    assert cohen_kappa(np.zeros(5, int), np.zeros(5, int)) is None  # all O: undefined
    assert cohen_kappa(np.array([], int), np.array([], int)) is None


def test_fleiss_and_krippendorff_hand_computed():
    Z = np.array([[0, 0], [0, 0], [0, 1]])  # 3 raters, 2 tokens
    # t0 counts [3,0]: P=(9-3)/6=1 ; t1 [2,1]: P=(4+1-3)/6=1/3 ; Pbar=2/3
    # p_j=(5/6,1/6) -> Pe=26/36 ; κ=(2/3-26/36)/(10/36) = -0.2
    assert fleiss_kappa(Z) == pytest.approx(-0.2)
    # α: n=6, n_c=(5,1); observed Σo_ck = (9-9)/2 + (9-5)/2 = 2 ; expected 36-26=10
    # α = 1 - 5*2/10 = 0
    assert krippendorff_alpha(Z) == pytest.approx(0.0)
    all_o = np.zeros((3, 4), dtype=int)
    assert fleiss_kappa(all_o) is None and krippendorff_alpha(all_o) is None
    assert fleiss_kappa(np.zeros((1, 4), int)) is None  # one annotator


def test_agreement_matches_reference_libraries():
    import krippendorff
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = np.random.default_rng(3)
    for _ in range(5):
        Z = rng.integers(0, 5, size=(4, 60))
        Z[:, :30] = Z[0, :30]  # some agreement
        assert cohen_kappa(Z[0], Z[1]) == pytest.approx(cohen_kappa_score(Z[0], Z[1]))
        table = np.stack([np.bincount(Z[:, i], minlength=5) for i in range(Z.shape[1])])
        assert fleiss_kappa(Z) == pytest.approx(sm_fleiss(table, method="fleiss"))
        assert krippendorff_alpha(Z) == pytest.approx(
            krippendorff.alpha(reliability_data=Z, level_of_measurement="nominal")
        )


def test_decode_and_encode():
    doc_start = np.array([1, 0, 0, 0, 1, 0, 0], dtype=bool)
    # B-PER I-PER O I-ORG | I-ORG I-ORG B-PER : a lone I starts a span; no span crosses a document
    z = np.array([BP, IP, O, IO, IO, IO, BP])
    s, e, lab = decode(z, doc_start)
    assert list(zip(s.tolist(), e.tolist(), lab.tolist())) == [(0, 2, 0), (3, 4, 1), (4, 6, 1), (6, 7, 0)]
    assert encode(s, e, lab, 7).tolist() == [BP, IP, O, BO, BO, IO, BP]
    assert decode(np.array([], dtype=np.int16), np.array([], dtype=bool))[0].size == 0


def test_span_keys_from_matrix():
    doc_start = np.array([1, 0, 0, 0], dtype=bool)
    Z = np.array([[BP, IP, O, BO], [BP, O, O, BO]])
    keys = annotator_span_keys(Z, doc_start, 2)
    f1 = pairwise_span_f1(keys)
    # A={(0,2,PER),(3,4,ORG)} B={(0,1,PER),(3,4,ORG)} -> F1 = 2*1/4 = .5
    assert f1[0, 1] == pytest.approx(0.5)


def test_agreement_by_label_hand_computed():
    """Pairwise strict span F1 per label, and its mean over the labels (macro): a label one
    annotator tags and the other never does scores 0; a label nobody tags scores 0 too."""
    from diziner.analysis import analyze
    from diziner.corpus.model import Document

    docs = [Document("d1", "Aspirin caused headache and nausea ."), Document("d2", "Lithium and cisplatin helped .")]

    def sp(doc, t, lab):
        i = doc.text.index(t)
        return doc.span(i, i + len(t), lab)
    a = {"d1": [sp(docs[0], "Aspirin", "Chemical"), sp(docs[0], "headache", "Disease"), sp(docs[0], "nausea", "Disease")],
         "d2": [sp(docs[1], "Lithium", "Chemical"), sp(docs[1], "cisplatin", "Chemical")]}
    b = {"d1": [sp(docs[0], "headache", "Disease"), sp(docs[0], "Aspirin", "Disease")],
         "d2": [sp(docs[1], "Lithium", "Disease")]}
    res = analyze(docs, {"a": a, "b": b}, labels=["Chemical", "Disease", "Species"])
    by = res.agreement_by_label
    # Chemical: a has 3, b has 0 -> 0; Disease: a {headache, nausea}, b {headache, Aspirin, Lithium}: 2*1/5
    assert by == pytest.approx({"Chemical": 0.0, "Disease": 0.4, "Species": 0.0})
    assert res.label_macro_f1 == pytest.approx(0.4 / 3)
    j = res.to_json()
    assert j["agreement_by_label"] == pytest.approx(by) and j["label_macro_f1"] == pytest.approx(0.4 / 3)
    # overall (micro) strict F1 for comparison: 2*1/(5+3)
    assert res.mean_agreement == pytest.approx(0.25)
