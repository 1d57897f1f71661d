"""transferjax's `unicdr` against UniCDR's official PyTorch code, step for step: one training
step's loss, the gradient of every parameter and the parameters after the Adam step, in
float64, on a tiny two-domain dataset with overlapping users (`--task dual-user-intra`).

    python -m benchmarks.reproduce.unicdr_equal                  # clone from GitHub
    python -m benchmarks.reproduce.unicdr_equal --source DIR     # a checkout, mirror or export

Steps: clone cjx96/UniCDR at `OFFICIAL.commit` into `--scratch` (default
`runs/reproduce/unicdr`, git-ignored; a `--source` folder that holds the files without git, an
export of that commit, is used as it is); make tiny per-domain training rows (users 0..N-1 of
both domains, the same ids the same people, as the official data); build the official
`CrossTrainer` (Adam, lr 1e-3, weight decay 1e-5) and copy the params of our `unicdr_init`
into its modules (item tables below the official all-zero padding row 0, nn.Linear weights
transposed, the bilinear weight as [1, d, d]); draw the step's random numbers once with ours
(each row's masked contexts `sample_context`, its negatives `sample_negatives`, the critic's
rotation `draw_shift`) and hand the same ones to the official code: the contexts and
negatives as its batch tensors (ids + 1, padding 0 with score -100, the own domain's block of
`global_item` all padding, as `DomainTask.__getitem__` builds them), the rotation as the
return of its `torch.randint`. Then one official step (`item_embedding_select`, the sum of
both domains' `reconstruct_graph`, backward, Adam) and `jax.value_and_grad` of our
`unicdr_loss` plus one `optax.adam` step on our gradient plus the weight decay's. Dropout is 0
on both sides (the two would draw different masks). Then, with the stepped params, every
user's evaluation scores of all items of its domain: the official `model.eval()` forward
(`test_max_len` 50 padding, both domains' blocks of `global_item` filled, as its `test_mode`
builds them) against ours (`user_sides` with the own-domain block "glob_own"), on the same
drawn contexts. For the mean and the user_attention aggregators.

Run-time patches of the official code (its files are never edited): `torch.Tensor.cuda`
returns the tensor itself (its critic calls `.cuda(device)` even on CPU); `torch.randint`
returns the drawn rotation. The comparison runs in a child interpreter with the checkout's
`UniCDR/` folder on its PYTHONPATH (the official modules import each other as top-level
`model` and `utils`). Needs PyTorch. Exits 1 when a loss, gradient or updated parameter
differs by more than `--tol`.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np

from benchmarks.reproduce import common as K

OFFICIAL = K.Official(
    "unicdr", "https://github.com/cjx96/UniCDR", "b216bc01cda46fcc1adf9e3dd988a0dce97a13c0"
)
DOMS = ("source", "target")
N_USERS, N_ITEMS = {"source": 7, "target": 6}, {"source": 9, "target": 8}
B, D, MAXLEN, N_NEG = {"source": 5, "target": 4}, 4, 3, 2


def _official_params(model, p, agg_kind):
    """(torch parameter, our array, how) for every official parameter; how: "" as is, "T"
    transposed, "pad" below a zero row, "bil" as [1, d, d] / [1]."""
    out = []
    for j, d in enumerate(DOMS):
        out.append((model.specific_user_emb_list[j].weight, p["user"][d], ""))
        out.append((model.specific_item_emb_list[j].weight, p["item"][d], "pad"))
    out.append((model.share_user_embedding.weight, p["shared_user"], ""))
    for j, a in enumerate((*DOMS, "shared")):
        agg = model.agg_list[j]
        out.append((agg.W_agg.weight, p["agg"][a]["w_agg"], "T"))
        if agg_kind == "user_attention":
            out.append((agg.W_att[0].weight, p["agg"][a]["w_att"], "T"))
            out.append((agg.W_att[0].bias, p["agg"][a]["b_att"], ""))
    for j, d in enumerate(DOMS):
        out.append((model.dis_list[j].weight, p["dis"][d]["w"], "bil"))
        out.append((model.dis_list[j].bias, p["dis"][d]["b"], "bil"))
    return out


def _to_torch(x, how):
    x = np.asarray(x)
    if how == "T":
        return x.T
    if how == "pad":
        return np.concatenate([np.zeros((1, x.shape[1])), x])
    if how == "bil":
        return x[None]
    return x


def _leaves_like(tree, agg_kind) -> list:
    """`tree`'s leaves in `_official_params`'s order."""
    out = []
    for d in DOMS:
        out += [tree["user"][d], tree["item"][d]]
    out.append(tree["shared_user"])
    for a in (*DOMS, "shared"):
        out.append(tree["agg"][a]["w_agg"])
        if agg_kind == "user_attention":
            out += [tree["agg"][a]["w_att"], tree["agg"][a]["b_att"]]
    for d in DOMS:
        out += [tree["dis"][d]["w"], tree["dis"][d]["b"]]
    return out


def compare(agg_kind: str, seed: int = 0) -> dict:
    """{"loss": |official - ours|, "value": the official loss, "grad": the largest |difference|
    over every parameter's gradient, "step": over every parameter after one Adam step,
    "n_params": tensors compared}."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    K.float64_on_cpu()
    from model.trainer import CrossTrainer  # the official code

    from transferjax.methods.unicdr import context_sizes, sample_negatives
    from transferjax.models.pointwise import positive_index
    from transferjax.models.unicdr import draw_shift, sample_context, unicdr_init, unicdr_loss

    rng = np.random.default_rng(seed)
    rows = {d: K.distinct_rows(rng, N_USERS[d], N_ITEMS[d], 20) for d in DOMS}
    index = {d: positive_index(*rows[d], N_USERS[d]) for d in DOMS}
    opt = dict(
        model="UniCDR", task="dual-user-intra", aggregator=agg_kind, lambda_a=0.5,
        latent_dim=D, dropout=0.0, num_domains=2, cuda=False, optim="adam", lr=1e-3,
        weight_decay=1e-5, lambda_loss=0.4, user_max=[N_USERS[d] for d in DOMS],
        item_max=[N_ITEMS[d] for d in DOMS],
    )  # fmt: skip
    torch.manual_seed(seed)
    trainer = CrossTrainer(opt)
    model = trainer.model
    sizes = {d: (N_USERS[d], N_ITEMS[d]) for d in DOMS}
    n_joint = max(N_USERS.values())
    p = unicdr_init(jax.random.key(seed), sizes=sizes, n_joint=n_joint, dim=D, aggregator=agg_kind)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    params = _official_params(model, p, agg_kind)
    assert len(params) == len(list(model.parameters())), "a parameter is left out"
    with torch.no_grad():
        for tp, ours, how in params:
            tp.copy_(torch.tensor(_to_torch(ours, how)))
    trainer.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)

    # the step's draws, ours; same ids are the same users (joint row = id)
    dev = jax.tree.map(jnp.asarray, index)
    k_ctx = {
        d: jnp.asarray(context_sizes(np.diff(index[d]["indptr"]), maxlen=MAXLEN, mask_rate=0.1))
        for d in DOMS
    }
    pools = {d: jnp.asarray(np.unique(rows[d][1]).astype(np.int32)) for d in DOMS}
    key = jax.random.key(seed + 1)
    batch, batch_t = {}, []
    for j, d in enumerate(DOMS):
        o = DOMS[1 - j]
        key, k1, k2, k3, k4, k5 = jax.random.split(key, 6)
        r = rng.integers(0, len(rows[d][0]), B[d])
        user, item = jnp.asarray(rows[d][0][r]), jnp.asarray(rows[d][1][r])
        has_o = jnp.asarray(np.isin(np.asarray(user), rows[o][0]))
        other = jnp.where(has_o & (user < N_USERS[o]), user, -1)
        ctx = sample_context(
            jax.random.split(k1, B[d]), dev[d], user, k_ctx[d][user], width=MAXLEN
        )  # the positive stays in: the official `cur_context.remove` never removes it
        glob = sample_context(
            jax.random.split(k2, B[d]), dev[o], other, k_ctx[o][jnp.maximum(other, 0)],
            width=MAXLEN,
        )  # fmt: skip
        neg = sample_negatives(k3, dev[d], pools[d], user, n=N_NEG, tries=20)
        mask = jnp.ones(B[d], bool)
        batch[d] = {
            "user": user, "joint": user, "ctx": ctx, "glob": glob, "pos": item, "neg": neg,
            "mask": mask, "shift": draw_shift(k4, mask),
        }  # fmt: skip

        c_item, c_score = _ids(ctx, MAXLEN)
        g_item, g_score = _ids(glob, MAXLEN)
        pad_i, pad_s = np.zeros_like(g_item), np.full(g_score.shape, -100.0)
        blocks = [(g_item, g_score), (pad_i, pad_s)]
        blocks = blocks[::-1] if j == 0 else blocks  # the own domain's block is padding
        gi = np.stack([b_[0] for b_ in blocks], 1)
        gs = np.stack([b_[1] for b_ in blocks], 1)
        batch_t.append(
            [
                torch.tensor(np.asarray(user)),
                torch.tensor(np.asarray(item) + 1),
                torch.tensor(np.asarray(neg) + 1),
                torch.tensor(c_item),
                torch.tensor(c_score),
                torch.tensor(gi),
                torch.tensor(gs),
            ]
        )

    shifts = [int(batch[d]["shift"]) for d in DOMS]
    randint = torch.randint
    torch.randint = lambda *a, **k: torch.tensor([shifts.pop(0)])
    try:
        model.train()
        trainer.optimizer.zero_grad()
        model.item_embedding_select()
        theirs = sum(trainer.reconstruct_graph(j, batch_t[j]) for j in range(2))
        theirs.backward()
        trainer.optimizer.step()
    finally:
        torch.randint = randint
    assert not shifts, "the official step drew a different number of rotations"

    def ours(q):
        kw = dict(kind=agg_kind, lambda_a=0.5, lambda_loss=0.4, maxlen=MAXLEN)
        return unicdr_loss(q, batch, **kw)[0]

    mine, grads = jax.value_and_grad(ours)(p)
    adam = optax.adam(1e-3)
    decayed = jax.tree.map(lambda g, x: g + 1e-5 * x, grads, p)  # grad of loss + wd/2 ||p||^2
    updates, _ = adam.update(decayed, adam.init(p), p)
    stepped = optax.apply_updates(p, updates)
    value = float(theirs.detach())
    out = {"loss": abs(value - float(mine)), "value": value, "grad": 0.0}
    out["step"], out["n_params"] = 0.0, len(params)
    flat = zip(params, _leaves_like(grads, agg_kind), _leaves_like(stepped, agg_kind))
    for (tp, _, how), g, x in flat:
        g_t, x_t = tp.grad.numpy(), tp.detach().numpy()
        if how == "pad":
            assert not np.any(x_t[0]), "the padding row moved"
            g_t, x_t, how = g_t[1:], x_t[1:], ""
        out["grad"] = max(out["grad"], float(np.max(np.abs(g_t - _to_torch(g, how)))))
        out["step"] = max(out["step"], float(np.max(np.abs(x_t - _to_torch(x, how)))))
    out["score"] = _eval_scores(trainer, stepped, dev, agg_kind, rows)
    return out


