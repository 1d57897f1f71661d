"""Bad input to the data layer: each case is a DataError (or ConfigError) naming the file and
line, or the setting, never a traceback from numpy or the codec; plus the dense-remap note."""

import logging
import re

import numpy as np
import pytest

from transferjax.config import DataConfig, ProtocolConfig
from transferjax.data.cdrib import load_cdrib
from transferjax.data.douban import load_douban
from transferjax.data.protocols import describe
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import ConfigError, DataError

# CDRIB-style folders (overlap threshold 3): user 2 is cold in Game (only in game valid/test),
# user 1 cold in Video (only in video valid/test); user 3 is private to each domain.
GAME = {"train": "0\t0\n0\t1\n1\t2\n3\t4\n", "valid": "2\t1\n", "test": "2\t4\n"}
VIDEO = {"train": "0\t0\n2\t1\n2\t2\n3\t0\n", "valid": "1\t1\n", "test": "1\t2\n"}
BOOK = "1\t10\t4\n3\t11\t5\n3\t10\t2\n7\t12\t1"
MUSIC = "3\t5\t3\n9\t5\t4\n1\t6\t5\n1\t5\t2"
SRC = "user,item,rating\n1,10,4\n2,11,5\n3,10,2\n4,12,3\n"
TGT = "user,item,rating\n1,5,3\n2,5,4\n3,6,5\n4,6,1\n1,6,2\n2,6,2\n"


def _cdrib(root, part="train", text=None, folder="game_video"):
    files = {"game_video": dict(GAME), "video_game": dict(VIDEO)}
    if text is not None:
        files[folder][part] = text
    for name, parts in files.items():
        (root / name).mkdir(exist_ok=True)
        for p, body in parts.items():
            (root / name / f"{p}.txt").write_text(body)
    return root / folder / f"{part}.txt"


def _douban(root, music=MUSIC, book=BOOK):
    for dom, text in (("book", book), ("music", music)):
        (root / f"douban_{dom}").mkdir(exist_ok=True)
        (root / f"douban_{dom}" / "ratings.dat").write_text(text)
    return root / "douban_music" / "ratings.dat"


def _csv(root, src=SRC, tgt=TGT, encoding="utf-8"):
    (root / "s.csv").write_bytes(src.encode(encoding))
    (root / "t.csv").write_bytes(tgt.encode(encoding))
    return root / "s.csv", root / "t.csv"


def _csv_data(root, **settings):
    s, t = root / "s.csv", root / "t.csv"
    return build_dataset(DataConfig(name="csv", csv_source=str(s), csv_target=str(t), **settings))


# Each case: (write files into tmp_path -> (file, line) the message must name, or None;
# then load -> raises), the error class, a regex the message must match.
def cdrib_case(part, text, folder="game_video"):
    def run(root):
        path = _cdrib(root, part, text, folder)
        return path, lambda: load_cdrib(root, target="game", n_overlap=3)

    return run


def douban_case(music, **kw):
    def run(root):
        path = _douban(root, music)
        return path, lambda: load_douban(root, **kw)

    return run


def douban_registry_case(music, **settings):
    def run(root):
        path = _douban(root, music)
        cfg = DataConfig(name="douban", path=str(root), **settings)
        return path, lambda: build_dataset(cfg)

    return run


def csv_case(src=SRC, tgt=TGT, encoding="utf-8", **settings):
    def run(root):
        path, _ = _csv(root, src, tgt, encoding)
        return path, lambda: _csv_data(root, **settings)

    return run


