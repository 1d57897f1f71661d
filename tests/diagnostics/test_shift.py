"""Shift diagnostics on data and models: they grow with the synthetic shift angle, the raw
interest embedding is the SVD it claims, and every method with both sides gives user vectors."""

import jax
import numpy as np
import pytest

from transferjax import config as C
from transferjax import diagnostics as D
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.synthetic import make_synthetic
from transferjax.data.types import Interactions
from transferjax.methods.registry import get_method

ANGLES = (0, 30, 60, 90)

TINY = C.SyntheticConfig(
    n_overlap=80,
    n_source_only=20,
    n_target_only=20,
    n_items_source=40,
    n_items_target=30,
    density_source=0.2,
    density_target=0.15,
    seed=2,
)


def _tiny(method: str, *sets):
    cfg = C.apply_overrides(
        C.RunConfig(
            method=method,
            data=C.DataConfig(name="synthetic", synthetic=TINY),
            protocol=C.ProtocolConfig(beta=0.3, seed=1),
            trainer=C.TrainerConfig(batch_size=64, epochs=2, checkpoint_every=0),
        ),
        ["mf.dim=4", "mf.epochs=2", "mf.batch_size=128", "phi.dims=8,4", "phi.expert_dim=4", *sets],
    )
    return cfg, build_split(cfg.protocol, build_dataset(cfg.data))


def test_latent_cosine_of_overlapping_users_falls_with_the_angle():
    """u_s = [z_sh, z_sp], u_t = [cos a z_sh + sin a z_turn, z_tp]: E[u_s . u_t] = 8 cos a of
    norms ~ sqrt(12) each, so the mean cosine is about (8 / 12) cos a."""
    got = []
    for a in ANGLES:
        data, truth = make_synthetic(n_overlap=2000, n_source_only=0, n_target_only=0, shift_deg=a)
        ov = data.overlap
        x = truth.source_user_factors(ov[:, 0])
        y = truth.target_user_factors(ov[:, 1])
        got.append(float(D.paired_cosine(x, y)))
        assert abs(got[-1] - (8 / 12) * np.cos(np.deg2rad(a))) < 0.03, (a, got[-1])
    assert all(b < a for a, b in zip(got, got[1:])), got


@pytest.mark.slow
def test_raw_interest_shift_grows_with_the_angle():
    """On the synthetic generator (default sizes), the kernel MMD between ridge-mapped source
    and target interest embeddings grows with data.synthetic.shift_deg, and the held-out
    overlapping users' cosine falls (1 - cosine grows)."""
    mmd, cos = [], []
    for a in ANGLES:
        cfg = C.apply_overrides(C.RunConfig(), [f"data.synthetic.shift_deg={a}"])
        split = build_split(cfg.protocol, build_dataset(cfg.data))
        dc = cfg.diagnostics
        sets = D.user_sets(split, max_users=dc.max_users, seed=0)
        v = D.interest_vectors(split, sets, dim=dc.interest_dim, ridge=dc.ridge)
        mmd.append(float(D.kernel_mmd(v.source, v.target)))
        cos.append(float(D.paired_cosine(v.pair_source, v.pair_target)))
    assert all(b > a for a, b in zip(mmd, mmd[1:])), mmd
    assert all(b < a for a, b in zip(cos, cos[1:])), cos
    assert cos[0] > 0.1 and abs(cos[-1]) < 0.05, cos  # at 90 degrees nothing is shared


def test_interest_embedding_is_the_centred_svd_of_the_interest_matrix():
    r = np.random.default_rng(0)
    n_u, n_i = 12, 9
    keep = r.random((n_u, n_i)) < 0.5
    keep[:, 0] = True  # every user has a rating
    keep[-1] = False  # ... but the last, which keeps a zero embedding
    u, i = np.nonzero(keep)
    rating = r.integers(1, 6, len(u)).astype(np.float32)
    inter = Interactions(u, i, rating, n_u, n_i)
    emb = D.interest_embedding(inter, dim=4)  # p = min(4 + 8, 12, 9) = 9: the full SVD
    dense = np.zeros((n_u, n_i))
    mean = np.array([rating[u == k].mean() if (u == k).any() else 0 for k in range(n_u)])
    dense[u, i] = rating - mean[u]
    uu, s, _ = np.linalg.svd(dense, full_matrices=False)
    ref = uu[:, :4] * s[:4]
    ref[:-1] -= ref[:-1].mean(0)
    ref[-1] = 0.0
    sign = np.sign((ref * emb).sum(0))  # singular vectors are defined up to sign
    np.testing.assert_allclose(emb * sign, ref, atol=1e-4)


def test_ridge_map_recovers_a_linear_map():
    r = np.random.default_rng(1)
    x = r.normal(size=(50, 3))
    w = r.normal(size=(3, 2))
    y = x @ w + np.array([0.5, -1.0])
    got = D.ridge_map(x, y, ridge=1e-9)
    np.testing.assert_allclose(got[:-1], w, atol=1e-5)
    np.testing.assert_allclose(got[-1], [0.5, -1.0], atol=1e-5)


@pytest.mark.parametrize("method", ["emcdr", "ptupcdr", "cmf", "dann"])
@pytest.mark.slow
def test_methods_with_both_sides_give_user_vectors(method):
    cfg, split = _tiny(method, "emcdr.mapping=linear")
    built = get_method(method).build(cfg, split)
    params = built.init(jax.random.key(0))
    sets = D.user_sets(split, max_users=50, seed=0)
    v = D.ModelVectors(built, sets)(params)
    d = 4 if method == "dann" else 5  # phi.dims[-1], or [p_u, b_u] of mf.dim 4
    assert v.source.shape == (50, d) and v.target.shape == (len(sets.target), d)
    assert v.pair_source.shape == v.pair_target.shape == (len(sets.pairs), d)
    assert all(np.isfinite(a).all() for a in (v.source, v.target, v.pair_source))
    if method == "emcdr":  # the linear map starts at the identity: x^s_u itself
        src = params["source"]
        want = np.c_[src["user"][sets.source], src["user_bias"][sets.source]]
        np.testing.assert_allclose(v.source, want, rtol=1e-6)
    if method == "cmf":  # an overlap user's two sides are one joint row
        np.testing.assert_allclose(float(D.paired_cosine(v.pair_source, v.pair_target)), 1.0)
    got = D.measure(v)
    assert set(got) == {*D.MEASURES, "n_source", "n_target", "n_pairs"}
    assert all(np.isfinite(x) for x in got.values())


@pytest.mark.parametrize("method", ["mf", "popularity", "lightgcn"])
def test_target_only_methods_have_no_user_vectors(method):
    cfg, split = _tiny(method)
    assert get_method(method).build(cfg, split).represent is None
