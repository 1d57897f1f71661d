"""From a `DataConfig` / `ProtocolConfig` to a `CrossDomainData` / `Split`.

The trainer never sees file formats: it receives the `Split` this module builds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib

from transferjax.data.types import CrossDomainData, DataError, Split
from transferjax.errors import ConfigError

DATA_ENV = "TRANSFERJAX_DATA"
DEFAULT_DATASETS = "../shared/datasets"  # relative to the current working directory
SEPARATORS = {
    "": None,
    "auto": None,
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "space": " ",
}
RATED = ("douban", "ml1m_genre", "ml_overlap", "csv")  # datasets data.rating_scale applies to


def datasets_root() -> pathlib.Path:
    """The folder holding the named datasets (cdrib_game_video/, disencdr_sport_phone/,
    douban_book_music/): the environment variable TRANSFERJAX_DATA when set, else
    ../shared/datasets relative to the current working directory (never to where the package
    is installed)."""
    return pathlib.Path(os.environ.get(DATA_ENV) or DEFAULT_DATASETS)


def _root(path: str, default: str) -> pathlib.Path:
    """`path` (data.path) when set, else the dataset folder `default` under `datasets_root()`."""
    if path:
        root = pathlib.Path(path)
        if not root.exists():
            raise DataError(f"dataset folder {root} (data.path) not found")
        return root
    root = datasets_root() / default
    if not root.exists():
        where = (
            f"${DATA_ENV}={os.environ[DATA_ENV]}"
            if os.environ.get(DATA_ENV)
            else f"{DEFAULT_DATASETS} from the current directory {pathlib.Path.cwd()}"
        )
        raise DataError(
            f"dataset folder {root} not found (looked under {where}); set data.path to the "
            f"dataset's folder or {DATA_ENV} to the folder holding {default}/"
        )
    return root


def _rating_scale(dc, default):
    """`data.rating_scale` as (lo, hi), None for "none", `default` when unset."""
    text = dc.rating_scale.strip()
    if not text:
        return default
    if text.lower() == "none":
        return None
    if dc.name not in RATED:
        raise ConfigError(
            f"data.rating_scale={dc.rating_scale!r} does not apply to data.name={dc.name!r}; "
            f"it applies to {', '.join(RATED)}"
        )
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(
            f"data.rating_scale={dc.rating_scale!r}: give 'LO,HI' with finite LO < HI "
            "(e.g. '1,5'), or 'none'"
        )
    return lo, hi


def _csv_format(dc) -> tuple[str | None, str]:
    """(separator, encoding) from `data.sep` / `data.encoding`, checked."""
    from transferjax.data._read import check_encoding

    if dc.name != "csv" and (dc.sep or dc.encoding != "utf-8"):
        raise ConfigError(
            f"data.sep / data.encoding apply to data.name='csv' only (data.name={dc.name!r} "
            "reads its own format)"
        )
    try:
        check_encoding(dc.encoding)
    except ValueError:
        raise ConfigError(
            f"data.encoding={dc.encoding!r} is not a text encoding Python knows "
            "(e.g. utf-8, latin-1, cp1252, utf-16)"
        ) from None
    if dc.sep and not dc.sep.strip():  # a literal tab or space
        return dc.sep, dc.encoding
    return SEPARATORS.get(dc.sep.strip().lower(), dc.sep), dc.encoding


def _pair_target(dc, root) -> str | None:
    """`data.target` checked against the domains a pair folder's names give (`<a>_<b>/`,
    `<b>_<a>/`); None (unset) leaves the loader's default, the first folder's domain."""
    from transferjax.data._pair import pair_folders

    domains = tuple(pair_folders(root))
    if dc.target and dc.target not in domains:
        raise ConfigError(
            f"data.target={dc.target!r} is not valid for {dc.name} at {root}; choose "
            f"{' or '.join(domains)} (the domains its folders name)"
        )
    return dc.target or None


@functools.lru_cache(maxsize=4)
def build_dataset(dc) -> CrossDomainData:
    """Loads the dataset named by `dc.name` (see `DataConfig`) and applies `data.min_rating`
    and `data.k_core` to each domain (`transferjax.data.filters`); the last few are cached in
    memory (configs are frozen, datasets are never modified in place)."""
    if dc.duplicates != "first" and dc.name not in ("ml1m_genre", "ml_overlap"):
        raise ConfigError(
            f"data.duplicates={dc.duplicates!r} applies to the MovieLens datasets (ml1m_genre, "
            f"ml_overlap) only; data.name={dc.name!r} reads its own format"
        )
    from transferjax.data.filters import filter_rows

    return filter_rows(_load(dc), min_rating=dc.min_rating or None, k_core=dc.k_core, where="data.")


def _load(dc) -> CrossDomainData:
    name = dc.name
    sep, encoding = _csv_format(dc)
    if name not in RATED:
        _rating_scale(dc, None)  # raises when set: it does not apply
    if dc.cache and name != "csv":
        raise ConfigError(f"data.cache applies to data.name='csv' only (data.name={name!r})")
    if name == "synthetic":
        from transferjax.data.synthetic import make_synthetic

        data, _ = make_synthetic(**dataclasses.asdict(dc.synthetic))
        return data
    if name == "columnar":
        from transferjax.data.columnar import load_pair

        if not dc.path:
            raise ConfigError("data.name=columnar needs data.path, the pair folder")
        return load_pair(_root(dc.path, ""))
    if name == "cdrib":
        from transferjax.data.cdrib import load_cdrib

        root = _root(dc.path, "cdrib_game_video")
        return load_cdrib(root, target=_pair_target(dc, root))
    if name == "disencdr":
        from transferjax.data.disencdr import load_disencdr

        root = _root(dc.path, "disencdr_sport_phone")
        return load_disencdr(root, target=_pair_target(dc, root))
    if name == "douban":
        from transferjax.data.douban import load_douban

        target = dc.target or "music"
        source = {"music": "book", "book": "music"}.get(target)
        if source is None:
            raise ConfigError(
                f"data.target={target!r} is not valid for douban; choose music or book"
            )
        from transferjax.data.douban import RATING_SCALE

        return load_douban(
            _root(dc.path, "douban_book_music"),
            source=source,
            target=target,
            rating_scale=_rating_scale(dc, RATING_SCALE),
        )
    if name in ("ml1m_genre", "ml_overlap"):
        from transferjax.data import movielens as ml
        from transferjax.data.fetch import load_movielens

        kw = dict(rating_scale=_rating_scale(dc, ml.RATING_SCALE), duplicates=dc.duplicates)
        ml1m = load_movielens("ml-1m", path=dc.path or None, **kw)
        if name == "ml1m_genre":
            return ml.genre_split(ml1m)
        return ml.item_overlap(ml1m, load_movielens("ml-100k", **kw))
    if name == "csv":
        from transferjax.data._ids import match_ids
        from transferjax.data.csv import load_csv

        if not dc.csv_source or not dc.csv_target:
            raise DataError("data.name=csv needs data.csv_source and data.csv_target files")
        kw = dict(
            user_col="user",
            item_col="item",
            rating_col="rating",
            sep=sep,
            encoding=encoding,
            rating_scale=_rating_scale(dc, None),
            settings="data.",
            cache=dc.cache or None,
        )
        src = load_csv(dc.csv_source, **kw)
        tgt = load_csv(dc.csv_target, **kw)
        overlap = match_ids(src.user_ids, tgt.user_ids)
        if not len(overlap):
            raise DataError(
                f"{dc.csv_source} and {dc.csv_target} (data.csv_source, data.csv_target): "
                "no user id appears in both files, so no user can carry interests across"
            )
        return CrossDomainData(source=src, target=tgt, overlap=overlap, name="csv")
    raise DataError(f"unknown dataset {name!r}")


def build_split(pc, data: CrossDomainData) -> Split:
    """Applies the protocol named by `pc.name` (see `ProtocolConfig`)."""
    from transferjax.data import protocols as pr

    if pc.test_file != "test" and pc.name != "released_loo":
        raise ConfigError(
            f"protocol.test_file={pc.test_file!r} applies to protocol.name=released_loo only "
            f"(protocol.name={pc.name!r})"
        )
    if pc.name == "released_loo":
        return pr.released_loo_split(
            data, seed=pc.seed, n_negatives=pc.n_negatives, test_file=pc.test_file
        )
    if pc.name == "cold_start":
        return pr.cold_start_split(
            data, beta=pc.beta, valid_frac=pc.valid_frac, seed=pc.seed, n_negatives=pc.n_negatives
        )
    if pc.name == "published":
        return pr.published_split(data, n_negatives=pc.n_negatives, seed=pc.seed)
    if pc.name == "warm_ratio":
        return pr.warm_ratio_split(
            data, seed=pc.seed, n_negatives=pc.n_negatives, min_rating=pc.min_rating or None
        )
    if pc.name == "warm_loo":
        return pr.warm_loo_split(data, seed=pc.seed, n_negatives=pc.n_negatives)
    raise DataError(f"unknown protocol {pc.name!r}")