FILE_CASES = [
    # ids that would size tables: CDRIB ids are table indices, so they are rejected
    pytest.param(
        cdrib_case("train", "0\t0\n50000000\t1\n1\t2\n3\t4\n"),
        2,
        r"user id 50000000 is out of range: .* hold 5 distinct user ids, .* below "
        r"2 \* 5 \+ 1000 = 1010",
        id="cdrib-user-id-50M",
    ),
    pytest.param(
        cdrib_case("valid", f"2\t{2**40}\n"),
        1,
        r"item id 1099511627776 is out of range",
        id="cdrib-item-id-2**40",
    ),
    pytest.param(
        cdrib_case("test", "2\t4\n99999999999999999999\t1\n"),
        2,
        r"column 0: integer '99999999999999999999' does not fit in int64",
        id="cdrib-id-beyond-int64",
    ),
    pytest.param(cdrib_case("test", "2\t4\n2\t-3\n"), 2, "negative item id -3", id="cdrib-neg"),
    pytest.param(
        cdrib_case("train", "0\t0\n0\tabc\n"), 2, "non-integer value 'abc'", id="cdrib-non-int"
    ),
    pytest.param(
        cdrib_case("test", "2\t4\n2\t3\n"),
        2,
        r"item 3 does not occur in .*game_video/train.txt",
        id="cdrib-test-item-not-in-train",
    ),
    pytest.param(
        cdrib_case("valid", "1\t1\n1\t3\n", folder="video_game"),
        2,
        r"item 3 does not occur in .*video_game/train.txt",
        id="cdrib-source-valid-item-not-in-train",
    ),
    pytest.param(
        cdrib_case("valid", "2\t1\n2\t0\t1\n"),
        2,
        r"expected 2 fields separated by '\\t', got 3 fields",
        id="cdrib-field-count",
    ),
    pytest.param(cdrib_case("valid", ""), 1, "empty file", id="cdrib-empty-file"),
    pytest.param(
        cdrib_case("train", "0\t0\n0\t1\n0\t0\n"),
        3,
        r"duplicate row .* first seen on line 1",
        id="cdrib-duplicate",
    ),
    pytest.param(
        cdrib_case("test", "0\t1\n"), 1, r"pair \(0, 1\) also released at", id="cdrib-two-parts"
    ),
    # ratings: the declared 1-5 scale, non-finite and absurd values
    pytest.param(
        douban_case("3\t5\t3\n9\t5\t47\n1\t6\t5"),
        2,
        r"rating 47 is outside the rating scale \[1, 5\] \(Douban's declared scale; "
        r"data.rating_scale overrides it\)",
        id="douban-rating-47",
    ),
    pytest.param(douban_case("3\t5\tNaN\n"), 1, "non-finite rating 'NaN'", id="douban-nan"),
    pytest.param(douban_case("3\t5\t3\n1\t5\t-inf"), 2, "non-finite rating", id="douban-inf"),
    pytest.param(
        douban_case("3\t5\t3e38\n", rating_scale=None),
        1,
        r"rating '3e38' \(magnitude above 1e\+09\)",
        id="douban-3e38-no-scale",
    ),
    pytest.param(
        douban_case("3\t5\t3\n-9\t5\t4\n"), 2, "negative user id -9", id="douban-negative-id"
    ),
    pytest.param(
        douban_registry_case("3\t5\t3\n9\t5\t6\n", rating_scale="1,5.5"),
        2,
        r"rating 6 is outside the rating scale \[1, 5.5\] \(data.rating_scale=1,5.5\)",
        id="douban-user-scale",
    ),
    # CSV: encoding and separator settings, user scale, malformed rows, empty, duplicates
    pytest.param(
        csv_case(src="user,item,rating\n1,10,4\n2,Amélie,5\n", encoding="latin-1"),
        3,
        r"not valid utf-8 text \(.*\); data.encoding='utf-8': set it to the file's encoding",
        id="csv-wrong-encoding",
    ),
    pytest.param(
        csv_case(src=SRC.replace("2,11,5", "2,11,6"), rating_scale="1,5"),
        3,
        r"rating 6 is outside the rating scale \[1, 5\] \(data.rating_scale=1,5\)",
        id="csv-user-scale",
    ),
    pytest.param(
        csv_case(src=SRC.replace("3,10,2", "3,10,inf")),
        4,
        "non-finite rating 'inf'",
        id="csv-inf-without-scale",
    ),
    pytest.param(
        csv_case(src="user;item;rating\n1;10;4\n2;11\n", sep="semicolon"),
        3,
        r"expected 3 fields separated by ';', got 2 fields",
        id="csv-sep-field-count",
    ),
    pytest.param(csv_case(src="user,item,rating\n"), 2, "empty file", id="csv-empty-file"),
    pytest.param(
        csv_case(src=SRC + "2,11,1\n"),
        6,
        r"duplicate row for \(user, item\) = \('2', '11'\); first seen on line 3",
        id="csv-duplicate",
    ),
]


