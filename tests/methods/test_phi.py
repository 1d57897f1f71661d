"""The phi multi-task transfer model: joint rows and bags, shapes, no label leakage, cold users,
and transfer beating target-only MF at a small shift. (Every registered phi method training
without recompiles is in test_objectives.py: the methods differ only in the objective.)"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import view0
from transferjax import config as C
from transferjax.align import AlignConfig
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.mf import MFConfig
from transferjax.methods.phi import PhiConfig
from transferjax.methods.phi import bags as U
from transferjax.methods.phi import encoders as PE
from transferjax.methods.phi import model as P
from transferjax.methods.registry import get_method
from transferjax.models import phi as PHI
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train

TINY = C.SyntheticConfig(
    n_overlap=80,
    n_source_only=20,
    n_target_only=20,
    n_items_source=40,
    n_items_target=30,
    density_source=0.2,
    density_target=0.15,
    seed=1,
)


def _cfg(method="phi", syn=TINY, **phi):
    return C.RunConfig(
        method=method,
        data=C.DataConfig(name="synthetic", synthetic=syn),
        protocol=C.ProtocolConfig(beta=0.3, seed=0),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=32, epochs=2),
        phi=PhiConfig(**{"dims": (8,), "expert_dim": 8, **phi}),
    )


@pytest.fixture(scope="module")
def tiny():
    cfg = _cfg()
    return build_split(cfg.protocol, build_dataset(cfg.data))


def test_joint_rows_and_bags(tiny):
    src, tgt = U.joint_rows(tiny)
    assert len(src) == len(tgt) and np.all((src >= 0) | (tgt >= 0))
    warm = {tuple(p) for p in tiny.warm_pairs}
    assert warm <= set(zip(src.tolist(), tgt.tolist(), strict=True))
    assert set(tgt[tgt >= 0]) == set(tiny.target_train.users_present())  # no cold user
    bags, spec = U.domain_bags(tiny.target_train)
    u = int(tiny.target_train.user[0])
    items, rating, mask = U.gather_rows(bags, jnp.asarray([u, -1]), max_len=spec.max_len)
    rows = tiny.target_train.select(tiny.target_train.user == u)
    assert sorted(np.asarray(items[0])[np.asarray(mask[0])]) == sorted(rows.item)
    assert not bool(mask[1].any())
    inp, lab = U.split_entries(jax.random.key(0), mask, keep=0.5)
    assert not bool((inp & lab).any()) and bool(((inp | lab) == mask).all())


@pytest.fixture(scope="module")
def dann(tiny):
    """A built dann model and its jitted scorer functions."""
    built = get_method("dann").build(_cfg("dann"), tiny)
    sc = built.scorer
    return built, jax.jit(sc.score_all), jax.jit(sc.score_items), jax.jit(sc.predict)


@pytest.mark.slow
def test_output_shapes(tiny, dann):
    built, score_all, score_items, predict = dann
    p = view0(built)
    src = jnp.asarray(tiny.test.pairs[:5, 0].tolist() + [-1])
    tgt = jnp.asarray(tiny.test.pairs[:5, 1].tolist() + [0])
    n = tiny.target_train.n_items
    full = score_all(p, src, tgt)
    assert full.shape == (6, n)
    assert predict(p, src, tgt, jnp.arange(6)).shape == (6,)
    diag = full[np.arange(6), np.arange(6)]
    np.testing.assert_allclose(score_items(p, src, tgt, jnp.arange(6)), diag, rtol=1e-5, atol=1e-6)
    many = jnp.tile(jnp.arange(n)[None], (6, 1))
    np.testing.assert_allclose(
        score_items(p, src, tgt, many[:, :3]), full[:, :3], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(score_items(p, src, tgt, many), full, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(predict(p, src, tgt, jnp.arange(6)))))
    # a chunk of rating rows repeating few users encodes each user once: same predictions
    rows = np.repeat(np.arange(6), 11)[:64]
    items = jnp.asarray(np.arange(64) % n)
    got = predict(p, src[rows], tgt[rows], items)
    want = np.concatenate(
        [
            predict(p, src[rows[i : i + 4]], tgt[rows[i : i + 4]], items[i : i + 4])
            for i in range(0, 64, 4)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gather_cost", [0, 10**6])  # always gather / always all items
@pytest.mark.slow
def test_candidate_scores_agree_in_both_forms(tiny, dann, monkeypatch, gather_cost):
    from transferjax.methods import api as registry

    built = dann[0]
    monkeypatch.setattr(registry, "GATHER_COST", gather_cost)
    src = jnp.asarray(tiny.test.pairs[:4, 0].tolist() + [-1])
    tgt = jnp.asarray(tiny.test.pairs[:4, 1].tolist() + [0])
    n = tiny.target_train.n_items
    items = jnp.asarray(np.random.default_rng(0).integers(0, n, (5, 7)), jnp.int32)
    full = np.asarray(built.scorer.score_all(view0(built), src, tgt))
    got = built.scorer.score_items(view0(built), src, tgt, items)  # traced afresh: no jit
    np.testing.assert_allclose(
        got, np.take_along_axis(full, np.asarray(items), 1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("cold_rate", [1.0, 0.0])
def test_no_label_leakage_when_simulated_cold(tiny, monkeypatch, cold_rate):
    """The target-task loss of a user simulated cold has zero gradient w.r.t. that user's target
    interest values (labels enter through stop_gradient, so this is the input path); without the
    simulation the same gradient is non-zero, so the check can fail."""
    monkeypatch.setattr(P, "COLD_RATE", cold_rate)
    cfg = dataclasses.replace(_cfg(source_weight=0.0), align=AlignConfig(weight=0.0))
    built = get_method("phi").build(cfg, tiny)
    stage = built.stages[0]
    src, tgt = (jnp.asarray(v) for v in (stage.examples["src"], stage.examples["tgt"]))
    batch = {"src": src, "tgt": tgt, "mask": jnp.ones(src.shape, bool)}
    params = view0(built)

    def loss(rating):
        bags = {**params["bags"], "target": {**params["bags"]["target"], "rating": rating}}
        return stage.loss({**params, "bags": bags}, batch, jax.random.key(3))[0]

    g = np.asarray(jax.jit(jax.grad(loss))(params["bags"]["target"]["rating"]))
    start = np.asarray(params["bags"]["target"]["start"])
    length = np.asarray(params["bags"]["target"]["length"])
    both = np.asarray(tgt)[np.asarray(src) >= 0]  # users with both domains
    only = np.asarray(tgt)[np.asarray(src) < 0]
    per_user = lambda users: np.array(
        [np.abs(g[start[u] : start[u] + length[u]]).sum() for u in users]
    )
    assert per_user(only).sum() > 0  # target-only users are never simulated cold
    if cold_rate == 1.0:
        np.testing.assert_array_equal(per_user(both), 0.0)
    else:
        assert per_user(both).sum() > 0


@pytest.mark.slow
def test_cold_scores_ignore_the_target_encoder(tiny, dann):
    """A cold user's scores use z_s only: replacing phi_t changes warm users' scores, not theirs."""
    built, score_all, _, predict = dann
    p = view0(built)
    other = P.PhiModel(_cfg(), tiny, objective="none").init(jax.random.key(9))["enc_t"]
    q = {**p, "phi": {**p["phi"], "enc_t": other}}
    n = 16
    cold_s, cold_t = (jnp.asarray(c) for c in np.resize(tiny.test.pairs, (n, 2)).T)
    warm_s, warm_t = (jnp.asarray(c) for c in np.resize(tiny.warm_pairs, (n, 2)).T)
    items = jnp.arange(n) % tiny.target_train.n_items
    for fn in (score_all, lambda p_, s, t: predict(p_, s, t, items)):
        np.testing.assert_array_equal(fn(p, cold_s, cold_t), fn(q, cold_s, cold_t))
        assert not np.allclose(fn(p, warm_s, warm_t), fn(q, warm_s, warm_t))


# small shift, explicit ratings; 1000 overlap users so that cold-valid / cold-test hold 150 users
# each (with 90 the RMSE of either set moved by about 0.02 between epochs and seeds)
SHIFT5 = C.SyntheticConfig(
    n_overlap=1000,
    n_source_only=200,
    n_target_only=200,
    n_items_source=300,
    n_items_target=250,
    density_source=0.1,
    density_target=0.06,
    shift_deg=5.0,
    seed=3,
)


@pytest.mark.slow
def test_phi_and_dann_beat_target_only_mf_on_cold_users():
    """Target-only MF can give a cold user only the item baseline; the phi model transfers the
    user's source taste (measured over seeds 0-3: phi and dann 0.89-0.91, mf 0.99)."""
    cfg = C.RunConfig(
        data=C.DataConfig(name="synthetic", synthetic=SHIFT5),
        protocol=C.ProtocolConfig(beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=32, epochs=15, eval_every=5),
        mf=MFConfig(dim=12, reg=1e-3),
        phi=PhiConfig(dims=(64,), expert_dim=32),
    )
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    rmse = {}
    for m in ("mf", "phi", "dann"):
        c = dataclasses.replace(cfg, method=m)
        res = make_train(c, split, evaluate=make_evaluate(c, split))(jax.random.key(0))
        rmse[m] = res.best["test"]["rmse"]
    assert rmse["phi"] < rmse["mf"] - 0.05, rmse
    assert rmse["dann"] < rmse["mf"] - 0.05, rmse


