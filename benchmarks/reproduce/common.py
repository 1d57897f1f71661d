"""The parts every reproduction script shares.

- `Official` and `fetch`: an official implementation cloned into a scratch folder at a pinned
  commit (from GitHub, or from `--source`, an existing checkout or bare mirror, when GitHub
  cannot be reached). Nothing fetched is ever committed: the default scratch folders live
  under `runs/`, which git ignores.
- `ensure_venv`: a virtual environment in the scratch folder for code that needs packages
  transferjax does not (PyTorch, pandas).
- Export of a transferjax `Split` to official input formats (`export_ptupcdr`,
  `export_cdrib`) and their readers (`read_ptupcdr`, `read_cdrib`), which the tests round-trip.
- `TimedEvaluator` / `train_ours`: one seed of a transferjax method through the same trainer
  and evaluator as `transferjax run`, also recording the wall time of every evaluation since
  the start of training and, optionally, the params at the valid-selected evaluation.
- `mean_std`, `comparison_table`, `put_reproduce_section`: ours-vs-theirs tables (mean +/-
  std over seeds) written as a marked `reproduce-NAME` section of BENCHMARKS.md, which
  `python -m benchmarks.quality` keeps when it regenerates the report.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

from benchmarks.sections import put_section
from transferjax.train.outputs import cpu_model

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"


# ---------------------------------------------------------------------------------------------
# Fetching official code


@dataclasses.dataclass(frozen=True)
class Official:
    """An official implementation pinned at one commit."""

    name: str
    url: str
    commit: str  # 40 hex digits

    @property
    def short(self) -> str:
        return self.commit[:7]


def distinct_rows(rng, n_users: int, n_items: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) rows of a one-step equality check: every user present (with item
    user % n_items), then `n` random rows; sorted by (user, item)."""
    u = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n)])
    i = np.concatenate([np.arange(n_users) % n_items, rng.integers(0, n_items, n)])
    pairs = np.unique(np.stack([u, i], 1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def pin_core(cpu: int | None) -> int:
    """Restrict this process (and the children it starts) to one core (default: the first it
    may use); returns it. Call it before JAX starts its threads."""
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if cpu is None else cpu
    if cpu not in allowed:
        raise SystemExit(f"--cpu {cpu}: this process may use cores {allowed}")
    os.sched_setaffinity(0, {cpu})
    return cpu


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 n x n x n matrix product on this process's core(s), the best of
    `repeats` (after one compile-and-warm-up call)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def float64_on_cpu() -> None:
    """Both sides of a one-step equality check in float64 on the CPU: JAX's x64 mode, torch's
    default dtype, and the official code's `.cuda()` calls made no-ops."""
    import jax
    import torch

    jax.config.update("jax_enable_x64", True)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.set_default_dtype(torch.float64)


def _git(*args, cwd=None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip()


def harness_parser(module: str, doc: str, *, scratch: str, source: str = "the official code"):
    """The flags every reproduction harness takes: `--scratch` (default `scratch`, git-ignored),
    `--source` (clone `source` from a local checkout), `--report`, `--no-report`; the caller
    adds its own."""
    p = argparse.ArgumentParser(
        prog=f"python -m benchmarks.reproduce.{module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scratch", help=f"scratch folder (default {scratch}, git-ignored)")
    p.add_argument("--source", help=f"clone {source} from this checkout / bare git dir")
    p.add_argument("--report", help="markdown file of the section (default BENCHMARKS.md)")
    p.add_argument("--no-report", action="store_true", help="write no section")
    return p


def equal_args(doc: str, *, scratch: str, argv=None):
    """The arguments of a one-step equality check (`benchmarks.reproduce.*_equal`): --source,
    --scratch (default `scratch`), --tol, and the flag its child process runs with."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--source", help="a checkout or bare mirror to clone from")
    ap.add_argument("--scratch", default=scratch)
    ap.add_argument("--tol", type=float, default=1e-10)
    # set by the parent for the child that has the official checkout on its PYTHONPATH
    ap.add_argument("--official-on-path", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def rerun_beside_official(official: Official, args, *, module: str, folder: str, argv) -> int:
    """Fetches `official` into `args.scratch`/official and reruns `python -m module` with its
    `folder` first on the PYTHONPATH (the official modules import each other top-level), so
    that neither process edits `sys.path`; returns the child's exit code."""
    code = fetch(official, pathlib.Path(args.scratch) / "official", source=args.source)
    path = os.pathsep.join([str(code / folder), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", module, *(argv or sys.argv[1:]), "--official-on-path"]
    return subprocess.run(cmd, env={**os.environ, "PYTHONPATH": path}).returncode


def fetch(official: Official, dest, *, source=None, keep=(), echo=print) -> pathlib.Path:
    """A work tree of `official` at its pinned commit in `dest` (cloned unless it is there).

    `source`: a local checkout or bare git directory to clone from instead of `official.url`.
    An existing `dest` is reused (moved to the pinned commit if needed; edited tracked files
    are restored and untracked ones removed: the scripts patch the code at run time, never on
    disk), except the untracked paths matching `keep` (the output folders of the official code:
    a second run sharing `dest` must not remove those of a run still writing them). A file
    whose content the clone source lacks (a mirror may omit large blobs) stays absent; the
    scripts check the files they use. Raises RuntimeError when the clone fails or the commit
    is missing."""
    dest = pathlib.Path(dest)
    if (dest / ".git").exists():
        if _git("rev-parse", "HEAD", cwd=dest) != official.commit:
            _git("checkout", "--quiet", official.commit, cwd=dest)
        edited = _git("diff", "--name-only", "--diff-filter=M", cwd=dest).split()
        if edited:
            _git("checkout", "--quiet", "--", *edited, cwd=dest)
        kept = [x for pattern in ("data/ready", "__pycache__", *keep) for x in ("-e", pattern)]
        _git("clean", "-fdxq", *kept, cwd=dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        origin = str(source) if source else official.url
        echo(f"cloning {origin} -> {dest}")
        _git("clone", "--quiet", "--no-checkout", origin, str(dest))
        _git("checkout", "--quiet", official.commit, cwd=dest)
    head = _git("rev-parse", "HEAD", cwd=dest)
    if head != official.commit:
        raise RuntimeError(f"{dest}: HEAD is {head}, expected {official.commit}")
    return dest


def ensure_venv(folder, requirements, *, no_deps=(), echo=print) -> pathlib.Path:
    """The python of a virtual environment at `folder` with `requirements` installed (created
    once; a `.ready` file marks a complete install). `no_deps`: packages installed after them
    with `pip install --no-deps` (a package whose declared pins cannot be built here, e.g.
    recbole 1.0.1's scipy==1.6.0, its other dependencies listed in `requirements`)."""
    folder = pathlib.Path(folder).resolve()  # absolute: the official scripts run in their folder
    python = folder / "bin" / "python"
    stamp = folder / ".ready"
    want = " ".join(requirements) + (" --no-deps " + " ".join(no_deps) if no_deps else "")
    if stamp.exists() and stamp.read_text() == want:
        return python
    echo(f"creating {folder} with {want}")
    subprocess.run(["python3", "-m", "venv", str(folder)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    if no_deps:
        pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", *no_deps]
        subprocess.run(pip, check=True)
    stamp.write_text(want)
    return python


def sha256(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Export: PTUPCDR's CSVs


def _integral(rating: np.ndarray, where: str) -> np.ndarray:
    r = np.asarray(rating, np.float64)
    if not np.all(r == np.round(r)):
        raise ValueError(f"{where}: the official code reads ratings as integers; got fractions")
    return r.astype(np.int64)


def ptupcdr_ids(split) -> dict:
    """PTUPCDR's id spaces for `split` (its preprocessing's `mapper`): one user space for both
    domains, so an overlapping user has one id; items of the source first, then the target's.

    Returns {"src_uid": i64[n_source_users], "tgt_uid": i64[n_target_users], "src_iid": i64[..],
    "tgt_iid": i64[..], "uid_all": int, "iid_all": int}. Source user u keeps id u; a target
    user paired with source user u gets u; other target users get n_source_users + k."""
    data = split.data
    n_s = data.source.n_users
    tgt_uid = np.full(data.target.n_users, -1, np.int64)
    tgt_uid[data.overlap[:, 1]] = data.overlap[:, 0]
    alone = np.flatnonzero(tgt_uid < 0)
    tgt_uid[alone] = n_s + np.arange(len(alone))
    n_si = data.source.n_items
    return {
        "src_uid": np.arange(n_s, dtype=np.int64),
        "tgt_uid": tgt_uid,
        "src_iid": np.arange(n_si, dtype=np.int64),
        "tgt_iid": n_si + np.arange(data.target.n_items, dtype=np.int64),
        "uid_all": int(n_s + len(alone)),
        "iid_all": int(n_si + data.target.n_items),
    }


def ptupcdr_histories(split, ids: dict, *, min_rating: float = 4.0) -> dict:
    """{source user: [source item ids rated >= min_rating]} in source row order, as PTUPCDR's
    `get_history` (`y > 3` on integer ratings) builds them from the whole source domain."""
    src = split.source_train
    keep = src.rating >= min_rating
    hist: dict[int, list[int]] = {}
    for u, i in zip(src.user[keep].tolist(), src.item[keep].tolist()):
        hist.setdefault(u, []).append(int(ids["src_iid"][i]))
    return hist


def _write_rows(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def export_ptupcdr(split, folder, *, min_rating: float = 4.0) -> dict:
    """Writes `split` as PTUPCDR's ready CSVs (no header) into `folder`:

      train_src.csv   uid,iid,y            every source rating
      train_tgt.csv   uid,iid,y            target training ratings (no cold user)
      train_meta.csv  uid,iid,y,pos_seq    target training ratings of the warm overlap users
      test.csv        uid,iid,y,pos_seq    cold-test ratings
      valid.csv       uid,iid,y,pos_seq    cold-valid ratings (the official code has no valid
                                           set; the reproduction script reads this file)

    pos_seq is the user's source items rated >= min_rating, as a Python list literal ("[3, 17]"
    quoted as pandas writes it). Ids as in `ptupcdr_ids`. Returns the task entry for PTUPCDR's
    config.json ("uid", "iid") plus the row counts."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = ptupcdr_ids(split)
    hist = ptupcdr_histories(split, ids, min_rating=min_rating)
    src_of = np.full(split.data.target.n_users, -1, np.int64)
    src_of[split.data.overlap[:, 1]] = split.data.overlap[:, 0]

    def plain(inter, uid, iid, name):
        y = _integral(inter.rating, name)
        return list(zip(uid[inter.user].tolist(), iid[inter.item].tolist(), y.tolist()))

    def with_seq(users, items, ratings, name):
        y = _integral(ratings, name)
        rows = []
        for t, i, r in zip(users.tolist(), items.tolist(), y.tolist()):
            s = int(src_of[t])
            if s < 0:
                raise ValueError(f"{name}: target user {t} has no source profile")
            rows.append((int(ids["tgt_uid"][t]), int(ids["tgt_iid"][i]), r, str(hist.get(s, []))))
        return rows

    tr = split.target_train
    warm = np.zeros(tr.n_users, bool)
    warm[split.warm_pairs[:, 1]] = True
    meta = tr.select(warm[tr.user])
    counts = {}
    files = {
        "train_src": plain(split.source_train, ids["src_uid"], ids["src_iid"], "train_src"),
        "train_tgt": plain(tr, ids["tgt_uid"], ids["tgt_iid"], "train_tgt"),
        "train_meta": with_seq(meta.user, meta.item, meta.rating, "train_meta"),
    }
    for name, held in (("test", split.test), ("valid", split.valid)):
        files[name] = with_seq(held.pairs[held.row, 1], held.item, held.rating, name)
    for name, rows in files.items():
        _write_rows(folder / f"{name}.csv", rows)
        counts[name] = len(rows)
    return {"uid": ids["uid_all"], "iid": ids["iid_all"], "rows": counts}


def read_ptupcdr(folder) -> dict:
    """{file stem: (uid i64[n], iid i64[n], y i64[n], pos_seq list | None)} of `export_ptupcdr`'s
    files (the reverse of the export, for checks)."""
    out = {}
    for path in sorted(pathlib.Path(folder).glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        cols = list(zip(*rows)) if rows else [(), (), ()]
        seq = [json.loads(s) for s in cols[3]] if len(cols) > 3 else None
        out[path.stem] = (*(np.array(c, np.int64) for c in cols[:3]), seq)
    return out


# ---------------------------------------------------------------------------------------------
# Export: CDRIB's text files


def export_cdrib(parts: dict, folder) -> None:
    """Writes {"train"|"valid"|"test": (user i64[n], item i64[n])} as CDRIB's `user<TAB>item`
    files (0-based ids, one pair a line) into `folder`."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (user, item) in parts.items():
        lines = "".join(f"{u}\t{i}\n" for u, i in zip(np.asarray(user), np.asarray(item)))
        (folder / f"{name}.txt").write_text(lines, encoding="utf-8")


def read_cdrib(folder) -> dict:
    """{stem: (user i64[n], item i64[n])} of CDRIB's `*.txt` files in `folder`."""
    out = {}
    for path in sorted(pathlib.Path(folder).glob("*.txt")):
        rows = [ln.split("\t")[:2] for ln in path.read_text(encoding="utf-8").splitlines() if ln]
        arr = np.array(rows, np.int64).reshape(-1, 2)
        out[path.stem] = (arr[:, 0], arr[:, 1])
    return out


# ---------------------------------------------------------------------------------------------
# Our side: one seed through the trainer, timed


class TimedEvaluator:
    """Wraps an `Evaluator`: the same metrics, plus the wall time at the end of each evaluation
    of the valid set since `start()`: one per evaluation during training, in history order
    (every evaluation scores valid; test is scored during training only with
    `eval.curves=all`), then the scoring of the selected params after training."""

    def __init__(self, inner, split):
        self.inner, self.split = inner, split
        self.times: list[float] = []
        self._t0 = time.perf_counter()

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def metric_names(self):
        return self.inner.metric_names()

    def __call__(self, scorer, params, heldout, **kw):
        out = self.inner(scorer, params, heldout, **kw)
        if heldout is self.split.valid:
            self.times.append(time.perf_counter() - self._t0)
        return out


def train_ours(cfg, split, *, seed: int, capture: bool = False) -> dict:
    """One seed of `cfg.method` on `split`, as `transferjax run` trains it (key
    `jax.random.key(seed)`, the trainer and evaluator of the run folder path).

    Returns {"seed", "history" (valid/test metrics per evaluation), "selected" (index),
    "select_metric", "eval_s" (wall time at the end of each evaluation since training started,
    compile included; one per history entry), "train_s", "wall_s"} and, with `capture`,
    "params" (the params at the selected evaluation, with the method's shared data merged in:
    the scorer's view) and "scorer"."""
    import jax

    from transferjax.train.evaluate import make_evaluate
    from transferjax.train.trainer import make_train

    cfg = dataclasses.replace(cfg, seed=seed, seeds=1)
    ev = TimedEvaluator(make_evaluate(cfg, split), split)
    train = make_train(cfg, split, evaluate=ev)
    ev.start()
    r = train(jax.random.key(seed), show=False, labels=[f"seed {seed}"])
    out = {
        "seed": seed,
        "history": r.history,
        "selected": r.selected,
        "select_metric": r.select_metric,
        "eval_s": ev.times[: len(r.history)],
        "train_s": r.train_time,
        "wall_s": r.wall_time,
    }
    if capture:  # the result's params are the selected evaluation's
        params = {**jax.device_get(r.params), "hyper": train.built.hyper}
        out["params"] = {**params, **train.built.data}
        out["scorer"] = train.built.scorer
    return out


def run_ours(cfg, split, out_json, *, seed: int, echo=print) -> dict:
    """`train_ours` of one seed, saved to `out_json`; the saved result of an earlier call only
    when that call trained the same config (its hash is saved with it), so a change of
    settings is trained again. A change of the library's code is not seen: after one that
    moves numbers, move the saved file aside to train again."""
    from transferjax.train.outputs import config_hash

    key = config_hash(cfg)
    done = load_json(out_json)
    if done is not None and done.get("config_hash") == key:
        return done
    echo(f"ours {cfg.method} seed {seed}")
    r = {**train_ours(cfg, split, seed=seed), "config_hash": key}
    save_json(out_json, r)
    return r


# ---------------------------------------------------------------------------------------------
# Tables and the report section


def mean_std(values) -> tuple[float, float, int]:
    """(mean, sample std (ddof=1; 0 for one value), n) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def fmt(values, digits: int = 4) -> str:
    """'m ± s (n=k)' of `values` (a number alone is one value); '-' for none."""
    if values is None:
        return "-"
    if isinstance(values, (int, float)):
        values = [values]
    m, s, n = mean_std(values)
    if n == 0:
        return "-"
    return f"{m:.{digits}f} ± {s:.{digits}f} (n={n})"


def comparison_table(rows, *, columns=("ours", "official"), digits: int = 4) -> str:
    """A markdown table with one row per dict of `rows`: its "label", then `fmt` of each
    column's list of per-seed values (a missing column shows '-'), then "note" if any row has
    one. `columns`: the row keys, or {key: header}. Wall times are rows like any metric
    ("wall s to the selected epoch"), with their own "digits"."""
    titles = dict(columns) if isinstance(columns, dict) else {c: c for c in columns}
    has_note = any(r.get("note") for r in rows)
    head = ["", *titles.values()] + (["note"] if has_note else [])
    rule = "|---|" + "---:|" * len(titles) + ("---|" if has_note else "")
    lines = ["| " + " | ".join(head) + " |", rule]
    for r in rows:
        cells = [str(r["label"]), *(fmt(r.get(c), r.get("digits", digits)) for c in titles)]
        if has_note:
            cells.append(str(r.get("note", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def side_row(label: str, key: str, ours, official, *, scale: float = 1.0, digits: int = 1):
    """A `comparison_table` row of one summary field, per seed on each side, times `scale`."""
    return {
        "label": label,
        "ours": [scale * s[key] for s in ours],
        "official": [scale * o[key] for o in official],
        "digits": digits,
    }


def mean_ratio(official, ours, key: str) -> float:
    """mean official[key] / mean ours[key] over the seeds' summaries."""
    return float(np.mean([o[key] for o in official])) / float(np.mean([s[key] for s in ours]))


def section_name(name: str) -> str:
    """The BENCHMARKS.md section of reproduction NAME: `reproduce-NAME`."""
    return f"reproduce-{name}"


def put_reproduce_section(report, name: str, body: str) -> pathlib.Path:
    """Writes `body` as section `reproduce-NAME` of the markdown file `report` (replaced in
    place, or appended)."""
    put_section(report, section_name(name), body)
    return pathlib.Path(report)


def machine() -> str:
    """CPU model and the machine's core count, for the wall-time lines (which say what each
    side was pinned to)."""
    return f"{cpu_model()}, {os.cpu_count()} cores"


def save_json(path, obj) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(path)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def load_json(path):
    path = pathlib.Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
