"""Evaluation of a trained method on a held-out split, as configured by `EvalConfig`.

Metric names: `mae`, `rmse` (explicit ratings); sampled-negative ranking metrics as `hr@K`,
`ndcg@K`, `mrr`, ...; full-ranking metrics with a `full_` prefix (`full_recall@10`, ...).

`make_evaluator(cfg, split)` builds the evaluation plans of `split.valid` and `split.test` once,
as device arrays (`transferjax.eval.plan`), and per scorer one jitted program per metric family
(`transferjax.eval.compiled`: a scan over the plan's chunks, the params an argument), plain and
vmapped over a leading trial axis of the params. Evaluating after every epoch, for every trial,
reuses them: one compile per (scorer, plan), one device-to-host transfer per evaluation. The
values equal those of `transferjax.eval.ranking`'s host-loop functions.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import weakref
from collections.abc import Callable

import jax
import numpy as np

from transferjax.config import parse_mesh
from transferjax.data.types import HeldOut
from transferjax.diagnostics import validators
from transferjax.errors import ConfigError
from transferjax.eval import compiled, metrics, plan
from transferjax.eval import groups as groups_lib
from transferjax.eval.groups import Groups
from transferjax.train.mesh import make_layout

_MAX_SCORERS = 8  # scorers whose compiled programs an evaluator keeps (a run uses one)
_FAMILIES = ("rating", "sampled", "full")  # evaluation (and NaN-check) order
COUNTS = ("n_interactions", "full_n_users")  # returned beside the metrics; never selected


# The metrics reported by group (at the largest cutoff K; full ranking prefixes "full_").
GROUP_METRICS = ("mae", "rmse", "mrr", "hr@{k}", "ndcg@{k}", "recall@{k}")


def is_count(key: str) -> bool:
    """Whether a key an evaluation returns is a count (`COUNTS`, or a group's ".../n" or
    ".../full_n"), not a metric."""
    return key in COUNTS or key.rsplit("/", 1)[-1] in ("n", "full_n")


def _pop_extras(out) -> dict:
    """Removes the group sums ("by") and top-K lists ("top") from a family's program output
    (a sums dict, or (sums, n_nan)) and returns them."""
    sums = out[0] if isinstance(out, tuple) else out
    return {k: sums.pop(k) for k in ("by", "top") if k in sums}


def default_select_metric(cfg, split) -> str:
    """rmse for explicit ratings without ranking; ndcg@10 (sampled, else full) otherwise."""
    ranking = cfg.eval.ranking
    if ranking == "none":
        if not split.target_train.implicit and cfg.eval.rating != "off":
            return "rmse"
        ranking = "sampled" if split.valid.negatives is not None else "full"
    if ranking in ("sampled", "both"):
        return "ndcg@10"
    return "full_ndcg@10"


def _jit_programs(
    scorer, *, families: tuple[str, ...], ks: tuple[int, ...], top_k: Callable | None = None
) -> dict:
    """{family: (jitted f(params, plan), jitted vmap of f over params' leading trial axis)};
    `top_k` replaces `jax.lax.top_k` in the full ranking (`compiled.full_sums`)."""
    fns = {
        "rating": functools.partial(compiled.rating_sums, scorer.rating),
        "sampled": functools.partial(
            compiled.sampled_sums, scorer.score_items, ks=ks, pessimistic=True
        ),
        "full": functools.partial(compiled.full_sums, scorer.score_all, ks=ks, top_k=top_k),
    }

    def with_shared(fn):  # the scorer reads {**params, **shared}; shared is never batched
        # `prepare` runs once per evaluation program, before the chunks map over the plan
        return lambda params, shared, plan, groups=None: fn(
            scorer.prepared({**params, **shared}), plan, groups
        )

    return {
        name: (
            jax.jit(with_shared(fns[name])),
            jax.jit(jax.vmap(with_shared(fns[name]), in_axes=(0, None, None, None))),
        )
        for name in families
    }


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluator:
    """`evaluator(scorer, params, heldout, *, batched=False)` for one split.

    Attributes:
      heldouts: {"valid": HeldOut, "test": HeldOut} of the split.
      plans: {name: {family: (plan, real rows)}} built once for each of `heldouts`.
      families: the metric families computed, a subset of ("rating", "sampled", "full").
      ks: cutoffs K of the ranking metrics.
      make_plans: `{name: HeldOut} -> {name: {family: (plan, real rows)}}` (`_make_plans`).
      groups: the split's `transferjax.eval.groups.Groups`, or None: then no metrics by group,
        coverage or novelty. The programs compute them for every held-out set (one program
        serves valid and test); only the test set's are returned.
      top_k: the full ranking's top-k (`jax.lax.top_k` when None); with `trainer.mesh`'s
        "model" axis > 1, `Layout.top_k`: the items' scores stay split over "model", as the
        item tables are, and each device's top k is merged into the same list.
    """

    heldouts: dict
    plans: dict
    families: tuple[str, ...]
    ks: tuple[int, ...]
    make_plans: Callable
    groups: Groups | None = None
    top_k: Callable | None = None
    _programs: dict = dataclasses.field(default_factory=dict, repr=False)
    _other_plans: weakref.WeakKeyDictionary = dataclasses.field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def plans_of(self, heldout: str | HeldOut) -> dict:
        """{family: (plan, real rows)} of "valid", "test", one of those HeldOut objects (by
        identity) or another HeldOut (planned on first use and kept while it lives)."""
        if isinstance(heldout, str):
            if heldout not in self.plans:
                raise ValueError(f"unknown held-out set {heldout!r}; valid: {sorted(self.plans)}")
            return self.plans[heldout]
        for name, ho in self.heldouts.items():
            if heldout is ho:
                return self.plans[name]
        with self._lock:  # the runner evaluates seeds on threads
            if heldout not in self._other_plans:
                self._other_plans[heldout] = self.make_plans({"other": heldout})["other"]
            return self._other_plans[heldout]

    def _names(self) -> dict[str, list[str]]:
        """{family: the metrics of that family `eval.select` may name}, for every family."""
        ranked = ["mrr"] + [
            f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "precision", "recall", "f1")
        ]
        return {"rating": ["mae", "rmse"], "sampled": ranked, "full": [f"full_{m}" for m in ranked]}

    def metric_names(self) -> tuple[str, ...]:
        """The metrics an evaluation returns that `eval.select` may name (all but `COUNTS`)."""
        names = self._names()
        return tuple(n for f in self.families for n in names[f])

    def family_of(self, metric: str) -> str | None:
        """The family of `self.families` that computes `metric`, or None (e.g. a validator)."""
        names = self._names()
        return next((f for f in self.families if metric in names[f]), None)

    def programs_of(self, scorer) -> dict:
        """The jitted programs of `scorer`, built on first use (see `_jit_programs`)."""
        with self._lock:
            progs = self._programs.get(scorer)
            if progs is None:
                if len(self._programs) >= _MAX_SCORERS:
                    self._programs.pop(next(iter(self._programs)))
                progs = _jit_programs(scorer, families=self.families, ks=self.ks, top_k=self.top_k)
                self._programs[scorer] = progs
            return progs

    def __call__(
        self,
        scorer,
        params,
        heldout,
        *,
        batched: bool = False,
        shared: dict | None = None,
        on_nan: str = "raise",
        families: tuple[str, ...] | None = None,
    ) -> dict | list[dict]:
        """Metrics of `scorer` with `params` on `heldout` ("valid", "test" or a HeldOut).

        Args:
          scorer: a `transferjax.methods.api.Scorer`.
          params: its params; with `batched`, every leaf has a leading trial axis [T, ...].
          heldout: the held-out set.
          batched: evaluate the T trials in one vmapped program.
          shared: arrays the scorer reads beside `params` that no trial owns (a method's
            `Built.data`): never batched, merged into the params the scorer sees.
          on_nan: "raise" on NaN scores, or "nan": the ranking metrics of a trial whose
            scorer gave NaN scores are NaN (the trainer then marks that trial diverged,
            `transferjax.train.divergence`, and the other trials go on).
          families: compute only these of `self.families` (None: all of them).

        Returns:
          {metric: float}, or with `batched` a list of T such dicts.

        Raises:
          ValueError: a scorer returned NaN scores (in any trial) or a wrongly shaped output.
        """
        if families is not None and set(families) - set(_FAMILIES):
            raise ValueError(f"families {families!r}: each one of {_FAMILIES}")
        fams = tuple(f for f in self.families if families is None or f in families)
        plans = {f: p for f, p in self.plans_of(heldout).items() if f in fams}
        progs = self.programs_of(scorer)
        shared = {} if shared is None else shared
        g = self.groups
        outs = {f: progs[f][int(batched)](params, shared, p, g) for f, (p, _) in plans.items()}
        outs = jax.device_get(outs)  # the one transfer of this evaluation
        extras = {f: _pop_extras(outs[f]) for f in outs}
        by_group = g is not None and (heldout == "test" or heldout is self.heldouts.get("test"))
        if on_nan not in ("raise", "nan"):
            raise ValueError(f"on_nan must be 'raise' or 'nan', got {on_nan!r}")
        n_trials = jax.tree_util.tree_leaves(params)[0].shape[0] if batched else 1
        vals, nan_trials = {}, {}
        for family in fams:  # NaN checks in the order of the reference functions
            count = plans[family][1]
            if family == "rating":
                vals.update(compiled.finish_rating(outs[family], count))
                if by_group:
                    vals.update(self._by_group(family, extras[family]))
                continue
            sums, n_nan = outs[family]
            err = compiled.nan_error(n_nan)
            if err is not None and on_nan == "raise":
                raise err
            if family == "sampled":
                got = compiled.finish_sampled(sums, count, ks=self.ks)
            else:
                got = {f"full_{k}": v for k, v in compiled.finish_full(sums, count).items()}
            if by_group:
                got.update(self._by_group(family, extras[family]))
            vals.update(got)
            bad = np.broadcast_to(np.asarray(n_nan) > 0, (n_trials,))
            nan_trials.update({k: bad for k in got if not is_count(k)})
        vals = {k: np.broadcast_to(np.asarray(v, np.float64), (n_trials,)) for k, v in vals.items()}
        vals = {
            k: np.where(nan_trials[k], np.nan, v) if k in nan_trials else v for k, v in vals.items()
        }
        if not batched:
            return {k: float(v[0]) for k, v in vals.items()}
        return [{k: float(v[i]) for k, v in vals.items()} for i in range(n_trials)]

    def _by_group(self, family: str, extras: dict) -> dict:
        """The family's `by_<grouping>/<group>/<metric>` keys (`GROUP_METRICS` at the largest
        K, and the group's row count "n"), and for full ranking coverage and novelty at every
        K (`transferjax.eval.groups`), from the extras of its program."""
        g = self.groups
        names = {"source_activity": g.user_names, "item_popularity": g.item_names}
        k = max(self.ks)
        keep = {m.format(k=k) for m in GROUP_METRICS} | {"n"}

        def kept(got):
            return {key: v for key, v in got.items() if key.rsplit("/", 1)[1] in keep}

        if family == "rating":
            return kept(groups_lib.finish_groups(extras["by"], names, compiled.finish_rating))
        if family == "sampled":
            fin = functools.partial(compiled.finish_sampled, ks=self.ks)
            return kept(groups_lib.finish_groups(extras["by"], names, fin))
        got = kept(groups_lib.finish_groups(extras["by"], names, compiled.finish_full))
        out = {"{}/full_{}".format(*k.rsplit("/", 1)): v for k, v in got.items()}
        top = extras["top"]  # [..., n_chunks, c, K] -> [..., n_chunks * c, K]
        top = top.reshape(top.shape[:-3] + (-1, top.shape[-1]))
        n_items = g.item.shape[0]
        cov = groups_lib.coverage_novelty(top, g.info, n_items=n_items, ks=self.ks)
        return {**out, **{f"full_{k}": v for k, v in cov.items()}}

    def batched(self, scorer, params, heldout, *, shared: dict | None = None) -> list[dict]:
        """One metrics dict per trial of `params` (leaves [T, ...]), from one vmapped program."""
        return self(scorer, params, heldout, batched=True, shared=shared)


def _make_plans(
    heldouts: dict,
    *,
    families: tuple[str, ...],
    exclude,
    n_items: int,
    chunk_size: int,
    rating_chunk: int,
) -> dict:
    """{name: {family: (plan, real rows)}} of `heldouts` ({name: HeldOut}); one chunk size per
    family, fitted to the largest set, and plans padded to common shapes (`plan.same_shapes`):
    one compiled program per family serves every set. Full ranking leaves out each set's
    `HeldOut.exclude` items (training; for test, training and valid), or `exclude` (the
    split's target_train) for a set that names none."""
    rows = {
        "rating": max(len(h) for h in heldouts.values()),
        "full": max(len(np.unique(h.row)) for h in heldouts.values()),
    }
    rows["sampled"] = rows["rating"]
    fit = {
        f: plan.fit_chunk(rows[f], rating_chunk if f == "rating" else chunk_size) for f in families
    }
    builders = {
        "rating": lambda h: plan.rating_plan(h, chunk_size=fit["rating"]),
        "sampled": lambda h: plan.sampled_plan(h, chunk_size=fit["sampled"]),
        "full": lambda h: plan.full_plan(
            h,
            exclude=exclude if h.exclude is None else h.exclude,
            n_items=n_items,
            chunk_size=fit["full"],
        ),
    }
    out = {name: {} for name in heldouts}
    for f in families:
        built = plan.same_shapes([builders[f](h) for h in heldouts.values()])
        for name, p in zip(heldouts, built, strict=True):
            out[name][f] = (p, plan.n_rows(p))
    return out


def make_evaluator(cfg, split) -> Evaluator:
    """The `Evaluator` of `split` under `cfg.eval`; plans valid and test now, to one shape per
    metric family (padded with empty chunks: one compile per family and scorer serves both)."""
    ec = cfg.eval
    explicit = not split.target_train.implicit
    if ec.rating == "on" and not explicit:
        raise ConfigError("eval.rating=on needs explicit ratings; this target is implicit")
    rating = explicit and ec.rating != "off"
    ranking = ec.ranking
    if ranking == "none" and not rating:
        ranking = "sampled" if split.valid.negatives is not None else "full"
    if ranking in ("sampled", "both") and split.valid.negatives is None:
        raise ConfigError(
            f"eval.ranking={ranking} needs sampled negatives: set protocol.n_negatives > 0"
        )
    n_items = split.target_train.n_items
    wanted = {
        "rating": rating,
        "sampled": ranking in ("sampled", "both"),
        "full": ranking in ("full", "both"),
    }
    families = tuple(f for f in _FAMILIES if wanted[f])
    try:
        ks = metrics._check_ks(ec.ks, n_items if wanted["full"] else None)
    except ValueError as e:
        raise ConfigError(f"eval.ks={ec.ks}: {e}") from None
    make_plans = functools.partial(
        _make_plans,
        families=families,
        exclude=split.target_train,
        n_items=n_items,
        chunk_size=ec.chunk_size,
        rating_chunk=max(ec.chunk_size, 4096),
    )
    heldouts = {"valid": split.valid, "test": split.test}
    groups = None
    if ec.groups == "on":
        groups = groups_lib.make_groups(split, n_buckets=ec.group_buckets)
    return Evaluator(
        heldouts=heldouts,
        plans=make_plans(heldouts),
        families=families,
        ks=ks,
        make_plans=make_plans,
        groups=groups,
        top_k=_sharded_top_k(cfg.trainer.mesh),
    )


def _sharded_top_k(mesh: str) -> Callable | None:
    """`Layout.top_k` of `trainer.mesh` when its "model" axis splits the item tables, else
    None (`jax.lax.top_k`; also when this process's devices do not form that mesh: the
    trainer then refuses the setting, and an evaluation alone ranks on one device)."""
    sizes = parse_mesh(mesh)
    if sizes is None or sizes["model"] == 1:
        return None
    try:
        return make_layout(mesh).top_k
    except ConfigError:
        return None


def make_evaluate(cfg, split) -> Evaluator:
    """Returns `evaluate(scorer, params, heldout) -> dict[str, float]` (an `Evaluator`), with
    `evaluate.batched(scorer, params_with_trial_axis, heldout) -> list[dict]`; `heldout` is
    `split.valid` or `split.test` (or another HeldOut, planned on first use)."""
    return make_evaluator(cfg, split)


def check_select(cfg, metric: str, evaluate) -> None:
    """Raises ConfigError when `metric` (`eval.select`, or its "auto" choice) is not one the
    evaluator computes under this protocol and `eval` settings (an `Evaluator` lists them;
    another callable is not checked) nor a validator `unsup/<name>`."""
    if metric in {validators.metric_name(n) for n in validators.NAMES}:
        return  # a validator (`transferjax.diagnostics.selection`), computed when selected
    names = getattr(evaluate, "metric_names", None)
    if names is None or metric in names():
        return
    families = ", ".join(getattr(evaluate, "families", ())) or "none"
    what = f"eval.select={metric!r}"
    if cfg.eval.select == "auto":
        what = f"eval.select=auto chooses {metric!r}, which"
    raise ConfigError(
        f"{what} is not computed by this run (metric families: {families}, "
        f"from eval.rating={cfg.eval.rating}, eval.ranking={cfg.eval.ranking}, "
        f"protocol.n_negatives={cfg.protocol.n_negatives}); choose one of: {', '.join(names())}, "
        f"or a validator: {', '.join(validators.metric_name(n) for n in validators.NAMES)}"
    )
