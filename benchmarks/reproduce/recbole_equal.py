"""transferjax's `conet` against RecBole-CDR's `CoNet`, step for step: one training step's loss,
the gradient of every parameter and the parameters after the Adam step, in float64, on tiny
two-domain data with shared items (the ML-1M -> ML-100k case) and with shared users.

    python -m benchmarks.reproduce.recbole_equal                  # clone from GitHub
    python -m benchmarks.reproduce.recbole_equal --source DIR     # from a checkout or mirror

Steps: clone RUCAIBox/RecBole-CDR at `recbole_cdr.OFFICIAL` into `--scratch` (default
`runs/reproduce/recbole_cdr`, git-ignored, shared with `benchmarks.reproduce.recbole_cdr`) and
create its virtual environment (the same one); build the registered `conet` on the tiny data
as a run builds it (`get_method("conet").build`); take one batch of the target's training rows
and one step key, and record the rows its stage loss trains on (both domains' positives and
the negatives it samples, through the logits function it calls); hand RecBole-CDR's `CoNet`
our initial params (tables as they are, `nn.Linear` weights transposed), the same rows with
their 1 / 0 labels, and run one step of its `calculate_loss`, `backward` and `torch.optim.Adam`
(`recbole_equal_driver.py`, in that environment); compare with `jax.value_and_grad` of our
stage loss and one step of the stage's own optimizer.

Ids: RecBole-CDR numbers the shared side's rows 1..m (0 is its padding row) and tests
`id < overlapped_num_*` for the cross units; ours numbers them 0..m-1 and tests `row < m`. The
check gives RecBole-CDR our joint rows as its ids and m as its overlap count, the same
partition of the rows (its padding row plays no part in a loss). Exits 1 when a loss,
gradient or updated parameter differs by more than `--tol`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import tempfile

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce import recbole_cdr as R

NETS = ("source", "target")
DIM, LAYERS, B, LR = 4, (6, 3, 2), 12, 1e-3


def tiny_split(share: str):
    """Warm 8:1:1 split of two tiny implicit domains: 8 shared items (source items 0..7 are
    target items 5..12, disjoint users) or 8 shared users (target user t is source user t + 3)."""
    from transferjax import config as C
    from transferjax.data.registry import build_split
    from transferjax.data.types import CrossDomainData, Interactions

    rng = np.random.default_rng(5)

    def domain(n_users, n_items, n, name):
        rows = np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], 1)
        pairs = np.unique(rows, axis=0)
        return Interactions(
            user=pairs[:, 0].astype(np.int32),
            item=pairs[:, 1].astype(np.int32),
            rating=np.ones(len(pairs), np.float32),
            n_users=n_users,
            n_items=n_items,
            name=name,
        )

    src, tgt = domain(20, 15, 160, "source"), domain(16, 14, 130, "target")
    none, shared = np.zeros((0, 2), np.int32), np.stack([np.arange(8), np.arange(8)], 1)
    if share == "items":
        pairs = {"overlap": none, "item_overlap": shared + [0, 5]}
    else:
        pairs = {"overlap": shared + [3, 0], "item_overlap": none}
    data = CrossDomainData(source=src, target=tgt, name=f"shared-{share}", **pairs)
    return build_split(C.ProtocolConfig(name="warm_ratio", seed=0), data)


def _state(p) -> dict:
    """RecBole-CDR `CoNet`'s state_dict keys -> our params (float64 numpy)."""
    out = {}
    for net in NETS:
        q = p[net]
        out[f"{net}_user_embedding.weight"] = q["user"]
        out[f"{net}_item_embedding.weight"] = q["item"]
        for i, layer in enumerate(q["layers"]):
            out[f"{net}_crossunit_linear.{i}.weight"] = layer["w"].T
            out[f"{net}_crossunit_linear.{i}.bias"] = layer["b"]
        out[f"{net}_outputunit.0.weight"] = q["out"]["w"].T
        out[f"{net}_outputunit.0.bias"] = q["out"]["b"]
    for i, h in enumerate(p["cross"]):
        out[f"crossparas.{i}.weight"] = h["w"].T
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def ours_step(share: str) -> dict:
    """Our side: {"meta", "state", "batch" (the RecBole fields), "loss", "grads", "stepped"
    (state_dict-keyed), "cross" (the rows our units cross-connect, per domain)}."""
    import jax
    import jax.numpy as jnp
    import optax

    from transferjax import config as C
    from transferjax.methods import conet as conet_module
    from transferjax.methods.registry import get_method

    split = tiny_split(share)
    cfg = C.RunConfig(
        method="conet",
        data=C.DataConfig(name="synthetic"),
        trainer=C.TrainerConfig(lr=LR, batch_size=B, epochs=1),
    )
    cfg = C.apply_overrides(cfg, [f"conet.dim={DIM}", f"conet.layers={','.join(map(str, LAYERS))}"])
    built = get_method("conet").build(cfg, split)
    (stage,) = built.stages
    v = {**built.view(built.init(jax.random.key(0))), "step": jnp.zeros((), jnp.int32)}
    v = jax.tree.map(  # every float in float64: params, data, traced settings
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, v
    )
    batch = {k: jnp.asarray(a[:B]) for k, a in stage.examples.items()}
    batch["mask"] = jnp.ones(B, bool)
    key = jax.random.key(7)

    calls, real = [], conet_module.conet_logits

    def record(p, user, item, cross):
        calls.append(tuple(np.asarray(x) for x in (user, item, cross)))
        return real(p, user, item, cross)

    conet_module.conet_logits = record
    try:
        stage.loss(v, batch, key)  # eager: the rows are concrete
    finally:
        conet_module.conet_logits = real
    if len(calls) != 2:
        raise RuntimeError(f"expected one logits call per domain, got {len(calls)}")

    def loss(part):
        return stage.loss({**v, "conet": part}, batch, key)[0]

    value, grads = jax.value_and_grad(loss)(v["conet"])
    updates, _ = stage.optimizer.update(grads, stage.optimizer.init(v["conet"]), v["conet"])
    stepped = optax.apply_updates(v["conet"], updates)

    fields = {}
    for net, (user, item, _) in zip(NETS, calls, strict=True):
        fields[f"{net}_user_id"] = user.astype(np.int64)
        fields[f"{net}_item_id"] = item.astype(np.int64)
        fields[f"{net}_label"] = np.r_[np.ones(B), np.zeros(len(user) - B)]  # positives first
    lay = built.data["dual_rows"]
    n_users = int(max(np.max(lay[d]["user"]) for d in NETS)) + 1
    n_items = int(max(np.max(lay[d]["item"]) for d in NETS)) + 1
    m = len(split.data.item_overlap if share == "items" else split.data.overlap)
    meta = {
        "config": {"embedding_size": DIM, "reg_weight": 1e-2, "mlp_hidden_size": list(LAYERS)},
        "lr": LR,
        "total_num_users": n_users,
        "total_num_items": n_items,
        "overlapped_num_users": m if share == "users" else 1,
        "overlapped_num_items": m if share == "items" else 1,
        **{f"{d}_num_users": getattr(split, f"{d}_train").n_users for d in NETS},
        **{f"{d}_num_items": getattr(split, f"{d}_train").n_items for d in NETS},
    }
    return {
        "meta": meta,
        "state": _state(v["conet"]),
        "batch": fields,
        "loss": float(value),
        "grads": _state(grads),
        "stepped": _state(stepped),
        "cross": {net: c[2] for net, c in zip(NETS, calls, strict=True)},
        "rows": {net: c[:2] for net, c in zip(NETS, calls, strict=True)},
    }