def _ids(items_mask, width: int):
    """The official (ids, scores) of our (items, mask), padded to `width`: id + 1 or 0, 1 or
    -100."""
    items, m = map(np.asarray, items_mask)
    pad = width - items.shape[-1]
    ids = np.pad(np.where(m, items + 1, 0), [(0, 0)] * (items.ndim - 1) + [(0, pad)])
    return ids, np.where(ids > 0, 1.0, -100.0)


def _eval_scores(trainer, p, dev, agg_kind, rows) -> float:
    """The largest |difference| of every user's scores of all items of its domain, official
    evaluation forward (`model.eval()`, `test_max_len` 50, both domains' blocks of
    `global_item` filled) against ours (`user_sides` with "glob_own"), after the step."""
    import jax
    import jax.numpy as jnp
    import torch

    from transferjax.models.unicdr import sample_context, user_sides

    model, width, worst = trainer.model, 50, 0.0
    model.eval()
    model.item_embedding_select()
    key = jax.random.key(7)
    for j, d in enumerate(DOMS):
        o = DOMS[1 - j]
        user = jnp.arange(N_USERS[d])
        other = jnp.where(jnp.isin(user, jnp.asarray(rows[o][0])), user, -1)
        big = jnp.full(user.shape, width)
        key, k1, k2, k3 = jax.random.split(key, 4)
        split = [jax.random.split(k, N_USERS[d]) for k in (k1, k2, k3)]
        own = sample_context(split[0], dev[d], user, big, width=width)
        glob = sample_context(split[1], dev[o], other, big, width=width)
        again = sample_context(split[2], dev[d], user, big, width=width)
        x = {"user": user, "joint": user, "ctx": own, "glob": glob, "glob_own": again}
        spec, share = user_sides(p, d, x, kind=agg_kind, lambda_a=0.5, widths=(width, 2 * width))
        ours = np.asarray((spec + share) @ p["item"][d].T)
        c_item, c_score = _ids(own, width)
        blocks = [_ids(again, width), _ids(glob, width)][:: 1 if j == 0 else -1]
        g_item = np.stack([b[0] for b in blocks], 1)
        g_score = np.stack([b[1] for b in blocks], 1)
        items = np.tile(np.arange(1, N_ITEMS[d] + 1), (N_USERS[d], 1))
        with torch.no_grad():
            t = [torch.tensor(a) for a in (np.asarray(user), c_item, c_score, g_item, g_score)]
            feat = model.forward_user(j, t[0], t[1], t[2], t[3], t[4])
            theirs = model.predict_dot(feat, model.forward_item(j, torch.tensor(items))).numpy()
        worst = max(worst, float(np.max(np.abs(theirs - ours))))
    return worst


