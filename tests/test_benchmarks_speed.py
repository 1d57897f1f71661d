"""Speed suite smoke tests: the PyTorch references compute the same models as the JAX paths,
the DANN section times the registered `dann` method's step (and its PyTorch reference) as the
trainer runs it, the first-layer micro-benchmark's forms equal the dense one (values and
gradients), and the benchmark functions run at tiny sizes. PyTorch parts are skipped when
torch is not installed (the test extra installs it; tests/test_dann_reference.py checks the
dann reference's loss and gradients)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks import dann_bench as D
from benchmarks import mf_bench as M
from benchmarks import rank_bench as R
from benchmarks.measure import interleaved
from benchmarks.speed_report import add_ratios, to_markdown
from transferjax.data.types import Interactions

try:
    import torch
except ImportError:
    torch = None

# The benchmark scripts at tiny sizes, against PyTorch references: the full suite only.
pytestmark = pytest.mark.slow

needs_torch = pytest.mark.skipif(
    torch is None,
    reason="torch not installed: the PyTorch reference models are the optional "
    "extra transferjax[torch] (pip install torch==2.13.0)",
)


def _ratings(n_users=9, n_items=7, n=60, seed=0) -> Interactions:
    return M.synthetic(n_users=n_users, n_items=n_items, n=n, seed=seed)


def _batch(inter, idx, mask):
    return {
        "user": jnp.asarray(inter.user[idx]),
        "item": jnp.asarray(inter.item[idx]),
        "rating": jnp.asarray(inter.rating[idx]),
        "mask": jnp.asarray(mask),
    }


def _tbatch(b):
    return (
        torch.tensor(np.asarray(b["user"]), dtype=torch.int64),
        torch.tensor(np.asarray(b["item"]), dtype=torch.int64),
        torch.tensor(np.asarray(b["rating"])),
        torch.tensor(np.asarray(b["mask"])),
    )


@needs_torch
def test_torch_mf_same_loss_grads_and_adam_steps_as_library_stage():
    from benchmarks.torch_ref import TorchMF, mf_optimizers

    inter = _ratings()
    params, stage = M.mf_stage(inter, sparse=False, seed=3)
    model = TorchMF(inter.n_users, inter.n_items, M.DIM).load_jax(jax.device_get(params["mf"]))
    (opt,) = mf_optimizers(model, kind="dense", lr=M.LR)
    part, state = params["mf"], stage.optimizer.init(params["mf"])
    key = jax.random.key(0)
    rng = np.random.default_rng(1)
    for step in range(3):  # same loss, same gradients, same Adam updates (with a padded row)
        idx = rng.integers(0, len(inter), 16)
        mask = np.arange(16) < 13
        b = _batch(inter, idx, mask)
        (loss, _), g = jax.value_and_grad(
            lambda p, b=b: stage.loss({**params, "mf": p}, b, key), has_aux=True
        )(part)
        opt.zero_grad()
        tl = model.loss(*_tbatch(b), reg=M.REG)
        tl.backward()
        np.testing.assert_allclose(float(tl.detach()), float(loss), rtol=1e-5)
        if step == 0:
            np.testing.assert_allclose(model.user.weight.grad.numpy(), g["user"], atol=1e-6)
            np.testing.assert_allclose(
                model.item_bias.weight.grad.numpy()[:, 0], g["item_bias"], atol=1e-6
            )
            np.testing.assert_allclose(float(model.mu.grad), float(g["mu"]), rtol=1e-5)
        with jax.numpy_dtype_promotion("standard"):
            upd, state = stage.optimizer.update(g, state, part)
            part = optax.apply_updates(part, upd)
        opt.step()
    np.testing.assert_allclose(model.item.weight.detach().numpy(), part["item"], atol=1e-5)
    np.testing.assert_allclose(float(model.mu.detach()), float(part["mu"]), atol=1e-5)
    with torch.no_grad():
        pred = model.predict(torch.tensor([0, 3]), torch.tensor([1, 2]))
    from transferjax.models.mf import mf_score

    u = jnp.asarray([0, 3])
    ref = mf_score(part["user"][u], part["user_bias"][u], part, jnp.asarray([1, 2]))
    np.testing.assert_allclose(pred.numpy(), ref, rtol=1e-5)


@needs_torch
def test_mf_variants_run_and_learn_alike_at_tiny_size():
    train, valid = M.random_split(_ratings(n_users=30, n_items=20, n=2500), valid_frac=0.2)
    init = jax.device_get(M.mf_stage(train, sparse=False, seed=0)[0]["mf"])
    cpu = torch.device("cpu")
    variants = {
        "jax_dense": M.JaxMF(train, valid, sparse=False),
        "torch_dense": M.TorchMFVariant(
            train, valid, kind="dense", compile=False, init=init, device=cpu
        ),
        "torch_sparse": M.TorchMFVariant(
            train, valid, kind="sparse", compile=False, init=init, device=cpu
        ),
    }
    if M.sparse_available():
        variants["jax_sparse"] = M.JaxMF(train, valid, sparse=True)
        # ML-1M's rate (3.0) is too large for 30 users repeated ~40 times per batch
        variants["jax_sparse_adagrad"] = M.JaxMF(
            train, valid, sparse=True, optimizer="adagrad", lr=0.3
        )
        variants["torch_sparse_adagrad"] = M.TorchMFVariant(
            train, valid, kind="sparse_adagrad", compile=False, init=init, device=cpu
        )
    # torch's sparse Adagrad builds sparse tensors: check their invariants (tiny sizes)
    with torch.sparse.check_sparse_tensor_invariants():
        res = M.summarize(interleaved(variants, rounds=2), len(train))
    for name, r in res.items():
        assert "error" not in r, (name, r)
        assert r["examples_per_s"] > 0 and len(r["times_s"]) == 2 and r["epochs"] == 3
        assert np.isfinite(r["valid_rmse"]) and r["valid_rmse"] < 2.0, (name, r["valid_rmse"])
    # same model, same init, same epochs: dense JAX and PyTorch end at about the same RMSE
    assert abs(res["jax_dense"]["valid_rmse"] - res["torch_dense"]["valid_rmse"]) < 0.05


@needs_torch
def test_mf_variants_take_the_batch_size():
    """The batch-size series: both frameworks step over ceil(n / batch) batches per epoch."""
    train, valid = M.random_split(_ratings(n_users=30, n_items=20, n=2500), valid_frac=0.2)
    init = jax.device_get(M.mf_stage(train, sparse=False, seed=0)[0]["mf"])
    n = len(train)
    for b in (64, 512):
        tv = M.TorchMFVariant(
            train,
            valid,
            kind="dense",
            compile=False,
            init=init,
            device=torch.device("cpu"),
            batch=b,
        )
        jv = M.JaxMF(train, valid, sparse=True, batch=b)
        res = M.summarize(interleaved({"jax": jv, "torch": tv}, rounds=1), n, batch=b)
        assert tv.steps == -(-n // b)
        assert int(jv.state.count) == res["jax"]["epochs"] * -(-n // b)  # optimizer steps
        for r in res.values():
            assert r["step_ms"] == pytest.approx(1000 * r["median_s"] / -(-n // b))


def _tiny_pool():
    inter = _ratings(n_users=40, n_items=30, n=400, seed=2)
    return D.make_pool(inter, n_pool=2, per_side=4, width=4)


def test_dann_forms_compute_the_same_loss_and_gradient():
    """The first-layer micro-benchmark (`benchmarks.dann_bench`): ELL, flat and dense forms."""
    pool = _tiny_pool()
    data = {k: jax.tree.map(jnp.asarray, pool[k]) for k in ("dense", "ell", "flat_pad")}
    params = D.init_params(pool["n_items"])
    outs = {}
    for form in ("dense", "bag", "bag_flat"):
        f = lambda p: D.jax_loss(form, p, data, 1, n_rows=8, per_side=4)  # noqa: B023
        outs[form] = jax.value_and_grad(f)(params)
    for form in ("bag", "bag_flat"):
        np.testing.assert_allclose(outs[form][0], outs["dense"][0], rtol=1e-5)
        np.testing.assert_allclose(
            outs[form][1]["phi"]["emb"], outs["dense"][1]["phi"]["emb"], rtol=1e-4, atol=1e-6
        )
    assert float(jnp.abs(outs["dense"][1]["phi"]["emb"]).sum()) > 0


@needs_torch
def test_torch_dann_matches_jax_and_bag_equals_dense():
    from benchmarks.torch_ref import TorchDANN

    pool = _tiny_pool()
    params = D.init_params(pool["n_items"])
    model = TorchDANN(pool["n_items"], D.DIMS, D.DISC_HIDDEN[0]).load_jax(jax.device_get(params))
    items, offsets, weights, dense = D.torch_batches(pool, torch.device("cpu"))[1]
    z_dense, z_bag = model.encode_dense(dense), model.encode_bag(items, offsets, weights)
    np.testing.assert_allclose(
        z_bag.detach().numpy(), z_dense.detach().numpy(), rtol=1e-5, atol=1e-5
    )
    z_jax = D.encode("dense", params["phi"], {"dense": jnp.asarray(pool["dense"])}, 1, n_rows=8)
    np.testing.assert_allclose(z_dense.detach().numpy(), z_jax, rtol=1e-4, atol=1e-5)
    loss = model.dann_loss(z_bag, 4, D.LAM)
    loss.backward()
    data = {"ell": jax.tree.map(jnp.asarray, pool["ell"])}
    jl, jg = jax.value_and_grad(lambda p: D.jax_loss("bag", p, data, 1, n_rows=8, per_side=4))(
        params
    )
    np.testing.assert_allclose(float(loss.detach()), float(jl), rtol=1e-5)
    # gradient reversal: the encoder gradients agree in sign and size across frameworks
    np.testing.assert_allclose(model.emb.grad.numpy(), jg["phi"]["emb"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        model.d2.weight.grad.numpy().T, jg["disc"][1]["w"], rtol=1e-4, atol=1e-6
    )


def test_dann_variants_run_at_tiny_size():
    pool = _tiny_pool()
    variants = {f: D.JaxDANN(pool, form=f, steps=3) for f in ("bag", "bag_flat", "dense")}
    if torch is not None:
        init = jax.device_get(D.init_params(pool["n_items"]))
        for f in ("dense", "bag"):
            variants[f"torch_{f}"] = D.TorchDANNVariant(
                pool, form=f, steps=3, init=init, device=torch.device("cpu")
            )
    res = D.summarize(interleaved(variants, rounds=2))
    for name, r in res.items():
        assert "error" not in r, (name, r)
        assert r["steps_per_s"] > 0 and r["steps_total"] == 9
    # same weights, batches and steps: every form ends at the same loss
    ref = res["dense"]["losses"]
    for name, r in res.items():
        np.testing.assert_allclose(r["losses"], ref, rtol=2e-3, err_msg=name)


def _dann_case():
    from benchmarks import dann_step as S
    from transferjax import config as C
    from transferjax.data.registry import build_dataset, build_split

    syn = C.SyntheticConfig(
        n_overlap=60,
        n_source_only=10,
        n_target_only=10,
        n_items_source=30,
        n_items_target=20,
        density_source=0.2,
        density_target=0.2,
        seed=2,
    )
    split = build_split(
        C.ProtocolConfig(beta=0.3), build_dataset(C.DataConfig(name="synthetic", synthetic=syn))
    )
    return S, split, S.dann_config(batch=16, dims=(8, 4))


@pytest.mark.slow
def test_dann_section_times_the_registered_method_step():
    """`JaxDannStep` runs the dann stage's epoch program over `steps` steps per run (the step
    counter advances by `steps`); the PyTorch reference runs the same number of steps over
    the same rows from the same initial params."""
    S, split, cfg = _dann_case()
    v = {"jax_dann": S.JaxDannStep(split, steps=3, cfg=cfg)}
    model, phi, examples = S.reference_inputs(split, steps=3, cfg=cfg)
    assert len(examples["src"]) == 48 and model.objective.name == "dann"
    if torch is not None:
        from benchmarks.dann_torch import TorchDannStep

        for form in ("dense", "bag"):
            v[f"torch_{form}"] = TorchDannStep(
                model, phi, examples, form=form, steps=3, batch=16, device=torch.device("cpu")
            )
    res = S.summarize(interleaved(v, rounds=2))
    for name, r in res.items():
        assert "error" not in r, (name, r)
        assert r["steps_total"] == 9 and r["steps_per_s"] > 0 and np.isfinite(r["final_loss"])
    jv = v["jax_dann"]
    assert int(jv.state.step) == 9 and jv.stage.name == "phi"
    np.testing.assert_array_equal(
        jax.device_get(
            jv.built.init(jax.random.split(jax.random.key(0))[0])["phi"]["enc_s"]["emb"]
        ),
        phi["enc_s"]["emb"],
    )


def test_dann_profiles_have_their_shapes(monkeypatch):
    from benchmarks import dann_step as S

    monkeypatch.setitem(
        S.PROFILES,
        "small",
        {
            "domains": ((50, 40, (6.0, 1.0, 2, 30)), (60, 30, (3.0, 1.0, 1, 12))),
            "overlap": 20,
            "explicit": True,
        },
    )
    split = S.profile_split("small")
    facts = S.setup_facts(split)
    assert facts["source"]["items"] == 40 and facts["target"]["items"] == 30
    assert facts["source"]["longest"] <= 30 and facts["target"]["longest"] <= 12
    c = split.source_train.user_counts()
    assert c.min() >= 2 and len(split.data.overlap) == 20
    pairs = np.stack([split.source_train.user, split.source_train.item], 1)
    assert len(np.unique(pairs, axis=0)) == len(pairs)  # distinct items per user


def test_heldout_split_and_full_ranking_bench():
    inter = _ratings(n_users=12, n_items=40, n=400, seed=4)
    train, held = R.heldout_split(inter, n_heldout=3)
    counts = np.bincount(held.target_user, minlength=inter.n_users)
    has = inter.user_counts() > 3
    assert np.all(counts[has] == 3) and np.all(counts[~has] == 0)
    assert len(train) + len(held) == len(inter)
    all_pairs = set(zip(inter.user.tolist(), inter.item.tolist(), strict=True))
    assert set(zip(held.target_user.tolist(), held.item.tolist(), strict=True)) <= all_pairs
    r = R.bench(inter, repeats=1, chunk_size=8, ks=(5,), n_heldout=3)
    assert r["wall_s"] > 0 and r["n_users"] == int(has.sum())


def test_ratios_and_targets():
    res = {
        "profile": "quick",
        "machine": {"cpu": "x", "cores": 2, "jax": "0", "jax_backend": "cpu", "jax_device": "cpu"},
        "mf": {
            "setup": {"n_train": 10, "batch": 1, "dim": 1, "epochs": 1},
            "variants": {
                "jax_dense": {"examples_per_s": 300.0, "step_ms": 1.0, "valid_rmse": 0.90},
                "torch_dense": {
                    "examples_per_s": 100.0,
                    "step_ms": 3.0,
                    "valid_rmse": 0.91,
                    "threads": 2,
                },
                "torch_dense_compiled": {
                    "examples_per_s": 160.0,
                    "step_ms": 1.9,
                    "valid_rmse": 0.91,
                },
                "jax_sparse": {"pending": "not yet"},
                "jax_sparse_adagrad": {
                    "examples_per_s": 600.0,
                    "step_ms": 0.5,
                    "valid_rmse": 0.914,
                },
                "torch_sparse_adagrad": {
                    "examples_per_s": 500.0,
                    "step_ms": 0.6,
                    "valid_rmse": 0.88,
                },
            },
        },
        "dann": {
            "setup": {
                "profile": "p",
                "batch": 4,
                "steps_per_round": 2,
                "source": {"items": 7, "entries_per_user": 3.0},
                "target": {"items": 5, "entries_per_user": 2.0},
            },
            "variants": {
                "jax_dann": {"steps_per_s": 50.0, "step_ms": 20.0},
                "torch_dense": {"steps_per_s": 20.0, "step_ms": 50.0, "threads": 2},
                "torch_bag": {"steps_per_s": 45.0, "step_ms": 22.0},
            },
        },
        "ranking": {"wall_s": 2.5},
        "batch": {
            "epochs": 2,
            "torch_threads_timed": [1],
            "rows": [
                {"batch": 8, "variant": "jax_sparse", "examples_per_s": 800.0, "step_ms": 0.1},
                {"batch": 8, "variant": "torch_dense", "examples_per_s": 100.0, "step_ms": 0.8},
                {"batch": 8, "variant": "torch_sparse", "error": "boom"},
            ],
        },
    }
    add_ratios(res)
    assert res["ratios"]["mf_jax_dense_vs_torch_dense"] == pytest.approx(3.0)
    assert res["ratios"]["mf_batch8_jax_sparse_vs_torch_dense"] == pytest.approx(8.0)
    assert "mf_batch8_jax_sparse_vs_torch_sparse" not in res["ratios"]
    assert res["ratios"]["dann_jax_vs_torch_dense"] == pytest.approx(2.5)
    assert res["ratios"]["dann_jax_vs_best_torch"] == pytest.approx(50 / 45)
    status = {t["target"]: t["status"] for t in res["targets"]}
    # 3x eager, but the compiled variant is the best PyTorch one: 300 / 160 < 2
    assert res["ratios"]["mf_jax_dense_vs_best_torch_dense"] == pytest.approx(300 / 160)
    assert status["MF: JAX dense >= 2x best PyTorch dense Adam (fused eager or compiled)"] == "MISS"
    assert res["ratios"]["mf_jax_sparse_adagrad_vs_best_torch_dense"] == pytest.approx(600 / 160)
    assert status["MF: JAX row-sparse lazy Adam >= 1.5x PyTorch SparseAdam"] == "n/a"
    assert res["ratios"]["mf_jax_sparse_adagrad_vs_torch_dense"] == pytest.approx(6.0)
    assert (
        status["MF: JAX row-sparse row-wise Adagrad >= 5x PyTorch fused dense Adam (eager)"]
        == "pass"
    )
    assert status["MF: JAX row-sparse row-wise Adagrad >= 1.5x PyTorch sparse Adagrad"] == "MISS"
    # RMSE within the 0.005 allowance of PyTorch dense Adam's, but not of sparse Adagrad's
    assert status["MF valid RMSE: jax_sparse_adagrad <= torch_dense (+0.005)"] == "pass"
    assert status["MF valid RMSE: jax_sparse_adagrad <= torch_sparse_adagrad (+0.005)"] == "MISS"
    assert status["DANN step (the dann method): JAX >= 3x PyTorch dense"] == "MISS"
    assert status["DANN step (the dann method): JAX >= 1.2x PyTorch embedding_bag"] == "MISS"
    assert status["Full ranking of all ML-1M users < 2 s"] == "MISS"
    only_dann = {k: v for k, v in res.items() if k not in ("mf", "batch", "ranking")}
    add_ratios(only_dann)  # a run of one section lists the targets of that section only
    assert [t["target"][:4] for t in only_dann["targets"]] == ["DANN", "DANN"]
    md = to_markdown(res)
    assert "pending: not yet" in md and "| MISS |" in md
    assert "## MF vs batch size (ML-1M, 2 epochs" in md and "PyTorch threads 1)" in md
    assert "| torch_dense (2 thr) | 100 |" in md
    assert "| 8 | torch_sparse | error: " in md
    assert "## DANN step: the registered `dann` method (p: 4 rows/step" in md
    assert "| jax_dann | 50.0 |" in md and "| torch_dense (2 thr) | 20.0 |" in md


def test_op_profile_classifies_ops_of_a_known_program():
    """A jitted scan whose step gathers rows, multiplies them by a matrix and scatters the
    result back: the profile finds those kinds, in per-step figures."""
    from benchmarks import op_profile as P

    table = jnp.ones((512, 64))
    w = jnp.eye(64) * 0.5
    idx = jnp.asarray(np.random.default_rng(0).integers(0, 512, (6, 256)), jnp.int32)

    def run(t, ix):
        def step(t, i):
            rows = t[i] @ w
            return t.at[i].add(rows), None

        return jax.lax.scan(step, t, ix)[0]

    class Case:
        def setup(self):
            self.compiled = jax.jit(run).lower(table, idx).compile()
            self.t = table

        def run(self):
            self.t = jax.block_until_ready(self.compiled(self.t, idx))

    case = Case()
    r = P.profile(case, steps_per_run=6, rounds=1)  # sets the case up (compiles it)
    hlo = case.compiled.as_text()
    names = re.findall(r"^\s*(?:ROOT )?%(\S+) = \S+ (?:gather|scatter|fusion|dot)\(", hlo, re.M)
    kinds = {P.op_kind(n, hlo)[0] for n in names}
    assert {"gather", "scatter", "dot"} <= kinds, kinds
    assert P.op_kind("SlinkyThreadPool::Await", hlo) == ("wait", "")
    assert P.op_kind("no_such_op", hlo) == ("other", "")
    loop = re.search(r"^\s*%(\S+) = \(.*\) while\(", hlo, re.M).group(1)  # the scan
    assert P.op_kind(loop, hlo)[0] == "control"
    assert all(o["op"] != loop for o in r["top_ops"])  # it encloses the ops, so not summed

    assert r["wall_us_per_step"] > 0 and r["ops_per_step"] >= 3
    assert set(r["us_by_kind"]) == set(P.KINDS)
    assert abs(
        sum(v for k, v in r["us_by_kind"].items() if k != "wait") - r["busy_us_per_step"]
    ) < 1e-6 * max(1.0, r["busy_us_per_step"])
    assert r["us_by_kind"]["dot"] > 0 and r["us_by_kind"]["scatter"] > 0
    md = P.to_markdown(
        {
            "backend": "cpu",
            "jax": jax.__version__,
            "cpus": 2,
            "loadavg_1min": 0.0,
            "command": "python -m benchmarks.op_profile --x",
            "cases": {"toy": r},
        }
    )
    assert "| toy |" in md and "toy: largest ops" in md
    assert md.startswith("# Op profile (`python -m benchmarks.op_profile --x`)")


def test_each_torch_variant_is_timed_at_each_thread_count_and_the_faster_kept():
    from benchmarks import speed as S

    class FakeTorch:
        threads = 8

        def set_num_threads(self, t):
            self.threads = t

        def get_num_threads(self):
            return self.threads

    class Probe:  # records the thread count torch had when each call ran
        torch_cuda = False

        def __init__(self, torch):
            self.torch, self.seen = torch, []

        def setup(self):
            self.seen.append(("setup", self.torch.threads))

        def run(self):
            self.seen.append(("run", self.torch.threads))
            return 0.0

        def info(self):
            return {"compile_s": 1.0}

        def finish(self):
            return {}

    torch = FakeTorch()
    v = S._at_threads(
        torch, {"torch_dense": lambda: Probe(torch), "torch_bag": lambda: Probe(torch)}, [1, 2]
    )
    assert sorted(v) == ["torch_bag@1", "torch_bag@2", "torch_dense@1", "torch_dense@2"]
    # each thread count trains its own model: no instance is shared
    assert len({id(x.v) for x in v.values()}) == 4
    for name in ("torch_dense@2", "torch_dense@1", "torch_dense@2"):  # interleaved calls
        v[name].run()
    assert v["torch_dense@2"].v.seen == [("run", 2), ("run", 2)]
    assert v["torch_dense@1"].v.seen == [("run", 1)]
    v["torch_bag@1"].setup()
    assert v["torch_bag@1"].v.seen == [("setup", 1)]
    assert v["torch_bag@1"].info() == {"compile_s": 1.0, "threads": 1}
    plain = S._at_threads(torch, {"x": lambda: Probe(torch)}, [])  # GPU: no thread variants
    assert list(plain) == ["x"] and isinstance(plain["x"], Probe)

    res = {
        "jax_dense": {"examples_per_s": 10.0},
        "torch_dense@1": {"examples_per_s": 5.0, "step_ms": 2.0},
        "torch_dense@2": {"examples_per_s": 7.0, "step_ms": 1.4},
        "torch_sparse@1": {"error": "boom"},
        "torch_sparse@2": {"examples_per_s": 3.0},
    }
    out = S._fastest_threads(res, "examples_per_s")
    assert out["jax_dense"] == {"examples_per_s": 10.0}
    assert out["torch_dense"]["threads"] == 2 and out["torch_dense"]["step_ms"] == 1.4
    assert out["torch_dense"]["rate_by_threads"] == {"1": 5.0, "2": 7.0}
    assert out["torch_sparse"]["threads"] == 2  # the failed count is not the faster
    failed = S._fastest_threads({"t@1": {"error": "a"}, "t@2": {"error": "b"}}, "examples_per_s")
    assert failed["t"]["error"] == "a" and failed["t"]["threads"] == 1

    class Cuda:
        type = "cuda"

    class Cpu:
        type = "cpu"

    assert S._thread_counts(torch, Cuda(), None) == []
    assert S._thread_counts(torch, Cpu(), 3) == [3]
    assert 1 in S._thread_counts(torch, Cpu(), None)


def test_speed_section_name_is_checked_before_running(capsys, monkeypatch):
    """`python -m benchmarks.speed --section NAME` refuses a name that `benchmarks.quality`
    would not keep, before measuring anything."""
    from benchmarks import speed as S

    monkeypatch.setattr(S, "run_speed", lambda **k: (_ for _ in ()).throw(AssertionError("ran")))
    for bad in ("results", "speed h100"):
        with pytest.raises(SystemExit) as e:
            S.main(["--section", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"--section {bad!r}" in err and "starts with 'speed'" in err


def test_speed_entry_point_writes_its_section_of_the_report(tmp_path, monkeypatch):
    """The tables replace the `--section` of `--report` and name the command that made them;
    `--no-report` leaves the report alone."""
    from benchmarks import sections
    from benchmarks import speed as S

    calls = []

    def fake(**k):
        calls.append(k)
        return {"markdown": "| variant | rows/s |\n|---|---|\n| jax | 1 |"}

    monkeypatch.setattr(S, "run_speed", fake)
    report, out = tmp_path / "B.md", tmp_path / "speed.json"
    report.write_text("# quality\n")
    assert (
        S.main(
            [
                "--quick",
                "--section",
                "speed-h100",
                "--report",
                str(report),
                "--out",
                str(out),
                "--only",
                "mf,rank",
                "--no-compile",
            ]
        )
        == 0
    )
    assert calls[0]["quick"] and calls[0]["only"] == ["mf", "rank"] and not calls[0]["compile"]
    text = report.read_text()
    assert text.startswith("# quality\n") and sections.section_names(text) == ["speed-h100"]
    assert (
        "## Speed (generated by `python -m benchmarks.speed --quick --only mf,rank --section "
        f"speed-h100`; JSON: `{out}`)"
    ) in text and "| jax | 1 |" in text
    assert S.main(["--no-report", "--report", str(report), "--out", str(out)]) == 0
    assert report.read_text() == text
