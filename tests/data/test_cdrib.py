"""Tests for the CDRIB Game/Video loader on tiny fixtures and (if present) the real split."""

import re

import numpy as np
import pytest

from transferjax.data.cdrib import load_cdrib
from transferjax.data.types import DataError

# n_overlap=3: users 0, 1 warm; user 2 cold in Game (only in game valid/test); 3+ private.
GAME = {"train": "0\t0\n0\t1\n1\t2\n3\t4\n", "valid": "2\t1\n", "test": "2\t4"}
VIDEO = {"train": "0\t0\n1\t1\n2\t2\n3\t0\n4\t1\n", "valid": "5\t2\n", "test": "5\t0\n"}


def _root(tmp_path, game=None, video=None):
    for folder, files in (
        ("game_video", {**GAME, **(game or {})}),
        ("video_game", {**VIDEO, **(video or {})}),
    ):
        (tmp_path / folder).mkdir(exist_ok=True)
        for part, text in files.items():
            (tmp_path / folder / f"{part}.txt").write_text(text)
    return tmp_path


def test_target_game_keeps_published_split_and_ids(tmp_path):
    d = load_cdrib(_root(tmp_path), target="game", n_overlap=3)
    assert d.name == "cdrib_video_game"
    tgt, src = d.target, d.source
    assert (tgt.n_users, tgt.n_items) == (4, 5)  # max id + 1 over the three game files
    assert (src.n_users, src.n_items) == (6, 3)  # video valid/test only size the index
    assert src.user.tolist() == [0, 1, 2, 3, 4] and src.item.tolist() == [0, 1, 2, 0, 1]
    assert tgt.user.tolist() == [0, 0, 1, 3, 2, 2] and tgt.item.tolist() == [0, 1, 2, 4, 1, 4]
    assert tgt.implicit and src.implicit and tgt.user_ids.tolist() == [0, 1, 2, 3]
    parts = d.published
    assert {k: len(v) for k, v in parts.items()} == {"train": 4, "valid": 1, "test": 1}
    for part in parts.values():
        assert (part.n_users, part.n_items) == (tgt.n_users, tgt.n_items)
    concat = np.concatenate([np.stack([p.user, p.item], 1) for p in parts.values()])
    np.testing.assert_array_equal(concat, np.stack([tgt.user, tgt.item], 1))
    # user 3 has rows in both domains but 3 >= n_overlap: two different people
    assert d.overlap.tolist() == [[0, 0], [1, 1], [2, 2]]


def test_target_video_and_overlap_needs_rows_in_both(tmp_path):
    d = load_cdrib(_root(tmp_path), target="video", n_overlap=3)
    assert d.name == "cdrib_game_video" and len(d.target) == 7 and len(d.source) == 4
    # user 2 has no game *train* rows, so it is not an overlap pair when game is the source
    assert d.overlap.tolist() == [[0, 0], [1, 1]]
    assert load_cdrib(_root(tmp_path), target="video", n_overlap=1).overlap.tolist() == [[0, 0]]
    with pytest.raises(ValueError, match="target must be one of"):
        load_cdrib(tmp_path, target="book")


@pytest.mark.parametrize(
    "part,text,line,pattern",
    [
        ("train", "0\t0\n0\t1\t1\n", 2, "expected 2 fields"),
        ("valid", "2\tx\n", 1, "non-integer value 'x'"),
        ("train", "0\t0\n1\t2\n0\t0\n", 3, r"duplicate row .* first seen on line 1"),
        ("test", "2\t3\n-1\t2\n", 2, "negative user id -1"),
        ("test", "\n", 1, "empty file"),
        ("test", "0\t1\n", 1, r"pair \(0, 1\) also released at .*train.txt:2"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, part, text, line, pattern):
    root = _root(tmp_path, game={part: text})
    with pytest.raises(DataError) as err:
        load_cdrib(root, target="game", n_overlap=3)
    msg = str(err.value)
    assert f"{root / 'game_video' / f'{part}.txt'}:{line}:" in msg and re.search(pattern, msg), msg


@pytest.mark.realdata
@pytest.mark.parametrize(
    "target,sizes,cold,n_pairs",
    [
        ("game", ((25_025, 12_319, 157_721), (19_457, 8_751)), (1953, 2179), 1736 + 226),
        ("video", ((19_457, 8_751, 158_984), (25_025, 12_319)), (1736, 1953), 1736 + 217),
    ],
)
def test_real_cdrib_sizes_and_cold_users(shared_datasets, target, sizes, cold, n_pairs):
    d = load_cdrib(shared_datasets / "cdrib_game_video", target=target)
    (nu, ni, n), (snu, sni) = sizes
    assert (d.target.n_users, d.target.n_items, len(d.target)) == (nu, ni, n)
    assert (d.source.n_users, d.source.n_items) == (snu, sni)
    train, valid, test = (d.published[k] for k in ("train", "valid", "test"))
    lo, hi = cold
    train_users = set(train.users_present().tolist())
    held = np.union1d(valid.users_present(), test.users_present())
    assert held.min() >= lo and held.max() < hi  # valid/test hold exactly cold users
    assert not train_users & set(range(lo, hi))  # published cold users have no target train
    assert len(d.overlap) == n_pairs and d.overlap.max() < 2179
    assert (d.overlap[:, 0] == d.overlap[:, 1]).all()
    # cold users of this task still have source rows to transfer from
    assert set(range(lo, hi)) <= set(d.source.users_present().tolist())
