"""Tests for the CDRIB-format loader on tiny pairs (Game/Video, Cloth/Sport) and (if present)
the real Game/Video split: domain names, the inferred overlap threshold and its checks."""

import re

import numpy as np
import pytest

from transferjax.config import DataConfig
from transferjax.data.cdrib import N_OVERLAP, load_cdrib
from transferjax.data.protocols import describe
from transferjax.data.registry import build_dataset
from transferjax.errors import ConfigError, DataError

# Threshold 3: user 0 warm; user 1 cold in Video (game train, video valid/test); user 2 cold in
# Game (video train, game valid/test); 3+ private (user 3 in both folders is two people).
GAME = {"train": "0\t0\n0\t1\n1\t2\n3\t4\n", "valid": "2\t1\n", "test": "2\t4"}
VIDEO = {"train": "0\t0\n2\t1\n2\t2\n3\t0\n4\t1\n", "valid": "1\t2\n", "test": "1\t0\n"}


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
    assert (src.n_users, src.n_items) == (5, 3)  # video valid/test only size the index
    assert src.user.tolist() == [0, 2, 2, 3, 4] and src.item.tolist() == [0, 1, 2, 0, 1]
    assert tgt.user.tolist() == [0, 0, 1, 3, 2, 2] and tgt.item.tolist() == [0, 1, 2, 4, 1, 4]
    assert tgt.implicit and src.implicit and tgt.user_ids.tolist() == [0, 1, 2, 3]
    parts = d.published
    assert {k: len(v) for k, v in parts.items()} == {"train": 4, "valid": 1, "test": 1}
    for part in parts.values():
        assert (part.n_users, part.n_items) == (tgt.n_users, tgt.n_items)
    concat = np.concatenate([np.stack([p.user, p.item], 1) for p in parts.values()])
    np.testing.assert_array_equal(concat, np.stack([tgt.user, tgt.item], 1))
    # user 3 has rows in both domains but 3 >= the threshold: two different people; user 1
    # (cold in Video) has no video train row, so it is no pair when Video is the source
    assert d.overlap.tolist() == [[0, 0], [2, 2]]
    # the threshold inferred from the files is the one given
    inferred = load_cdrib(tmp_path, target="game")
    assert inferred.overlap.tolist() == d.overlap.tolist()
    assert inferred.info["overlap_threshold"].startswith("3 (inferred")


def test_target_video_and_a_given_threshold_is_checked(tmp_path):
    d = load_cdrib(_root(tmp_path), target="video", n_overlap=3)
    assert d.name == "cdrib_game_video" and len(d.target) == 7 and len(d.source) == 4
    # user 2 has no game *train* rows, so it is not an overlap pair when game is the source
    assert d.overlap.tolist() == [[0, 0], [1, 1]]
    assert load_cdrib(tmp_path).name == "cdrib_video_game"  # default: the first folder's domain
    # 4 is consistent (user 3 is in both folders), so it is accepted, and 3 becomes a pair
    assert load_cdrib(tmp_path, target="video", n_overlap=4).overlap[:, 0].tolist() == [0, 1, 3]
    with pytest.raises(DataError, match=r"game_video.valid.txt:1: cold user 2 is not below"):
        load_cdrib(tmp_path, target="video", n_overlap=1)
    files = re.escape(str(tmp_path / "game_video" / "{train,valid,test}.txt"))
    with pytest.raises(DataError, match=files + ": no row of user 4 of game, yet n_overlap=5"):
        load_cdrib(tmp_path, target="video", n_overlap=5)
    with pytest.raises(ValueError, match="target must be one of"):
        load_cdrib(tmp_path, target="book")


# Another pair, another threshold: Cloth/Sport with T = 7. Users 0-4 warm, 5 cold in Sport,
# 6 cold in Cloth; 7-9 private to Cloth and 7-8 private to Sport (other people).
CLOTH = {
    "train": "0\t0\n0\t1\n1\t1\n2\t2\n3\t3\n4\t0\n5\t2\n7\t3\n8\t1\n9\t0\n",
    "valid": "6\t0\n",
    "test": "6\t1\n6\t3\n",
}
SPORT = {
    "train": "0\t0\n1\t1\n2\t2\n3\t0\n4\t1\n6\t2\n6\t0\n7\t1\n8\t2\n",
    "valid": "5\t0\n",
    "test": "5\t2\n",
}


