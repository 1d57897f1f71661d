"""Tests for the shared delimited-file reader (`data._read`) and `load_csv`."""

import re
import zipfile

import numpy as np
import pytest

from transferjax.data._ids import index_ids, match_ids
from transferjax.data._read import read_header, read_table
from transferjax.data.csv import load_csv
from transferjax.data.types import DataError

CONV = {"user": "str", "item": "str", "rating": "rating"}


def _write(tmp_path, text, name="r.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def _raises(path, line, pattern, fn, *args, **kw):
    with pytest.raises(DataError) as err:
        fn(path, *args, **kw)
    msg = str(err.value)
    assert f"{path}:{line}:" in msg, msg
    assert re.search(pattern, msg), msg
    return msg


@pytest.mark.parametrize(
    "text",
    [
        "user,item,rating\n1,10,4\n2,11,3.5\n",
        "user,item,rating\n1,10,4\n2,11,3.5",  # no final newline
        "user,item,rating\r\n1,10,4\r\n2,11,3.5\r\n\r\n  \n",  # CRLF + blank trailing lines
        "\ufeffuser\titem\trating\n1\t10\t4\n2\t11\t3.5\n",  # BOM, tab detected
    ],
)
def test_read_table_variants_give_same_columns(tmp_path, text):
    t = read_table(_write(tmp_path, text), CONV, unique=("user", "item"))
    assert t["user"].tolist() == ["1", "2"] and t["item"].tolist() == ["10", "11"]
    np.testing.assert_array_equal(t["rating"], np.array([4.0, 3.5], np.float32))
    assert t["rating"].dtype == np.float32 and t.first_line == 2 and t.where(1).endswith(":3")


@pytest.mark.parametrize("sep", ["::", "|", "\t", ","])
def test_explicit_separators_and_indices(tmp_path, sep):
    path = _write(tmp_path, sep.join(["7", "a b", "5"]) + "\n" + sep.join(["8", "c", "1"]))
    t = read_table(path, {1: "str", 0: "int", 2: "rating"}, sep=sep, header=False)
    assert list(t.columns) == [1, 0, 2]
    assert t[0].tolist() == [7, 8] and t[1].tolist() == ["a b", "c"] and t[2].tolist() == [5, 1]


def test_header_matches_recbole_typed_names(tmp_path):
    path = _write(tmp_path, "user_id:token\titem_id:token\trating:float\n1\tx\t2\n")
    t = read_table(path, {"user_id": "str", "rating:float": "rating"})
    assert t["user_id"].tolist() == ["1"] and t["rating:float"].tolist() == [2.0]
    assert read_header(path) == ["user_id:token", "item_id:token", "rating:float"]


def test_quoted_csv_fields(tmp_path):
    path = _write(tmp_path, 'user,item,rating\n1,"Toy Story, The (1995)",4\n2,"a ""b""",3\n')
    t = read_table(path, CONV)
    assert t["item"].tolist() == ["Toy Story, The (1995)", 'a "b"']


def test_latin1_and_wrong_encoding_error(tmp_path):
    path = _write(
        tmp_path, "1::Amélie (2001)::Comedy\n2::Léon (1994)::Drama\n", "m.dat", encoding="latin-1"
    )
    t = read_table(path, {1: "str"}, sep="::", header=False, encoding="latin-1")
    assert t[1].tolist() == ["Amélie (2001)", "Léon (1994)"]
    _raises(path, 1, "not valid utf-8", read_table, {1: "str"}, sep="::", header=False)


def test_zip_member_and_its_error_location(tmp_path):
    arch = tmp_path / "d.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("d/r.csv", "user,item,rating\n1,2,3\n1,3,x\n")
    with pytest.raises(DataError, match=re.escape(f"{arch}!d/r.csv:3: column 'rating'")):
        read_table(arch, CONV, member="d/r.csv")
    t = read_table(arch, {"user": "int"}, member="d/r.csv")
    assert t["user"].tolist() == [1, 1]
    with pytest.raises(DataError, match="no member"):
        read_table(arch, CONV, member="nope.csv")


@pytest.mark.parametrize(
    "body,line,pattern",
    [
        ("1,2,3\n1,3\n", 3, r"expected 3 fields separated by ',', got 2 fields"),
        ("1,2,3\n1,3,4,5\n", 3, r"got 4 fields"),
        ("1,2,3\n\n1,3,4\n", 3, r"got empty line"),
        ("1,2,3\n1,3,abc\n", 3, r"column 'rating': non-numeric value 'abc'"),
        ("1,2,3\n1,3,4\n1,4,nan\n", 4, r"non-finite rating 'nan'"),
        ("1,2,inf\n", 2, r"non-finite rating 'inf'"),
        (
            "1,2,3\n1,3,4\n1,2,5\n",
            4,
            r"duplicate row for \(user, item\) = \('1', '2'\); first seen on line 2",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, body, line, pattern):
    path = _write(tmp_path, "user,item,rating\n" + body)
    _raises(path, line, pattern, read_table, CONV, unique=("user", "item"))


def test_missing_column_lists_available(tmp_path):
    path = _write(tmp_path, "user,item,score\n1,2,3\n")
    msg = _raises(path, 1, r"missing column 'rating'", read_table, CONV)
    assert "available: 'user', 'item', 'score'" in msg
    _raises(path, 1, r"no column 5", read_table, {5: "str"})
    _raises(path, 1, r"has no header", read_table, {"user": "str"}, header=False)


@pytest.mark.parametrize("text,line", [("", 1), ("\n\n", 1), ("user,item,rating\n", 2)])
def test_empty_file(tmp_path, text, line):
    _raises(_write(tmp_path, text), line, "empty file", read_table, CONV)


def test_non_integer_and_callable_converters(tmp_path):
    path = _write(tmp_path, "a,b\n1,x\n2.5,y\n")
    _raises(path, 3, r"column 'a': non-integer value '2.5'", read_table, {"a": "int"})

    def upper(col):
        if any(not s.isalpha() for s in col):
            raise ValueError("letters only")
        return np.array([s.upper() for s in col])

    assert read_table(path, {"b": upper})["b"].tolist() == ["X", "Y"]
    bad = _write(tmp_path, "a,b\n1,x\n2,y1\n", "bad.csv")
    _raises(bad, 3, r"column 'b': bad value 'y1' \(letters only\)", read_table, {"b": upper})


def test_duplicates_first_keeps_first_rows(tmp_path):
    path = _write(tmp_path, "user,item,rating\n1,2,3\n1,3,4\n1,2,5\n2,2,1\n1,3,2\n")
    t = read_table(path, CONV, unique=("user", "item"), duplicates="first")
    assert t["rating"].tolist() == [3.0, 4.0, 1.0]
    assert [t.where(i) for i in range(3)] == [f"{path}:2", f"{path}:3", f"{path}:5"]


def test_timestamp_kind_accepts_integral_floats(tmp_path):
    path = _write(tmp_path, "t\n978300760\n978300761.0\n")
    t = read_table(path, {"t": "timestamp"})
    assert t["t"].dtype == np.int64 and t["t"].tolist() == [978300760, 978300761]


def test_index_ids_orders_deterministically():
    idx, ids = index_ids(["10", "9", "100", "9"])
    assert ids.dtype == np.int64 and ids.tolist() == [9, 10, 100] and idx.tolist() == [1, 0, 2, 0]
    idx, ids = index_ids(np.array(["b", "a", "c", "a"], dtype=object))
    assert ids.tolist() == ["a", "b", "c"] and idx.tolist() == [1, 0, 2, 0]
    _, ids = index_ids(["07", "7"])  # not canonical integers: kept apart, string order
    assert ids.tolist() == ["07", "7"]
    idx, ids = index_ids(np.array([5, -1, 5], np.int64))
    assert idx.dtype == np.int32 and ids.tolist() == [-1, 5] and idx.tolist() == [1, 0, 1]
    rng = np.random.default_rng(0)
    raw = [f"u{k}" for k in rng.integers(0, 50, 200)]
    idx, ids = index_ids(raw)
    assert ids[idx].tolist() == raw and list(ids) == sorted(set(raw))


def test_match_ids_pairs_equal_raw_ids():
    pairs = match_ids(np.array([1, 3, 5, 9]), np.array([2, 3, 9]))
    assert pairs.tolist() == [[1, 1], [3, 2]]
    assert match_ids(np.array([1]), np.array(["1"])).shape == (0, 2)


def test_load_csv_by_name_and_by_index(tmp_path):
    path = _write(tmp_path, "ts,uid,iid,stars\n5,u2,30,4\n6,u1,4,2\n7,u2,4,5\n", "ratings.csv")
    inter = load_csv(path, user_col="uid", item_col="iid", rating_col="stars", timestamp_col="ts")
    assert inter.name == "ratings" and (inter.n_users, inter.n_items) == (2, 2)
    assert inter.user_ids.tolist() == ["u1", "u2"] and inter.item_ids.tolist() == [4, 30]
    assert inter.user.tolist() == [1, 0, 1] and inter.item.tolist() == [1, 0, 0]
    np.testing.assert_array_equal(inter.rating, [4, 2, 5])
    assert inter.timestamp.tolist() == [5, 6, 7]
    noh = _write(tmp_path, "u2\t30\t4\nu1\t4\t2\n", "x.tsv")
    inter2 = load_csv(noh, user_col=0, item_col=1, rating_col=2, header=False, name="d")
    assert inter2.name == "d" and inter2.rating.tolist() == [4.0, 2.0] and inter2.timestamp is None


def test_load_csv_implicit_and_errors(tmp_path):
    path = _write(tmp_path, "u,i,r\n1,2,4\n1,3,2\n")
    assert load_csv(path, user_col="u", item_col="i", rating_col="r", implicit=True).implicit
    assert load_csv(path, user_col="u", item_col="i").rating.tolist() == [1.0, 1.0]
    _raises(
        path,
        1,
        "missing column 'rating'",
        load_csv,
        user_col="u",
        item_col="i",
        rating_col="rating",
    )
    dup = _write(tmp_path, "u,i\n1,2\n1,2\n", "dup.csv")
    _raises(dup, 3, "duplicate row.*first seen on line 2", load_csv, user_col="u", item_col="i")
    with pytest.raises(ValueError, match="must differ"):
        load_csv(path, user_col="u", item_col="u")
