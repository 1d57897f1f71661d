"""Tests for the DisenCDR dual-domain leave-one-out loader and the released_loo protocol on a
tiny synthetic pair and (if present) the real Sport/Phone files."""

import re

import numpy as np
import pytest

from transferjax.config import DataConfig, ProtocolConfig
from transferjax.data.disencdr import load_disencdr
from transferjax.data.protocols import released_loo_split
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import ConfigError, DataError

# Six users in both domains. Sport: item 7 has one train row (user 0); item 6 occurs only as
# user 2's held-out item, so test.txt leaves that row out; user 5 has one train row.
SPORT_TRAIN = {0: [0, 1, 2, 7], 1: [1, 2, 3], 2: [2, 3, 4], 3: [0, 4, 5], 4: [1, 5, 0], 5: [3]}
SPORT_HELD = {0: 3, 1: 4, 2: 6, 3: 1, 4: 2, 5: 0}
# Phone: item 5 occurs only as user 4's held-out item.
PHONE_TRAIN = {0: [0, 1], 1: [1, 2], 2: [2, 3], 3: [3, 4], 4: [4, 0], 5: [0, 1, 2]}
PHONE_HELD = {0: 2, 1: 3, 2: 4, 3: 0, 4: 5, 5: 3}


def _lines(rows):
    return "".join(f"{u}\t{i}\t1\n" for u, i in rows)


def _files(train, held):
    rows = [(u, i) for u, items in train.items() for i in items]
    known = {i for _, i in rows}
    return {
        "train": _lines(rows),
        "test": _lines((u, i) for u, i in held.items() if i in known),
        "test_original": _lines(held.items()),
    }


def _pair(tmp_path, sport=None, phone=None):
    for folder, files in (
        ("sport_phone", {**_files(SPORT_TRAIN, SPORT_HELD), **(sport or {})}),
        ("phone_sport", {**_files(PHONE_TRAIN, PHONE_HELD), **(phone or {})}),
    ):
        (tmp_path / folder).mkdir(exist_ok=True)
        for part, text in files.items():
            (tmp_path / folder / f"{part}.txt").write_text(text)
    return tmp_path


def _rows(inter):
    return set(zip(inter.user.tolist(), inter.item.tolist(), strict=True))


def test_loader_reads_the_pair_and_keeps_both_test_files(tmp_path):
    d = load_disencdr(_pair(tmp_path), target="sport")
    assert d.name == "disencdr_phone_sport"
    assert (d.target.name, d.source.name) == ("sport", "phone")
    assert (d.target.n_users, d.target.n_items, d.source.n_items) == (6, 8, 6)
    assert d.overlap.tolist() == [[u, u] for u in range(6)]
    assert sorted(d.published) == ["test", "test_original", "train"]
    assert _rows(d.published["test_original"]) == set(SPORT_HELD.items())
    assert _rows(d.published["test"]) == set(SPORT_HELD.items()) - {(2, 6)}
    train = {(u, i) for u, items in SPORT_TRAIN.items() for i in items}
    assert _rows(d.published["train"]) == train
    assert _rows(d.target) == train | set(SPORT_HELD.items())  # every released positive
    # the source trains on its train.txt only: its held-out items are the other task's test
    assert _rows(d.source) == {(u, i) for u, items in PHONE_TRAIN.items() for i in items}
    assert load_disencdr(tmp_path).target.name == "phone"  # phone_sport/ sorts first
    with pytest.raises(ValueError, match="target must be one of"):
        load_disencdr(tmp_path, target="cloth")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_valid_is_carved_from_train_and_never_touches_test(tmp_path, seed):
    d = load_disencdr(_pair(tmp_path), target="sport")
    split = released_loo_split(d, seed=seed, n_negatives=2)
    train, orig = d.published["train"], d.published["test_original"]
    valid = list(zip(split.valid.target_user.tolist(), split.valid.item.tolist(), strict=True))
    assert valid and len({u for u, _ in valid}) == len(valid)  # at most one per user
    for u, i in valid:
        assert i in SPORT_TRAIN[u] and i != SPORT_HELD[u]  # in its train file, not in test
    assert not set(valid) & _rows(orig)
    assert 5 not in {u for u, _ in valid}  # one train row: kept for training
    # train = target_train + valid, and no item loses its last training row
    assert _rows(split.target_train) | set(valid) == _rows(train)
    assert len(split.target_train) + len(valid) == len(train)
    assert set(split.target_train.item.tolist()) == set(train.item.tolist())
    assert 7 not in {i for _, i in valid}  # item 7's only row stays in train
    assert split.info["n_valid"] == len(valid) == 5
    # seeded: the same seed carves the same items
    again = released_loo_split(d, seed=seed, n_negatives=2)
    np.testing.assert_array_equal(again.valid.item, split.valid.item)


