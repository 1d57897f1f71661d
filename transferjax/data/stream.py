"""Streaming conversion of a large delimited interaction file into a columnar cache.

`cached_csv` reads a CSV/TSV file once, in blocks of `block_bytes`, into a columnar domain
folder (`transferjax.data.columnar`) keyed by the file and its options, and memory-maps the
folder on every later load. The cache records the file's fingerprint (size, mtime and sha256);
a changed file is converted again, never served stale. Memory during conversion is one block's
Python objects plus arrays proportional to the rows (ids of one column at a time) and to the
distinct ids; memory on load is the pages the run touches.

The result equals `load_csv` on the same file row for row (same dense ids, raw-id maps, notes
and errors): each block goes through the same parser and checks (`transferjax.data._read`), with
line numbers counted across blocks, and ids follow `index_ids`' rule (numeric order when every
id of the column is a canonical integer, else string order).

    inter = cached_csv("big.tsv", "runs/cache", user_col="user", item_col="item",
                       rating_col="rating")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil

import numpy as np

from transferjax.data import _read as R
from transferjax.data._ids import _canonical_ints, check_scale, sparse_notes
from transferjax.data.columnar import finish_domain, load_domain, read_meta
from transferjax.data.types import DataError, Interactions

BLOCK_BYTES = 8 << 20
log = logging.getLogger("transferjax.data")


def fingerprint(path: str | os.PathLike, *, sha256=None) -> dict:
    """{path, size, mtime_ns, sha256} of a file; `sha256`: a hashlib object that has already
    read the whole file (the converter hashes the blocks it parses), else the file is read."""
    path = pathlib.Path(path).resolve()
    st = path.stat()
    h = sha256
    if h is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(BLOCK_BYTES):
                h.update(chunk)
    return {
        "path": str(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": h.hexdigest(),
    }


def cached_csv(
    path, cache, *, block_bytes: int = BLOCK_BYTES, settings: str = "", **options
) -> Interactions:
    """`load_csv(path, **options)` through a columnar cache folder under `cache`.

    The first call converts the file (`convert_csv`); later calls map the converted columns,
    after checking the file's size and mtime against the recorded fingerprint (and, when those
    differ, its sha256). Options are those of `load_csv`; `settings` names the config keys in
    messages and is not part of the cache key.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opts = json.dumps({k: options[k] for k in sorted(options)}, default=str)
    key = hashlib.sha256(f"{path.resolve()}\n{opts}".encode()).hexdigest()[:16]
    folder = pathlib.Path(cache) / f"{path.stem}-{key}"
    meta = read_meta(folder)
    if meta is not None and _same_file(meta["source"], path):
        return load_domain(folder)
    if meta is not None:
        log.warning("note: %s changed since it was converted: converting it again", path)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_csv(path, tmp, block_bytes=block_bytes, settings=settings, **options)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_domain(folder)


def _same_file(recorded: dict | None, path: pathlib.Path) -> bool:
    if not recorded:
        return False
    st = path.stat()
    if st.st_size != recorded["size"]:
        return False
    return (
        st.st_mtime_ns == recorded["mtime_ns"] or fingerprint(path)["sha256"] == recorded["sha256"]
    )


def convert_csv(
    path,
    folder,
    *,
    user_col,
    item_col,
    rating_col=None,
    timestamp_col=None,
    sep=None,
    header=True,
    implicit=False,
    encoding="utf-8",
    name=None,
    rating_scale=None,
    block_bytes: int = BLOCK_BYTES,
    settings: str = "",
) -> None:
    """Converts a delimited file into the columnar domain folder `folder`, in blocks.

    Pass 1 parses each block (checks and errors as `load_csv`), appends ratings and timestamps
    to the folder and spills the block's raw ids; pass 2 maps the raw ids to dense indices
    through the sorted distinct ids of each column, then the (user, item) pairs are checked for
    duplicates. Raises `DataError("path:LINE: ...")` like `load_csv`.
    """
    path, folder = pathlib.Path(path), pathlib.Path(folder)
    use_rating = rating_col is not None and not implicit
    conv = {user_col: "str", item_col: "str"}
    if use_rating:
        conv[rating_col] = "rating"
    if timestamp_col is not None:
        conv[timestamp_col] = "timestamp"
    folder.mkdir(parents=True)
    (folder / "raw").mkdir()
    columns = ["user", "item", "rating"] + ["timestamp"] * (timestamp_col is not None)
    ids = {c: _IdColumn(folder / "raw" / c) for c in ("user", "item")}
    src, rows, first_line = str(path), 0, None
    scale = (
        f"{settings}rating_scale={rating_scale[0]:g},{rating_scale[1]:g}" if rating_scale else ""
    )
    digest = hashlib.sha256()  # of the bytes as the blocks are read: the file is read once
    blocks = _blocks(
        path,
        conv,
        sep=sep,
        header=header,
        encoding=encoding,
        size=block_bytes,
        setting=f"{settings}encoding",
        digest=digest,
    )
    files = {c: open(folder / f"{c}.bin", "wb") for c in columns[2:]}  # noqa: SIM115
    try:
        for table in blocks:
            first_line = table.first_line if first_line is None else first_line
            if use_rating and rating_scale is not None:
                check_scale(table, rating_col, rating_scale, scale)
            ids["user"].add(table[user_col])
            ids["item"].add(table[item_col])
            rating = table[rating_col] if use_rating else np.ones(len(table), np.float32)
            files["rating"].write(np.asarray(rating, np.float32).tobytes())
            if timestamp_col is not None:
                files["timestamp"].write(np.asarray(table[timestamp_col], np.int64).tobytes())
            rows += len(table)
    finally:
        for f in files.values():
            f.close()
    if first_line is None:
        raise DataError(f"{src}:{2 if header else 1}: empty file (no data rows)")
    dense = {}
    for c, col in ids.items():
        dense[c] = col.finish()
        _write_column(folder / f"{c}.bin", col, dense[c])
    labels = tuple(R._key_name(k) for k in (user_col, item_col))
    _check_pairs(folder, rows, dense, labels, src, first_line)
    shutil.rmtree(folder / "raw")
    finish_domain(
        folder,
        rows=rows,
        columns=columns,
        user_ids=dense["user"],
        item_ids=dense["item"],
        name=name if name is not None else path.stem,
        notes=sparse_notes(src, user=dense["user"], item=dense["item"]),
        source=fingerprint(path, sha256=digest),
    )


