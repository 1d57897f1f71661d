"""Training: `make_train(cfg, split) -> train(key)`, run folders, sweeps, checkpoints, writers."""

from transferjax.train.trainer import Result, Stage, make_epoch_fn, make_optimizer, make_train

__all__ = ["Result", "Stage", "make_epoch_fn", "make_optimizer", "make_train"]
