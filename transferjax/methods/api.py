"""The contract between a method and the trainer.

A method is built into a `Built`: the training `Stage`s and a `Scorer` that scores target items
for (source user, target user) pairs. Each stage trains one part of the params with its own
loss and optimizer; the trainer runs the stages in order (`transferjax.train.trainer`).

Cold users, in one place. The cold-start protocol (`transferjax.data.protocols`) holds out
every target interaction of a share of the overlapping users, so at evaluation a cold user is
a pair (source index, target index) whose target index has no training row (`known_users` is
False; a user without a source profile has source index -1). Each method's scorer then falls
back, never to an untrained embedding:

- popularity, item_mean: item-only scores, the same for every user;
- mf: zero factors and bias, so the prediction is mu + b_i (`own_or_fallback`);
- lightgcn: as mf, zero factors: mu + b_i with loss "mse"; with "bpr" (no biases, the paper's
  y_ui = e_u^T e_i) the item baseline is training popularity, never the isolated node's ego row;
- emcdr: the mapped source factors f(p_u^s, b_u^s), or mu + b_i without a source profile;
- ptupcdr: the user's personalised bridge applied to its source factors, or mu + b_i;
- cmf: the overlapping user's joint row (trained by its source data), or mu + b_i for a
  row trained in neither domain;
- conet, dtcdr: the overlapping user's joint rows, trained by its source examples (through
  the cross units / the max-pooled embedding), in the target network; the item baseline
  (popularity, or the item mean for the rating variant) for a row trained in neither domain;
- bitgcf: the overlapping user's final target row, which the per-layer transfer fills from
  its source copy (its target ego row, untrained, is held at zero); the item baseline
  (popularity, or mu + b_i for the rating variant) without a source profile;
- the phi family: the merge of phi_s(source interests) alone (h = 0 with neither).

User representations. A method whose users have a source-side and a target-side vector in one
common space says how to compute them in `Built.represent` (a `Represent`), which the shift
diagnostics read (`transferjax.diagnostics`); it is never called in training or scoring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from transferjax.config import flatten


@dataclasses.dataclass(frozen=True)
class Stage:
    """One optimisation stage.

    Attributes:
      name: stage name used in logs ("source_mf", "mapping", ...).
      part: key of the params dict this stage trains, or a tuple of keys (the stage then
        trains `{key: params[key]}` of them, one optimizer over all); every other key is frozen.
      loss: `loss(params, batch, key) -> (scalar, aux dict)` over the full params dict;
        `batch` holds the rows of `examples` plus `mask` bool[batch].
      examples: dict of parallel numpy arrays, one row per training example.
      epochs, batch_size: passes over the examples and rows per step.
      optimizer: an optax transformation for the trained part.
      select: evaluate on valid after epochs and keep the best epoch's metrics.
      lr_key: the config key that sets this stage's learning rate (a sweep over that key
        changes the rate of this stage only; it is a traced value in the optimizer state).
      step: optional custom update `step(part, opt_state, frozen, batch, key) -> (part,
        opt_state, loss, aux)` replacing value_and_grad + `optimizer.update` (row-sparse
        updates of embedding tables use it); `optimizer.init` still builds the state.
    """

    name: str
    part: str | tuple[str, ...]
    loss: Callable
    examples: dict
    epochs: int
    batch_size: int
    optimizer: optax.GradientTransformation
    select: bool = False
    lr_key: str = "trainer.lr"
    step: Callable | None = None

    def trained(self, params: dict):
        """What this stage trains of `params`: `params[part]`, or {key: params[key]} of a tuple."""
        if isinstance(self.part, str):
            return params[self.part]
        return {k: params[k] for k in self.part}

    def frozen(self, params: dict) -> dict:
        """Every entry of `params` this stage does not train."""
        keys = {self.part} if isinstance(self.part, str) else set(self.part)
        return {k: v for k, v in params.items() if k not in keys}

    def merged(self, params: dict, trained) -> dict:
        """`params` with the stage's part replaced by `trained` (as `trained(params)` gives it)."""
        if isinstance(self.part, str):
            return {**params, self.part: trained}
        return {**params, **{k: trained[k] for k in self.part}}


