"""The validators of a run: which ones, the labelled held-out users, and one compiled program.

`eval.validators` ("off", "all" or names such as "dev,snd") and `eval.select=unsup/<name>`
say which validators (`transferjax.diagnostics.validators`) a run computes; they are recorded
at every valid evaluation as valid metrics `unsup/<name>`, so selection over epochs
(`select_best`) and over sweep points reads them like any metric. What each reads:

- `source_risk`, `dev`: the held-out warm users. `carve_holdout` takes a share
  (`validators.holdout`) of the warm overlap users out of the target training data, so the
  model treats them as cold users (every method scores them through its transfer, as it scores
  cold-valid users), and keeps their target rows as a labelled set. `source_risk` is the mean
  loss of those rows: the squared error of the predicted rating (rating runs: a mean squared
  error) or `sampled_ndcg_loss` against `validators.n_negatives` sampled negatives (ranking
  runs). `dev` weights the same losses by the density ratio of the cold-valid users' against
  the held-out users' source-side vectors (`Built.represent`), so it needs a method with them.
- `entropy`, `im`, `snd`: the scores that the model gives up to `validators.max_users`
  cold-valid users for `validators.n_candidates` fixed target items; never their held-out
  items or ratings.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.data.protocols import sample_negatives
from transferjax.data.types import HeldOut
from transferjax.diagnostics import validators as V
from transferjax.errors import ConfigError

NEEDS_HOLDOUT = ("source_risk", "dev")
NEEDS_REPRESENT = ("dev",)
CHUNK = 256  # rows (users) one scorer call reads


def requested(cfg, *, represent: bool = True) -> tuple[str, ...]:
    """The validators a run computes, in `V.NAMES` order: `eval.validators` ("off", "all", or
    comma-separated names, with or without the "unsup/" prefix) and the one `eval.select`
    names. "all" leaves out the validators that need user vectors when `represent` is False.

    Raises:
      ConfigError: an unknown name (naming `eval.validators`), or a validator that needs
        `Built.represent` named for a method without it (naming the setting that asked).
    """
    text = cfg.eval.validators.strip()
    names: set[str] = set()
    if text == "all":
        names = {n for n in V.NAMES if represent or n not in NEEDS_REPRESENT}
    elif text not in ("off", ""):
        for part in text.split(","):
            name = part.strip().removeprefix(V.PREFIX)
            if name not in V.NAMES:
                raise ConfigError(
                    f"eval.validators={text!r}: unknown validator {part.strip()!r}; choose "
                    f"'off', 'all' or names among {', '.join(V.NAMES)}"
                )
            names.add(name)
    asked = {n: "eval.validators" for n in names if text != "all"}
    sel = cfg.eval.select
    if sel.startswith(V.PREFIX) and sel[len(V.PREFIX) :] in V.NAMES:
        names.add(sel[len(V.PREFIX) :])
        asked[sel[len(V.PREFIX) :]] = "eval.select"
    for n in names:
        if n in NEEDS_REPRESENT and not represent:
            raise ConfigError(
                f"{asked[n]} asks for the {n!r} validator, which reads the method's source-side "
                f"user vectors (Built.represent); method {cfg.method!r} has none. Choose one "
                f"of {', '.join(V.metric_name(v) for v in V.NAMES if v not in NEEDS_REPRESENT)}"
            )
    return tuple(n for n in V.NAMES if n in names)


def ranks_by_loss(cfg, split) -> bool:
    """Whether the held-out rows' loss is the ranking loss (else the squared rating error):
    a ranking loss unless the target has explicit ratings, rating metrics are on and no
    ranking metric is computed."""
    explicit = not split.target_train.implicit and cfg.eval.rating != "off"
    return not (explicit and cfg.eval.ranking == "none")


def carve_holdout(split, *, frac: float, seed: int, n_negatives: int | None):
    """Moves the target training rows of a share of the warm overlap users out of training.

    `round(frac * w)` of the w warm pairs that are neither valid nor test users are drawn with
    `seed`; their target rows leave `target_train` and they leave `warm_pairs`, so they are
    cold users to every method.

    Args:
      split: a `Split`.
      frac: the share of warm pairs held out.
      seed: the draw (and the negatives').
      n_negatives: sampled negatives per held-out row (None: none; at most the items each
        user never rated).

    Returns:
      (the split without them, a `HeldOut` of their rows with `pairs` i32[u, 2]).

    Raises:
      ConfigError: fewer than 2 users or rows would be held out.
    """
    warm = split.warm_pairs
    evaluated = np.concatenate([split.valid.pairs[:, 1], split.test.pairs[:, 1]])
    free = np.flatnonzero(~np.isin(warm[:, 1], evaluated))
    rng = np.random.default_rng(seed)
    k = int(round(frac * len(free)))
    chosen = np.sort(free[rng.permutation(len(free))[:k]])
    tt = split.target_train
    held = np.isin(tt.user, warm[chosen, 1])
    if k < 2 or held.sum() < 2:
        raise ConfigError(
            f"validators.holdout={frac:g} holds out {k} of {len(free)} warm overlap users "
            f"({int(held.sum())} target rows); the source_risk and dev validators need >= 2 "
            f"of each: raise validators.holdout"
        )
    pairs = warm[chosen]
    rows = tt.select(held)
    row = np.searchsorted(pairs[:, 1], rows.user, sorter=np.argsort(pairs[:, 1]))
    row = np.argsort(pairs[:, 1])[row].astype(np.int32)
    negatives = None
    if n_negatives:
        n_neg = int(min(n_negatives, tt.n_items - np.bincount(rows.user).max()))
        negatives = sample_negatives(
            positives=rows, users=rows.user, n_items=tt.n_items, n_negatives=n_neg, seed=seed
        )
    holdout = HeldOut(pairs, row, rows.item, rows.rating, negatives)
    info = {**split.info, "validators.holdout_users": k, "validators.holdout_rows": len(rows)}
    out = dataclasses.replace(
        split,
        target_train=tt.select(~held),
        warm_pairs=np.delete(warm, chosen, axis=0),
        info=info,
    )
    return out, holdout


def _chunked(fn, *args: jax.Array, chunk: int = CHUNK) -> jax.Array:
    """fn(*rows) over the leading axis of `args` in chunks of `chunk` rows (padded rows read
    index 0 and are dropped): out[n, ...]."""
    n = args[0].shape[0]
    c = min(chunk, n)
    pad = -n % c
    parts = tuple(
        jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape((-1, c) + a.shape[1:])
        for a in args
    )
    out = jax.lax.map(lambda xs: fn(*xs), parts)
    return out.reshape((-1,) + out.shape[2:])[:n]


class Validators:
    """`validators(params, shared, *, batched) -> list[dict]`: {"unsup/<name>": float} per
    trial of `params` (the scorer's params with "hyper"; leaves [T, ...] when `batched`), from
    one compiled program (vmapped over the trials when batched)."""

    def __init__(self, cfg, split, built, names: tuple[str, ...], holdout: HeldOut | None):
        vc = cfg.validators
        self.names = names
        rng = np.random.default_rng(vc.seed)
        cold = split.valid.pairs[rng.permutation(len(split.valid.pairs))[: vc.max_users]]
        n_items = split.target_train.n_items
        cand = np.sort(rng.permutation(n_items)[: vc.n_candidates]).astype(np.int32)
        scorer, rep = built.scorer, built.represent
        rank_loss = holdout is not None and holdout.negatives is not None
        T, tau = vc.temperature, vc.snd_temperature
        arr = {"cold": jnp.asarray(cold), "cand": jnp.asarray(cand)}
        if holdout is not None:
            arr.update(
                h_pairs=jnp.asarray(holdout.pairs),
                h_src=jnp.asarray(holdout.source_user),
                h_tgt=jnp.asarray(holdout.target_user),
                h_item=jnp.asarray(holdout.item),
                h_rating=jnp.asarray(holdout.rating),
                h_row=jnp.asarray(holdout.row),
                h_neg=jnp.asarray(holdout.negatives if rank_loss else holdout.item[:, None]),
                cold_src=jnp.asarray(cold[cold[:, 0] >= 0, 0]),
            )

        def program(params, shared, a):
            view = scorer.prepared({**params, **shared})
            out = {}
            if "source_risk" in names or "dev" in names:
                if rank_loss:
                    items = jnp.concatenate([a["h_item"][:, None], a["h_neg"]], axis=1)
                    s = _chunked(
                        lambda u, t, i: scorer.score_items(view, u, t, i),
                        a["h_src"],
                        a["h_tgt"],
                        items,
                    )
                    loss = V.sampled_ndcg_loss(s[:, 0], s[:, 1:])
                else:
                    pred = _chunked(
                        lambda u, t, i: scorer.rating(view, u, t, i),
                        a["h_src"],
                        a["h_tgt"],
                        a["h_item"],
                    )
                    loss = (pred - a["h_rating"]) ** 2
                if "source_risk" in names:
                    out["source_risk"] = jnp.mean(loss)
                if "dev" in names:
                    src = _chunked(lambda u: rep.source(view, u), a["h_pairs"][:, 0])
                    tgt = _chunked(lambda u: rep.source(view, u), a["cold_src"])
                    w = V.density_ratios(src, tgt, src, steps=vc.dev_steps)
                    out["dev"] = V.dev_risk(loss, w[a["h_row"]])
            if {"entropy", "im", "snd"} & set(names):
                c = a["cand"]
                scores = _chunked(
                    lambda u, t: scorer.score_items(
                        view, u, t, jnp.broadcast_to(c, (u.shape[0], c.shape[0]))
                    ),
                    a["cold"][:, 0],
                    a["cold"][:, 1],
                )
                if "entropy" in names:
                    out["entropy"] = V.prediction_entropy(scores, temperature=T)
                if "im" in names:
                    out["im"] = V.information_maximization(scores, temperature=T)
                if "snd" in names:
                    p = jax.nn.softmax(scores / T, axis=-1)
                    out["snd"] = V.soft_neighborhood_density(p, temperature=tau)
            return out

        self._arrays = arr
        self._programs = (
            jax.jit(program),
            jax.jit(jax.vmap(program, in_axes=(0, None, None))),
        )

    def __call__(self, params: dict, shared: dict, *, batched: bool, n: int) -> list[dict]:
        """One {"unsup/<name>": float} per trial (`n` trials)."""
        got = jax.device_get(self._programs[int(batched)](params, shared, self._arrays))
        return [
            {
                V.metric_name(k): float(np.asarray(got[k]).reshape(-1)[i if batched else 0])
                for k in self.names
            }
            for i in range(n)
        ]


def prepare(cfg, split, *, represent: bool | None = None):
    """(the split the method trains on, the held-out `HeldOut` or None, the validator names).

    The split loses the held-out warm users only when `source_risk` or `dev` is computed.
    `represent`: whether the method has user vectors (None: not known yet, not checked)."""
    names = requested(cfg, represent=True if represent is None else represent)
    if not set(names) & set(NEEDS_HOLDOUT):
        return split, None, names
    vc = cfg.validators
    n_neg = vc.n_negatives if ranks_by_loss(cfg, split) else None
    split, holdout = carve_holdout(split, frac=vc.holdout, seed=vc.seed, n_negatives=n_neg)
    return split, holdout, names


def make_validators(cfg, split, built, holdout: HeldOut | None) -> Validators | None:
    """The `Validators` of a run (None when it computes none); `split` is the one the method
    was built on (`prepare`).

    Raises:
      ConfigError: a validator that needs user vectors was asked for a method without them.
    """
    names = requested(cfg, represent=built.represent is not None)
    if not names:
        return None
    return Validators(cfg, split, built, names, holdout)


__all__ = [
    "Validators",
    "carve_holdout",
    "make_validators",
    "prepare",
    "ranks_by_loss",
    "requested",
]
