"""One reader for the delimited text files behind every loader, and raw-id densification.

`read_table` parses a whole file in bulk (one `str.split` over the body, columns taken by
slicing, numbers converted with `map(float, ...)` into `np.fromiter`). Only when a check fails
does it scan line by line, to name the offending line: every error is a
`DataError("path:LINE: ...")`.

Handled: separators tab, comma, `::`, `|` or any other string (or auto-detected tab/comma),
an optional header (columns found by name, or by the part before `:` as in RecBole's
`user_id:token`), `\\r\\n` endings, a missing final newline, blank trailing lines, a UTF-8 BOM,
any encoding (MovieLens' GroupLens files are latin-1), quoted CSV fields, and members of zip
files (shown as `archive.zip!member`).

Range checks shared by the loaders (each a `DataError` naming file and line):
  - "int" values must fit int64; "rating" values must be finite with magnitude at most
    `MAX_ABS_RATING` (1e9: no rating scale comes near it, and a value like 3e38 would
    turn every squared error into inf); `transferjax.data._ids.check_scale` holds ratings
    to a declared scale such as Douban's 1-5.
  - Ids are "sparse" when the largest reaches `id_bound(n) = 2 * n + 1000` for n distinct ids.
    Formats whose ids are table indices (CDRIB) reject such ids (`check_dense_ids`), since the
    tables would be sized by the id; loaders that remap ids densely (CSV, Douban) accept them
    and say so (`sparse_notes`, logged and kept in `Interactions.notes`); these id rules and
    densification (`index_ids`, `match_ids`) live in `transferjax.data._ids`.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import itertools
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from transferjax.data.types import DataError

Key = str | int
Converter = str | Callable[[list], np.ndarray]
KINDS = ("str", "int", "float", "rating", "timestamp")
INT64 = (-(2**63), 2**63 - 1)
MAX_ABS_RATING = 1e9


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """Columns read from one file.

    Attributes:
      columns: key -> array[n]; numeric kinds are numpy arrays ("int"/"timestamp": int64,
        "float": float64, "rating": float32), "str" columns are object arrays of str.
      source: the file as shown in messages (`path` or `archive.zip!member`).
      first_line: 1-based line number of data row 0 (row i is on line first_line + i,
        unless rows were dropped).
      lines: int64[n] line number of each row once duplicates were dropped, else None.
    """

    columns: dict
    source: str
    first_line: int
    lines: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, key: Key) -> np.ndarray:
        return self.columns[key]

    def where(self, row: int) -> str:
        """`source:LINE` of data row `row`, for error messages."""
        line = self.first_line + int(row) if self.lines is None else int(self.lines[row])
        return f"{self.source}:{line}"


def read_bytes(path: str | os.PathLike, member: str | None = None) -> tuple[bytes, str]:
    """Bytes of a file, or of `member` inside the zip archive `path`; plus its display name."""
    path = os.fspath(path)
    try:
        if member is None:
            with open(path, "rb") as f:
                return f.read(), path
        with zipfile.ZipFile(path) as zf:
            return zf.read(member), f"{path}!{member}"
    except KeyError:
        raise DataError(f"{path}: archive has no member {member!r}") from None
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a zip archive ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_table(
    path: str | os.PathLike,
    converters: Mapping[Key, Converter],
    *,
    sep: str | None = None,
    header: bool = True,
    encoding: str = "utf-8",
    member: str | None = None,
    unique: Sequence[Key] | None = None,
    duplicates: str = "error",
    encoding_setting: str | None = None,
) -> Table:
    """Reads the columns named in `converters` from a delimited text file.

    Args:
      path: the file, or a zip archive when `member` is given.
      converters: column -> kind, in the order wanted. A column is a 0-based field index or,
        with a header, a name (matched exactly, else by the part before `:`). Kinds:
        "str", "int", "float", "rating" (float, finite), "timestamp" (int64; "9.0" accepted),
        or a callable list[str] -> array that raises ValueError on a bad value.
      sep: field separator; None: tab if the first line has one, else comma.
      header: whether the first line names the columns.
      encoding: text encoding of the file.
      member: read this member of the zip archive `path`.
      unique: columns whose value combination must not repeat, e.g. (user, item).
      duplicates: "error" raises on a repeated `unique` key naming both lines; "first" keeps
        each key's first row and drops the later ones.
      encoding_setting: the setting that chose `encoding` (e.g. "data.encoding"), named in the
        message when the file is not valid text in it.

    Returns:
      Table with one array[n] per converter key.

    Raises:
      DataError: `path:LINE: ...` for a wrong field count, a bad value, a duplicate row, an
        unknown column (listing the available ones), an empty file or undecodable text.
    """
    if sep is not None and not sep:
        raise ValueError("sep must be a non-empty string or None")
    if duplicates not in ("error", "first"):
        raise ValueError(f"duplicates must be 'error' or 'first', got {duplicates!r}")
    check_encoding(encoding)
    data, src = read_bytes(path, member)
    text = _decode(data, src, encoding, encoding_setting)
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or (header and len(lines) == 1):
        raise DataError(f"{src}:{len(lines) + 1}: empty file (no data rows)")
    if sep is None:
        sep = "\t" if "\t" in lines[0] else ","
    quoted = sep == "," and '"' in text
    names = _split_one(lines[0], sep, quoted) if header else None
    body = lines[1:] if header else lines
    first = 2 if header else 1
    n_fields = len(names) if header else len(_split_one(body[0], sep, quoted))
    cols = _columns(body, sep, n_fields, quoted, src, first)
    out = {}
    for key, kind in converters.items():
        j = _position(key, names, n_fields, src)
        out[key] = _convert(cols[j], kind, _label(key, names, j), src, first)
    table = Table(out, src, first)
    if unique:
        keep = _check_unique(table, list(unique), duplicates)
        if keep is not None:
            lines = first + np.flatnonzero(keep)
            table = Table({k: v[keep] for k, v in out.items()}, src, first, lines)
    return table


def read_header(
    path: str | os.PathLike,
    *,
    sep: str | None = None,
    encoding: str = "utf-8",
    member: str | None = None,
) -> list[str]:
    """The stripped field names on the first line of a file (sep None: tab, else comma)."""
    data, src = read_bytes(path, member)
    line = _decode(data[: data.find(b"\n") if b"\n" in data else None], src, encoding)
    if not line.strip():
        raise DataError(f"{src}:1: empty file (no header)")
    if sep is None:
        sep = "\t" if "\t" in line else ","
    return [s.strip() for s in _split_one(line.rstrip("\r"), sep, sep == "," and '"' in line)]


def check_encoding(encoding: str) -> None:
    """Raises ValueError unless `encoding` names a text codec Python knows."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"unknown text encoding {encoding!r}") from None


