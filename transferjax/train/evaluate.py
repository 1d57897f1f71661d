"""Evaluation of a trained method on a held-out split, as configured by `EvalConfig`.

Metric names: `mae`, `rmse` (explicit ratings); sampled-negative ranking metrics as `hr@K`,
`ndcg@K`, `mrr`, ...; full-ranking metrics with a `full_` prefix (`full_recall@10`, ...).
Scorers are jitted once per scorer with the params as an argument, so evaluating after every
epoch never recompiles.
"""

from __future__ import annotations

import functools

import jax

from transferjax.eval.ranking import full_ranking, rating_eval, sampled_ranking


@functools.lru_cache(maxsize=64)
def _jitted(scorer):
    return (jax.jit(scorer.rating), jax.jit(scorer.score_items), jax.jit(scorer.score_all))


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


def make_evaluate(cfg, split):
    """Returns `evaluate(scorer, params, heldout) -> dict[str, float]`."""
    ec = cfg.eval
    explicit = not split.target_train.implicit
    if ec.rating == "on" and not explicit:
        raise ValueError("eval.rating=on needs explicit ratings; this target is implicit")
    rating = explicit and ec.rating != "off"
    ranking = ec.ranking
    if ranking == "none" and not rating:
        ranking = "sampled" if split.valid.negatives is not None else "full"
    if ranking in ("sampled", "both") and split.valid.negatives is None:
        raise ValueError("eval.ranking needs sampled negatives: set protocol.n_negatives > 0")
    n_items = split.target_train.n_items

    def evaluate(scorer, params, heldout) -> dict:
        rate, items_fn, all_fn = _jitted(scorer)
        out = {}
        if rating:
            out.update(
                rating_eval(
                    lambda s, t, i: rate(params, s, t, i),
                    heldout,
                    chunk_size=max(ec.chunk_size, 4096),
                )
            )
        if ranking in ("sampled", "both"):
            out.update(
                sampled_ranking(
                    lambda s, t, i: items_fn(params, s, t, i),
                    heldout,
                    ks=ec.ks,
                    chunk_size=ec.chunk_size,
                )
            )
        if ranking in ("full", "both"):
            full = full_ranking(
                lambda s, t: all_fn(params, s, t),
                heldout,
                exclude=split.target_train,
                n_items=n_items,
                ks=ec.ks,
                chunk_size=ec.chunk_size,
            )
            out.update({f"full_{k}": v for k, v in full.items()})
        return {k: float(v) for k, v in out.items()}

    return evaluate
