"""Large data: the memory and time of loading 100M interactions, memory-mapped and from text.

1. A synthetic pair of `--rows` interactions (default 100M: 5M overlapping users, 5M source-only
   and 5M target-only; about 7 source and 3 target interactions per user; 1M source and 300k
   target items) is written by `transferjax.data.large.write_synthetic_pair` into `--folder`
   (kept and reused: generating is timed once).
2. A fresh process loads it (`transferjax.data.columnar.load_pair`, every column read by the
   `Interactions` checks) and builds the cold-start split (beta 0.2). Reported: the wall time of
   each, the process's peak RSS after each (VmHWM, touched file pages included), and the
   bytes of the loaded arrays, so that memory can be read against the data's own size.
3. A delimited file of `--csv-rows` rows (the pair's source rows with raw person and item ids)
   is read by `load_csv` into memory, and in another fresh process converted once into the
   columnar cache (`load_csv(..., cache=...)`, blocks of `transferjax.data.stream.BLOCK_BYTES`),
   then loaded from the cache by a third: wall time and peak RSS of each.

    python -m benchmarks.large_data                      # writes the section large-data
    python -m benchmarks.large_data --rows 2000000 --csv-rows 500000 --report /tmp/r.md
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import shutil
import subprocess
import sys
import time

from benchmarks.sections import put_section

SECTION = "large-data"
MB = 1 / 2**20


def sizes(rows: int) -> dict:
    """Generator sizes giving about `rows` interactions (7 + 3 per overlapping user)."""
    n = max(rows // 20, 100)
    return dict(
        n_overlap=n,
        n_source_only=n,
        n_target_only=n,
        n_items_source=max(rows // 100, 1000),
        n_items_target=max(rows // 333, 500),
        per_user_source=7.0,
        per_user_target=3.0,
    )


def _peak_mb() -> float:
    """This process's peak resident memory in MB: VmHWM of /proc/self/status (Linux), which
    starts afresh at exec; `getrusage`'s ru_maxrss does not (it keeps the parent's peak at
    fork), so it is only the fallback elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def worker(task: str, path: str, cache: str | None = None) -> dict:
    """One measurement in this (fresh) process: "pair" loads a pair folder and splits it;
    "csv" reads a file into memory, or through the columnar cache when `cache` is given."""
    from transferjax.data.columnar import load_pair
    from transferjax.data.csv import load_csv
    from transferjax.data.protocols import cold_start_split

    out = {"rss_start_mb": _peak_mb()}
    if task == "pair":
        data, out["load_s"] = _timed(lambda: load_pair(path))
        out["rss_load_mb"] = _peak_mb()
        doms = (data.source, data.target)
        out["rows"] = sum(len(d) for d in doms)
        out["arrays_mb"] = MB * sum(d.user.nbytes + d.item.nbytes + d.rating.nbytes for d in doms)
        _, out["split_s"] = _timed(lambda: cold_start_split(data, beta=0.2, seed=0))
        out["rss_split_mb"] = _peak_mb()
        return out
    kw = dict(user_col=0, item_col=1, rating_col=2, header=False)
    inter, out["load_s"] = _timed(lambda: load_csv(path, cache=cache, **kw))
    out["rss_load_mb"] = _peak_mb()
    out["rows"] = len(inter)
    out["arrays_mb"] = MB * (inter.user.nbytes + inter.item.nbytes + inter.rating.nbytes)
    return out


