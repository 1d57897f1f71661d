"""transferjax's `conet` and `dtcdr` against RecBole-CDR's `CoNet` and `DTCDR` (NeuMF base),
step for step: one training step's loss, the gradient of every parameter and the parameters
after the Adam step, in float64, on tiny two-domain data with shared items (the ML-1M ->
ML-100k case) and with shared users.

    python -m benchmarks.reproduce.recbole_equal                  # clone from GitHub
    python -m benchmarks.reproduce.recbole_equal --source DIR     # from a checkout or mirror
    python -m benchmarks.reproduce.recbole_equal --models dtcdr

Steps: clone RUCAIBox/RecBole-CDR at `recbole_cdr.OFFICIAL` into `--scratch` (default
`runs/reproduce/recbole_cdr`, git-ignored, shared with `benchmarks.reproduce.recbole_cdr`) and
create its virtual environment (the same one); build the registered method on the tiny data
as a run builds it (`get_method(m).build`); take one batch of the target's training rows and
one step key, and record the rows its stage loss trains on (both domains' positives and the
negatives it samples, through the model function it calls per domain); hand RecBole-CDR's
model our initial params (tables as they are, `nn.Linear` weights transposed), the same rows
with their 1 / 0 labels, and run one step of its `calculate_loss`, `backward` and
`torch.optim.Adam` (`recbole_equal_driver.py`, in that environment); compare with
`jax.value_and_grad` of our stage loss and one step of the stage's own optimizer. Dropout
(DTCDR's) is 0 on both sides: the two would draw different masks. The traced settings
(`conet.reg`, `dtcdr.alpha`) enter in float64 from the config.

Ids: RecBole-CDR numbers the shared side's rows 1..m (0 is its padding row) and tests
`id < overlapped_num_*` for CoNet's cross units; ours numbers them 0..m-1 and tests `row < m`.
The check gives RecBole-CDR our joint rows as its ids and m as its overlap count, the same
partition of the rows (its padding row plays no part in a loss), and checks that its rule
picks the rows ours cross-connects. Exits 1 when a loss, gradient or updated parameter differs
by more than `--tol`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import subprocess
import tempfile
from collections.abc import Callable

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


def _linear(out: dict, name: str, layer: dict) -> None:
    """An nn.Linear's state_dict entries from our {"w": [in, out], "b"} layer."""
    out[f"{name}.weight"] = layer["w"].T
    if "b" in layer:
        out[f"{name}.bias"] = layer["b"]


def _tables(out: dict, net: str, q: dict) -> None:
    """The network's user and item embedding tables' state_dict entries."""
    out[f"{net}_user_embedding.weight"] = q["user"]
    out[f"{net}_item_embedding.weight"] = q["item"]


def conet_state(p) -> dict:
    """RecBole-CDR `CoNet`'s state_dict keys -> our `conet` params."""
    out = {}
    for net in NETS:
        q = p[net]
        _tables(out, net, q)
        for i, layer in enumerate(q["layers"]):
            _linear(out, f"{net}_crossunit_linear.{i}", layer)
        _linear(out, f"{net}_outputunit.0", q["out"])
    for i, h in enumerate(p["cross"]):
        _linear(out, f"crossparas.{i}", h)
    return out


def dtcdr_state(p) -> dict:
    """RecBole-CDR `DTCDR`'s (NeuMF base) state_dict keys -> our `dtcdr` params. Its
    `MLPLayers` is a Sequential of (Dropout, Linear, ReLU) per layer: Linear l is entry 3l + 1."""
    out = {}
    for net in NETS:
        q = p[net]
        _tables(out, net, q)
        for i, layer in enumerate(q["mlp"]):
            _linear(out, f"{net}_mlp_layers.mlp_layers.{3 * i + 1}", layer)
        _linear(out, f"{net}_predict_layer", q["out"])
    return out


@dataclasses.dataclass(frozen=True)
class Model:
    """One RecBole-CDR model and the registered method it is checked against."""

    theirs: str  # its class in recbole_cdr.model.cross_domain_recommender
    logits: str  # the model function our method's module calls once per domain and step
    state: Callable  # our params -> its state_dict entries
    ours: tuple  # our settings (dropout 0 on both sides: the masks would differ)
    config: dict  # its config keys


MODELS = {
    "conet": Model(
        theirs="CoNet",
        logits="conet_logits",
        state=conet_state,
        ours=(f"conet.dim={DIM}", f"conet.layers={','.join(map(str, LAYERS))}"),
        config={"embedding_size": DIM, "reg_weight": 1e-2, "mlp_hidden_size": list(LAYERS)},
    ),
    "dtcdr": Model(
        theirs="DTCDR",
        logits="neumf_logits",
        state=dtcdr_state,
        ours=(
            f"dtcdr.dim={DIM}",
            f"dtcdr.layers={','.join(map(str, LAYERS))}",
            "dtcdr.dropout=0",
            "dtcdr.alpha=0.3",
        ),
        config={
            "embedding_size": DIM,
            "mlp_hidden_size": list(LAYERS),
            "dropout_prob": 0.0,
            "base_model": "NeuMF",
            "alpha": 0.3,
        },
    ),
}