def compare(python, src, share: str) -> dict:
    """{"loss": |official - ours|, "value", "grad", "step": largest |difference|, "n_params",
    "cross_rule": whether RecBole-CDR's `id < overlapped_num_*` picks our cross rows}."""
    ours = ours_step(share)
    rows = ours["rows"]
    ids = {net: rows[net][0 if share == "users" else 1] for net in NETS}
    m = ours["meta"][f"overlapped_num_{share}"]
    rule = all(np.array_equal(ids[n] < m, ours["cross"][n]) for n in NETS)
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = pathlib.Path(tmp, "in.npz"), pathlib.Path(tmp, "out.npz")
        arrays = {"meta": np.asarray(json.dumps(ours["meta"]))}
        arrays.update({f"param/{k}": a for k, a in ours["state"].items()})
        arrays.update({f"batch/{k}": a for k, a in ours["batch"].items()})
        np.savez(inputs, **arrays)
        driver = pathlib.Path(__file__).with_name("recbole_equal_driver.py").resolve()
        # -P: the driver's folder stays off sys.path (its recbole_cdr.py would shadow theirs)
        cmd = [str(python), "-P", str(driver), "--model", "CoNet", "--inputs", str(inputs)]
        res = subprocess.run(
            [*cmd, "--out", str(out)], cwd=src, env=R._env(), capture_output=True, text=True
        )
        if res.returncode != 0:
            raise RuntimeError(f"recbole_equal_driver.py failed:\n{res.stderr[-3000:]}")
        with np.load(out) as f:
            theirs = {k: f[k] for k in f.files}
    diff = {"loss": abs(float(theirs["loss"]) - ours["loss"]), "value": float(theirs["loss"])}
    diff["grad"] = max(
        float(np.max(np.abs(theirs[f"grad/{k}"] - g))) for k, g in ours["grads"].items()
    )
    diff["step"] = max(
        float(np.max(np.abs(theirs[f"param/{k}"] - x))) for k, x in ours["stepped"].items()
    )
    diff["n_params"] = len(ours["grads"])
    diff["cross_rule"] = rule
    diff["n_cross"] = {n: int(ours["cross"][n].sum()) for n in NETS}
    diff["n_rows"] = {n: len(ours["cross"][n]) for n in NETS}
    return diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="a checkout or bare mirror to clone from")
    ap.add_argument("--scratch", default="runs/reproduce/recbole_cdr")
    ap.add_argument("--python", help="a python with RecBole-CDR's requirements (default: a venv)")
    ap.add_argument("--tol", type=float, default=1e-10)
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    scratch = pathlib.Path(args.scratch)
    src = K.fetch(R.OFFICIAL, scratch / "src", source=args.source, keep=R.OUTPUTS)
    python = args.python or K.ensure_venv(scratch / "venv", R.REQUIREMENTS, no_deps=R.NO_DEPS)
    ok = True
    for share in ("items", "users"):
        d = compare(python, src, share)
        good = max(d["loss"], d["grad"], d["step"]) <= args.tol and d["cross_rule"]
        ok &= good
        print(
            f"shared {share}: loss {d['value']:.4f}, |loss diff| {d['loss']:.2e}, max |grad diff|"
            f" {d['grad']:.2e}, max |param diff after Adam| {d['step']:.2e} ({d['n_params']}"
            f" tensors; cross-connected rows source {d['n_cross']['source']} of"
            f" {d['n_rows']['source']}, target {d['n_cross']['target']} of"
            f" {d['n_rows']['target']}; RecBole-CDR's overlap rule picks the same rows:"
            f" {d['cross_rule']}) {'ok' if good else 'DIFFERENT'}"
        )
    print(f"official {R.OFFICIAL.url} @ {R.OFFICIAL.short} CoNet: {'equal' if ok else 'NOT equal'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
