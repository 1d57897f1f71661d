"""Tests for the MovieLens loaders (GroupLens, RecBole), genre_split and item_overlap."""

import re
import time
import zipfile

import numpy as np
import pytest

from transferjax.data import movielens as mlmod
from transferjax.data.fetch import default_cache_dir, load_movielens
from transferjax.data.movielens import (
    GENRES_100K,
    MovieLens,
    genre_split,
    item_overlap,
    load_grouplens,
    load_recbole,
)
from transferjax.data.types import DataError

MOVIES_1M = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Amélie (2001)::Comedy|Romance\n"
    "5::Heat (1995)::Action|Crime|Thriller\n"
    "7::Brazil (1985)::Sci-Fi\n"
    "9::Nanook (1922)::Documentary\n"
)  # never rated
RATINGS_1M = "1::5::4::10\n1::2::5::11\n2::7::3::12\n3::1::1::13\n2::2::2::14\n"


def _gl1m(folder, ratings=RATINGS_1M, movies=MOVIES_1M):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_bytes(ratings.encode("latin-1"))
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    return folder


def _flags(*genres):
    return "|".join("1" if g in genres else "0" for g in GENRES_100K)


def _gl100k(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("1\t1\t5\t100\n2\t3\t4\t101\n1\t2\t3\t102\n")
    items = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', 'Comedy')}",
        f"2|Heat (1995)|01-Jan-1995||http://y|{_flags('Action', 'Thriller')}",
        f"3|Léon (1994)|01-Jan-1994||http://z|{_flags('Drama')}",
    ]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    return folder


def _recbole(folder, name, genre_head="genre:token"):
    folder.mkdir(parents=True, exist_ok=True)
    inter = [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "u_1\tToy Story (1995)\t5\t978300760",
        "u_2\tHeat (1995)\t3\t978300761",
        "u_1\tHeat (1995)\t4\t978300762",
        "u_1\tToy Story (1995)\t2\t978300763",
    ]
    item = [
        f"item_id:token\tmovie_title:token\trelease_year:float\t{genre_head}",
        "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy",
        "Heat (1995)\tHeat\t1995\tAction Crime Thriller",
        "Toy Story (1995)\tToy Story\t1995\tComedy",
    ]
    (folder / f"{name}.inter").write_text("\r\n".join(inter) + "\r\n")
    (folder / f"{name}.item").write_text("\r\n".join(item) + "\r\n")
    return folder


def test_grouplens_1m_folder_and_zip_agree(tmp_path):
    ml = load_grouplens(_gl1m(tmp_path / "ml-1m"))
    assert ml.name == "ml-1m" and ml.ratings.item_ids.tolist() == [1, 2, 5, 7, 9]
    assert ml.titles.tolist() == [
        "Toy Story (1995)",
        "Amélie (2001)",
        "Heat (1995)",
        "Brazil (1985)",
        "Nanook (1922)",
    ]
    assert ml.genres[0] == ("Animation", "Children's", "Comedy") and ml.genres[3] == ("Sci-Fi",)
    r = ml.ratings
    assert r.user_ids.tolist() == [1, 2, 3] and (r.n_users, r.n_items) == (3, 5)
    assert r.item_ids[r.item].tolist() == [5, 2, 7, 1, 2] and r.timestamp.tolist()[0] == 10
    arch = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        for f in ("ratings.dat", "movies.dat"):
            zf.write(tmp_path / "ml-1m" / f, f"ml-1m/{f}")
    ml2 = load_grouplens(arch)
    assert (
        ml2.ratings.fingerprint() == r.fingerprint() and ml2.titles.tolist() == ml.titles.tolist()
    )
    assert load_movielens(path=tmp_path).ratings.fingerprint() == r.fingerprint()  # one level down


def test_grouplens_100k_genre_flags(tmp_path):
    ml = load_grouplens(_gl100k(tmp_path))
    assert ml.name == "ml-100k" and ml.titles.tolist()[2] == "Léon (1994)"
    assert ml.genres == (("Animation", "Comedy"), ("Action", "Thriller"), ("Drama",))
    assert ml.ratings.item.tolist() == [0, 2, 1] and ml.ratings.rating.tolist() == [5, 4, 3]


