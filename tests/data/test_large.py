"""The large synthetic generator: ratings follow the latent model, person by person, and the
columnar pair it writes loads and trains like any dataset."""

import numpy as np
import pytest

from transferjax.data import columnar, large
from transferjax.data.types import DataError

SIZES = dict(
    n_overlap=700,
    n_source_only=300,
    n_target_only=200,
    n_items_source=90,
    n_items_target=70,
    per_user_source=12.0,
    per_user_target=6.0,
)


def _factors(seed, n_persons, ds, dp):
    """The documented per-block streams: z_sh, z_sp, z_tp, z_turn of every person."""
    out = []
    for lo in range(0, n_persons, large.BLOCK):
        rng = np.random.default_rng([seed, lo // large.BLOCK])
        n = min(large.BLOCK, n_persons - lo)
        out.append([rng.standard_normal((n, k), np.float32) for k in (ds, dp, dp, ds)])
    return [np.concatenate(parts) for parts in zip(*out, strict=True)]


@pytest.mark.parametrize("shift", [0.0, 90.0])
def test_ratings_follow_the_model_and_persons_agree_across_domains(tmp_path, monkeypatch, shift):
    monkeypatch.setattr(large, "BLOCK", 256)  # several blocks
    folder = large.write_synthetic_pair(
        tmp_path / "p", shift_deg=shift, noise=0.0, seed=3, dim_shared=3, dim_private=2, **SIZES
    )
    data = columnar.load_pair(folder)
    sh, sp, tp, turn = _factors(3, 1200, 3, 2)
    rng = np.random.default_rng([3, 1 << 40])
    items = {}
    for dom, n in (("source", 90), ("target", 70)):
        v, b = rng.standard_normal((n, 5), np.float32), 0.3 * rng.standard_normal(n, np.float32)
        rng.permutation(n)
        items[dom] = (v, b)
    a = np.deg2rad(shift)
    views = {
        "source": np.concatenate([sh, sp], 1),
        "target": np.concatenate([np.cos(a) * sh + np.sin(a) * turn, tp], 1),
    }
    for dom in ("source", "target"):
        d = getattr(data, dom)
        person = d.user_ids[d.user]
        v, b = items[dom]
        f = np.einsum("nd,nd->n", views[dom][person], v[d.item]) / np.sqrt(5) + b[d.item]
        want = np.clip(np.round(3.0 + f), 1, 5)
        assert np.mean(want == d.rating) > 0.999  # float32 rounding at .5 boundaries aside
        assert len(np.unique(d.user.astype(np.int64) * d.n_items + d.item)) == len(d)
    # persons: overlap first, then source-only, then target-only; each domain permutes them
    np.testing.assert_array_equal(np.sort(data.source.user_ids), np.arange(1000))
    np.testing.assert_array_equal(np.sort(data.target.user_ids), np.r_[0:700, 1000:1200])
    assert not np.array_equal(data.source.user_ids[:700], np.arange(700))
    s, t = data.overlap.T
    np.testing.assert_array_equal(data.source.user_ids[s], data.target.user_ids[t])
    assert len(data.overlap) == 700 and np.all(np.diff(s) > 0)


def test_counts_popularity_and_determinism(tmp_path):
    one = columnar.load_pair(large.write_synthetic_pair(tmp_path / "a", seed=0, **SIZES))
    two = columnar.load_pair(large.write_synthetic_pair(tmp_path / "b", seed=0, **SIZES))
    other = columnar.load_pair(large.write_synthetic_pair(tmp_path / "c", seed=1, **SIZES))
    for k in ("user", "item", "rating", "user_ids"):
        np.testing.assert_array_equal(getattr(one.source, k), getattr(two.source, k))
        np.testing.assert_array_equal(getattr(one.target, k), getattr(two.target, k))
    assert not np.array_equal(one.target.item, other.target.item[: len(one.target)])
    # every user is present; de-duplication costs a few draws of a 12-per-user mean
    assert len(np.unique(one.source.user)) == one.source.n_users == 1000
    assert 9.0 < len(one.source) / 1000 < 12.5 and 5.0 < len(one.target) / 900 < 6.5
    # Zipf-like exposure: the 10% most drawn items hold well over 10% of the rows
    top = np.sort(one.source.item_counts())[::-1][:9].sum() / len(one.source)
    assert top > 0.2


def test_pair_folder_round_trip_and_errors(tmp_path):
    from transferjax.data.synthetic import make_synthetic

    data, _ = make_synthetic(
        n_overlap=50, n_source_only=10, n_target_only=5, n_items_source=40, n_items_target=30
    )
    columnar.write_pair(tmp_path / "p", data)
    back = columnar.load_pair(tmp_path / "p")
    for dom in ("source", "target"):
        a, b = getattr(data, dom), getattr(back, dom)
        for k in ("user", "item", "rating", "timestamp", "user_ids", "item_ids"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        assert a.fingerprint() == b.fingerprint()
    np.testing.assert_array_equal(back.overlap, data.overlap)
    with pytest.raises(DataError, match="not a columnar pair folder"):
        columnar.load_pair(tmp_path)


def test_a_generated_pair_trains_through_the_registry(tmp_path):
    from transferjax.config import core as C
    from transferjax.data.registry import build_dataset, build_split

    folder = large.write_synthetic_pair(tmp_path / "p", seed=0, **SIZES)
    dc = C.DataConfig(name="columnar", path=str(folder))
    split = build_split(C.ProtocolConfig(name="cold_start", beta=0.2), build_dataset(dc))
    assert len(split.valid.pairs) + len(split.test.pairs) == 140  # 20% of 700 overlap users
    cold = split.test.pairs[:, 1]
    assert not np.isin(cold, split.target_train.user).any()
