"""The trainer: `make_train(cfg, split) -> train(keys)`.

`make_train` builds the method once (`transferjax.methods.api.Built`) and jits one epoch
program per stage (`transferjax.train.epoch`); `train(keys)` then trains one trial per key:
`Built.init` is vmapped over the keys, the `TrainState`s of the trials advance as one program
(a leading trial axis) and the method's data enter every program as un-batched arguments.
Calls of `train` for other seeds (one after another, or on several threads) reuse the same
compiled programs through jit's own cache.

Stages marked `select` are evaluated on the valid split after every `eval_every` epochs; the
epoch with the best valid metric is selected, and its params are the result's (kept on the
device as the evaluations go, `transferjax.train.book`); with `trainer.patience` a trial stops
that many evaluations after its selected one. Each evaluation computes the valid metrics the
selection reads, and every valid and test metric is computed once, after training, on each
trial's selected params, into its selected history entry (`eval.curves=select`); or every
metric at every evaluation (`eval.curves=all`). The selection never reads the test split. With
`diagnostics.log=on` each evaluation also records the shift diagnostics of the trial's user
vectors (`transferjax.diagnostics`) in its history entry ("diagnostics") and logs them as
`diagnostics/<measure>`. The validators of
`eval.validators` / `eval.select=unsup/<name>` (`transferjax.diagnostics.selection`) are
recorded among the valid metrics as `unsup/<name>`; those on held-out warm users train the
method without them.

Divergence (`transferjax.train.divergence`): each epoch's mean loss, fetched for the log
anyway, and each evaluation are checked on the host. A diverged trial raises `DivergenceError`
(`trainer.on_nonfinite=raise`) naming the method, stage, epoch, trial and the stage's
learning-rate key, or (`fail`) is marked failed: its later evaluations are dropped, it is never
selected from, and training stops once every trial has failed. Nothing is checkpointed after
a divergence is seen, so a rerun does not resume from a diverged state.

A termination notice (SIGTERM; `transferjax.train.preemption`) stops training at the end of the
epoch in progress: that epoch is checkpointed and `Preempted` is raised, so a rerun resumes
there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.config import flatten
from transferjax.data.batches import host_epoch_indices
from transferjax.diagnostics import make_monitor, selection
from transferjax.errors import ConfigError, Preempted
from transferjax.methods.registry import get_method
from transferjax.train.book import Book, stage_shapes
from transferjax.train.checkpoint import Checkpointer, structure_fingerprint
from transferjax.train.distributed import host_value, is_multiprocess, is_writer
from transferjax.train.divergence import judge, loss_problem, metric_problem, rating_bound
from transferjax.train.epoch import (
    Programs,
    TrainState,
    make_epoch_fn,
    row_taker,
    steps_per_epoch,
)
from transferjax.train.evaluate import check_select, default_select_metric
from transferjax.train.mesh import make_layout
from transferjax.train.preemption import reached, sigterm_notice
from transferjax.train.progress import Progress
from transferjax.train.result import Result, select_best, trial_view
from transferjax.train.trials import LR_KEYS, fresh_state, trial_hypers

__all__ = [
    "LR_KEYS",
    "Result",
    "TrainState",
    "Trainer",
    "make_epoch_fn",
    "make_train",
    "row_taker",
    "select_best",
    "stage_shapes",
    "trial_hypers",
]


class Trainer:
    """`train(keys, *, log=None, ckpt_dir=None, show=None, labels=None, started=None) ->
    list[Result]` (one `Result` for one scalar key) for a method built once on a split; see
    `make_train`. `started`: the `time.perf_counter()` value at which the run began (default:
    the call's start), from which the wall time in its checkpoints is counted
    (`transferjax.train.book`)."""

    def __init__(
        self,
        cfg,
        split,
        *,
        evaluate: Callable,
        trials: list[dict] | None = None,
        progress: bool = False,
        on_nonfinite: str | None = None,
    ):
        method = get_method(cfg.method)
        self.cfg, self.split, self.evaluate = cfg, split, evaluate
        self.trials, self.progress = trials, progress
        self.on_nonfinite = on_nonfinite or cfg.trainer.on_nonfinite
        if self.on_nonfinite not in ("raise", "fail"):
            raise ConfigError(
                f"trainer.on_nonfinite={self.on_nonfinite!r}; choose one of ['raise', 'fail']"
            )
        self.bound = rating_bound(split)
        self.metric = (
            cfg.eval.select if cfg.eval.select != "auto" else default_select_metric(cfg, split)
        )
        check_select(cfg, self.metric, evaluate)  # before building or compiling anything
        self.curves_all = cfg.eval.curves == "all"
        if not self.curves_all and cfg.trainer.keep_selected != "on":
            raise ConfigError(
                "eval.curves=select scores every metric on each trial's selected params, which "
                "trainer.keep_selected=off does not keep: set eval.curves=all (every metric at "
                "every evaluation) or trainer.keep_selected=on"
            )
        self.select_families = _families_read(self.metric, evaluate)
        # validators on held-out warm users train without them (`selection.prepare`)
        split, holdout, _ = selection.prepare(cfg, split)
        self.split = split
        self.built = built = method.build(cfg, split)
        if set(built.hyper) != set(method.traced):
            raise ValueError(
                f"method {cfg.method!r}: Built.hyper has {sorted(built.hyper)} but "
                f"register(traced=...) says {sorted(method.traced)}"
            )
        self.monitor = make_monitor(cfg, split, built)  # None unless diagnostics.log=on
        self.validators = selection.make_validators(cfg, split, built, holdout)
        self.layout = make_layout(cfg.trainer.mesh)  # None: one device
        put = jax.device_put if self.layout is None else self._replicate
        self.shared = put(built.data)
        self.examples = [
            put({k: np.asarray(v) for k, v in st.examples.items()}) for st in built.stages
        ]
        self.programs, self.inits = Programs(built.stages, self.layout), {}
        # Epoch order: a numpy shuffle on the host is cheaper than XLA's sort on a CPU; on an
        # accelerator the in-graph shuffle is faster (`python -m benchmarks.speed`).
        self.host_shuffle = jax.default_backend() == "cpu"

    def _replicate(self, tree):
        return self.layout.put(tree, self.layout.replicated())

    def _local(self, tree):
        """`tree` readable by this process alone (`host_value`) in a multi-process run: the
        evaluation and the results run on each process's own devices, alike on all of them."""
        return host_value(tree) if is_multiprocess() else tree

    def __call__(
        self,
        keys: jax.Array,
        *,
        log: Callable | None = None,
        ckpt_dir=None,
        show: bool | None = None,
        labels: list[str] | None = None,
        started: float | None = None,
    ):
        single = keys.ndim == 0
        keys = keys[None] if single else keys
        n, t0 = keys.shape[0], time.perf_counter()
        overrides = self.trials or [{} for _ in range(n)]
        if len(overrides) != n:
            raise ValueError(f"{len(overrides)} trial overrides for {n} keys")
        if self.layout is not None:
            self.layout.check_trials(n)
        batched = n > 1
        k_init, k_train = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
        params = self._init(batched)(k_init if batched else k_init[0])
        hyper = trial_hypers(self.built.hyper, overrides, batched=batched, method=self.cfg.method)
        key = k_train if batched else k_train[0]
        book = self._open(n, batched, log, ckpt_dir, self.progress if show is None else show)
        book.labels = labels or [f"trial {i}" if batched else "" for i in range(n)]
        book.started = t0 if started is None else started
        book.overrides = overrides
        if book.ckpt is not None:
            stages = self.built.stages
            book.resume(
                lambda meta: fresh_state(
                    stages[meta["stage"]], params, key, overrides, batched=batched, n=n
                )
            )
        book.start_best(params)
        try:
            with sigterm_notice(enabled=book.ckpt is not None):
                params, key = self._stages(book, params, key, hyper, overrides)
        except BaseException:  # an error, an interrupt or a notice: the pending checkpoint
            with contextlib.suppress(Exception):  # is finished; the first error is the one
                book.close()  # to see
            raise
        return self._finish(book, params, hyper, time.perf_counter() - t0, single)

    def _stages(self, book: Book, params, key, hyper, overrides) -> tuple:
        """Trains the stages from the first one not finished (a resumed call starts inside the
        checkpoint's stage); returns the final params and key."""
        first_stage = book.meta["stage"] if book.meta is not None else 0
        for s_idx, stage in enumerate(self.built.stages):
            if s_idx < first_stage or book.stopped:
                continue
            state, first = book.take_restored(s_idx) or (
                fresh_state(stage, params, key, overrides, batched=book.batched, n=book.n),
                0,
            )
            for ep in range(first, stage.epochs):  # each epoch donates the state it advances
                state, stats = self._run_epoch(book, s_idx, stage, state, hyper, ep)
                self._judge(book, stage, ep + 1, [loss_problem(st) for st in stats], metrics=False)
                if book.stopped:
                    break
                self._after_epoch(book, s_idx, stage, state, hyper, ep, stats)
                if book.stopped:
                    break
                last = s_idx == len(self.built.stages) - 1 and ep + 1 == stage.epochs
                if not last and reached():  # a termination notice: save, then stop
                    self._stop(book, s_idx, stage, ep + 1, state)
            params, key = state.params, state.key
        return params, key

    def _stop(self, book: Book, s_idx: int, stage, done: int, state) -> None:
        """Checkpoints epoch `done` of stage `s_idx` (unless `_after_epoch` just did) and
        raises `Preempted` (`transferjax.train.preemption`)."""
        where = None
        if book.ckpt is not None and not book.all_failed:
            if book.saved_step != book.step:
                book.save(s_idx, done, state)
            where = str(book.ckpt.directory)
        raise Preempted(stage=stage.name, epoch=done, checkpoint=where)

    def _judge(
        self, book: Book, stage, epoch: int, problems: list, *, metrics: bool, stopped=False
    ) -> None:
        """Raises or records divergence (`transferjax.train.divergence.judge`)."""
        judge(
            book,
            stage,
            epoch,
            problems,
            metrics=metrics,
            method=self.cfg.method,
            stages=self.built.stages,
            settings=flatten(self.cfg),
            raise_=self.on_nonfinite == "raise",
            stopped=stopped,
        )

    def _init(self, batched: bool) -> Callable:
        """`Built.init` as one compiled program (vmapped over the keys when `batched`), not
        one small program per random draw."""
        with self.programs.lock:
            if batched not in self.inits:
                fn = jax.vmap(self.built.init) if batched else self.built.init
                self.inits[batched] = jax.jit(fn)
            return self.inits[batched]

    def stage_structures(self, n: int) -> tuple[str, ...]:
        """`structure_fingerprint` of the checkpointed state of each stage when `n` trials train
        as one call (a leading trial axis when n > 1); from shapes only, nothing is computed."""
        keep = self.cfg.trainer.keep_selected == "on"
        return tuple(structure_fingerprint(s) for s in stage_shapes(self.built, n, keep=keep))

    def state_structure(self, n: int) -> str:
        """One fingerprint of the training state's structure over all stages (what a run folder
        records): another value means the method's code changed the params or optimizer state,
        and checkpoints of the one cannot continue the other."""
        return hashlib.sha256(",".join(self.stage_structures(n)).encode()).hexdigest()

    def _open(self, n, batched, log, ckpt_dir, show) -> Book:
        use_ckpt = ckpt_dir is not None and self.cfg.trainer.checkpoint_every > 0
        sharding = None
        if self.layout is not None:
            sharding = functools.partial(self.layout.state_shardings, batched=batched)
        return Book(
            n=n,
            batched=batched,
            log=log or (lambda step, scalars: None),
            ckpt=Checkpointer(ckpt_dir, sharding=sharding) if use_ckpt else None,
            bar=Progress(sum(st.epochs for st in self.built.stages))
            if show and is_writer()
            else None,
            history=[[] for _ in range(n)],
            failed=[None] * n,
            structures=self.stage_structures(n) if use_ckpt else (),
            patience=self.cfg.trainer.patience,
            keep=self.cfg.trainer.keep_selected == "on",
        )

    def _run_epoch(self, book, s_idx, stage, state, hyper, ep) -> tuple[TrainState, list[dict]]:
        fold = lambda k: jax.random.fold_in(jax.random.fold_in(k, s_idx), ep)  # noqa: E731
        k_ep = jax.vmap(fold)(state.key) if book.batched else fold(state.key)
        idx = None
        if self.host_shuffle:
            perm = (
                jax.vmap(lambda k: jax.random.fold_in(k, 1 << 30))
                if book.batched
                else (lambda k: jax.random.fold_in(k, 1 << 30))
            )
            n_rows = len(next(iter(stage.examples.values())))
            keys = self._local(perm(k_ep))
            idx = host_epoch_indices(keys, n_rows, min(stage.batch_size, n_rows))
            idx = idx if self.layout is not None else jnp.asarray(idx)
        args = (state, hyper, self.shared, self.examples[s_idx], k_ep, idx)
        if self.layout is not None:
            args = self.layout.place_epoch_args(args, batched=book.batched)
        program = self.programs.get(s_idx, book.batched, args)
        t0 = time.perf_counter()
        state, stats = program(*args)
        stats = jax.device_get(stats)
        book.train_s += time.perf_counter() - t0
        book.step += 1
        return state, book.stats(stats)

    def _after_epoch(self, book, s_idx, stage, state, hyper, ep, stats) -> None:
        done = ep + 1
        if stage.select and (done % self.cfg.trainer.eval_every == 0 or done == stage.epochs):
            self._evaluate(book, state, hyper, stage, done, stats)
            book.keep_best(state.params, self.metric)
        elif book.failed[0] is None:
            book.log(book.step, {f"train/{stage.name}/{k}": v for k, v in stats[0].items()})
        if book.bar is not None:
            book.bar.update(
                book.step,
                steps_per_epoch(stage) * book.n,
                f"{stage.name} epoch {done}/{stage.epochs} loss {stats[0]['loss']:.4f}",
            )
        tc = self.cfg.trainer
        if book.ckpt is not None and not book.all_failed:
            final = book.stopped or (done == stage.epochs and s_idx == len(self.built.stages) - 1)
            due = done % tc.checkpoint_every == 0 or done == stage.epochs
            if final or (due and book.save_due(tc.checkpoint_min_interval_s)):
                if final and not self.curves_all:  # the final record holds them: a rerun
                    self._score_selected(book, hyper)  # of the finished run scores nothing
                book.save(s_idx, done, state)

    def _metrics(self, book: Book, params: dict, split: str, families=None) -> list[dict]:
        """Each trial's metrics on `split` ("valid" or "test") under `params` (with "hyper"),
        one vmapped program for batched trials; `families`: only those metric families."""
        kw = {"on_nan": "nan"} if hasattr(self.evaluate, "metric_names") else {}
        if families is not None:
            kw["families"] = families
        got = self.evaluate(
            self.built.scorer,
            params,
            getattr(self.split, split),
            batched=book.batched,
            shared=self.built.data,
            **kw,
        )
        return [got[i] if book.batched else got for i in range(book.n)]

    def _evaluate(
        self, book: Book, state: TrainState, hyper: dict, stage, epoch: int, stats, *, full=None
    ):
        """The metrics of every trial after `epoch` of `stage` (a Stage, or "final"): with
        `full` (default: `eval.curves=all`) every valid and test metric, else the valid metrics
        the selection reads; a trial whose metrics diverge is raised or marked failed, and its
        entry is dropped."""
        state_params, hyper = self._local((state.params, hyper))
        params, data = {**state_params, "hyper": hyper}, self.built.data
        full = self.curves_all if full is None else full
        splits = ("valid", "test") if full else ("valid",)
        fams = None if full else self.select_families
        at = {name: self._metrics(book, params, name, fams) for name in splits}
        problems = [self._problem(at, i) for i in range(book.n)]
        self._judge(book, stage, epoch, problems, metrics=True)
        if self.validators is not None:  # after the divergence checks: NaN is never selected
            unsup = self.validators(params, data, batched=book.batched, n=book.n)
            at["valid"] = [{**v, **u} for v, u in zip(at["valid"], unsup, strict=True)]
        for i in range(book.n):
            if book.failed[i] is None and not book.done(i):
                entry = {"stage": getattr(stage, "name", stage), "epoch": epoch, "step": book.step}
                entry.update(train=stats[i], **{name: at[name][i] for name in splits})
                if self.monitor is not None:
                    p_i, h_i = (trial_view(book.batched, t, i) for t in (state_params, hyper))
                    entry["diagnostics"] = self.monitor(p_i, h_i)
                book.record(i, entry)

    def _problem(self, at: dict, i: int) -> str | None:
        """Why trial `i`'s metrics in `at` ({split: per-trial metrics}) mean divergence, or None."""
        for split, metrics in at.items():
            problem = metric_problem(metrics[i], bound=self.bound, split=split)
            if problem is not None:
                return problem
        return None

    def _score_selected(self, book: Book, hyper: dict) -> None:
        """`eval.curves=select`: every valid and test metric of each selected trial on its
        selected params (`book.best`), once (before the final checkpoint, else at the end),
        into its selected history entry (the values it holds stay: the same) and the log (at
        that entry's step); a trial whose metrics diverge is raised or marked failed, as at an
        evaluation."""
        todo = [i for i in range(book.n) if book.selected(i)]
        todo = [i for i in todo if "test" not in book.history[i][book.best_index[i]]]
        if not todo:
            return
        best, hyper = self._local((book.best, hyper))
        got = {s: self._metrics(book, {**best, "hyper": hyper}, s) for s in ("valid", "test")}
        stages = {st.name: st for st in self.built.stages}
        for i in todo:
            entry = book.history[i][book.best_index[i]]
            problem = self._problem(got, i)
            if problem is not None:
                one = [problem if j == i else None for j in range(book.n)]
                stage = stages.get(entry["stage"], entry["stage"])
                self._judge(book, stage, entry["epoch"], one, metrics=True, stopped=True)
                continue
            had = {s: entry.get(s, {}) for s in got}
            new = {s: {k: v for k, v in got[s][i].items() if k not in had[s]} for s in got}
            entry["valid"] = {**got["valid"][i], **entry["valid"]}
            entry["test"] = got["test"][i]
            prefix = f"trial{i}/" if book.batched else ""
            book.log(entry["step"], {f"{prefix}{s}/{k}": v for s in new for k, v in new[s].items()})

    def _finish(self, book, params, hyper, wall, single):
        if not self.curves_all:
            self._score_selected(book, hyper)
        book.close()
        params, best, hyper = self._local((params, book.best, hyper))
        ok = [i for i in range(book.n) if book.failed[i] is None]
        if ok and not any(book.history[i] for i in ok):
            # nothing selects (closed-form baselines): one final evaluation
            state = TrainState(params, None, None, None)
            self._evaluate(book, state, hyper, "final", 0, [{} for _ in range(book.n)], full=True)
        results = [
            Result(
                params=trial_view(book.batched, best if book.selected(i) else params, i),
                history=book.history[i],
                selected=None
                if book.failed[i] is not None
                else select_best([h["valid"] for h in book.history[i]], self.metric),
                select_metric=self.metric,
                wall_time=wall,
                train_time=book.train_s,
                wall_before=book.wall_before,
                compile_time=self.programs.seconds,
                resumed_from=book.resumed,
                hyper={k: float(v) for k, v in trial_view(book.batched, hyper, i).items()},
                status="ok" if book.failed[i] is None else "failed",
                failure=book.failed[i],
                stopped_early=book.done(i),
            )
            for i in range(book.n)
        ]
        return results[0] if single else results


def _families_read(metric: str, evaluate) -> tuple[str, ...] | None:
    """The metric families the selection by `metric` reads (`Evaluator.family_of`; none for a
    validator); None (all) for an evaluator that cannot say."""
    family_of = getattr(evaluate, "family_of", None)
    if family_of is None:
        return None
    family = family_of(metric)
    return () if family is None else (family,)


def make_train(
    cfg,
    split,
    *,
    evaluate: Callable,
    trials: list[dict] | None = None,
    progress: bool = False,
    on_nonfinite: str | None = None,
) -> Trainer:
    """Builds the method of `cfg` on `split` once and returns its `Trainer`: `train(keys, *,
    log=None, ckpt_dir=None) -> list[Result]` (or one `Result` for one scalar key).

    A leading axis of `keys` is a batch of trials (seeds) trained as one compiled program under
    `vmap`. Evaluation and selection run per trial on the valid split only.

    Args:
      cfg: a `RunConfig`.
      split: a `Split`.
      evaluate: an evaluator, `evaluate(scorer, params, heldout, *, batched, shared) -> dict
        | list[dict]` (`transferjax.train.evaluate.make_evaluate`).
      trials: optional per-trial overrides of traced values, e.g. `[{"trainer.lr": 1e-2}, ...]`
        (one dict per key): learning rates (each stage's `lr_key`) and the config keys the
        method traces (`Built.hyper`: loss weights, regularisation, GRL strength).
      progress: show progress (a bar on a terminal, plain lines otherwise).
      on_nonfinite: "raise" or "fail" for a diverging trial (None: `trainer.on_nonfinite`;
        sweeps pass "fail" so that one diverging point does not stop the others).
    The trainer's call takes `log(step, scalars)` (batched trials log with a `trial{i}/`
    prefix), `ckpt_dir`, a folder for orbax checkpoints (an existing one is resumed from), and
    `labels`, one name per trial for divergence messages ("seed 3"; default "trial i").

    Raises:
      ConfigError: `eval.select` names a metric this protocol and `eval` do not compute.
      DivergenceError: a trial diverged under `on_nonfinite="raise"`.
    """
    return Trainer(
        cfg, split, evaluate=evaluate, trials=trials, progress=progress, on_nonfinite=on_nonfinite
    )