@pytest.mark.parametrize("case,line,pattern", FILE_CASES)
def test_bad_file_is_data_error_naming_file_and_line(tmp_path, case, line, pattern):
    path, load = case(tmp_path)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert type(err.value) is DataError
    assert f"{path}:{line}: " in msg, msg
    assert re.search(pattern, msg), msg


def _tiny_csv(root, **settings):
    _csv(root)
    return _csv_data(root, **settings)


SETTING_CASES = [
    pytest.param(
        lambda root: _csv(root, tgt="user,item,rating\nu1,5,3\nu2,6,4\n") and _csv_data(root),
        DataError,
        r"s.csv and .*t.csv \(data.csv_source, data.csv_target\): no user id appears in both",
        id="csv-no-overlapping-user",
    ),
    pytest.param(
        lambda root: _douban(root, music="2\t5\t3") and load_douban(root),
        DataError,
        r"douban_book/ratings.dat and .*douban_music/ratings.dat: the domains share no user",
        id="douban-no-overlapping-user",
    ),
    pytest.param(
        lambda root: build_split(ProtocolConfig(beta=0.1), _tiny_csv(root)),
        DataError,
        r"cold-valid user set is empty \(protocol.beta=0.1, protocol.valid_frac=0.5",
        id="cold-start-beta-empties-valid",
    ),
    pytest.param(
        lambda root: build_split(ProtocolConfig(beta=0.99), _tiny_csv(root)),
        DataError,
        r"no warm overlap user is left .*\(protocol.beta=0.99\): lower protocol.beta",
        id="cold-start-beta-leaves-no-warm-user",
    ),
    pytest.param(
        lambda root: build_split(ProtocolConfig(name="published"), _tiny_csv(root)),
        DataError,
        r"protocol.name=published needs a dataset that ships its own split",
        id="published-without-split",
    ),
    pytest.param(
        lambda root: build_split(ProtocolConfig(name="warm_loo"), _tiny_csv(root)),
        DataError,
        r"csv/warm_loo: the valid split is empty .*protocol.name=warm_loo",
        id="warm-loo-empties-valid",
    ),
    pytest.param(
        lambda root: _tiny_csv(root, rating_scale="5,1"),
        ConfigError,
        r"data.rating_scale='5,1': give 'LO,HI' with finite LO < HI",
        id="bad-rating-scale-setting",
    ),
    pytest.param(
        lambda root: _tiny_csv(root, encoding="klingon"),
        ConfigError,
        r"data.encoding='klingon' is not a text encoding",
        id="unknown-encoding-setting",
    ),
    pytest.param(
        lambda root: build_dataset(DataConfig(name="douban", path=str(root), sep=";")),
        ConfigError,
        r"data.sep / data.encoding apply to data.name='csv' only",
        id="sep-on-douban",
    ),
    pytest.param(
        lambda root: build_dataset(DataConfig(name="cdrib", path=str(root), rating_scale="1,5")),
        ConfigError,
        r"data.rating_scale='1,5' does not apply to data.name='cdrib'",
        id="scale-on-implicit-cdrib",
    ),
    pytest.param(
        lambda root: (
            _cdrib(root),
            build_dataset(DataConfig(name="cdrib", path=str(root), target="music")),
        ),
        ConfigError,
        r"data.target='music' is not valid for cdrib",
        id="cdrib-bad-target",
    ),
]


