"""transferjax's `cdrib` against CDRIB's official PyTorch code, step for step: one training step's
loss, the gradient of every parameter and the parameters after the Adam step, in float64, on a
tiny two-domain dataset.

    python -m benchmarks.reproduce.cdrib_equal                  # clone from GitHub
    python -m benchmarks.reproduce.cdrib_equal --source DIR     # from a checkout or mirror

Steps: clone cjx96/CDRIB at `OFFICIAL.commit` into `--scratch` (default `runs/reproduce/cdrib`,
git-ignored); write a tiny dataset in its format (users 0..N_SHARED-1 shared, the others
private to a domain, every user and item with training rows); build the official
`CrossTrainer` (Adam, lr 1e-3, weight decay 5e-4) with its own `GraphMaker` graphs; copy the
params of our `cdrib_init` into its modules (GraphConvolution weights as they are, nn.Linear
weights transposed); draw the step's random numbers once with our `cdrib_draws` and hand the
same ones to the official code (its `torch.randn` returns our Gaussian noise, its
`torch.randperm` our critic indices, in the order it asks for them); run one official
`reconstruct_graph` step and `jax.value_and_grad` of our `cdrib_loss` on the same batch, then
one `optax.adam` step on our gradient plus the weight decay's. Dropout is 0 on both sides (the
two would draw different masks; `transferjax.models.vbge.dropout` is tested on its own). For
1, 2 and 3 encoder layers, with the hinge critic (the default) and the BCE one.

Run-time patches of the official code (its files are never edited): `torch.Tensor.cuda`
returns the tensor itself (its `reparameters` and `forward` call `.cuda()` even on CPU);
`torch.randn` and `torch.randperm` return the drawn numbers above. The comparison runs in a
child interpreter with the checkout's `CDRIB/` folder on its PYTHONPATH (the official modules
import each other as top-level `model` and `utils`). Needs PyTorch. Exits 1 when a loss,
gradient or updated parameter differs by more than `--tol`.
"""

from __future__ import annotations

import contextlib
import io
import pathlib

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce.cdrib_eval import OFFICIAL

EMB = ("source_user", "source_item", "target_user", "target_item")
N_SHARED, N_USERS, N_ITEMS, D, UBS = 4, {"source": 7, "target": 6}, {"source": 6, "target": 5}, 4, 3
B = {"source": 5, "target": 4}


def _official_params(model, p):
    """(torch parameter, our array, transpose) for every parameter of the official model."""
    out = [(getattr(model, f"{n}_embedding").weight, p["emb"][n], False) for n in EMB]
    for d in ("source", "target"):
        enc = getattr(model, f"{d}_GNN").encoder
        for layer, mods in p[d].items():
            lt = enc[-1] if layer == "last" else enc[int(layer.split("_")[1])]
            for name, wb in mods.items():
                mod = getattr(lt, name)
                mod = mod.gc1 if name.startswith("gc") else mod  # GCN wraps GraphConvolution
                t = not name.startswith("gc")
                out += [(mod.weight, wb["w"], t), (mod.bias, wb["b"], False)]
    for k, layer in enumerate(p["disc"]):
        mod = model.discri[2 * k]
        out += [(mod.weight, layer["w"], True), (mod.bias, layer["b"], False)]
    return out


