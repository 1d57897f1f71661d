"""Training: `make_train(cfg, split) -> train(key)`, run folders, sweeps, checkpoints, writers."""

from transferjax.train.trainer import Result, make_epoch_fn, make_train

__all__ = ["Result", "make_epoch_fn", "make_train"]