def _f64(tree) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def positional_rows(*args, **kw) -> tuple:
    """The positional array arguments after the params of a logits function (user rows, item
    rows and, for CoNet, the cross-connected rows)."""
    return tuple(a for a in args[1:] if not isinstance(a, str))


def recorded_rows(
    stage, v, batch, key, module, name: str, rows=positional_rows, *, calls_expected: int = 2
) -> list:
    """One eager call of the stage loss with `module.name` wrapped: the numpy values of
    `rows(*args, **kw)` of each call to it, which must be `calls_expected` (one per domain)."""
    calls, real = [], getattr(module, name)

    def record(*args, **kw):
        calls.append(tuple(np.asarray(a) for a in rows(*args, **kw)))
        return real(*args, **kw)

    setattr(module, name, record)
    try:
        stage.loss(v, batch, key)  # eager: the rows are concrete
    finally:
        setattr(module, name, real)
    if len(calls) != calls_expected:
        raise RuntimeError(f"expected {calls_expected} {name} calls, got {len(calls)}")
    return calls


def float64_view(cfg, built) -> tuple:
    """(view, batch, key) of one step at initialisation (seed 0), every float in float64: the
    params, the data, and the traced settings taken from the config (not their float32
    roundings); the batch is the stage's first `B` examples, the key fixed."""
    import jax
    import jax.numpy as jnp

    from transferjax import config as C

    (stage,) = built.stages
    flat = C.flatten(cfg)
    hyper = {k: jnp.asarray(float(flat[k]), jnp.float64) for k in built.hyper}
    v = {**built.view(built.init(jax.random.key(0)), hyper), "step": jnp.zeros((), jnp.int32)}
    v = jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, v
    )
    batch = {k: jnp.asarray(a[:B]) for k, a in stage.examples.items()}
    batch["mask"] = jnp.ones(B, bool)
    return v, batch, jax.random.key(7)


def one_step(stage, v, batch, key) -> tuple:
    """(loss, gradient, params after one step of the stage's own optimizer) of what the stage
    trains (`stage.trained`), in one compiled program."""
    import jax
    import optax

    def loss(p):
        return stage.loss(stage.merged(v, p), batch, key)[0]

    @jax.jit
    def step(part):
        value, grads = jax.value_and_grad(loss)(part)
        updates, _ = stage.optimizer.update(grads, stage.optimizer.init(part), part)
        return value, grads, optax.apply_updates(part, updates)

    return step(stage.trained(v))


def ours_step(share: str, method: str = "conet") -> dict:
    """Our side: {"meta", "state", "batch" (the RecBole fields), "loss", "grads", "stepped"
    (state_dict-keyed), "rows" (per domain: the user rows, the item rows and, for CoNet, the
    cross-connected rows)}."""
    import importlib

    from transferjax import config as C
    from transferjax.methods.registry import get_method

    spec = MODELS[method]
    split = tiny_split(share)
    cfg = C.RunConfig(
        method=method,
        data=C.DataConfig(name="synthetic"),
        trainer=C.TrainerConfig(lr=LR, batch_size=B, epochs=1),
    )
    cfg = C.apply_overrides(cfg, list(spec.ours))
    built = get_method(method).build(cfg, split)
    (stage,) = built.stages
    v, batch, key = float64_view(cfg, built)

    module = importlib.import_module(f"transferjax.methods.{method}")
    calls = recorded_rows(stage, v, batch, key, module, spec.logits)
    value, grads, stepped = one_step(stage, v, batch, key)

    fields = {}
    for net, (user, item, *_) in zip(NETS, calls, strict=True):
        fields[f"{net}_user_id"] = user.astype(np.int64)
        fields[f"{net}_item_id"] = item.astype(np.int64)
        fields[f"{net}_label"] = np.r_[np.ones(B), np.zeros(len(user) - B)]  # positives first
    lay = built.data["dual_rows"]
    n_users = int(max(np.max(lay[d]["user"]) for d in NETS)) + 1
    n_items = int(max(np.max(lay[d]["item"]) for d in NETS)) + 1
    m = len(split.data.item_overlap if share == "items" else split.data.overlap)
    meta = {
        "config": spec.config,
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
        "state": _f64(spec.state(v[method])),
        "batch": fields,
        "loss": float(value),
        "grads": _f64(spec.state(grads)),
        "stepped": _f64(spec.state(stepped)),
        "rows": dict(zip(NETS, calls, strict=True)),
    }