def _exported(source) -> pathlib.Path | None:
    """`source` itself when it holds the official files without git (an export)."""
    if source and (pathlib.Path(source) / "UniCDR" / "model" / "UniCDR.py").exists():
        if not (pathlib.Path(source) / ".git").exists():
            return pathlib.Path(source)
    return None


def main(argv=None) -> int:
    args = K.equal_args(__doc__, scratch="runs/reproduce/unicdr", argv=argv)
    if not args.official_on_path:  # fetch, then compare in a child that imports the official code
        code = _exported(args.source)
        if code is None:
            return K.rerun_beside_official(
                OFFICIAL, args, module="benchmarks.reproduce.unicdr_equal", folder="UniCDR",
                argv=argv,
            )  # fmt: skip
        path = os.pathsep.join([str(code / "UniCDR"), os.environ.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "benchmarks.reproduce.unicdr_equal"]
        cmd += [*(argv or sys.argv[1:]), "--official-on-path"]
        return subprocess.run(cmd, env={**os.environ, "PYTHONPATH": path}).returncode
    ok = True
    for agg_kind in ("mean", "user_attention"):
        diff = compare(agg_kind)
        good = max(diff["loss"], diff["grad"], diff["step"], diff["score"]) <= args.tol
        ok &= good
        print(
            f"aggregator {agg_kind}: loss {diff['value']:.4f}, |loss diff| {diff['loss']:.2e},"
            f" max |grad diff| {diff['grad']:.2e}, max |param diff after Adam|"
            f" {diff['step']:.2e} ({diff['n_params']} tensors), max |evaluation score diff|"
            f" {diff['score']:.2e} {'ok' if good else 'DIFFERENT'}"
        )
    print(f"official {OFFICIAL.url} @ {OFFICIAL.short}: {'equal' if ok else 'NOT equal'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