def _decode(data: bytes, src: str, encoding: str, setting: str | None = None) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        hint = f"; {setting}={encoding!r}: set it to the file's encoding" if setting else ""
        raise DataError(f"{src}:{line}: not valid {encoding} text ({e.reason}){hint}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n")


def _split_one(line: str, sep: str, quoted: bool) -> list[str]:
    return next(csv.reader([line])) if quoted else line.split(sep)


def _columns(body: list[str], sep: str, n: int, quoted: bool, src: str, first: int) -> list:
    """Splits all lines into n columns (lists of str), checking every line has n fields."""
    if quoted:
        rows = list(csv.reader(body))
        counts = np.fromiter(map(len, rows), np.int64, count=len(rows)) - 1
    else:
        counts = np.fromiter(map(str.count, body, itertools.repeat(sep)), np.int64, len(body))
    bad = np.flatnonzero(counts != n - 1)
    if len(bad):
        i = int(bad[0])
        what = "empty line" if not body[i].strip() else f"{counts[i] + 1} fields"
        raise DataError(f"{src}:{first + i}: expected {n} fields separated by {sep!r}, got {what}")
    if quoted:
        return [list(c) for c in zip(*rows, strict=True)]
    flat = sep.join(body).split(sep)
    return [flat[j::n] for j in range(n)]


