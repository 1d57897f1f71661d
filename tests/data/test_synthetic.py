"""Tests for transferjax.data.synthetic: determinism, knobs, and the ground truth."""

import numpy as np
import pytest

from transferjax.data.synthetic import make_synthetic

SMALL = dict(
    n_overlap=300, n_source_only=100, n_target_only=80, n_items_source=200, n_items_target=150
)


def _arrays(data, truth):
    out = []
    for dom in (data.source, data.target):
        out += [dom.user, dom.item, dom.rating, dom.timestamp]
    return out + [data.overlap, truth.shared, truth.target_items, truth.target_person]


def test_same_seed_identical_different_seed_differs():
    a = _arrays(*make_synthetic(seed=3, **SMALL))
    b = _arrays(*make_synthetic(seed=3, **SMALL))
    c = _arrays(*make_synthetic(seed=4, **SMALL))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(x.shape != z.shape or not np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_sizes_overlap_and_ids():
    data, truth = make_synthetic(seed=1, **SMALL)
    assert data.source.n_users == 400 and data.target.n_users == 380
    assert data.source.n_items == 200 and data.target.n_items == 150
    assert data.overlap.shape == (300, 2)
    # Overlap pairs are the same person, and ids are shuffled independently per domain.
    s, t = data.overlap[:, 0], data.overlap[:, 1]
    np.testing.assert_array_equal(truth.source_person[s], truth.target_person[t])
    np.testing.assert_array_equal(data.source.user_ids, truth.source_person)
    assert np.mean(s == t) < 0.1
    # Non-overlap persons appear in one domain only.
    assert len(np.intersect1d(truth.source_person, truth.target_person)) == 300


@pytest.mark.parametrize("min_per_user", [3, 7])
def test_min_per_user_in_both_domains(min_per_user):
    data, _ = make_synthetic(seed=2, density_target=0.005, min_per_user=min_per_user, **SMALL)
    for dom in (data.source, data.target):
        assert dom.user_counts().min() == min_per_user
    ov = data.overlap
    assert data.source.user_counts()[ov[:, 0]].min() >= min_per_user
    assert data.target.user_counts()[ov[:, 1]].min() >= min_per_user


def test_density_knobs():
    for ds, dt in ((0.05, 0.02), (0.10, 0.04)):
        data, _ = make_synthetic(
            seed=0, density_source=ds, density_target=dt, min_per_user=1, **SMALL
        )
        assert data.source.density == pytest.approx(ds, rel=0.1)
        assert data.target.density == pytest.approx(dt, rel=0.1)
    # No duplicate (user, item) rows.
    key = data.source.user.astype(np.int64) * data.source.n_items + data.source.item
    assert len(np.unique(key)) == len(key)


def test_explicit_ratings_follow_truth_without_noise():
    data, truth = make_synthetic(seed=5, noise=0.0, **SMALL)
    r = data.target.rating
    assert set(np.unique(r)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    f = truth.target_scores(np.arange(data.target.n_users))
    expected = np.clip(np.round(3.0 + f[data.target.user, data.target.item]), 1, 5)
    np.testing.assert_array_equal(r, expected)
    noisy, _ = make_synthetic(seed=5, noise=1.0, **SMALL)
    assert not np.array_equal(noisy.target.rating, r)


def test_implicit_positives_follow_preference():
    data, truth = make_synthetic(seed=6, implicit=True, popularity_skew=0.0, **SMALL)
    assert data.target.implicit and data.source.implicit
    f = truth.target_scores(np.arange(data.target.n_users))
    pos = f[data.target.user, data.target.item]
    assert pos.mean() > f.mean() + 0.5


def test_popularity_skew_concentrates_exposure():
    def top_share(skew):
        data, _ = make_synthetic(seed=7, popularity_skew=skew, **SMALL)
        c = np.sort(data.source.item_counts())[::-1]
        return c[: len(c) // 10].sum() / c.sum()

    flat, skewed = top_share(0.0), top_share(1.2)
    assert flat < 0.15 and skewed > 0.4


def _transfer_r2(shift_deg):
    """Held-out R^2 of the best linear map from source factors to expected target scores.

    Fit on half of the overlap, scored on the other half (enough users that the 13-parameter
    fit per item barely overfits).
    """
    data, truth = make_synthetic(seed=8, shift_deg=shift_deg, **dict(SMALL, n_overlap=2000))
    x = truth.source_user_factors(data.overlap[:, 0]).astype(np.float64)
    y = truth.target_scores(data.overlap[:, 1]).astype(np.float64)
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    half = len(x) // 2
    w, *_ = np.linalg.lstsq(x[:half], y[:half], rcond=None)
    y_te, pred = y[half:], x[half:] @ w
    return 1.0 - ((y_te - pred) ** 2).sum() / ((y_te - y_te.mean(0)) ** 2).sum()


def test_shift_controls_how_much_source_predicts_target():
    r0, r45, r90 = _transfer_r2(0.0), _transfer_r2(45.0), _transfer_r2(90.0)
    # Shared share of the target's user variance is dim_shared / d = 8 / 12 at 0 deg.
    assert r0 > 0.55  # correlation sqrt(r0) ~ 0.8
    assert 0.2 < r45 < 0.45
    assert abs(r90) < 0.06


def test_bad_arguments():
    with pytest.raises(ValueError, match="density"):
        make_synthetic(density_target=0.0, **SMALL)
    with pytest.raises(ValueError, match="min_per_user"):
        make_synthetic(min_per_user=500, **SMALL)
