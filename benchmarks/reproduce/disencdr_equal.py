"""transferjax's `disencdr` against DisenCDR's official PyTorch code, step for step: one training
step's loss and the gradient of every parameter, in float64, on a tiny two-domain dataset.

    python -m benchmarks.reproduce.disencdr_equal                  # clone from GitHub
    python -m benchmarks.reproduce.disencdr_equal --source DIR     # from a checkout or mirror

Steps: clone cjx96/DisenCDR at `OFFICIAL.commit` into `--scratch` (default
`runs/reproduce/disencdr`, git-ignored); write a tiny dataset in its format (two domains over
the same users, every user and item with training rows, as its data); build the official
`CrossTrainer` with its own `GraphMaker` graphs; copy the params of our `disencdr_init` into
its modules (GraphConvolution weights as they are, nn.Linear weights transposed); run one
official `reconstruct_graph` step (the optimizer step disabled) and `jax.value_and_grad` of
our loss on the same batch, after the warm-up (epoch 100) and in it (epoch 1), for 1, 2 and 3
encoder layers. The two sides draw different random numbers, so dropout is 0 and the
official Gaussian noise is replaced by zeros (`torch.randn`), which makes both samples the
posterior means; `transferjax.models.disencdr.sample` and `transferjax.models.vbge.dropout`
are tested on their own (tests/methods/test_disencdr.py).

Run-time patches of the official code (its files are never edited): `torch.Tensor.cuda`
returns the tensor itself (its `reparameters` calls `.cuda()` even on CPU); `torch.randn`
returns zeros. The comparison runs in a child interpreter with the checkout's folder on its
PYTHONPATH (the official modules import each other as top-level `model` and `utils`). Needs
PyTorch. Exits 1 when a loss or gradient differs by more than `--tol`.
"""

from __future__ import annotations

import pathlib

import numpy as np

from benchmarks.reproduce import common as K

OFFICIAL = K.Official(
    "disencdr", "https://github.com/cjx96/DisenCDR", "4e6d60bad4d5185c99ab60423b48f87f88aa03a3"
)
EMB = {
    "source_user": "source_user_embedding",
    "target_user": "target_user_embedding",
    "source_item": "source_item_embedding",
    "target_item": "target_item_embedding",
    "source_user_share": "source_user_embedding_share",
    "target_user_share": "target_user_embedding_share",
}
ENC = {
    "source_specific": "source_specific_GNN",
    "target_specific": "target_specific_GNN",
    "source_share": "source_share_GNN",
    "target_share": "target_share_GNN",
    "cross": "share_GNN",
}
N_U, N_S, N_T, D, B = 7, 6, 5, 4, 6


def _rows(rng, n_items: int, n: int):
    """Distinct (user, item) rows, every user and item present, items renumbered in order of
    first appearance (the official loaders' remap), so both sides read the same ids."""
    u = np.concatenate([np.arange(N_U), rng.integers(0, N_U, n)])
    i = np.concatenate([np.arange(N_U) % n_items, rng.integers(0, n_items, n)])
    pairs = np.unique(np.stack([u, i], 1), axis=0)
    first: dict = {}
    for x in pairs[:, 1]:
        first.setdefault(int(x), len(first))
    return pairs[:, 0], np.array([first[int(x)] for x in pairs[:, 1]])


