"""Data: types, loaders, the synthetic generator, protocols and fixed-shape batches."""

from transferjax.data.batches import (
    History,
    epoch_batches,
    gather_bag,
    interest_bags,
    padded_history,
    to_dense_interest,
)
from transferjax.data.cdrib import load_cdrib
from transferjax.data.csv import load_csv
from transferjax.data.disencdr import load_disencdr
from transferjax.data.douban import load_douban
from transferjax.data.fetch import fetch_movielens, load_movielens
from transferjax.data.movielens import (
    MovieLens,
    genre_split,
    item_overlap,
    load_grouplens,
    load_recbole,
)
from transferjax.data.protocols import (
    cold_start_split,
    describe,
    published_split,
    released_loo_split,
    sample_negatives,
    warm_loo_split,
    warm_ratio_split,
)
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.synthetic import SyntheticTruth, make_synthetic
from transferjax.data.types import CrossDomainData, DataError, HeldOut, Interactions, Split

__all__ = [
    "CrossDomainData",
    "DataError",
    "HeldOut",
    "History",
    "Interactions",
    "MovieLens",
    "Split",
    "SyntheticTruth",
    "build_dataset",
    "build_split",
    "cold_start_split",
    "describe",
    "epoch_batches",
    "fetch_movielens",
    "gather_bag",
    "genre_split",
    "interest_bags",
    "item_overlap",
    "load_cdrib",
    "load_csv",
    "load_disencdr",
    "load_douban",
    "load_grouplens",
    "load_movielens",
    "load_recbole",
    "make_synthetic",
    "padded_history",
    "published_split",
    "released_loo_split",
    "sample_negatives",
    "to_dense_interest",
    "warm_loo_split",
    "warm_ratio_split",
]