def _long_tailed(n_users=60, n_items=500, seed=0):
    """Interactions whose bags are short next to the longest one (as CDRIB's users)."""
    from transferjax.data.types import Interactions

    rng = np.random.default_rng(seed)
    lens = np.minimum(rng.geometric(0.4, n_users), 40)
    lens[3] = 40
    user = np.repeat(np.arange(n_users), lens).astype(np.int32)
    item = np.concatenate([rng.choice(n_items, k, replace=n_items < k) for k in lens]).astype(
        np.int32
    )
    rating = rng.integers(1, 6, len(user)).astype(np.float32)
    return Interactions(user=user, item=item, rating=rating, n_users=n_users, n_items=n_items)


def test_capacity_is_the_most_entries_of_distinct_users():
    inter = _long_tailed()
    _, spec = U.domain_bags(inter)
    lens = np.bincount(inter.user, minlength=inter.n_users)
    for b in (1, 7, 60):
        assert spec.capacity(b) == np.sort(lens)[::-1][:b].sum()
    assert spec.capacity(200) == lens.sum()  # more rows than users: all users, each once
    assert spec.capacity(0) == 0


@pytest.mark.parametrize(  # long-tailed: packed; dense bags: dense
    "n_items", [pytest.param(5000, marks=pytest.mark.slow), 30]
)
def test_domain_encoder_packs_by_the_cost_rule_and_equals_the_dense_form(n_items):
    """The bag encoder of a domain (its capacity from the domain's longest bags) gives the
    dense form's values and gradients, for distinct users and for one user repeated."""
    inter = _long_tailed(n_items=min(n_items, 500))  # 30 items: bags repeat items
    inter = dataclasses.replace(inter, item=inter.item % n_items, n_items=n_items)
    bags, spec = U.domain_bags(inter)
    b = 16
    assert PHI.choose_layer(batch=b, capacity=spec.capacity(b), n_items=n_items) == (
        "packed" if n_items == 5000 else "dense"
    )
    init, apply = PE.domain_encoder("bag", spec, dims=(5, 3))
    dense = PHI.encoder(
        kind="bag",
        n_items=n_items,
        n_users=inter.n_users,
        dims=(5, 3),
        mu=spec.mu,
        explicit=spec.explicit,
    )[1]  # no capacity: always dense
    params = init(jax.random.key(0))
    g = np.random.default_rng(1).normal(size=(b, 3))
    for u, distinct in ((np.arange(3, 3 + b), True), (np.full(b, 3), False)):
        rows = U.gather_rows(bags, jnp.asarray(u, jnp.int32), max_len=spec.max_len)
        np.testing.assert_allclose(
            apply(params, *rows, distinct=distinct), dense(params, *rows), rtol=1e-4, atol=1e-6
        )
        f = lambda p, fn: jnp.sum(fn(p, *rows) * g)  # noqa: B023
        jax.tree.map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6),
            jax.grad(f)(params, apply),
            jax.grad(f)(params, dense),
        )