def compare(folder: pathlib.Path, n_layers: int, critic: str, seed: int = 0) -> dict:
    """{"loss": |official - ours|, "value": the official loss, "grad": the largest |difference|
    over every parameter's gradient, "step": over every parameter after one Adam step,
    "n_params": tensors compared}."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    K.float64_on_cpu()
    from model.trainer import CrossTrainer  # the official code
    from utils.GraphMaker import GraphMaker

    from transferjax.models.cdrib import cdrib_draws, cdrib_init, cdrib_loss
    from transferjax.models.vbge import row_normalized_edges

    rng = np.random.default_rng(seed)
    rows = {d: K.distinct_rows(rng, N_USERS[d], N_ITEMS[d], 12) for d in ("source", "target")}
    files = {}
    for d, (u, i) in rows.items():
        files[d] = folder / f"{d}_train.txt"
        files[d].write_text("".join(f"{a}\t{b}\n" for a, b in zip(u, i, strict=True)))
    opt = dict(
        feature_dim=D, hidden_dim=D, GNN=n_layers, dropout=0.0, leakey=0.1, cuda=False,
        bce=critic == "bce", margin=0.3, beta=1.5, model="CDRIB", optim="adam", lr=1e-3,
        weight_decay=5e-4, user_batch_size=UBS, shared_user=N_SHARED,
        source_user_num=N_USERS["source"], target_user_num=N_USERS["target"],
        source_item_num=N_ITEMS["source"], target_item_num=N_ITEMS["target"],
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        graphs_t = {d: GraphMaker(dict(opt), str(f)) for d, f in files.items()}
        trainer = CrossTrainer(opt)
    model = trainer.model.double()
    sizes = {d: (N_USERS[d], N_ITEMS[d]) for d in ("source", "target")}
    p = cdrib_init(jax.random.key(seed), sizes=sizes, dim=D, n_layers=n_layers)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    params = _official_params(model, p)
    assert len(params) == len(list(model.parameters())), "a parameter is left out"
    with torch.no_grad():
        for tp, ours, t in params:
            tp.copy_(torch.tensor(ours.T if t else ours))
    # the official optimizer was built before .double(): rebuild it on the float64 params
    trainer.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)

    draws = cdrib_draws(jax.random.key(seed + 1), sizes=sizes, dim=D, n_linked=N_SHARED, k=UBS)
    eps = draws["eps"]
    noise = [eps[d][k] for d in ("source", "target") for k in ("item", "user")]
    perms = [draws[k] for k in ("pos", "neg_t", "neg_s")]
    randn, randperm = torch.randn, torch.randperm
    torch.randn = lambda *a, **k: torch.tensor(np.asarray(noise.pop(0)))
    torch.randperm = lambda *a, **k: torch.tensor(np.asarray(perms.pop(0)))
    batch = {
        d: tuple(rng.integers(0, n, B[d]) for n in (N_USERS[d], N_ITEMS[d], N_ITEMS[d]))
        for d in ("source", "target")
    }
    batch_t = [torch.tensor(x) for d in ("source", "target") for x in batch[d]]
    adj = [getattr(graphs_t[d], m).double() for d in ("source", "target") for m in ("UV", "VU")]

    edges = {d: row_normalized_edges(u, i, *sizes[d]) for d, (u, i) in rows.items()}
    edges = jax.tree.map(jnp.asarray, edges)
    shared = np.arange(N_SHARED)
    link = {
        d: jnp.asarray(np.where(np.arange(N_USERS[d]) < N_SHARED, np.arange(N_USERS[d]), -1))
        for d in ("source", "target")
    }
    link["pairs"] = jnp.asarray(np.stack([shared, shared], 1))
    ours_batch = {d: (*map(jnp.asarray, batch[d]), jnp.ones(B[d], bool)) for d in batch}

    def ours(q):
        kw = dict(alpha=0.1, beta=1.5, margin=0.3, critic=critic)
        return cdrib_loss(q, edges, link, ours_batch, draws, **kw)[0]

    try:
        trainer.optimizer.zero_grad()
        theirs = trainer.reconstruct_graph(batch_t, *adj)
    finally:
        torch.randn, torch.randperm = randn, randperm
    mine, grads = jax.value_and_grad(ours)(p)
    adam = optax.adam(1e-3)
    decayed = jax.tree.map(lambda g, x: g + 5e-4 * x, grads, p)  # grad of loss + wd/2 ||p||^2
    updates, _ = adam.update(decayed, adam.init(p), p)
    stepped = optax.apply_updates(p, updates)
    out = {"loss": abs(theirs - float(mine)), "value": theirs, "grad": 0.0, "step": 0.0}
    out["n_params"] = len(params)
    flat = zip(params, _official_params_like(grads, p), _official_params_like(stepped, p))
    for (tp, _, t), g, x in flat:
        g_t = tp.grad.numpy()
        x_t = tp.detach().numpy()
        out["grad"] = max(out["grad"], float(np.max(np.abs(g_t - (g.T if t else g)))))
        out["step"] = max(out["step"], float(np.max(np.abs(x_t - (x.T if t else x)))))
    return out


def _official_params_like(tree, p) -> list:
    """`tree`'s leaves in `_official_params`'s order."""
    out = [tree["emb"][n] for n in EMB]
    for d in ("source", "target"):
        for layer, mods in p[d].items():
            for name in mods:
                out += [tree[d][layer][name]["w"], tree[d][layer][name]["b"]]
    for k in range(len(p["disc"])):
        out += [tree["disc"][k]["w"], tree["disc"][k]["b"]]
    return [np.asarray(x) for x in out]


def main(argv=None) -> int:
    args = K.equal_args(__doc__, scratch="runs/reproduce/cdrib", argv=argv)
    scratch = pathlib.Path(args.scratch)
    if not args.official_on_path:  # fetch, then compare in a child that imports the official code
        return K.rerun_beside_official(
            OFFICIAL, args, module="benchmarks.reproduce.cdrib_equal", folder="CDRIB", argv=argv
        )
    ok = True
    for critic in ("hinge", "bce"):
        for n_layers in (1, 2, 3):
            folder = scratch / f"data_{critic}_{n_layers}"
            folder.mkdir(parents=True, exist_ok=True)
            diff = compare(folder, n_layers, critic)
            good = max(diff["loss"], diff["grad"], diff["step"]) <= args.tol
            ok &= good
            print(
                f"critic {critic}, layers {n_layers}: loss {diff['value']:.4f}, |loss diff|"
                f" {diff['loss']:.2e}, max |grad"
                f" diff| {diff['grad']:.2e}, max |param diff after Adam| {diff['step']:.2e}"
                f" ({diff['n_params']} tensors) {'ok' if good else 'DIFFERENT'}"
            )
    print(f"official {OFFICIAL.url} @ {OFFICIAL.short}: {'equal' if ok else 'NOT equal'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
