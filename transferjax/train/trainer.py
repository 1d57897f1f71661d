"""The trainer: `make_train(cfg, split) -> train(key)`.

A method is built into initial params, a sequence of `Stage`s and a `Scorer`
(`transferjax.transfer.registry`). Each stage trains one part of the params (the others are
frozen) over a table of training examples, one epoch per call of a jitted `lax.scan` over
fixed-shape batches (the last batch padded and masked), so nothing recompiles between epochs.
Stages marked `select` are evaluated on the valid split after every `eval_every` epochs; the
epoch with the best valid metric is selected. Test metrics are computed at the same points for
the record but never read by the selection.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from transferjax.data.batches import epoch_batches, host_epoch_indices
from transferjax.methods.api import Stage


def row_taker(examples: dict, *, pack: bool = True) -> Callable:
    """`take(i) -> {name: examples[name][i]}` for i32[batch] row indices, in one gather.

    The 1-D 32-bit columns (int32, uint32, float32) are bit-cast to uint32 and stacked into one
    [n, columns] table (once per epoch), so a shuffled batch reads each example's fields from
    one place instead of making one random read per column; on a CPU those reads dominate
    batch assembly for tables of a million examples. The values come back bit-exact; other
    columns are gathered on their own (all of them without `pack`).

    Args:
      examples: {name: array with rows on axis 0}, all with the same number of rows.
    Returns:
      take: i32[batch] -> {name: rows of examples[name]}.
    """
    packable = [k for k, v in examples.items()
                if v.ndim == 1 and np.dtype(v.dtype) in (np.int32, np.uint32, np.float32)]
    if len(packable) < 2 or not pack:
        return lambda i: {k: v[i] for k, v in examples.items()}
    table = jnp.stack([jax.lax.bitcast_convert_type(examples[k], jnp.uint32)
                       for k in packable], axis=1)
    rest = {k: v for k, v in examples.items() if k not in packable}

    def take(i):
        rows = table[i]
        out = {k: jax.lax.bitcast_convert_type(rows[:, c], examples[k].dtype)
               for c, k in enumerate(packable)}
        return {**out, **{k: v[i] for k, v in rest.items()}}

    return take


def make_epoch_fn(stage: Stage, *, batched: bool = False, jit: bool = True) -> Callable:
    """`epoch(part, opt_state, frozen, examples, key, idx=None) -> (part, opt_state, stats)`.

    One pass over `stage.examples` as a `lax.scan` of fixed-shape steps, in the order `idx`
    (i32[steps, batch] from `host_epoch_indices`) or, without it, a shuffle drawn in the graph.
    With `batched`, part, opt_state, frozen, key and idx carry a leading trial axis (seeds,
    learning rates) under `vmap`; the examples are shared. Jitted with part and opt_state
    donated unless `jit=False`.
    """
    n = len(next(iter(stage.examples.values())))
    batch_size = min(stage.batch_size, n)
    steps = math.ceil(n / batch_size)

    def epoch(part, opt_state, frozen, examples, key, idx=None):
        k_perm, k_step = jax.random.split(key)
        if idx is None:
            idx, mask = epoch_batches(k_perm, n, batch_size)
        else:  # host-side shuffle (`host_epoch_indices`), i32[steps, batch]
            mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)
        take = row_taker(examples)

        def step(carry, xs):
            p, s = carry
            i, m, t = xs
            batch = take(i)
            batch["mask"] = m

            k = jax.random.fold_in(k_step, t)
            if stage.step is not None:
                p, s, loss, aux = stage.step(p, s, frozen, batch, k)
                return (p, s), (loss, aux)

            def f(p_):
                return stage.loss({**frozen, stage.part: p_}, batch, k)

            (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(p)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes python floats and ints
                updates, s = stage.optimizer.update(grads, s, p)
                p = optax.apply_updates(p, updates)
            return (p, s), (loss, aux)

        (part, opt_state), (losses, aux) = jax.lax.scan(
            step, (part, opt_state), (idx, mask, jnp.arange(steps))
        )
        stats = {"loss": jnp.mean(losses), **{k: jnp.mean(v) for k, v in aux.items()}}
        return part, opt_state, stats

    fn = jax.vmap(epoch, in_axes=(0, 0, 0, None, 0, 0)) if batched else epoch
    return jax.jit(fn, donate_argnums=(0, 1)) if jit else fn


_EXECUTABLES: collections.OrderedDict = collections.OrderedDict()
_EXECUTABLES_KEPT = 8
_COMPILE_LOCK = threading.Lock()


def compile_cached(jitted, args):
    """`jitted.lower(*args).compile()`, reusing an executable compiled earlier in this process
    for the same program: the key is a hash of the lowered StableHLO text (shapes, dtypes,
    shardings, embedded constants) and of the arguments' pytree structure and shapes (unused
    arguments are pruned from the text), so sequential seeds of one config, whose methods are
    built anew per seed, compile once. Keeps the `_EXECUTABLES_KEPT` most recent executables."""
    lowered = jitted.lower(*args)
    h = hashlib.sha256(lowered.as_text().encode())
    # Unused arguments are pruned from the program text, but the executable still checks the
    # full input pytree and shapes: they are part of the key.
    h.update(str(jax.tree.structure(args)).encode())
    h.update(str([(np.shape(x), str(getattr(x, "dtype", type(x)))) for x in jax.tree.leaves(args)])
             .encode())
    key = h.hexdigest()
    with _COMPILE_LOCK:  # seeds on several threads: the first compiles, the others reuse
        if key in _EXECUTABLES:
            _EXECUTABLES.move_to_end(key)
            return _EXECUTABLES[key]
        compiled = lowered.compile()
        _EXECUTABLES[key] = compiled
        while len(_EXECUTABLES) > _EXECUTABLES_KEPT:
            _EXECUTABLES.popitem(last=False)
        return compiled


def lower_is_better(metric: str) -> bool:
    return metric in ("mae", "rmse") or metric.endswith("loss")


def select_best(valid_history: list[dict], metric: str) -> int:
    """Index of the best entry by `metric` (first one on ties). Reads valid metrics only."""
    if not valid_history:
        raise ValueError("nothing to select from: no evaluation ran")
    if metric not in valid_history[0]:
        raise ValueError(
            f"selection metric {metric!r} not computed; have {sorted(valid_history[0])}"
        )
    vals = np.array([h[metric] for h in valid_history], dtype=np.float64)
    vals = np.where(np.isnan(vals), np.inf if lower_is_better(metric) else -np.inf, vals)
    return int(np.argmin(vals) if lower_is_better(metric) else np.argmax(vals))


@dataclasses.dataclass
class Result:
    """One trial's outcome: final params, the evaluation history and the selection."""

    params: Any
    history: list
    selected: int
    select_metric: str
    wall_time: float
    train_time: float
    compile_time: float = 0.0
    resumed_from: int | None = None

    @property
    def best(self) -> dict:
        return self.history[self.selected]