@pytest.mark.parametrize("case,cls,pattern", SETTING_CASES)
def test_bad_setting_or_split_names_the_setting(tmp_path, case, cls, pattern):
    with pytest.raises(cls) as err:
        case(tmp_path)
    assert type(err.value) is cls
    assert re.search(pattern, str(err.value)), str(err.value)


def test_sparse_csv_ids_are_remapped_densely_with_a_note(tmp_path, caplog):
    src = "user,item,rating\n7,10,4\n50000000,11,5\n3,10,2\n"
    tgt = f"user,item,rating\n7,5,3\n50000000,5,4\n3,{2**40},5\n"
    _csv(tmp_path, src, tgt)
    with caplog.at_level(logging.WARNING, logger="transferjax.data"):
        data = _csv_data(tmp_path)
    src_d, tgt_d = data.source, data.target
    assert (src_d.n_users, src_d.n_items, tgt_d.n_users, tgt_d.n_items) == (3, 2, 3, 2)
    assert src_d.user_ids.tolist() == [3, 7, 50000000] and src_d.user.tolist() == [1, 2, 0]
    assert tgt_d.item_ids.tolist() == [5, 2**40] and tgt_d.item.tolist() == [0, 0, 1]
    assert data.overlap.tolist() == [[0, 0], [1, 1], [2, 2]]
    user_note = (
        f"{tmp_path / 's.csv'}: user ids are sparse (largest 50000000 for 3 distinct): "
        "remapped densely to 0..2 in sorted order; raw ids kept in user_ids"
    )
    assert src_d.notes == (user_note,)
    assert len(tgt_d.notes) == 2 and "item ids are sparse (largest 1099511627776" in tgt_d.notes[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "transferjax.data"]
    assert f"note: {user_note}" in logged and len(logged) == 3
    assert f"note: {user_note}" in describe(data).splitlines()


def test_dense_csv_ids_give_no_note_and_settings_are_honoured(tmp_path):
    src = "user;item;rating\n1;Amélie;4\n2;Léon;5\n"
    tgt = "user;item;rating\n1;x;3\n2;y;4\n"
    _csv(tmp_path, src, tgt, encoding="latin-1")
    data = _csv_data(tmp_path, sep=";", encoding="latin-1", rating_scale="1,5")
    assert data.source.item_ids.tolist() == ["Amélie", "Léon"]
    assert data.source.notes == () and data.target.notes == ()
    assert "note:" not in describe(data)


def test_csv_ids_beyond_int64_are_labels_not_a_crash(tmp_path):
    big = "99999999999999999999"
    _csv(tmp_path, f"user,item,rating\n{big},1,4\n7,2,5\n", f"user,item,rating\n{big},1,3\n")
    data = _csv_data(tmp_path)
    assert data.source.user_ids.tolist() == ["7", big]  # labels, in string order
    assert data.overlap.tolist() == [[1, 0]]


def test_douban_scale_can_be_switched_off(tmp_path):
    _douban(tmp_path, music="3\t5\t47\n1\t6\t5")
    cfg = DataConfig(name="douban", path=str(tmp_path), rating_scale="none")
    assert build_dataset(cfg).target.rating.tolist() == [47.0, 5.0]


@pytest.mark.realdata
def test_real_files_pass_the_checks_without_notes(shared_datasets):
    for cfg in (
        DataConfig(name="douban", path=str(shared_datasets / "douban_book_music")),
        DataConfig(name="cdrib", path=str(shared_datasets / "cdrib_game_video")),
    ):
        data = build_dataset(cfg)
        assert data.source.notes == () and data.target.notes == ()
        assert np.isfinite(data.target.rating).all()