FIRST = PHI.first_layer


@pytest.mark.slow
def test_padded_rows_of_a_batch_read_no_bag(tiny, monkeypatch):
    built = get_method("phi").build(_cfg(), tiny)
    stage = built.stages[0]
    batch = {k: jnp.asarray(v[:8]) for k, v in stage.examples.items()}
    batch["mask"] = jnp.asarray([True] * 5 + [False] * 3)
    seen = []

    def spy(emb, items, weights, mask, **kw):
        seen.append((mask, kw))  # evaluation traces it (lax.cond): keep masks unconverted
        return FIRST(emb, items, weights, mask, **kw)

    monkeypatch.setattr(PHI, "first_layer", spy)
    loss, _ = stage.loss(view0(built), batch, jax.random.key(1))
    assert np.isfinite(float(loss)) and len(seen) == 2  # source and target encoders
    masks = [np.asarray(m) for m, _ in seen]
    assert all(not m[5:].any() for m in masks) and all(m[:5].any() for m in masks)
    assert all(kw["overflow"] == "nan" for _, kw in seen)  # no dense fallback in training
    seen.clear()
    scores = built.scorer.score_all(view0(built), batch["src"], batch["tgt"])
    assert np.all(np.isfinite(np.asarray(scores))) and seen
    assert all(kw["overflow"] == "dense" for _, kw in seen)  # evaluation repeats users