def make_optimizer(name: str, *, lr: float, weight_decay: float = 0.0):
    """optax optimizer by name: adam | adamw | sgd | adagrad.

    The learning rate is injected as a hyperparameter (`opt_state.hyperparams["learning_rate"]`),
    an array in the optimizer state, so runs that differ only in it share one compiled program
    and can be batched under `vmap`.
    """
    makers = {
        "adam": optax.adam,
        "adamw": lambda learning_rate: optax.adamw(learning_rate, weight_decay=weight_decay),
        "sgd": optax.sgd,
        "adagrad": optax.adagrad,
    }
    if name not in makers:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(makers)}")
    return optax.inject_hyperparams(makers[name])(learning_rate=lr)


def trainer_optimizer(cfg) -> optax.GradientTransformation:
    """`make_optimizer` with the run's `trainer.optimizer`, `trainer.lr` and
    `trainer.weight_decay`: the optimizer of a method's stages that train at the run's rate."""
    tc = cfg.trainer
    return make_optimizer(tc.optimizer, lr=tc.lr, weight_decay=tc.weight_decay)


def selected_stage(
    cfg,
    *,
    name: str,
    part: str,
    loss: Callable,
    examples: dict,
    optimizer: optax.GradientTransformation | None = None,
    step: Callable | None = None,
) -> Stage:
    """The stage most methods train: the run's `trainer.epochs` and `trainer.batch_size`, the
    run's optimizer (`trainer_optimizer`) unless another is given, selected on valid."""
    return Stage(
        name=name,
        part=part,
        loss=loss,
        examples=examples,
        epochs=cfg.trainer.epochs,
        batch_size=cfg.trainer.batch_size,
        optimizer=trainer_optimizer(cfg) if optimizer is None else optimizer,
        select=True,
        step=step,
    )


def rating_rows(inter) -> dict:
    """A stage's examples from `Interactions`: {"user": i32[n], "item": i32[n], "rating":
    f32[n]}, one row per interaction."""
    return {"user": inter.user, "item": inter.item, "rating": inter.rating}


@dataclasses.dataclass(frozen=True)
class Scorer:
    """How a trained method scores target items.

    Attributes:
      score_items: `(params, src: i32[c], tgt: i32[c], items: i32[c] | i32[c, m]) -> f32[c] |
        f32[c, m]`; `src` is the user's source index (-1 when none), `tgt` the target index.
      score_all: `(params, src: i32[c], tgt: i32[c]) -> f32[c, n_items]`.
      predict: optional rating predictor `(params, src, tgt, items: i32[c]) -> f32[c]` when it
        differs from `score_items` (e.g. popularity ranks by count but predicts the mean).
      prepare: optional `prepare(view) -> {name: array}`, work shared by every chunk of one
        evaluation (a graph method's propagated tables): the evaluator calls it once per
        evaluation, inside the compiled program and before the chunks, and the scorers see its
        entries in their view. Scorers must still give the same scores without them (a direct
        call computes them itself), so `prepare` only saves work.
    """

    score_items: Callable
    score_all: Callable
    predict: Callable | None = None
    prepare: Callable | None = None

    def prepared(self, view: dict) -> dict:
        """`view` with the entries of `prepare(view)` (itself without `prepare`)."""
        if self.prepare is None:
            return view
        extra = self.prepare(view)
        clash = set(extra) & set(view)
        if clash:
            raise ValueError(f"Scorer.prepare returned keys the view has: {sorted(clash)}")
        return {**view, **extra}

    def rating(self, params, src, tgt, items):
        """f32[c] predicted ratings."""
        return (self.predict or self.score_items)(params, src, tgt, items)


@dataclasses.dataclass(frozen=True)
class Represent:
    """A method's user vectors on each side of the transfer, in one common space.

    Attributes:
      source: `(view, src: i32[n]) -> f32[n, d]` the source-side vector of each source user, as
        the method carries it into the target space (EMCDR's mapped factors, phi_s outputs).
      target: `(view, tgt: i32[m]) -> f32[m, d]` the target-side vector of each target user with
        target training data (its own target factors, phi_t outputs).
      space: one line naming the vectors, for reports.
    """

    source: Callable
    target: Callable
    space: str


