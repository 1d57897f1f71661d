"""Tests for the Douban Book/Music loader on tiny fixtures and (if present) the real files."""

import re

import numpy as np
import pytest

from transferjax.data.douban import load_douban
from transferjax.data.types import DataError

BOOK = "1\t10\t4\n3\t11\t5\n3\t10\t2\n7\t12\t1"  # no final newline, as released
MUSIC = "3\t5\t3\n9\t5\t4\n1\t6\t5\n1\t5\t2"


def _root(tmp_path, book=BOOK, music=MUSIC):
    for dom, text in (("book", book), ("music", music)):
        (tmp_path / f"douban_{dom}").mkdir(exist_ok=True)
        (tmp_path / f"douban_{dom}" / "ratings.dat").write_text(text)
    return tmp_path


def test_domains_are_indexed_separately_and_overlap_by_raw_user_id(tmp_path):
    d = load_douban(_root(tmp_path))
    src, tgt = d.source, d.target
    assert (src.name, tgt.name, d.name) == ("douban_book", "douban_music", "douban_book_music")
    assert src.user_ids.tolist() == [1, 3, 7] and src.item_ids.tolist() == [10, 11, 12]
    assert tgt.user_ids.tolist() == [1, 3, 9] and tgt.item_ids.tolist() == [5, 6]
    assert (src.n_users, src.n_items, tgt.n_users, tgt.n_items) == (3, 3, 3, 2)
    # rows keep file order; raw ids are recovered through the id maps
    assert src.user_ids[src.user].tolist() == [1, 3, 3, 7]
    assert tgt.item_ids[tgt.item].tolist() == [5, 5, 6, 5]
    np.testing.assert_array_equal(tgt.rating, np.array([3, 4, 5, 2], np.float32))
    pairs = d.overlap
    assert pairs.tolist() == [[0, 0], [1, 1]]
    assert (src.user_ids[pairs[:, 0]] == tgt.user_ids[pairs[:, 1]]).all()


def test_direction_can_be_swapped(tmp_path):
    d = load_douban(_root(tmp_path), source="music", target="book")
    assert d.source.name == "douban_music" and d.name == "douban_music_book"
    assert d.source.user_ids[d.overlap[:, 0]].tolist() == [1, 3]
    with pytest.raises(ValueError, match="differ"):
        load_douban(tmp_path, source="book", target="book")
    with pytest.raises(ValueError, match="unknown Douban domain"):
        load_douban(tmp_path, source="movie")


@pytest.mark.parametrize(
    "bad,line,pattern",
    [
        ("1\t10\t4\n3\t11", 2, "expected 3 fields"),
        ("1\t10\t4\n3\t11\tgood", 2, "non-numeric value 'good'"),
        ("1\t10\t4\n3\t11\tNaN\n", 2, "non-finite rating"),
        ("1\t10\t4\n3\t11\t5\n1\t10\t3", 3, r"duplicate row .* first seen on line 1"),
        ("1\tx\t4", 1, "non-integer value 'x'"),
        ("", 1, "empty file"),
    ],
)
def test_malformed_music_file_names_file_and_line(tmp_path, bad, line, pattern):
    root = _root(tmp_path, music=bad)
    path = root / "douban_music" / "ratings.dat"
    with pytest.raises(DataError) as err:
        load_douban(root)
    assert f"{path}:{line}:" in str(err.value) and re.search(pattern, str(err.value))


def test_missing_file_and_no_shared_user(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_douban(tmp_path)
    with pytest.raises(DataError, match="share no user"):
        load_douban(_root(tmp_path, music="2\t5\t3"))


@pytest.mark.realdata
def test_real_douban_sizes(shared_datasets):
    d = load_douban(shared_datasets / "douban_book_music")
    book, music = d.source, d.target
    assert (len(book), book.n_users, book.n_items) == (96_041, 2_110, 6_777)
    assert (len(music), music.n_users, music.n_items) == (69_709, 1_672, 5_567)
    assert len(d.overlap) == 1_566
    assert (book.user_ids[d.overlap[:, 0]] == music.user_ids[d.overlap[:, 1]]).all()
    for dom in (book, music):
        assert set(np.unique(dom.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
        assert dom.item_ids.min() == 1  # 1-based raw ids kept in the map
        assert (dom.user_counts() > 0).all() and (dom.item_counts() > 0).all()