def test_training_rows_hold_each_user_once(tiny):
    built = get_method("phi").build(_cfg(), tiny)
    ex = built.stages[0].examples
    for dom in ("src", "tgt"):
        u = np.asarray(ex[dom])
        u = u[u >= 0]
        assert len(np.unique(u)) == len(u)  # so a training batch fits the packed capacity


def test_click_softplus_values_and_gradient():
    from transferjax.methods.phi.heads import softplus

    x = jnp.asarray([-1e4, -90.0, -3.0, -1e-3, 0.0, 2e-3, 4.0, 90.0, 1e4, jnp.inf, -jnp.inf])
    np.testing.assert_allclose(softplus(x), jax.nn.softplus(x), rtol=1e-6, atol=0)
    g = jax.vmap(jax.grad(softplus))(x)
    with np.errstate(over="ignore"):  # exp(1e4) = inf gives the limit 0
        want = 1 / (1 + np.exp(-np.asarray(x, np.float64)))
    np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-30)


# ------------------------------------------------------------------------ registered encoders


def test_unknown_encoder_is_refused_at_build_listing_the_valid_ones(tiny):
    with pytest.raises(
        ValueError,
        match=r"unknown phi encoder 'nope' \(phi.encoder\); "
        r"valid: bag, attention, id",
    ):
        get_method("dann").build(_cfg("dann", encoder="nope"), tiny)
    with pytest.raises(ValueError, match="built in"):
        PE.register_encoder("bag", lambda **_: None)


def _mean_encoder(*, n_items, n_users, dims):
    """A registered encoder in plain JAX: mean of the input items' embeddings."""

    def init(key):
        return {"emb": jax.random.normal(key, (n_items, dims[-1])) * 0.1}

    def apply(p, items, rating, mask):
        w = mask.astype(jnp.float32)[..., None]
        return jnp.sum(p["emb"][items] * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)

    return init, apply


def test_registered_encoder_is_checked_and_read_by_name(tiny):
    PE.register_encoder("test_mean", _mean_encoder)
    PE.register_encoder("test_mean", _mean_encoder)  # the same make again: fine
    with pytest.raises(ValueError, match="already registered"):
        PE.register_encoder("test_mean", lambda **kw: _mean_encoder(**kw))
    assert "test_mean" in PE.available_encoders()
    built = get_method("phi").build(_cfg(encoder="test_mean", dims=(6, 8)), tiny)
    view = view0(built)
    assert view["phi"]["enc_s"]["emb"].shape == (tiny.source_train.n_items, 8)
    with pytest.raises(
        ValueError,
        match=r"'test_mean' returned shape \(3, 8\); expected "
        r"f32\[3, 6\]",
    ):
        PE.domain_encoder("test_mean", U.domain_bags(tiny.target_train)[1], dims=(8, 6))[1](
            view["phi"]["enc_t"],
            jnp.zeros((3, 2), jnp.int32),
            jnp.ones((3, 2)),
            jnp.ones((3, 2), bool),
        )


def _flax_self_attention(*, n_items, n_users, dims):
    import flax.linen as nn

    from transferjax.models.flax_adapter import bag_encoder_from_flax

    class SelfAttention(nn.Module):
        @nn.compact
        def __call__(self, items, rating, mask):
            e = nn.Embed(n_items, dims[0])(items) * rating[..., None]
            h = nn.MultiHeadDotProductAttention(num_heads=2)(e, e, mask=mask[:, None, None, :])
            w = mask[..., None].astype(h.dtype)
            return nn.Dense(dims[-1])(jnp.sum(h * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0))

    return bag_encoder_from_flax(SelfAttention(), kind="linen")


@pytest.mark.slow
def test_flax_self_attention_encoder_trains_through_the_phi_method(tiny):
    pytest.importorskip("flax")
    PE.register_encoder("test_flax_attention", _flax_self_attention)
    cfg = _cfg(encoder="test_flax_attention", dims=(8,))
    res = make_train(cfg, tiny, evaluate=make_evaluate(cfg, tiny))(jax.random.key(0))
    assert len(res.history) == 2
    assert all(
        np.isfinite(h["train"]["loss"]) and np.isfinite(h["valid"]["rmse"]) for h in res.history
    )
    assert res.history[1]["train"]["loss"] != res.history[0]["train"]["loss"]
    built = get_method("phi").build(cfg, tiny)
    view = {**built.view(res.params), "step": jnp.zeros((), jnp.int32)}
    assert "Embed_0" in view["phi"]["enc_s"]  # the Flax module's own params are trained
    src, tgt = (jnp.asarray(c) for c in tiny.test.pairs[:6].T)
    scores = built.scorer.score_all(view, src, tgt)
    assert scores.shape == (6, tiny.target_train.n_items) and np.all(np.isfinite(scores))