def official_step(python, src, model: str, arrays: dict) -> dict:
    """One step of RecBole-CDR's `model` by `recbole_equal_driver.py` in its environment on
    `arrays` ("meta", "param/<key>", "batch/<field>", and any the driver's stand-in dataset
    reads); returns its outputs ("loss", "grad/<key>", "param/<key>")."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs, result = pathlib.Path(tmp, "in.npz"), pathlib.Path(tmp, "out.npz")
        np.savez(inputs, **arrays)
        driver = pathlib.Path(__file__).with_name("recbole_equal_driver.py").resolve()
        # -P: the driver's folder stays off sys.path (its recbole_cdr.py would shadow theirs)
        cmd = [str(python), "-P", str(driver), "--model", model]
        cmd += ["--inputs", str(inputs), "--out", str(result)]
        res = subprocess.run(cmd, cwd=src, env=R._env(), capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"recbole_equal_driver.py failed:\n{res.stderr[-3000:]}")
        with np.load(result) as f:
            return {k: f[k] for k in f.files}


def inputs(ours: dict) -> dict:
    """The driver's arrays of an `ours_step`-like result."""
    arrays = {"meta": np.asarray(json.dumps(ours["meta"]))}
    arrays.update({f"param/{k}": a for k, a in ours["state"].items()})
    arrays.update({f"batch/{k}": a for k, a in ours["batch"].items()})
    return arrays


def differences(theirs: dict, ours: dict) -> dict:
    """{"loss": |official - ours|, "value": the official loss, "grad", "step": the largest
    |difference| over every parameter's gradient and value after the step, "n_params"}."""
    out = {"loss": abs(float(theirs["loss"]) - ours["loss"]), "value": float(theirs["loss"])}
    out["grad"] = max(
        float(np.max(np.abs(theirs[f"grad/{k}"] - g))) for k, g in ours["grads"].items()
    )
    out["step"] = max(
        float(np.max(np.abs(theirs[f"param/{k}"] - x))) for k, x in ours["stepped"].items()
    )
    out["n_params"] = len(ours["grads"])
    return out


def compare(python, src, share: str, method: str) -> dict:
    """`differences`, plus "cross": per domain (rows cross-connected, rows) and "rule":
    whether RecBole-CDR's `id < overlapped_num_*` picks our cross-connected rows (CoNet)."""
    ours = ours_step(share, method)
    m = ours["meta"][f"overlapped_num_{share}"]
    cross, rule = {}, True
    for net, (user, item, *c) in ours["rows"].items():
        if c:
            rule &= np.array_equal((user if share == "users" else item) < m, c[0])
            cross[net] = (int(c[0].sum()), len(c[0]))
    theirs = official_step(python, src, MODELS[method].theirs, inputs(ours))
    return {**differences(theirs, ours), "cross": cross, "rule": rule}


def equal_parser(doc: str, *, shipped: bool = False) -> argparse.ArgumentParser:
    """The flags of a step-equality check against RecBole-CDR's environment (`shipped`: a
    second tolerance for the as-shipped run)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--source", help="a RecBole-CDR checkout or bare mirror to clone from")
    ap.add_argument("--scratch", default="runs/reproduce/recbole_cdr")
    ap.add_argument("--python", help="a python with RecBole-CDR's requirements (default: a venv)")
    ap.add_argument("--tol", type=float, default=1e-10)
    if shipped:
        ap.add_argument("--tol-shipped", type=float, default=1e-6, help="tolerance, as shipped")
    return ap


def official_env(args) -> tuple:
    """(checkout, python) of RecBole-CDR for `equal_parser`'s flags, with JAX in float64."""
    import jax

    jax.config.update("jax_enable_x64", True)
    scratch = pathlib.Path(args.scratch)
    src = K.fetch(R.OFFICIAL, scratch / "src", source=args.source, keep=R.OUTPUTS)
    python = args.python or K.ensure_venv(scratch / "venv", R.REQUIREMENTS, no_deps=R.NO_DEPS)
    return src, python


def main(argv=None) -> int:
    ap = equal_parser(__doc__)
    ap.add_argument("--models", default=",".join(MODELS), help="of: " + ", ".join(MODELS))
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.models.split(",") if m.strip()]
    if not methods or set(methods) - set(MODELS):
        raise SystemExit(f"--models {args.models!r}: choose from {', '.join(MODELS)}")
    src, python = official_env(args)
    ok = True
    for method in methods:
        for share in ("items", "users"):
            d = compare(python, src, share, method)
            good = max(d["loss"], d["grad"], d["step"]) <= args.tol and d["rule"]
            ok &= good
            cross = "; ".join(f"{n} {c} of {r} rows" for n, (c, r) in d["cross"].items())
            cross = f"; cross-connected: {cross}, RecBole-CDR's rule agrees: {d['rule']}" * bool(
                cross
            )
            print(
                f"{MODELS[method].theirs}, shared {share}: loss {d['value']:.4f}, |loss diff|"
                f" {d['loss']:.2e}, max |grad diff| {d['grad']:.2e}, max |param diff after"
                f" Adam| {d['step']:.2e} ({d['n_params']} tensors{cross})"
                f" {'ok' if good else 'DIFFERENT'}"
            )
    verdict = "equal" if ok else "NOT equal"
    print(f"official {R.OFFICIAL.url} @ {R.OFFICIAL.short} ({', '.join(methods)}): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