def test_grouplens_errors_name_file_and_line(tmp_path):
    folder = _gl1m(tmp_path / "a", ratings="1::5::4::10\n1::8::5::11\n")
    with pytest.raises(DataError, match=re.escape(f"{folder / 'ratings.dat'}:2: item 8 is not")):
        load_grouplens(folder)
    folder = _gl1m(tmp_path / "b", ratings="1::5::4::10\n1::2::5\n")
    with pytest.raises(DataError, match=re.escape(f"{folder / 'ratings.dat'}:2: expected 4")):
        load_grouplens(folder)
    folder = _gl1m(tmp_path / "c", ratings="1::5::4::10\n1::2::nan::3\n")
    with pytest.raises(
        DataError, match=re.escape(f"{folder / 'ratings.dat'}:2: column 2: non-fin")
    ):
        load_grouplens(folder)
    folder = _gl1m(tmp_path / "d", movies=MOVIES_1M + "5::Heat again (1995)::Drama\n")
    msg = f"{folder / 'movies.dat'}:6: duplicate row for (column 0) = (5); first seen on line 3"
    with pytest.raises(DataError, match=re.escape(msg)):
        load_grouplens(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no GroupLens MovieLens files"):
        load_grouplens(tmp_path / "empty")
    with pytest.raises(DataError, match="neither RecBole files ml-1m.inter"):
        load_movielens(path=tmp_path / "empty")
    with pytest.raises(DataError, match="no such folder or zip file"):
        load_movielens(path=tmp_path / "missing")


@pytest.mark.parametrize(
    "name,genre_head", [("ml-1m", "genre:token"), ("ml-100k", "class:token_seq")]
)
def test_recbole_atomic_files(tmp_path, name, genre_head):
    folder = _recbole(tmp_path / name, name, genre_head)
    ml = load_recbole(folder, name=name)
    # the repeated title keeps its first row; the repeated (user, item) its first rating
    assert ml.titles.tolist() == ["Heat (1995)", "Toy Story (1995)"]
    assert ml.genres == (("Action", "Crime", "Thriller"), ("Animation", "Children's", "Comedy"))
    r = ml.ratings
    assert r.user_ids.tolist() == ["u_1", "u_2"] and r.rating.tolist() == [5.0, 3.0, 4.0]
    assert r.timestamp.tolist() == [978300760, 978300761, 978300762]
    assert load_movielens(name, path=tmp_path).ratings.fingerprint() == r.fingerprint()
    with pytest.raises(DataError, match=re.escape(f"{folder / (name + '.item')}:4: duplicate")):
        load_recbole(folder, name=name, duplicates="error")


def test_recbole_error_line_counts_dropped_duplicates(tmp_path):
    folder = _recbole(tmp_path, "ml-1m")  # line 5 repeats line 2 and is dropped
    with open(folder / "ml-1m.inter", "a") as f:
        f.write("u_3\tNope (2000)\t4\t1\r\n")
    with pytest.raises(DataError, match=r"ml-1m.inter:6: item 'Nope \(2000\)' is not in"):
        load_recbole(folder, name="ml-1m")


def test_recbole_missing_column_lists_available(tmp_path):
    folder = _recbole(tmp_path, "ml-1m")
    text = (folder / "ml-1m.inter").read_text().replace("rating:float", "score:float")
    (folder / "ml-1m.inter").write_text(text)
    with pytest.raises(
        DataError,
        match=r"ml-1m.inter:1: missing column 'rating'; available: "
        r"'user_id:token', 'item_id:token', 'score:float'",
    ):
        load_recbole(folder, name="ml-1m")


def test_genre_split_rule_and_overlap(tmp_path):
    ml = load_grouplens(_gl1m(tmp_path))
    d = genre_split(
        ml,
        source_genres=("Action", "Crime", "Romance"),
        target_genres=("Comedy", "Children's"),
        name="g",
    )
    # Toy Story: Animation (neither), Children's -> target; Amélie: Comedy first -> target;
    # Heat: Action -> source; Brazil: Sci-Fi only -> dropped.
    assert d.source.item_ids.tolist() == [5] and d.target.item_ids.tolist() == [1, 2]
    assert d.source.user_ids.tolist() == [1] and d.target.user_ids.tolist() == [1, 2, 3]
    assert len(d.source) + len(d.target) == 4  # Brazil's rating dropped
    assert d.overlap.tolist() == [[0, 0]] and d.name == "g"
    swapped = genre_split(ml, source_genres=("Comedy",), target_genres=("Action", "Romance"))
    assert swapped.source.item_ids.tolist() == [1, 2] and swapped.target.item_ids.tolist() == [5]


def test_genre_split_errors(tmp_path):
    ml = load_grouplens(_gl1m(tmp_path))
    with pytest.raises(DataError, match=r"intersect: \['Comedy'\]"):
        genre_split(ml, source_genres=("Comedy", "Action"), target_genres=("Comedy",))
    with pytest.raises(DataError, match="no rated movie falls in the genre group"):
        genre_split(ml, source_genres=("Comedy",), target_genres=("Documentary",))
    with pytest.raises(ValueError, match="unknown genres"):
        genre_split(ml, source_genres=("Comedy",), target_genres=("Western",))


def test_item_overlap_matches_titles(tmp_path):
    big = load_grouplens(_gl1m(tmp_path / "ml-1m"))
    small = load_grouplens(_gl100k(tmp_path / "ml-100k"))
    d = item_overlap(big, small)
    assert d.name == "ml-1m_ml-100k" and len(d.overlap) == 0
    titles = [
        (
            big.titles[d.source.item_ids[i] == big.ratings.item_ids][0],
            small.titles[d.target.item_ids[j] == small.ratings.item_ids][0],
        )
        for i, j in d.item_overlap
    ]
    assert titles == [("Toy Story (1995)", "Toy Story (1995)"), ("Heat (1995)", "Heat (1995)")]
    assert d.source.n_items == 4 and d.target.n_items == 3  # rated items only


def test_item_overlap_duplicate_title_uses_first_item(tmp_path):
    base = load_grouplens(_gl1m(tmp_path))
    r = base.ratings
    titles = base.titles.copy()
    titles[0] = "Heat (1995)"  # items 0 and 2 now share a title
    dup = MovieLens(ratings=r, titles=titles, genres=base.genres, name="dup")
    d = item_overlap(base, dup)
    assert d.item_overlap.tolist() == [[1, 1], [2, 0], [3, 3]]  # Amélie, Heat, Brazil


def test_movielens_checks_catalogue_lengths(tmp_path):
    base = load_grouplens(_gl1m(tmp_path))
    with pytest.raises(DataError, match="3 titles and 5 genre lists for 5 items"):
        MovieLens(ratings=base.ratings, titles=base.titles[:3], genres=base.genres, name="x")


def _cached(name):
    folder = default_cache_dir() / name
    if not (folder / f"{name}.inter").is_file():
        pytest.skip(f"{name} not in the cache {folder} (run transferjax.data.fetch once)")
    return folder


@pytest.mark.realdata
@pytest.mark.slow
def test_real_ml1m_from_cache():
    folder = _cached("ml-1m")
    t0 = time.perf_counter()
    ml = load_recbole(folder, name="ml-1m")
    seconds = time.perf_counter() - t0
    r = ml.ratings
    assert (len(r), r.n_users, r.n_items, len(np.unique(r.item))) == (
        1_000_209,
        6_040,
        3_883,
        3_706,
    )
    assert seconds < 30, f"loading ML-1M took {seconds:.1f} s"
    d = genre_split(ml)
    assert (len(d.source), d.source.n_items, len(d.target), d.target.n_items) == (
        654_125,
        2_468,
        346_084,
        1_238,
    )
    assert len(d.overlap) == 6_011 and len(d.target) < len(d.source)
    small = load_recbole(_cached("ml-100k"), name="ml-100k")
    io = item_overlap(ml, small)
    assert (len(io.target), io.target.n_items, len(io.item_overlap)) == (99_693, 1_664, 1_539)
    assert mlmod.SOURCE_GENRES and set(mlmod.SOURCE_GENRES).isdisjoint(mlmod.TARGET_GENRES)
