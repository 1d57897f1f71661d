"""Tiny data and numpy references shared by the tests of the two-domain pointwise methods
(`conet`, `dtcdr`)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from tests import train_stage, view0
from tests.methods.test_all_methods import TINY as ALL_METHODS_TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.types import CrossDomainData, Interactions
from transferjax.models.pointwise import sample_unseen

TINY = dataclasses.replace(ALL_METHODS_TINY, implicit=True)


def cfg(method: str, **over) -> C.RunConfig:
    """A run of `method` on `TINY` (cold-start, implicit), small widths, with `over`rides."""
    base = C.RunConfig(
        method=method,
        data=C.DataConfig(name="synthetic", synthetic=TINY),
        protocol=C.ProtocolConfig(beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=32, epochs=5),
    )
    small = [f"{method}.dim=4", f"{method}.layers=6,3"]
    return C.apply_overrides(base, small + [f"{k}={v}" for k, v in over.items()])


def cold_split(conf: C.RunConfig):
    return build_split(conf.protocol, build_dataset(conf.data))


def _domain(rng, n_users, n_items, n, name, explicit=False, users=None):
    u = rng.integers(0, n_users if users is None else users, n)
    pairs = np.unique(np.stack([u, rng.integers(0, n_items, n)], 1), axis=0)
    r = rng.integers(1, 6, len(pairs)) if explicit else np.ones(len(pairs))
    return Interactions(
        user=pairs[:, 0].astype(np.int32),
        item=pairs[:, 1].astype(np.int32),
        rating=r.astype(np.float32),
        n_users=n_users,
        n_items=n_items,
        name=name,
    )


def user_overlap_split():
    """Users 0..19 of both domains are the same people (target user t = source user t + 5);
    target user 39 has no interaction at all. Warm 8:1:1 split of the target."""
    rng = np.random.default_rng(7)
    data = CrossDomainData(
        source=_domain(rng, 45, 30, 600, "source"),
        target=_domain(rng, 40, 25, 400, "target", users=39),
        overlap=np.stack([np.arange(5, 25), np.arange(20)], 1),
        name="users",
    )
    return build_split(C.ProtocolConfig(name="warm_ratio", seed=0), data)


def item_overlap_split(explicit=False):
    """Disjoint users, 12 shared items (source items 0..11 = target items 8..19)."""
    rng = np.random.default_rng(4)
    data = CrossDomainData(
        source=_domain(rng, 40, 30, 600, "source", explicit),
        target=_domain(rng, 30, 25, 350, "target", explicit),
        overlap=np.zeros((0, 2), np.int32),
        item_overlap=np.stack([np.arange(12), np.arange(8, 20)], 1),
        name="items",
    )
    return build_split(C.ProtocolConfig(name="warm_ratio", seed=0), data)


def np_bce(z, y, mask):
    z = np.asarray(z, np.float64)
    p = 1.0 / (1.0 + np.exp(-z))
    nll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return np.sum(nll * mask) / mask.sum()


def stage_rows(built, split, batch, key, n_neg=1):
    """The rows one step of the stage loss trains on, drawn as `build_pointwise` draws them
    from `key`: {domain: (user joint rows, item joint rows, labels, mask)} in numpy."""
    v = view0(built)
    k_idx, k_s, k_t = jax.random.split(key, 3)
    b = batch["user"].shape[0]
    src = split.source_train
    idx = np.asarray(jax.random.randint(k_idx, (b,), 0, len(src), dtype=jnp.int32))
    batches = {
        "source": (src.user[idx], src.item[idx], np.ones(b, bool), k_s),
        "target": (*(np.asarray(batch[k]) for k in ("user", "item", "mask")), k_t),
    }
    out = {}
    for name, (u, i, m, k) in batches.items():
        k_neg = jax.random.split(k)[0]
        idx_d = v["positives"][name]
        n_items = (split.source_train if name == "source" else split.target_train).n_items
        neg = np.asarray(sample_unseen(k_neg, idx_d, jnp.asarray(u), n_items=n_items, n=n_neg))
        uu = np.tile(u, 1 + n_neg)
        ii = np.concatenate([i, neg.T.reshape(-1)])
        rows = v["dual_rows"][name]
        labels = np.concatenate([np.ones(len(u)), np.zeros(neg.size)])
        out[name] = (
            np.asarray(rows["user"])[uu],
            np.asarray(rows["item"])[ii],
            labels,
            np.tile(m, 1 + n_neg),
        )
    return out


def first_batch(built, n=16):
    (stage,) = built.stages
    batch = {k: jnp.asarray(v[:n]) for k, v in stage.examples.items()}
    mask = np.ones(n, bool)
    mask[-2:] = False  # padding rows of a last batch
    batch["mask"] = jnp.asarray(mask)
    return batch


def train(built, epochs: int):
    """(per-epoch stats, trained view) of `epochs` epochs of the single stage from seed 0."""
    (stage,) = built.stages
    v, stats = train_stage(stage, view0(built), epochs)
    return stats, v
