"""From a `DataConfig` / `ProtocolConfig` to a `CrossDomainData` / `Split`.

The trainer never sees file formats: it receives the `Split` this module builds.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib

from transferjax.data.types import CrossDomainData, DataError, Split

DATA_ENV = "TRANSFERJAX_DATA"
DEFAULT_DATASETS = "../shared/datasets"  # relative to the current working directory


def datasets_root() -> pathlib.Path:
    """The folder holding the named datasets (cdrib_game_video/, douban_book_music/): the
    environment variable TRANSFERJAX_DATA when set, else ../shared/datasets relative to the
    current working directory (never to where the package is installed)."""
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


@functools.lru_cache(maxsize=4)
def build_dataset(dc) -> CrossDomainData:
    """Loads the dataset named by `dc.name` (see `DataConfig`); the last few are cached in
    memory (configs are frozen, datasets are never modified in place)."""
    name = dc.name
    if name == "synthetic":
        from transferjax.data.synthetic import make_synthetic

        data, _ = make_synthetic(**dataclasses.asdict(dc.synthetic))
        return data
    if name == "cdrib":
        from transferjax.data.cdrib import load_cdrib

        return load_cdrib(_root(dc.path, "cdrib_game_video"), target=dc.target or "game")
    if name == "douban":
        from transferjax.data.douban import load_douban

        target = dc.target or "music"
        source = {"music": "book", "book": "music"}.get(target)
        if source is None:
            raise DataError(f"data.target={target!r} is not valid for douban; choose music or book")
        return load_douban(_root(dc.path, "douban_book_music"), source=source, target=target)
    if name in ("ml1m_genre", "ml_overlap"):
        from transferjax.data import movielens as ml
        from transferjax.data.fetch import load_movielens

        if name == "ml1m_genre":
            return ml.genre_split(load_movielens("ml-1m", path=dc.path or None))
        return ml.item_overlap(
            load_movielens("ml-1m", path=dc.path or None), load_movielens("ml-100k")
        )
    if name == "csv":
        import numpy as np

        from transferjax.data.csv import load_csv
        from transferjax.data.types import CrossDomainData as CDD

        if not dc.csv_source or not dc.csv_target:
            raise DataError("data.name=csv needs data.csv_source and data.csv_target files")
        src = load_csv(dc.csv_source, user_col="user", item_col="item", rating_col="rating")
        tgt = load_csv(dc.csv_target, user_col="user", item_col="item", rating_col="rating")
        common, si, ti = np.intersect1d(src.user_ids, tgt.user_ids, return_indices=True)
        return CDD(source=src, target=tgt, overlap=np.stack([si, ti], 1), name="csv")
    raise DataError(f"unknown dataset {name!r}")


def build_split(pc, data: CrossDomainData) -> Split:
    """Applies the protocol named by `pc.name` (see `ProtocolConfig`)."""
    from transferjax.data import protocols as pr

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