def _pair(tmp_path, cloth=None, sport=None):
    for folder, files in (
        ("cloth_sport", {**CLOTH, **(cloth or {})}),
        ("sport_cloth", {**SPORT, **(sport or {})}),
    ):
        (tmp_path / folder).mkdir(exist_ok=True)
        for part, text in files.items():
            (tmp_path / folder / f"{part}.txt").write_text(text)
    return tmp_path


def test_any_pair_names_its_domains_and_infers_its_threshold(tmp_path):
    root = _pair(tmp_path)
    d = load_cdrib(root)  # cloth_sport/ sorts first: target cloth, task Sport -> Cloth
    assert d.name == "cdrib_sport_cloth"
    assert (d.target.name, d.source.name) == ("cloth", "sport")
    assert d.info["overlap_threshold"] == "7 (inferred: user ids below it are shared)"
    assert d.info["domains"] == "cloth (cloth_sport/), sport (sport_cloth/)"
    # ids 7 and 8 are in both trains, but at or above the threshold: not the same people
    assert d.overlap.tolist() == [[u, u] for u in (0, 1, 2, 3, 4, 6)]
    d = load_cdrib(root, target="sport")
    assert d.name == "cdrib_cloth_sport" and d.overlap[:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert d.published["test"].user.tolist() == [5]
    # through the registry, and what `transferjax data describe` prints
    data = build_dataset(DataConfig(name="cdrib", path=str(root), target="sport"))
    assert data.name == "cdrib_cloth_sport"
    text = describe(data)
    assert "overlap_threshold: 7 (inferred" in text and "sport (sport_cloth/)" in text
    with pytest.raises(ConfigError, match=r"data.target='game' is not valid for cdrib .* cloth or"):
        build_dataset(DataConfig(name="cdrib", path=str(root), target="game"))


def test_cold_user_without_source_profile_names_user_and_file(tmp_path):
    # cold-in-Cloth user 6 loses its Sport rows: it could only be scored by popularity
    root = _pair(tmp_path, sport={"train": SPORT["train"].replace("6\t2\n6\t0\n", "")})
    with pytest.raises(DataError) as err:
        load_cdrib(root, target="cloth")
    msg = str(err.value)
    assert msg.startswith(f"{root / 'cloth_sport' / 'valid.txt'}:1: cold user 6 of cloth has no ")
    assert f"no row in {root / 'sport_cloth' / 'train.txt'}" in msg, msg
    # a valid/test user with training rows in its own domain is not a cold user
    root = _pair(tmp_path, cloth={"valid": "6\t0\n", "test": "6\t1\n5\t3\n"})
    with pytest.raises(DataError, match=r"cloth_sport.test.txt:2: user 5 also has rows in"):
        load_cdrib(root, target="sport")


def test_files_that_contradict_every_threshold_name_the_file(tmp_path):
    # user 3 is below the threshold the cold users imply (7), yet has no Sport row at all
    root = _pair(tmp_path, sport={"train": SPORT["train"].replace("3\t0\n", "")})
    with pytest.raises(DataError) as err:
        load_cdrib(root, target="cloth")
    msg = str(err.value)
    files = root / "sport_cloth" / "{train,valid,test}.txt"
    assert msg.startswith(f"{files}: no row of user 3 of sport, yet the cold user 6 at "), msg
    assert f"{root / 'cloth_sport' / 'valid.txt'}:1 puts the overlap threshold at 7" in msg
    assert msg.endswith("the files contradict every overlap threshold")
    # a folder that is not one of a pair
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="no pair of domain folders"):
        load_cdrib(tmp_path / "other")


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
    assert d.info["overlap_threshold"].startswith(f"{N_OVERLAP} (inferred")  # from the files
    assert (d.overlap[:, 0] == d.overlap[:, 1]).all()
    # cold users of this task still have source rows to transfer from
    assert set(range(lo, hi)) <= set(d.source.users_present().tolist())
