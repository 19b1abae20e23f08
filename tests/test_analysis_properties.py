"""Property tests (hypothesis) of the analysis core."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.analysis import analyze_arrays
from diziner.analysis import scores as S
from diziner.analysis.tags import decode, encode


@st.composite
def tag_matrices(draw, min_k: int = 1, max_k: int = 5):
    k = draw(st.integers(min_k, max_k))
    n = draw(st.integers(1, 30))
    n_labels = draw(st.integers(1, 3))
    flat = draw(st.lists(st.integers(0, 2 * n_labels), min_size=k * n, max_size=k * n))
    Z = np.array(flat, dtype=np.int16).reshape(k, n)
    starts = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    doc_start = np.array(starts, dtype=bool)
    doc_start[0] = True
    return Z, doc_start, n_labels


@st.composite
def weight_vectors(draw, k: int):
    raw = draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))
    return S.normalise(np.array(raw))


def reference_scores(Z, w, n_labels):
    """The formulas written directly on the dense distribution p."""
    p = S.tag_distribution(Z, w, 2 * n_labels + 1)
    d_conf = 1 - (p**2).sum(1)
    m = p[:, 1::2] + p[:, 2::2]
    e = m.sum(1)  # entity mass 1 - p(O), summed directly (1 - p_O loses digits when p_O ~ 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_type = np.where(e > 1e-12, 1 - ((m / e[:, None]) ** 2).sum(1), 0.0)
    qs, qi = p[:, 1::2].sum(1), p[:, 2::2].sum(1)
    u_bnd = np.maximum(4 * qs * (1 - qs), 4 * qi * (1 - qi))
    return p, d_conf, d_type, u_bnd


@settings(max_examples=150, deadline=None)
@given(tag_matrices(), st.data())
def test_scores_match_dense_definition_and_lie_in_unit_interval(m, data):
    Z, _, n_labels = m
    w = data.draw(weight_vectors(Z.shape[0]))
    ts = S.token_scores(Z, w)
    p, d_conf, d_type, u_bnd = reference_scores(Z, w, n_labels)
    np.testing.assert_allclose(p.sum(1), 1.0)  # p sums to 1 per token
    np.testing.assert_allclose(ts.d_conf, d_conf, atol=1e-9)
    np.testing.assert_allclose(ts.d_type, np.clip(d_type, 0, 1), atol=1e-9)
    np.testing.assert_allclose(ts.u_bnd, u_bnd, atol=1e-9)
    np.testing.assert_allclose(ts.u_star, np.maximum.reduce([ts.d_conf, ts.d_type, ts.u_bnd]))
    for arr in (ts.d_conf, ts.d_type, ts.u_bnd, ts.u_star, ts.p_consensus, ts.p_o):
        assert np.all((arr >= 0) & (arr <= 1))
    # consensus is an argmax of p, ties to the lowest tag id
    best = p.max(1)
    for i, c in enumerate(ts.consensus.tolist()):
        assert p[i, c] >= best[i] - 1e-9
        assert all(p[i, t] < best[i] - 1e-9 for t in range(c))


@settings(max_examples=100, deadline=None)
@given(tag_matrices(min_k=2), st.data())
def test_permuting_annotators_permutes_weights_and_keeps_u_star(m, data):
    Z, doc_start, n_labels = m
    perm = np.array(data.draw(st.permutations(list(range(Z.shape[0])))))
    a = analyze_arrays(Z, doc_start, n_labels)
    b = analyze_arrays(Z[perm], doc_start, n_labels)
    np.testing.assert_allclose(b.weights, a.weights[perm], atol=1e-12)
    np.testing.assert_allclose(b.scores.u_star, a.scores.u_star, atol=1e-9)
    np.testing.assert_allclose(b.pairwise_f1, a.pairwise_f1[np.ix_(perm, perm)])


@settings(max_examples=100, deadline=None)
@given(tag_matrices(max_k=1), st.integers(1, 5))
def test_identical_annotators_have_no_disagreement(m, k):
    Z1, doc_start, n_labels = m
    Z = np.repeat(Z1, k, axis=0)
    a = analyze_arrays(Z, doc_start, n_labels)
    assert np.all(a.scores.u_star == 0)
    assert not a.hot.any() and len(a.hotspot_starts) == 0
    np.testing.assert_allclose(a.weights, np.full(k, 1 / k))
    assert a.scores.consensus.tolist() == Z1[0].tolist()


@settings(max_examples=100, deadline=None)
@given(tag_matrices(), st.floats(0, 100))
def test_hotspots_are_hot_runs_within_documents(m, pct):
    Z, doc_start, n_labels = m
    a = analyze_arrays(Z, doc_start, n_labels, percentile=pct)
    assert np.all(a.scores.u_star[a.hot] > 0)
    doc_id = np.cumsum(doc_start)
    covered = np.zeros(len(a.hot), dtype=bool)
    for s, e in zip(a.hotspot_starts.tolist(), a.hotspot_ends.tolist()):
        assert e > s and doc_id[s] == doc_id[e - 1]  # never across documents
        assert a.hot[s] and a.hot[e - 1]  # runs start and end on hot tokens
        covered[s:e] = True
    assert np.all(covered[a.hot])  # every hot token is in a hotspot
    assert len(a.hotspot_category) == len(a.hotspot_starts)
    assert np.all((a.hotspot_bias >= 0) & (a.hotspot_bias <= 1))


@settings(max_examples=150, deadline=None)
@given(tag_matrices(max_k=1))
def test_decode_encode_roundtrip(m):
    Z, doc_start, _ = m
    s, e, lab = decode(Z[0], doc_start)
    assert np.all(e > s)
    assert np.all(s[1:] >= e[:-1])  # flat, sorted
    again = decode(encode(s, e, lab, Z.shape[1]), doc_start)
    for x, y in zip((s, e, lab), again):
        assert x.tolist() == y.tolist()


@settings(max_examples=100, deadline=None)
@given(tag_matrices(min_k=2), st.data())
def test_scores_with_answered_mask_equal_scores_of_those_who_answered(m, data):
    """p at a token uses only the annotators who answered it, weights renormalised."""
    Z, _, n_labels = m
    k, n = Z.shape
    w = data.draw(weight_vectors(k))
    A = np.array(data.draw(st.lists(st.booleans(), min_size=k * n, max_size=k * n))).reshape(k, n)
    ts = S.token_scores(Z, w, A)
    for i in range(n):
        who = np.flatnonzero(A[:, i])
        if len(who) == 0:
            assert ts.u_star[i] == 0 and ts.d_conf[i] == 0
            continue
        ref = S.token_scores(Z[who, i : i + 1], S.normalise(w[who]))
        for name in ("d_conf", "d_type", "u_bnd", "u_star", "p_o"):
            np.testing.assert_allclose(getattr(ts, name)[i], getattr(ref, name)[0], atol=1e-9, err_msg=name)
        if len(who) == 1:
            assert ts.u_star[i] == 0  # one answer: no disagreement to measure


@settings(max_examples=60, deadline=None)
@given(tag_matrices(min_k=2), st.data())
def test_krippendorff_with_unanswered_values_matches_the_package(m, data):
    import krippendorff

    from diziner.analysis.agreement import krippendorff_alpha

    Z, _, _ = m
    k, n = Z.shape
    A = np.array(data.draw(st.lists(st.booleans(), min_size=k * n, max_size=k * n))).reshape(k, n)
    ours = krippendorff_alpha(Z, A)
    rel = np.where(A, Z.astype(float), np.nan)
    pairable = (A.sum(axis=0) >= 2)
    vals = Z[:, pairable][A[:, pairable]]
    if not pairable.any() or len(np.unique(vals)) < 2:
        assert ours is None
        return
    ref = krippendorff.alpha(reliability_data=rel, level_of_measurement="nominal")
    assert ours is not None and abs(ours - ref) < 1e-9