def _blocks(path, conv, *, sep, header, encoding, size, setting, digest):
    """Yields a `Table` per block of whole lines; `first_line` counts lines across blocks."""
    R.check_encoding(encoding)
    src, line, names, pending, n_fields = str(path), 1, None, b"", None
    with open(path, "rb") as f:
        while True:
            data = f.read(size)
            digest.update(data)
            eof = not data
            buf = pending + data
            cut = len(buf) if eof else buf.rfind(b"\n") + 1
            if not eof and cut == 0:
                pending = buf
                continue
            text = _decode(buf[:cut], src, encoding, line, bom=line == 1, setting=setting)
            pending = buf[cut:]
            lines = text.split("\n")[: None if eof else -1]
            # blank lines are dropped only at the end of the file: hold a trailing run back
            k = len(lines)
            while k and not lines[k - 1].strip():
                k -= 1
            body, held = lines[:k], lines[k:]
            if not eof and held:
                pending = ("\n".join(held) + "\n").encode(encoding) + pending
            if line == 1 and body:
                if sep is None:
                    sep = "\t" if "\t" in body[0] else ","
                if header:
                    names = R._split_one(body[0], sep, sep == "," and '"' in body[0])
                    body, line = body[1:], 2
            if body:
                quoted = sep == "," and any('"' in s for s in body)
                n_fields = n_fields or (
                    len(names) if header else len(R._split_one(body[0], sep, quoted))
                )
                cols = R._columns(body, sep, n_fields, quoted, src, line)
                out = {
                    key: R._convert(
                        cols[j := R._position(key, names, n_fields, src)],
                        kind,
                        R._label(key, names, j),
                        src,
                        line,
                    )
                    for key, kind in conv.items()
                }
                yield R.Table(out, src, line)
                line += len(body)
            if eof:
                return


def _decode(data: bytes, src: str, encoding: str, line: int, *, bom: bool, setting: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        at = line + data[: e.start].count(b"\n")
        hint = f"; {setting}={encoding!r}: set it to the file's encoding" if setting else ""
        raise DataError(f"{src}:{at}: not valid {encoding} text ({e.reason}){hint}") from None
    if bom and text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n")


class _IdColumn:
    """Raw ids of one column, spilled per block; `finish` gives the sorted distinct ids."""

    def __init__(self, stem: pathlib.Path):
        self.stem, self.blocks, self.numeric, self.uniques = stem, 0, True, []

    def add(self, raw: np.ndarray) -> None:
        vals = raw.tolist()
        if self.numeric:
            nums = _canonical_ints(list(dict.fromkeys(vals)))
            if nums is None:
                self._to_strings()
        arr = np.asarray(list(map(int, vals)), np.int64) if self.numeric else np.asarray(vals, str)
        np.save(f"{self.stem}-{self.blocks}.npy", arr, allow_pickle=False)
        self.uniques.append(np.unique(arr))
        self.blocks += 1

    def _to_strings(self) -> None:
        """Earlier blocks held canonical integers only: their text is `str(int)`, exactly."""
        self.numeric = False
        for b in range(self.blocks):
            p = f"{self.stem}-{b}.npy"
            np.save(p, np.load(p).astype(str), allow_pickle=False)
        self.uniques = [u.astype(str) for u in self.uniques]

    def block(self, b: int) -> np.ndarray:
        return np.load(f"{self.stem}-{b}.npy")

    def finish(self) -> np.ndarray:
        if not self.uniques:
            return np.zeros(0, np.int64)
        ids = np.unique(np.concatenate(self.uniques))
        if not self.numeric:  # as narrow as `np.asarray(strings, str)`
            ids = ids.astype(f"U{max(1, int(np.strings.str_len(ids).max()))}")
        return ids


def _write_column(path: pathlib.Path, col: _IdColumn, ids: np.ndarray) -> None:
    with open(path, "wb") as f:
        for b in range(col.blocks):
            f.write(np.searchsorted(ids, col.block(b)).astype(np.int32).tobytes())


def _check_pairs(folder, rows: int, ids: dict, labels: tuple, src: str, first: int) -> None:
    """Raises on the first repeated (user, item) row, naming both lines (as `load_csv`)."""
    user = np.memmap(folder / "user.bin", np.int32, mode="r", shape=(rows,))
    item = np.memmap(folder / "item.bin", np.int32, mode="r", shape=(rows,))
    code = user.astype(np.int64) * len(ids["item"]) + item
    ordered = np.sort(code)
    if not np.any(ordered[1:] == ordered[:-1]):
        return
    del ordered
    order = np.argsort(code, kind="stable")
    dup = np.flatnonzero(code[order[1:]] == code[order[:-1]])
    j = dup[np.argmin(order[dup + 1])]
    a, b = int(order[j]), int(order[j + 1])
    vals = f"{str(ids['user'][user[b]])!r}, {str(ids['item'][item[b]])!r}"
    raise DataError(
        f"{src}:{first + b}: duplicate row for ({', '.join(labels)}) = ({vals}); "
        f"first seen on line {first + a}"
    )