def _index(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def _stack(trees: list):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


LR_KEYS = ("trainer.lr", "mf.lr")


def with_trial_hypers(params: dict, overrides: list[dict], *, batched: bool, method: str) -> dict:
    """`params` with `params["hyper"][key]` set per trial from `overrides` (keys the method
    traces, see `transferjax.transfer.registry`); learning-rate keys are left to the stages.
    A key that is neither fails, naming the keys the method traces."""
    hyper = dict(params.get("hyper", {}))
    for key in sorted({k for o in overrides for k in o}):
        if key in LR_KEYS:
            continue
        if key not in hyper:
            raise ValueError(
                f"{key!r} is not a traced value of method {method!r}; traced: "
                f"{', '.join([*LR_KEYS, *sorted(hyper)])}"
            )
        base = np.broadcast_to(np.asarray(hyper[key]), (len(overrides),))
        vals = [float(o.get(key, b)) for o, b in zip(overrides, base, strict=True)]
        hyper[key] = jnp.asarray(vals if batched else vals[0], jnp.float32)
    return {**params, "hyper": hyper} if hyper else params


def make_train(
    cfg,
    split,
    *,
    evaluate: Callable,
    log: Callable | None = None,
    ckpt_dir=None,
    trials: list[dict] | None = None,
    progress: bool = False,
) -> Callable:
    """Returns `train(keys) -> list[Result]` (or `train(key) -> Result` for one scalar key).

    A leading axis of `keys` is a batch of trials (seeds) trained in one compiled program under
    `vmap` (the params of every stage carry the trial axis; the training data are shared).
    Evaluation and selection run per trial on the valid split only.

    Args:
      cfg: a `RunConfig`.
      split: a `Split`.
      evaluate: `evaluate(scorer, params, heldout) -> dict` (see `transferjax.train.evaluate`).
      log: optional `log(step, scalars)`; batched trials log with a `trial{i}/` prefix.
      ckpt_dir: folder for orbax checkpoints; an existing checkpoint is resumed from.
      trials: optional per-trial overrides of traced values, e.g. `[{"trainer.lr": 1e-2}, ...]`
        (one dict per key): learning rates (each stage's `lr_key`) and the config keys the
        method traces in `params["hyper"]` (loss weights, regularisation, GRL strength).
      progress: show progress (a bar on a terminal, plain lines otherwise).
    """
    from transferjax.methods.registry import get_method
    from transferjax.train.evaluate import default_select_metric

    method = get_method(cfg.method)
    metric = cfg.eval.select if cfg.eval.select != "auto" else default_select_metric(cfg, split)
    log = log or (lambda step, scalars: None)
    every = cfg.trainer.checkpoint_every
    # Epoch order: a numpy shuffle on the host is ~2x cheaper than XLA's sort on a CPU; on an
    # accelerator the in-graph shuffle is faster (H100: 28M vs 13.5M MF rows/s, speed suite).
    host_shuffle = jax.default_backend() == "cpu"

    def train(keys: jax.Array):
        single = keys.ndim == 0
        keys = keys[None] if single else keys
        n = keys.shape[0]
        overrides = trials or [{} for _ in range(n)]
        if len(overrides) != n:
            raise ValueError(f"{len(overrides)} trial overrides for {n} keys")
        batched = n > 1
        t0 = time.perf_counter()
        k_init, k_train = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
        builts = [method.build(cfg, split, key=k_init[i]) for i in range(n)]
        built = builts[0]
        params = _stack([b.params for b in builts]) if batched else built.params
        params = with_trial_hypers(params, overrides, batched=batched, method=cfg.method)
        del builts
        bar = None
        if progress:
            from transferjax.train.progress import Progress

            bar = Progress(sum(st.epochs for st in built.stages))
        history = [[] for _ in range(n)]
        clock = {"step": 0, "train": 0.0, "compile": 0.0}
        ckpt = None
        start_stage, start_epoch, resumed, restored = 0, 0, None, None
        if ckpt_dir is not None and every > 0:
            from transferjax.train.checkpoint import Checkpointer

            ckpt = Checkpointer(ckpt_dir)
            meta = ckpt.latest_meta()
            if meta is not None:
                start_stage, start_epoch = meta["stage"], meta["epoch"]
                history, resumed = meta["history"], meta["_step"]
                clock.update(step=meta["step"], train=meta["train_time"])
                restored = meta["_step"]

        def trial_params(i):
            return _index(params, i) if batched else params

        def record(stage_name: str, epoch: int, stats: list[dict]):
            for i in range(n):
                p = trial_params(i)
                entry = {
                    "stage": stage_name,
                    "epoch": epoch,
                    "step": clock["step"],
                    "train": stats[i],
                    "valid": evaluate(built.scorer, p, split.valid),
                    "test": evaluate(built.scorer, p, split.test),
                }
                history[i].append(entry)
                prefix = f"trial{i}/" if batched else ""
                log(
                    clock["step"],
                    {
                        **{f"{prefix}train/{k}": v for k, v in stats[i].items()},
                        **{f"{prefix}valid/{k}": v for k, v in entry["valid"].items()},
                        **{f"{prefix}test/{k}": v for k, v in entry["test"].items()},
                    },
                )

        for s_idx, stage in enumerate(built.stages):
            if s_idx < start_stage:
                continue
            epoch_fn = make_epoch_fn(stage, batched=batched, jit=False)
            examples = {k: jnp.asarray(v) for k, v in stage.examples.items()}
            n_rows = len(next(iter(stage.examples.values())))
            init = jax.vmap(stage.optimizer.init) if batched else stage.optimizer.init
            opt_state = init(params[stage.part])
            lrs = [o.get(stage.lr_key) for o in overrides]
            if any(v is not None for v in lrs):
                base = float(opt_state.hyperparams["learning_rate"].reshape(-1)[0])
                lr = jnp.asarray([base if v is None else v for v in lrs], jnp.float32)
                opt_state.hyperparams["learning_rate"] = lr if batched else lr[0]
            first = 0
            if restored is not None and s_idx == start_stage:
                state = ckpt.restore(restored, {"params": params, "opt": opt_state})
                params, opt_state, first = state["params"], state["opt"], start_epoch
                restored = None
            compiled = None
            for ep in range(first, stage.epochs):
                part = params[stage.part]
                frozen = {k: v for k, v in params.items() if k != stage.part}
                fold = lambda k: jax.random.fold_in(jax.random.fold_in(k, s_idx), ep)  # noqa: B023
                k_ep = jax.vmap(fold)(k_train) if batched else fold(k_train[0])
                idx = None
                if host_shuffle:
                    perm_key = (
                        jax.vmap(lambda k: jax.random.fold_in(k, 1 << 30))(k_ep)
                        if batched
                        else jax.random.fold_in(k_ep, 1 << 30)
                    )
                    b = min(stage.batch_size, n_rows)
                    idx = jnp.asarray(host_epoch_indices(perm_key, n_rows, b))
                args = (part, opt_state, frozen, examples, k_ep, idx)
                if compiled is None:
                    t1 = time.perf_counter()
                    compiled = compile_cached(jax.jit(epoch_fn, donate_argnums=(0, 1)), args)
                    clock["compile"] += time.perf_counter() - t1
                t1 = time.perf_counter()
                part, opt_state, stats = compiled(*args)
                stats = jax.device_get(stats)
                clock["train"] += time.perf_counter() - t1
                stats = [
                    {k: float(v[i] if batched else v) for k, v in stats.items()} for i in range(n)
                ]
                params = {**params, stage.part: part}
                clock["step"] += 1
                if stage.select and (
                    (ep + 1) % cfg.trainer.eval_every == 0 or ep + 1 == stage.epochs
                ):
                    record(stage.name, ep + 1, stats)
                else:
                    log(clock["step"], {f"train/{stage.name}/{k}": v for k, v in stats[0].items()})
                if bar is not None:
                    bar.update(
                        clock["step"],
                        math.ceil(n_rows / stage.batch_size) * n,
                        f"{stage.name} epoch {ep + 1}/{stage.epochs} loss {stats[0]['loss']:.4f}",
                    )
                if ckpt is not None and ((ep + 1) % every == 0 or ep + 1 == stage.epochs):
                    ckpt.save(
                        clock["step"],
                        {"params": params, "opt": opt_state},
                        {
                            "stage": s_idx,
                            "epoch": ep + 1,
                            "step": clock["step"],
                            "history": history,
                            "train_time": clock["train"],
                        },
                    )
        if ckpt is not None:
            ckpt.close()
        if bar is not None:
            bar.close()
        if not history[0]:  # nothing selects (closed-form baselines): one evaluation at the end
            record("final", 0, [{} for _ in range(n)])
        wall = time.perf_counter() - t0
        results = [
            Result(
                params=trial_params(i),
                history=history[i],
                selected=select_best([h["valid"] for h in history[i]], metric),
                select_metric=metric,
                wall_time=wall,
                train_time=clock["train"],
                compile_time=clock["compile"],
                resumed_from=resumed,
            )
            for i in range(n)
        ]
        return results[0] if single else results

    return train
