"""Columnar on-disk interactions: one raw binary file per column, memory-mapped on load.

A domain folder holds `user.bin` (int32), `item.bin` (int32), `rating.bin` (float32),
optionally `timestamp.bin` (int64), the raw-id maps `user_ids.npy` / `item_ids.npy` and
`meta.json` (format version, row and id counts, name, notes, and, for a converted file, the
source file's fingerprint). A pair folder holds `source/`, `target/`, `overlap.npy`
(int32[k, 2]) and `pair.json`.

Loading maps the columns (`np.memmap`, read-only): opening a pair of 100M interactions costs
page-cache reads, not Python objects, and the process's memory grows only with the pages it
touches. Writers append chunks (`DomainWriter`), so a generator or a streaming converter never
holds more than a chunk; the folder counts as written only once `meta.json` exists, which is
written last.

    pair = load_pair("runs/data/synth-100m")            # CrossDomainData over memmaps
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from transferjax.data.types import CrossDomainData, DataError, Interactions

FORMAT = 1
COLUMNS = {"user": np.int32, "item": np.int32, "rating": np.float32, "timestamp": np.int64}


class DomainWriter:
    """Appends row chunks of one domain to a folder; `close` writes the id maps and meta.json.

    Args:
      folder: the domain folder (created; existing column files are replaced).
      timestamps: whether the domain has a timestamp column.
    """

    def __init__(self, folder: str | os.PathLike, *, timestamps: bool = False):
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "meta.json").unlink(missing_ok=True)
        names = [c for c in COLUMNS if c != "timestamp" or timestamps]
        self._files = {c: open(self.folder / f"{c}.bin", "wb") for c in names}  # noqa: SIM115
        self.rows = 0

    def append(self, **cols: np.ndarray) -> None:
        """Appends rows: `user`, `item`, `rating` (and `timestamp` when declared), equal length."""
        if set(cols) != set(self._files):
            raise ValueError(f"DomainWriter.append needs columns {sorted(self._files)}")
        n = {len(v) for v in cols.values()}
        if len(n) != 1:
            raise ValueError(f"DomainWriter.append: column lengths differ {sorted(n)}")
        for c, f in self._files.items():
            f.write(np.ascontiguousarray(cols[c], dtype=COLUMNS[c]).tobytes())
        self.rows += n.pop()

    def close(self, **meta) -> None:
        """Finishes the folder (`finish_domain`'s keywords but rows and columns)."""
        for f in self._files.values():
            f.close()
        finish_domain(self.folder, rows=self.rows, columns=list(self._files), **meta)


def finish_domain(
    folder, *, rows: int, columns, user_ids, item_ids, name: str, notes=(), source=None
) -> None:
    """Writes a domain folder's id maps (index -> raw id) and meta.json, which marks the
    folder complete; the column files `<column>.bin` must hold `rows` rows already."""
    folder = pathlib.Path(folder)
    np.save(folder / "user_ids.npy", np.asarray(user_ids), allow_pickle=False)
    np.save(folder / "item_ids.npy", np.asarray(item_ids), allow_pickle=False)
    meta = {
        "format": FORMAT,
        "rows": int(rows),
        "n_users": len(user_ids),
        "n_items": len(item_ids),
        "columns": list(columns),
        "name": name,
        "notes": list(notes),
        "source": source,
    }
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(folder / "meta.json")


def write_domain(folder: str | os.PathLike, inter: Interactions, *, source=None) -> None:
    """Writes `inter` as a domain folder (raw ids default to the indices)."""
    w = DomainWriter(folder, timestamps=inter.timestamp is not None)
    cols = dict(user=inter.user, item=inter.item, rating=inter.rating)
    if inter.timestamp is not None:
        cols["timestamp"] = inter.timestamp
    w.append(**cols)
    w.close(
        user_ids=inter.user_ids if inter.user_ids is not None else np.arange(inter.n_users),
        item_ids=inter.item_ids if inter.item_ids is not None else np.arange(inter.n_items),
        name=inter.name,
        notes=inter.notes,
        source=source,
    )


def read_meta(folder: str | os.PathLike) -> dict | None:
    """The domain folder's meta.json, or None when the folder is not (completely) written."""
    path = pathlib.Path(folder) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: columnar format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def load_domain(folder: str | os.PathLike) -> Interactions:
    """A domain folder as `Interactions` whose columns are read-only memmaps.

    Raises:
      DataError: the folder has no meta.json (not written, or interrupted), a column file's
        size disagrees with meta.json, or the rows fail `Interactions`' checks.
    """
    folder = pathlib.Path(folder)
    meta = read_meta(folder)
    if meta is None:
        raise DataError(f"{folder}: not a columnar domain folder (no meta.json)")
    cols = {}
    for c in meta["columns"]:
        path, dtype = folder / f"{c}.bin", np.dtype(COLUMNS[c])
        size = path.stat().st_size if path.is_file() else -1
        if size != meta["rows"] * dtype.itemsize:
            raise DataError(
                f"{path}: {size} bytes, expected {meta['rows']} rows x {dtype.itemsize} "
                "(meta.json); the folder is damaged: delete it and convert again"
            )
        cols[c] = (
            np.memmap(path, dtype=dtype, mode="r", shape=(meta["rows"],))
            if meta["rows"]
            else np.zeros(0, dtype)
        )
    return Interactions(
        user=cols["user"],
        item=cols["item"],
        rating=cols["rating"],
        n_users=meta["n_users"],
        n_items=meta["n_items"],
        timestamp=cols.get("timestamp"),
        user_ids=np.load(folder / "user_ids.npy", mmap_mode="r"),
        item_ids=np.load(folder / "item_ids.npy", mmap_mode="r"),
        name=meta["name"],
        notes=tuple(meta["notes"]),
    )


def write_pair_meta(folder: str | os.PathLike, overlap: np.ndarray, *, name: str, info=None):
    """Writes a pair folder's overlap.npy and pair.json (its domains are written already)."""
    folder = pathlib.Path(folder)
    np.save(folder / "overlap.npy", np.asarray(overlap, np.int32).reshape(-1, 2))
    (folder / "pair.json").write_text(
        json.dumps({"format": FORMAT, "name": name, "info": info or {}}, indent=1)
    )


def write_pair(folder: str | os.PathLike, data: CrossDomainData) -> None:
    """Writes a `CrossDomainData` (without item overlap or published parts) as a pair folder."""
    if len(data.item_overlap) or data.published:
        raise DataError(f"{data.name}: the columnar pair format holds user overlap only")
    folder = pathlib.Path(folder)
    write_domain(folder / "source", data.source)
    write_domain(folder / "target", data.target)
    write_pair_meta(folder, data.overlap, name=data.name, info=data.info)


def load_pair(folder: str | os.PathLike) -> CrossDomainData:
    """A pair folder (`source/`, `target/`, overlap.npy, pair.json) as `CrossDomainData`."""
    folder = pathlib.Path(folder)
    path = folder / "pair.json"
    if not path.is_file():
        raise DataError(
            f"{folder}: not a columnar pair folder (no pair.json; expected source/, target/, "
            "overlap.npy, pair.json, as `transferjax.data.large.write_synthetic_pair` writes)"
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: columnar format {meta.get('format')!r}, expected {FORMAT}")
    return CrossDomainData(
        source=load_domain(folder / "source"),
        target=load_domain(folder / "target"),
        overlap=np.load(folder / "overlap.npy"),
        name=meta["name"],
        info={**meta.get("info", {}), "folder": str(folder)},
    )
