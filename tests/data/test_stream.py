"""The columnar cache of a delimited file equals `load_csv` row for row, errors included."""

import hashlib
import os

import numpy as np
import pytest

from transferjax.data import columnar
from transferjax.data.csv import load_csv
from transferjax.data.stream import cached_csv
from transferjax.data.types import DataError

KW = dict(user_col="user", item_col="item", rating_col="rating", timestamp_col="ts")
FIELDS = ("user", "item", "rating", "timestamp", "user_ids", "item_ids")


def _rows(n=300, seed=0, users=4000, items=250):
    rng = np.random.default_rng(seed)
    code = rng.permutation(
        np.unique(
            rng.integers(0, users * 1000, 2 * n) // 1000 * 1000 + rng.integers(0, items, 2 * n)
        )
    )[:n]
    return [
        f"{c // 1000}\t{c % 1000}\t{r}\t{t}"
        for c, r, t in zip(code, rng.integers(1, 6, n), rng.integers(0, 10**9, n), strict=True)
    ]


def _both(tmp_path, text, block, **kw):
    """(load_csv's result or error message, cached_csv's result or error message)."""
    path = tmp_path / "f.tsv"
    path.write_text(text)
    out = []
    for load in (
        lambda: load_csv(path, **kw),
        lambda: cached_csv(path, tmp_path / f"cache{block}", block_bytes=block, **kw),
    ):
        try:
            out.append(load())
        except DataError as e:
            out.append(str(e))
    return out


def _assert_same(a, b):
    for k in FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        if x is None:
            assert y is None, k
            continue
        assert x.dtype == y.dtype, (k, x.dtype, y.dtype)
        np.testing.assert_array_equal(x, y, err_msg=k)
    assert (a.n_users, a.n_items, a.name, a.notes) == (b.n_users, b.n_items, b.name, b.notes)


@pytest.mark.parametrize("block", [5, 97, 1 << 20])
def test_equal_to_load_csv_across_block_sizes(tmp_path, block):
    body = _rows()
    variants = {
        "plain": "user\titem\trating\tts\n" + "\n".join(body) + "\n",
        "crlf, trailing blank lines": "user\titem\trating\tts\r\n" + "\r\n".join(body) + "\r\n\n\n",
        # a string id late in the file turns the whole user column to string order
        "late string id": "user\titem\trating\tts\n"
        + "\n".join(body[:-2] + ["u07" + body[-2][body[-2].index("\t") :], body[-1]]),
        "no header, BOM": "\ufeff" + "\n".join(body),
    }
    for what, text in variants.items():
        kw = (
            KW
            if what != "no header, BOM"
            else dict(user_col=0, item_col=1, rating_col=2, header=False)
        )
        a, b = _both(tmp_path, text, block, **kw)
        assert not isinstance(a, str), (what, a)
        _assert_same(a, b)
    assert b.user_ids.dtype.kind == "i"  # the last variant's ids are numeric
    assert isinstance(b.user, np.ndarray) and b.user.base is not None  # mapped, not copied


@pytest.mark.parametrize("block", [5, 1 << 20])
def test_same_errors_as_load_csv(tmp_path, block):
    body = _rows()
    head = "user\titem\trating\tts\n"
    cases = {
        "duplicate": body[:150] + [body[3]] + body[150:],
        "bad field count": body[:100] + [body[100] + "\textra"] + body[101:],
        "blank line inside": body[:50] + [""] + body[50:],
        "non-finite rating": body[:200] + ["7\t7\tnan\t1"] + body[200:],
    }
    for what, lines in cases.items():
        a, b = _both(tmp_path, head + "\n".join(lines) + "\n", block, **KW)
        assert isinstance(a, str) and a == b, (what, a, b)
    a, b = _both(tmp_path, head, block, **KW)
    assert a == b and "empty file" in a
    a, b = _both(tmp_path, head + "\n".join(body) + "\n", block, rating_scale=(1, 4), **KW)
    assert a == b and "outside the rating scale" in a
    (tmp_path / "latin.tsv").write_bytes(
        head.encode() + "\n".join(body).encode() + b"\n\xff\t1\t1\t1\n"
    )
    with pytest.raises(DataError, match=rf"latin.tsv:{len(body) + 2}: not valid utf-8"):
        cached_csv(tmp_path / "latin.tsv", tmp_path / "c", block_bytes=block, **KW)


def test_converted_once_and_again_when_the_file_changes(tmp_path):
    path = tmp_path / "f.tsv"
    body = _rows()
    path.write_text("user\titem\trating\tts\n" + "\n".join(body) + "\n")
    first = cached_csv(path, tmp_path / "cache", **KW)
    (folder,) = [p for p in (tmp_path / "cache").iterdir()]
    meta = columnar.read_meta(folder)
    assert meta["source"]["size"] == path.stat().st_size
    assert meta["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    stamp = (folder / "user.bin").stat().st_mtime_ns
    again = cached_csv(path, tmp_path / "cache", **KW)
    assert (folder / "user.bin").stat().st_mtime_ns == stamp  # reused, not converted
    _assert_same(first, again)
    # a touched but identical file is recognised by its sha256
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    cached_csv(path, tmp_path / "cache", **KW)
    assert (folder / "user.bin").stat().st_mtime_ns == stamp
    # changed contents are converted again, never served stale
    path.write_text("user\titem\trating\tts\n" + "\n".join(body[:100]) + "\n")
    changed = cached_csv(path, tmp_path / "cache", **KW)
    assert len(changed) == 100
    _assert_same(load_csv(path, **KW), changed)
    # other options are another cache folder
    cached_csv(path, tmp_path / "cache", implicit=True, **KW)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_an_interrupted_conversion_is_not_a_cache(tmp_path):
    path = tmp_path / "f.tsv"
    path.write_text("user\titem\trating\tts\n" + "\n".join(_rows()) + "\n")
    inter = cached_csv(path, tmp_path / "cache", **KW)
    (folder,) = list((tmp_path / "cache").iterdir())
    (folder / "meta.json").unlink()  # as if the process died before the last write
    with pytest.raises(DataError, match="no meta.json"):
        columnar.load_domain(folder)
    _assert_same(inter, cached_csv(path, tmp_path / "cache", **KW))
    with open(folder / "rating.bin", "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(DataError, match="rating.bin: .* expected 300 rows"):
        columnar.load_domain(folder)


def test_registry_reads_csv_through_the_cache(tmp_path):
    from transferjax.config import core as C
    from transferjax.data.registry import build_dataset
    from transferjax.errors import ConfigError

    rows = _rows(400, users=60, items=40)
    src, tgt = tmp_path / "s.tsv", tmp_path / "t.tsv"
    src.write_text("user\titem\trating\n" + "\n".join(r.rsplit("\t", 1)[0] for r in rows[:300]))
    tgt.write_text("user\titem\trating\n" + "\n".join(r.rsplit("\t", 1)[0] for r in rows[300:]))
    plain = build_dataset(C.DataConfig(name="csv", csv_source=str(src), csv_target=str(tgt)))
    cached = build_dataset(
        C.DataConfig(name="csv", csv_source=str(src), csv_target=str(tgt), cache=str(tmp_path))
    )
    _assert_same(plain.source, cached.source)
    _assert_same(plain.target, cached.target)
    np.testing.assert_array_equal(plain.overlap, cached.overlap)
    with pytest.raises(ConfigError, match="data.cache applies to data.name='csv' only"):
        build_dataset(C.DataConfig(cache=str(tmp_path)))
    with pytest.raises(ConfigError, match="data.name=columnar needs data.path"):
        build_dataset(C.DataConfig(name="columnar"))
