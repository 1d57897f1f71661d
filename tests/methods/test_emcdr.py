"""EMCDR's mapping loss against numpy, and its item mapping (`emcdr.share=items`: data that
share items and no users): which pairs it learns from, the scores through the mapped items, the
choice of side, and training that fits the map."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import train_stage, view0
from tests.methods.dual_data import item_overlap_split, user_overlap_split
from transferjax import config as C
from transferjax.methods.emcdr import known_item_pairs, mapping_loss
from transferjax.methods.registry import get_method


def _cfg(**over) -> C.RunConfig:
    base = C.RunConfig(
        method="emcdr",
        trainer=C.TrainerConfig(lr=1e-2, batch_size=8, epochs=3),
    )
    sets = ["mf.dim=3", "emcdr.hidden=5", "mf.epochs=2", "mf.batch_size=64"]
    return C.apply_overrides(base, sets + [f"{k}={v}" for k, v in over.items()])


def _np_mlp(m, x):
    if "w" in m:
        return x @ m["w"]
    return np.tanh(x @ m["w1"] + m["b1"]) @ m["w2"] + m["b2"]


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_mapping_loss_matches_numpy(side, kind):
    rng = np.random.default_rng(0)
    mf = lambda n: {  # noqa: E731
        side: rng.normal(size=(n, 3)).astype(np.float32),
        f"{side}_bias": rng.normal(size=n).astype(np.float32),
    }
    src, tgt = mf(7), mf(6)
    w = {
        "linear": {"w": rng.normal(size=(4, 4))},
        "mlp": {
            "w1": rng.normal(size=(4, 5)),
            "b1": rng.normal(size=5),
            "w2": rng.normal(size=(5, 4)),
            "b2": rng.normal(size=4),
        },
    }[kind]
    w = {k: np.asarray(v, np.float32) for k, v in w.items()}
    batch = {
        "src": np.array([0, 3, 6, 2]),
        "tgt": np.array([5, 1, 0, 2]),
        "mask": np.array([1, 1, 1, 0]),
    }
    params = {"source": src, "target": tgt, "map": w}
    got, aux = mapping_loss(
        jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, batch), reg=0.3, side=side
    )
    x = np.concatenate([src[side], src[f"{side}_bias"][:, None]], 1)[batch["src"]]
    y = np.concatenate([tgt[side], tgt[f"{side}_bias"][:, None]], 1)[batch["tgt"]]
    err = ((_np_mlp(w, x.astype(np.float64)) - y) ** 2).sum(1)
    mse = (err * batch["mask"]).sum() / batch["mask"].sum()
    want = mse + 0.3 * sum((v.astype(np.float64) ** 2).sum() for k, v in w.items() if k[0] == "w")
    np.testing.assert_allclose(float(aux["map_mse"]), mse, rtol=1e-5)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def _without_item(inter, item: int):
    """`inter` without the rows of `item`."""
    keep = inter.item != item
    return dataclasses.replace(
        inter, **{k: getattr(inter, k)[keep] for k in ("user", "item", "rating")}
    )


def _split_with_a_cold_overlap_item():
    """The item-overlap split with the target rows of its second overlap item removed from
    target_train (an overlapping item the target never trained)."""
    split = item_overlap_split()
    cold = int(split.data.item_overlap[1, 1])
    return dataclasses.replace(split, target_train=_without_item(split.target_train, cold)), cold


def test_item_pairs_are_the_overlap_items_trained_in_both_domains():
    split, cold = _split_with_a_cold_overlap_item()
    pairs = known_item_pairs(split)
    s_known = split.source_train.item_counts() > 0
    t_known = split.target_train.item_counts() > 0
    assert not t_known[cold]
    want = [tuple(p) for p in split.data.item_overlap if s_known[p[0]] and t_known[p[1]]]
    assert [tuple(p) for p in pairs] == want and cold not in pairs[:, 1]
    # an overlap item without source training rows is left out of both sets
    sub = _without_item(split.source_train, int(pairs[0, 0]))
    fewer = dataclasses.replace(split, source_train=sub)
    assert [tuple(p) for p in known_item_pairs(fewer)] == want[1:]
    assert int(pairs[0, 1]) not in known_item_pairs(fewer, target=False)[:, 1]
    # scored through f: the overlap items with source rows, with or without target rows
    scored = [tuple(p) for p in split.data.item_overlap if s_known[p[0]]]
    assert [tuple(p) for p in known_item_pairs(split, target=False)] == scored
    assert cold in known_item_pairs(split, target=False)[:, 1]


@pytest.mark.parametrize("item_bias", ["target", "mapped"])
def test_item_mapping_scores_the_overlap_items_through_the_map(item_bias):
    split, _ = _split_with_a_cold_overlap_item()
    built = get_method("emcdr").build(_cfg(**{"emcdr.item_bias": item_bias}), split)
    assert built.represent is None  # no user-space bridge over items
    v = view0(built, jax.random.key(3))
    # a cold user: no target training row
    tgt = np.arange(split.target_train.n_users)
    known = split.target_train.user_counts() > 0
    v["known_target"] = jnp.asarray(known & (tgt != 4))
    src = -np.ones_like(tgt)
    got = np.asarray(built.scorer.score_all(v, jnp.asarray(src), jnp.asarray(tgt)))

    n = {k: np.asarray(a, np.float64) for k, a in v["target"].items()}
    s = {k: np.asarray(a, np.float64) for k, a in v["source"].items()}
    m = {k: np.asarray(a, np.float64) for k, a in v["map"].items()}
    q, b = n["item"].copy(), n["item_bias"].copy()
    pairs = known_item_pairs(split, target=False)
    mapped = _np_mlp(m, np.concatenate([s["item"], s["item_bias"][:, None]], 1)[pairs[:, 0]])
    q[pairs[:, 1]] = mapped[:, :-1]
    if item_bias == "mapped":
        b[pairs[:, 1]] = mapped[:, -1]
    warm = np.asarray(v["known_target"])[:, None]
    p_u = np.where(warm, n["user"], 0.0)
    b_u = np.where(warm[:, 0], n["user_bias"], 0.0)
    want = n["mu"] + b_u[:, None] + b[None, :] + p_u @ q.T
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the items outside the overlap keep their target factors: scores against them are MF's
    mf = get_method("mf").build(_cfg(method="mf"), split)
    w = view0(mf)
    w = {**w, "target": v["target"], "known_target": v["known_target"]}
    plain = np.asarray(mf.scorer.score_all(w, jnp.asarray(src), jnp.asarray(tgt)))
    rest = np.setdiff1d(np.arange(split.target_train.n_items), pairs[:, 1])
    np.testing.assert_allclose(got[:, rest], plain[:, rest], rtol=1e-6)
    assert not np.allclose(got[:, pairs[:, 1]], plain[:, pairs[:, 1]])


def test_share_auto_picks_users_else_items_and_a_missing_side_is_an_error():
    users, items = user_overlap_split(), item_overlap_split()
    assert get_method("emcdr").build(_cfg(), users).represent is not None
    stage = get_method("emcdr").build(_cfg(), items).stages[-1]
    np.testing.assert_array_equal(stage.examples["src"], known_item_pairs(items)[:, 0])
    with pytest.raises(ValueError, match="warm overlapping users"):
        get_method("emcdr").build(_cfg(**{"emcdr.share": "users"}), items)
    with pytest.raises(ValueError, match="overlapping items"):
        get_method("emcdr").build(_cfg(**{"emcdr.share": "items"}), users)


def _train(built):
    """Every stage of `built` from view0 for its epochs: (the params before the mapping stage,
    after it, the mapping stage's epoch losses)."""
    v = view0(built)
    for stage in built.stages:
        before = jax.tree.map(np.asarray, v)
        v, stats = train_stage(stage, v, stage.epochs)
        losses = [s["loss"] for s in stats]
        assert losses[-1] < losses[0], (stage.name, losses)
    return before, jax.tree.map(np.asarray, v), losses


@pytest.mark.slow
def test_item_mapping_stage_fits_the_map_with_the_mf_frozen():
    before, after, _ = _train(
        get_method("emcdr").build(_cfg(**{"trainer.epochs": 30}), item_overlap_split())
    )
    # the mapping stage leaves both MF tables as their pre-training left them
    for side in ("source", "target"):
        jax.tree.map(np.testing.assert_array_equal, before[side], after[side])


def test_mapping_loss_with_tune_embeddings_reaches_the_mapped_rows():
    """With `tune`, the gradient of the loss reaches the mapped rows of both tables as the
    numpy derivative of the masked mean squared error says (repeated rows add up); without it
    the tables get none."""
    rng = np.random.default_rng(1)
    mf = lambda n: {  # noqa: E731
        "item": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        "item_bias": jnp.asarray(rng.normal(size=n), jnp.float32),
    }
    w = rng.normal(size=(4, 4)).astype(np.float32)
    params = {"source": mf(7), "target": mf(6), "map": {"w": jnp.asarray(w)}}
    batch = {
        "src": jnp.array([0, 3, 3, 2]),
        "tgt": jnp.array([5, 1, 0, 2]),
        "mask": jnp.array([1, 1, 1, 0]),
    }
    grad = lambda tune: jax.grad(  # noqa: E731
        lambda p: mapping_loss(p, batch, reg=0.3, side="item", tune=tune)[0]
    )(params)
    row = lambda t: np.concatenate([t["item"], t["item_bias"][:, None]], 1)  # noqa: E731
    x, y = row(params["source"])[batch["src"]], row(params["target"])[batch["tgt"]]
    m = np.asarray(batch["mask"], np.float64)[:, None]
    d = 2.0 * (x @ w - y) * m / m.sum()  # d mse / d (x W) per row
    want_s, want_t = np.zeros((7, 4)), np.zeros((6, 4))
    np.add.at(want_s, np.asarray(batch["src"]), d @ w.T)
    np.add.at(want_t, np.asarray(batch["tgt"]), -d)
    g = grad(True)
    np.testing.assert_allclose(row(g["source"]), want_s, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(row(g["target"]), want_t, rtol=1e-4, atol=1e-6)
    g = grad(False)
    for side in ("source", "target"):
        assert not any(np.any(np.asarray(a)) for a in jax.tree.leaves(g[side]))


@pytest.mark.slow
def test_tune_embeddings_trains_the_mapped_rows_only_and_fits_closer():
    """`emcdr.tune_embeddings`: the mapping stage trains the map and both MF tables, moves only
    the rows of the mapped pairs (Adam leaves a row without gradient where it is), and ends
    with a smaller mapping error than the frozen map after the same epochs."""
    split = item_overlap_split()
    pairs = known_item_pairs(split)
    over = {"trainer.epochs": 30}
    _, _, frozen = _train(get_method("emcdr").build(_cfg(**over), split))
    built = get_method("emcdr").build(_cfg(**over, **{"emcdr.tune_embeddings": True}), split)
    assert built.stages[-1].part == ("map", "source", "target")
    before, after, tuned = _train(built)
    for side, rows in (("source", pairs[:, 0]), ("target", pairs[:, 1])):
        for name in ("item", "item_bias"):
            moved = np.flatnonzero(
                np.any(
                    (before[side][name] != after[side][name]).reshape(len(after[side][name]), -1), 1
                )
            )
            assert set(moved) == set(rows.tolist()), (side, name)
        for name in ("user", "user_bias"):
            np.testing.assert_array_equal(before[side][name], after[side][name])
    assert tuned[-1] < frozen[-1], (tuned[-1], frozen[-1])