def _position(key: Key, names: list[str] | None, n_fields: int, src: str) -> int:
    if isinstance(key, (int, np.integer)):
        if not 0 <= key < n_fields:
            raise DataError(f"{src}:1: no column {key}: lines have {n_fields} fields")
        return int(key)
    if names is None:
        raise DataError(
            f"{src}:1: no column {key!r}: the file has no header (give 0-based column indices)"
        )
    stripped = [s.strip() for s in names]
    if isinstance(key, str):
        for cands in (stripped, [s.split(":")[0] for s in stripped]):
            if key in cands:
                return cands.index(key)
    avail = ", ".join(repr(s) for s in stripped)
    raise DataError(f"{src}:1: missing column {key!r}; available: {avail}")


def _label(key: Key, names: list[str] | None, j: int) -> str:
    return f"column {names[j].strip()!r}" if names is not None else f"column {j}"


def _convert(col: list, kind: Converter, label: str, src: str, first: int) -> np.ndarray:
    if kind == "str":
        out = np.empty(len(col), dtype=object)
        out[:] = list(map(str.strip, col))
        return out
    if callable(kind):
        try:
            return np.asarray(kind(col))
        except ValueError:
            for i, s in enumerate(col):
                try:
                    kind([s])
                except ValueError as e:
                    raise DataError(f"{src}:{first + i}: {label}: bad value {s!r} ({e})") from None
            raise
    if kind not in KINDS:
        raise ValueError(f"unknown converter {kind!r}; use one of {KINDS} or a callable")
    parse, dtype = (int, np.int64) if kind == "int" else (float, np.float64)
    try:
        vals = np.fromiter(map(parse, col), dtype, count=len(col))
    except (ValueError, OverflowError):
        noun = "integer" if kind == "int" else "numeric"
        for i, s in enumerate(col):
            try:
                v = parse(s)
            except ValueError:
                raise DataError(f"{src}:{first + i}: {label}: non-{noun} value {s!r}") from None
            if kind == "int" and not INT64[0] <= v <= INT64[1]:
                raise DataError(
                    f"{src}:{first + i}: {label}: integer {s.strip()!r} does not fit in int64"
                ) from None
        raise
    if kind in ("rating", "timestamp"):
        bad = np.flatnonzero(~np.isfinite(vals))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{src}:{first + i}: {label}: non-finite {kind} {col[i].strip()!r}")
        big = np.abs(vals) > MAX_ABS_RATING if kind == "rating" else np.abs(vals) >= 2.0**63
        bad = np.flatnonzero(big)
        if len(bad):
            i = int(bad[0])
            why = f"magnitude above {MAX_ABS_RATING:g}" if kind == "rating" else "beyond int64"
            raise DataError(f"{src}:{first + i}: {label}: {kind} {col[i].strip()!r} ({why})")
        return vals.astype(np.float32) if kind == "rating" else vals.astype(np.int64)
    return vals


def _codes(col: np.ndarray) -> np.ndarray:
    """int64[n] codes, equal exactly where the values are equal (no particular order)."""
    if col.dtype.kind in "iufb":
        return np.unique(col, return_inverse=True)[1].astype(np.int64).reshape(-1)
    seen = {s: i for i, s in enumerate(dict.fromkeys(col.tolist()))}
    return np.fromiter(map(seen.__getitem__, col.tolist()), np.int64, count=len(col))


def _key_name(key: Key) -> str:
    return f"column {key}" if isinstance(key, (int, np.integer)) else str(key)


def _check_unique(table: Table, keys: list, duplicates: str) -> np.ndarray | None:
    """Raises on (or with "first" returns a keep-mask dropping) repeated key combinations."""
    code = np.zeros(len(table), np.int64)
    for k in keys:
        c = _codes(table[k])
        code = code * (int(c.max(initial=-1)) + 1) + c
    order = np.argsort(code, kind="stable")
    repeat = np.flatnonzero(code[order[1:]] == code[order[:-1]])
    if not len(repeat):
        return None
    if duplicates == "first":
        keep = np.ones(len(table), bool)
        keep[order[repeat + 1]] = False
        return keep
    j = repeat[np.argmin(order[repeat + 1])]
    a, b = int(order[j]), int(order[j + 1])
    vals = ", ".join(repr(table[k][b : b + 1].tolist()[0]) for k in keys)
    raise DataError(
        f"{table.where(b)}: duplicate row for ({', '.join(map(_key_name, keys))}) = ({vals}); "
        f"first seen on line {table.first_line + a}"
    )