@dataclasses.dataclass(frozen=True)
class Built:
    """A method built for one split: once per run, whatever the number of seeds or trials.

    Attributes:
      init: `init(key) -> params`, the trainable parts `{part: pytree}`; the trainer vmaps it
        over the keys of the seeds / trials it trains as one program.
      stages: the `Stage`s, trained in order.
      scorer: the `Scorer` of the trained method.
      data: arrays every loss and the scorer read that no stage trains (interest bags,
        histories, masks, closed-form tables): shared by all trials (un-batched arguments of
        the compiled programs), never copied per trial and never written into checkpoints.
      hyper: `{config key: f32[]}` traced hyperparameters (`hyper_init`); the trainer replaces
        them per trial, so runs that differ only in them share one compiled program.
      represent: the users' source-side and target-side vectors (`Represent`), for the shift
        diagnostics; None for a method without both sides (target-only MF, the baselines).

    Losses and scorers read one dict, the `view`: `{**params, **data, "hyper": hyper}` (plus
    `"step"`, the stage's step count i32[], while training).
    """

    init: Callable
    stages: tuple
    scorer: Scorer
    data: dict = dataclasses.field(default_factory=dict)
    hyper: dict = dataclasses.field(default_factory=dict)
    represent: Represent | None = None

    def view(self, params: dict, hyper: dict | None = None) -> dict:
        """`{**params, **data, "hyper": hyper}` (this method's own `hyper` when None)."""
        clash = set(params) & set(self.data)
        if clash:
            raise ValueError(f"params and data share keys {sorted(clash)}")
        return {**params, **self.data, "hyper": self.hyper if hyper is None else hyper}


RATING_METRICS = ("rmse", "mae")


def selects_ratings(cfg, split) -> bool:
    """Whether the run selects on rmse / mae: as `eval.select`, or as its "auto" choice
    (explicit target ratings, rating metrics on, no ranking). Methods with a ranking loss and
    a rating variant ("auto" loss kinds) take the rating variant exactly then. A validator
    (`eval.select=unsup/<name>`) trains what "auto" would."""
    sel = cfg.eval.select
    if sel == "auto" or sel.startswith("unsup/"):  # a validator selects as "auto" trains
        explicit = not split.target_train.implicit and cfg.eval.rating != "off"
        return explicit and cfg.eval.ranking == "none"
    return sel in RATING_METRICS


def hyper_init(cfg, keys) -> dict:
    """{key: f32[]} of the config values of `keys` (e.g. "align.weight"), for `Built.hyper`."""
    flat = flatten(cfg)
    return {k: jnp.asarray(float(flat[k]), jnp.float32) for k in keys}


# One candidate scored by gathering its factors costs about as much as this many scores of the
# all-item matmul; scorers take the all-item form for m candidates per user when
# GATHER_COST * m >= n_items. Chosen by `python -m benchmarks.score_candidates` (which
# materialises the [c, m, d] gather; figures in BENCHMARKS.md).
GATHER_COST = 128


def all_items_pay(items: jax.Array, n_items: int) -> bool:
    """Whether candidates i32[c, m] are scored faster from all items' scores than gathered."""
    return items.ndim == 2 and GATHER_COST * items.shape[1] >= n_items


def embedding_scorer(sides: Callable, *, prepare: Callable | None = None) -> Scorer:
    """The `Scorer` of s_ui = <e_u, f_i> + ub_u + ib_i for the users a model represents and an
    item baseline base_i for the others, from `sides(view, tgt) -> (e_u f32[c, D], ub f32[c],
    f f32[n_items, D], ib f32[n_items], base f32[n_items], ok bool[c])` (graph methods:
    LightGCN, BiTGCF). Candidates are gathered, or read from all items' scores when that pays
    (`all_items_pay`)."""

    def all_scores(eu, ub, fi, ib, base, ok):
        return jnp.where(ok[:, None], eu @ fi.T + ub[:, None] + ib[None], base[None])

    def score_all(v, src, tgt):
        return all_scores(*sides(v, tgt))

    def score_items(v, src, tgt, items):
        parts = sides(v, tgt)
        eu, ub, fi, ib, base, ok = parts
        if all_items_pay(items, fi.shape[0]):
            return jnp.take_along_axis(all_scores(*parts), items, axis=1)
        if items.ndim == 1:
            return jnp.where(ok, jnp.sum(eu * fi[items], -1) + ub + ib[items], base[items])
        s = jnp.einsum("cd,cmd->cm", eu, fi[items]) + ub[:, None] + ib[items]
        return jnp.where(ok[:, None], s, base[items])

    return Scorer(score_items=score_items, score_all=score_all, prepare=prepare)


def own_or_fallback(known: jax.Array, own: tuple, fallback: tuple, tgt: jax.Array) -> tuple:
    """Per row, the user's own target factors when `known[tgt]`, else `fallback`.

    Args:
      known: bool[n_target_users] users with target training data.
      own, fallback: (vec f32[c, d], bias f32[c]) pairs.
    """
    k = known[tgt]
    return (jnp.where(k[:, None], own[0], fallback[0]), jnp.where(k, own[1], fallback[1]))