def test_full_ranking_leaves_out_what_each_user_was_seen_with(tmp_path):
    """Valid ranks past the user's training rows; test past all of train.txt, the carved
    valid row included (as the official loaders rank the test item against train only)."""
    d = load_disencdr(_pair(tmp_path), target="sport")
    split = released_loo_split(d, seed=0, n_negatives=0)
    for held, seen in (
        (split.valid, _rows(split.target_train)),
        (split.test, _rows(d.published["train"])),
    ):
        users = set(held.target_user.tolist())
        assert _rows(held.exclude) == {(u, i) for u, i in seen if u in users}
    valid = set(zip(split.valid.target_user.tolist(), split.valid.item.tolist(), strict=True))
    tested = set(split.test.target_user.tolist())
    assert {(u, i) for u, i in valid if u in tested} <= _rows(split.test.exclude)
    assert not valid & _rows(split.valid.exclude)


def test_valid_carve_out_depends_on_the_seed(tmp_path):
    d = load_disencdr(_pair(tmp_path), target="sport")
    carved = {tuple(released_loo_split(d, seed=s, n_negatives=0).valid.item) for s in range(8)}
    assert len(carved) > 1


def test_negatives_fixed_by_seed_among_train_items_never_positives(tmp_path):
    d = load_disencdr(_pair(tmp_path), target="sport")
    a = released_loo_split(d, seed=0, n_negatives=2, test_file="test_original")
    b = released_loo_split(d, seed=0, n_negatives=2, test_file="test_original")
    positives = {(u, i) for u, items in SPORT_TRAIN.items() for i in items}
    positives |= set(SPORT_HELD.items())
    train_items = {i for items in SPORT_TRAIN.values() for i in items}
    for part in ("valid", "test"):
        ho, again = getattr(a, part), getattr(b, part)
        np.testing.assert_array_equal(ho.negatives, again.negatives)
        assert ho.negatives.shape == (len(ho), 2)
        for u, row in zip(ho.target_user.tolist(), ho.negatives.tolist(), strict=True):
            assert len(set(row)) == 2 and set(row) <= train_items  # item 6 is never a negative
            assert not {(u, i) for i in row} & positives
    others = [released_loo_split(d, seed=s, n_negatives=2).test.negatives for s in range(1, 6)]
    assert any(
        not np.array_equal(o, released_loo_split(d, seed=0, n_negatives=2).test.negatives)
        for o in others
    )


def test_test_file_selects_the_test_set(tmp_path):
    root = _pair(tmp_path)
    data = build_dataset(DataConfig(name="disencdr", path=str(root), target="sport"))
    kept = build_split(ProtocolConfig(name="released_loo", n_negatives=2), data)
    every = build_split(
        ProtocolConfig(name="released_loo", n_negatives=2, test_file="test_original"), data
    )
    as_rows = lambda ho: set(zip(ho.target_user.tolist(), ho.item.tolist(), strict=True))  # noqa: E731
    assert as_rows(kept.test) == set(SPORT_HELD.items()) - {(2, 6)}
    assert as_rows(every.test) == set(SPORT_HELD.items())
    assert (kept.protocol, every.protocol) == ("released_loo", "released_loo(test_original)")
    assert every.info["test_file"] == "test_original" and kept.info["n_test"] == 5
    # the valid carve-out and the training data do not depend on the test file
    np.testing.assert_array_equal(kept.valid.item, every.valid.item)
    assert (kept.test.pairs[:, 0] == kept.test.pairs[:, 1]).all()  # every user has a source
    with pytest.raises(ConfigError, match="protocol.test_file='test_original' applies to"):
        build_split(ProtocolConfig(name="warm_loo", test_file="test_original"), data)
    with pytest.raises(ConfigError, match=r"data.target='cloth' is not valid for disencdr"):
        build_dataset(DataConfig(name="disencdr", path=str(root), target="cloth"))