def compare(folder: pathlib.Path, n_layers: int, seed: int = 0) -> dict:
    """{"loss": |official - ours| after the warm-up, "warmup_loss": in it, "grad": the largest
    |difference| over every parameter's gradient}."""
    import jax
    import jax.numpy as jnp
    import torch

    jax.config.update("jax_enable_x64", True)
    from transferjax.models.disencdr import bce_terms, disencdr_forward, disencdr_init
    from transferjax.models.vbge import row_normalized_edges

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.set_default_dtype(torch.float64)
    from model.trainer import CrossTrainer  # the official code
    from utils.GraphMaker import GraphMaker

    rng = np.random.default_rng(seed)
    rows = {"source": _rows(rng, N_S, 12), "target": _rows(rng, N_T, 10)}
    files = {}
    for d, (u, i) in rows.items():
        files[d] = folder / f"{d}_train.txt"
        files[d].write_text("".join(f"{a}\t{b}\t1\n" for a, b in zip(u, i, strict=True)))
    opt = dict(
        feature_dim=D, hidden_dim=D, GNN=n_layers, dropout=0.0, leakey=0.1, cuda=False,
        beta=0.9, rate=0.3, model="DisenCDR", optim="adam", lr=1e-3, source_user_num=N_U,
        target_user_num=N_U, source_item_num=N_S, target_item_num=N_T,
    )  # fmt: skip
    graphs_t = {d: GraphMaker(dict(opt), str(f)) for d, f in files.items()}
    trainer = CrossTrainer(opt)
    model = trainer.model.double()
    trainer.optimizer.step = lambda: None
    sizes = {"source": (N_U, N_S), "target": (N_U, N_T)}
    p = disencdr_init(jax.random.key(seed), sizes=sizes, dim=D, n_layers=n_layers)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)

    def module(enc, layer, name):
        enc_t = getattr(model, ENC[enc]).encoder
        mod = getattr(enc_t[-1] if layer == "last" else enc_t[int(layer.split("_")[1])], name)
        return mod.gc1 if name.startswith("gc") else mod  # GCN wraps its GraphConvolution

    with torch.no_grad():
        for k, n in EMB.items():
            getattr(model, n).weight.copy_(torch.tensor(p["emb"][k]))
        for enc in ENC:
            for layer, mods in p[enc].items():
                for name, wb in mods.items():
                    mod = module(enc, layer, name)
                    w = wb["w"] if name.startswith("gc") else wb["w"].T
                    mod.weight.copy_(torch.tensor(w))
                    mod.bias.copy_(torch.tensor(wb["b"]))
    randn = torch.randn
    torch.randn = lambda *a, **k: torch.zeros(*a, dtype=torch.float64)
    user = rng.integers(0, N_U, B)
    sp, sn, tp, tn = (rng.integers(0, n, B) for n in (N_S, N_S, N_T, N_T))
    batch = [torch.tensor(x) for x in (user, sp, sn, tp, tn)]
    adj = [getattr(graphs_t[d], m).double() for d in ("source", "target") for m in ("UV", "VU")]

    edges = {d: row_normalized_edges(u, i, *sizes[d]) for d, (u, i) in rows.items()}
    edges = jax.tree.map(jnp.asarray, edges)
    ar = jnp.arange(N_U)
    w = jnp.full(N_U, 0.3)
    joint = {"src": ar, "tgt": ar, "ws": w, "wt": 1 - w, "of_src": ar, "of_tgt": ar}
    known = {d: {"user": jnp.ones(n[0]), "item": jnp.ones(n[1])} for d, n in sizes.items()}
    known["joint"] = jnp.ones(N_U)
    mask = jnp.ones(B, bool)

    def ours(q, on):
        tables, kl = disencdr_forward(q, edges, joint, known, alpha=0.1, beta=0.9, shared_on=on)
        s = bce_terms(*tables["source"], user, sp, sn, mask)
        return s + bce_terms(*tables["target"], user, tp, tn, mask) + kl["kl"]

    try:
        out = {}
        for epoch, on, key in ((100, 1.0, "loss"), (1, 0.0, "warmup_loss")):
            trainer.optimizer.zero_grad()
            theirs = trainer.reconstruct_graph(batch, *adj, epoch=epoch)
            mine, grads = jax.value_and_grad(ours)(p, on)
            out[key] = abs(theirs - float(mine))
            if key == "loss":
                worst = 0.0
                for k, n in EMB.items():
                    g = getattr(model, n).weight.grad.numpy()
                    worst = max(worst, float(np.max(np.abs(g - grads["emb"][k]))))
                for enc in ENC:
                    for layer, mods in p[enc].items():
                        for name in mods:
                            mod, g = module(enc, layer, name), grads[enc][layer][name]
                            gw = mod.weight.grad  # None: a module the loss never reads
                            gw = np.zeros_like(mod.weight.detach()) if gw is None else gw.numpy()
                            gw = gw if name.startswith("gc") else gw.T
                            gb = mod.bias.grad
                            gb = np.zeros_like(g["b"]) if gb is None else gb.numpy()
                            worst = max(worst, float(np.max(np.abs(gw - g["w"]))))
                            worst = max(worst, float(np.max(np.abs(gb - g["b"]))))
                out["grad"] = worst
        return out
    finally:
        torch.randn = randn


def main(argv=None) -> int:
    args = K.equal_args(__doc__, scratch="runs/reproduce/disencdr", argv=argv)
    scratch = pathlib.Path(args.scratch)
    if not args.official_on_path:  # fetch, then compare in a child that imports the official code
        return K.rerun_beside_official(
            OFFICIAL,
            args,
            module="benchmarks.reproduce.disencdr_equal",
            folder="DisenCDR",
            argv=argv,
        )
    ok = True
    for n_layers in (1, 2, 3):
        folder = scratch / f"data_{n_layers}"
        folder.mkdir(parents=True, exist_ok=True)
        diff = compare(folder, n_layers)
        good = max(diff.values()) <= args.tol
        ok &= good
        print(
            f"layers {n_layers}: |loss diff| {diff['loss']:.2e}, warm-up {diff['warmup_loss']:.2e},"
            f" max |grad diff| {diff['grad']:.2e} {'ok' if good else 'DIFFERENT'}"
        )
    print(f"official {OFFICIAL.url} @ {OFFICIAL.short}: {'equal' if ok else 'NOT equal'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