def _child(*args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.large_data", "--worker", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        sys.stderr.write(res.stderr)
        raise SystemExit(res.returncode)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _write_csv(pair: pathlib.Path, path: pathlib.Path, rows: int) -> None:
    """The first `rows` source rows of a pair folder as a TSV of raw ids and ratings."""
    import numpy as np

    from transferjax.data.columnar import load_domain

    d = load_domain(pair / "source")
    with open(path, "w") as f:
        for lo in range(0, min(rows, len(d)), 1 << 20):
            hi = min(lo + (1 << 20), rows, len(d))
            block = np.stack([d.user_ids[d.user[lo:hi]], d.item[lo:hi], d.rating[lo:hi]], 1)
            np.savetxt(f, block.astype(np.int64), fmt="%d", delimiter="\t")


def measure(*, rows: int, csv_rows: int, folder: pathlib.Path, echo=print) -> dict:
    """Generates (or reuses) the pair and the TSV, then measures each load in a fresh process."""
    from transferjax.data.large import write_synthetic_pair

    want = {**sizes(rows), "seed": 0}
    done = folder / "pair.json"
    res = {"sizes": want}
    if not done.exists() or json.loads(done.read_text())["info"].get("sizes") != want:
        echo(f"generating {rows:,} interactions into {folder}")
        _, res["generate_s"] = _timed(lambda: write_synthetic_pair(folder, **want))
        meta = json.loads(done.read_text())
        meta["info"]["sizes"] = want
        done.write_text(json.dumps(meta, indent=1))
    echo("loading the pair")
    res["pair"] = _child("pair", str(folder))
    tsv = folder.parent / f"{folder.name}-{csv_rows}.tsv"
    if not tsv.exists():
        _write_csv(folder, tsv, csv_rows)
    res["csv_bytes"] = tsv.stat().st_size
    echo("reading the TSV into memory")
    res["csv_memory"] = _child("csv", str(tsv))
    cache = folder.parent / f"{folder.name}-cache"
    shutil.rmtree(cache, ignore_errors=True)
    echo("converting the TSV into the columnar cache")
    res["csv_convert"] = _child("csv", str(tsv), str(cache))
    echo("loading the TSV from the cache")
    res["csv_cached"] = _child("csv", str(tsv), str(cache))
    return res


def markdown(res: dict, *, command: str) -> str:
    p = res["pair"]
    gen = f"; generated in {res['generate_s']:.0f} s" if "generate_s" in res else ""
    lines = [
        f"Written by `{command}`{gen}. Sizes: `{json.dumps(res['sizes'])}`. Peak RSS is the "
        "process's (VmHWM), Python, numpy and transferjax's imports included "
        f"({p['rss_start_mb']:.0f} MB before loading).",
        "",
        "| step | rows | wall s | peak RSS MB | arrays MB (user, item, rating) |",
        "|---|---:|---:|---:|---:|",
        f"| load the pair (memory-mapped columns) | {p['rows']:,} | {p['load_s']:.1f} | "
        f"{p['rss_load_mb']:.0f} | {p['arrays_mb']:.0f} |",
        f"| + cold-start split (beta 0.2) | | {p['split_s']:.1f} | {p['rss_split_mb']:.0f} | |",
    ]
    for key, what in (
        ("csv_memory", "TSV read into memory (`load_csv`)"),
        ("csv_convert", "TSV converted into the columnar cache (`load_csv(cache=...)`, once)"),
        ("csv_cached", "TSV loaded from the cache"),
    ):
        r = res[key]
        lines.append(
            f"| {what} | {r['rows']:,} | {r['load_s']:.1f} | {r['rss_load_mb']:.0f} | "
            f"{r['arrays_mb']:.0f} |"
        )
    lines += ["", f"The TSV holds {res['csv_bytes'] * MB:.0f} MB of text."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000_000)
    p.add_argument("--csv-rows", type=int, default=10_000_000)
    p.add_argument("--folder", default="runs/data/synthetic-100m", help="the generated pair")
    p.add_argument("--report", default="BENCHMARKS.md", help="markdown file of the section")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(*a.worker)))
        return 0
    res = measure(rows=a.rows, csv_rows=a.csv_rows, folder=pathlib.Path(a.folder))
    extra = [
        f"--{k} {v}"
        for k, v in (("rows", a.rows), ("csv-rows", a.csv_rows))
        if v != p.get_default(k.replace("-", "_"))
    ]
    command = " ".join(["python -m benchmarks.large_data", *extra])
    text = markdown(res, command=command)
    print(text)
    put_section(a.report, SECTION, f"## Large data (generated by `{command}`)\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
