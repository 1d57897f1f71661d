"""Evaluation: rating metrics and ranking metrics over full ranking and sampled negatives."""

from transferjax.eval.metrics import (
    rank_metrics_from_ranks,
    rating_metrics,
    topk_metrics,
    topk_metrics_per_user,
)
from transferjax.eval.ranking import full_ranking, full_ranking_ranks, rating_eval, sampled_ranking

__all__ = [
    "full_ranking",
    "full_ranking_ranks",
    "rank_metrics_from_ranks",
    "rating_eval",
    "rating_metrics",
    "sampled_ranking",
    "topk_metrics",
    "topk_metrics_per_user",
]