def test_released_loo_needs_a_leave_one_out_dataset(tmp_path):
    d = load_disencdr(_pair(tmp_path), target="sport")
    with pytest.raises(DataError, match="protocol.name=released_loo needs a dataset"):
        released_loo_split(type(d)(d.source, d.target, d.overlap, name="x"), n_negatives=2)
    # a test user without training rows (a cold-start split, as CDRIB's) is refused
    train = d.published["train"]
    pub = dict(d.published, train=train.select(train.user != 5))
    cold = type(d)(d.source, d.target, d.overlap, published=pub, name="x")
    with pytest.raises(DataError, match="x/released_loo: user 5 of the test file has no train"):
        released_loo_split(cold, n_negatives=2)


def _case(folder, part, text):
    def write(root):
        files = _files(
            *((SPORT_TRAIN, SPORT_HELD) if folder == "sport_phone" else (PHONE_TRAIN, PHONE_HELD))
        )
        files[part] = text
        _pair(root, **{folder.split("_")[0]: files})
        return root / folder / f"{part}.txt"

    return write


BAD = [
    ("train", "0\t0\t1\n0\t1\n", 2, "expected 3 fields"),
    ("train", "0\t0\t1\n0\tx\t1\n", 2, "non-integer value 'x'"),
    ("train", "0\t0\t1\n0\t1\t2\n", 2, "third field 2, expected 1"),
    ("train", "0\t0\t1\n-1\t1\t1\n", 2, "negative user id -1"),
    ("train", "0\t0\t1\n1\t1\t1\n0\t0\t1\n", 3, r"duplicate row .* first seen on line 1"),
    ("test_original", "0\t3\t1\n1\t4\t1\n0\t5\t1\n", 3, "user 0 has a second held-out row"),
    ("test_original", "0\t3\t1\n1\t1\t1\n", 2, r"held-out pair \(1, 1\) is also a row of"),
    ("test", "0\t3\t1\n1\t2\t1\n", 2, r"pair \(1, 2\) is also a row of"),
    ("test", "0\t3\t1\n1\t0\t1\n", 2, r"pair \(1, 0\) is not a row of .*test_original.txt"),
    ("test", "0\t3\t1\n2\t6\t1\n", 2, "item 6 does not occur in"),
    ("test_original", "0\t3\t1\n9\t5\t1\n", 2, r"user 9 has no row in .*train.txt"),
]


@pytest.mark.parametrize("part,text,line,pattern", BAD)
def test_malformed_lines_name_file_and_line(tmp_path, part, text, line, pattern):
    path = _case("sport_phone", part, text)(tmp_path)
    with pytest.raises(DataError) as err:
        load_disencdr(tmp_path, target="sport")
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: ") and re.search(pattern, msg), msg


def test_test_original_row_missing_from_test_names_the_line(tmp_path):
    # user 3's held-out item 1 occurs in train, so test.txt must hold it too
    held = _files(SPORT_TRAIN, SPORT_HELD)["test"].replace("3\t1\t1\n", "")
    _pair(tmp_path, sport={"test": held})
    with pytest.raises(DataError) as err:
        load_disencdr(tmp_path, target="phone")  # the source's files are checked too
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'sport_phone' / 'test_original.txt'}:4: item 1 "), msg
    assert "yet this row is not in" in msg


@pytest.mark.realdata
@pytest.mark.parametrize(
    "target,items,n_train,n_test,n_cand",
    [("sport", 22_101, 50_558, 3_698, 20_845), ("phone", 14_618, 42_446, 3_999, 13_655)],
)
@pytest.mark.slow
def test_real_sport_phone(shared_datasets, target, items, n_train, n_test, n_cand):
    d = load_disencdr(shared_datasets / "disencdr_sport_phone", target=target)
    assert (d.target.n_users, d.target.n_items) == (4_998, items)
    assert len(d.overlap) == 4_998 and len(d.published["train"]) == n_train
    assert len(d.published["test"]) == n_test and len(d.published["test_original"]) == 4_998
    split = released_loo_split(d, seed=0, n_negatives=999)
    assert split.test.negatives.shape == (n_test, 999) and split.info["n_candidates"] == n_cand
    assert len(split.target_train) + len(split.valid) == n_train
    assert len(np.unique(split.target_train.item)) == n_cand  # no train item lost
