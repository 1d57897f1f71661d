"""transferjax's `bitgcf` against RecBole-CDR's `BiTGCF`, step for step: one training step's loss,
the gradient of every parameter and the parameters after the Adam step, in float64, on tiny
two-domain data with shared items and with shared users, layers combined by "concat" and by
"mean".

    python -m benchmarks.reproduce.bitgcf_equal --source DIR     # from a checkout or mirror

As `benchmarks.reproduce.recbole_equal` (the same checkout, environment and driver): the
registered `bitgcf` is built on the tiny data as a run builds it; the rows its stage loss
trains on in one step (both domains' positives and sampled negatives) are recorded through the
`domain_loss` it calls per domain; RecBole-CDR's model gets our initial tables, the same rows
with 1 / 0 labels and each domain's training rows as its graph, and takes one step of
`calculate_loss` (the two domains' losses summed, as its trainer does), `backward` and Adam.

Ids. RecBole-CDR gives each table rows for the users (items) of both domains: 0 its padding
row, then the shared pairs, then the target-only, then the source-only (`recbole_ids`); ours
keeps one table per domain. Our rows go to their ids in both tables; the rows a domain lacks
(and the padding row) start at zero in that domain's table: no edge and no loss reads them, so
their gradient is zero on both sides (checked: the comparison covers every row). Dropout is 0
on both sides (the masks would differ). Every user and item of the tiny data has training rows
in its domain, as in RecBole-CDR's warm splits (ours holds a row without one at zero).

Graph weights. RecBole-CDR normalises the adjacency by (degree + 1e-7)^(-1/2) and stores it in
float32; ours uses degree^(-1/2), also in float32. The check runs twice: as shipped (both in
float32, ours without the 1e-7: differences near 1e-8 are these) and with both graphs' weights in
float64 and our weights given the same 1e-7, where the two must agree to `--tol`.
"""

from __future__ import annotations

import numpy as np

from benchmarks.reproduce import recbole_cdr as R
from benchmarks.reproduce import recbole_equal as RE

NETS = ("source", "target")
SETTINGS = {"reg": 0.01, "lambda_source": 0.7, "lambda_target": 0.8, "n_layers": 2}


def recbole_ids(split, share: str) -> dict:
    """{"source" / "target": {"user", "item": int64[n] our row -> their id}, and the sizes their
    `CrossDomainRecommender` reads ("total_num_users", "overlapped_num_items", ...)}."""
    out = {d: {} for d in NETS}
    sizes = {}
    for side, pairs in (("user", split.data.overlap), ("item", split.data.item_overlap)):
        n = {d: getattr(getattr(split, f"{d}_train"), f"n_{side}s") for d in NETS}
        pairs = pairs if (side == "user") == (share == "users") else np.zeros((0, 2), int)
        m = len(pairs)
        ids = {d: np.full(n[d], -1, np.int64) for d in NETS}
        for k, (s, t) in enumerate(pairs):
            ids["source"][s] = ids["target"][t] = k + 1
        nxt = m + 1
        for d in ("target", "source"):  # target-only rows first, then source-only
            free = ids[d] < 0
            ids[d][free] = np.arange(nxt, nxt + free.sum())
            nxt += int(free.sum())
            out[d][side] = ids[d]
        sizes[f"total_num_{side}s"] = nxt
        sizes[f"overlapped_num_{side}s"] = m + 1
        sizes[f"target_num_{side}s"] = m + 1 + int((ids["target"] > m).sum())
        sizes[f"source_num_{side}s"] = m + 1 + int((ids["source"] > m).sum())
    return {**out, **sizes}


def _state(p, ids) -> dict:
    """Their four tables: our domain tables at their ids, the other rows zero."""
    out = {}
    for d in NETS:
        for side in ("user", "item"):
            table = np.zeros((ids[f"total_num_{side}s"], p[d][side].shape[1]))
            table[ids[d][side]] = np.asarray(p[d][side], np.float64)
            out[f"{d}_{side}_embedding.weight"] = table
    return out


def exact_weights(graph: dict, eps: float) -> dict:
    """A `graph_arrays` graph with its weights in float64: (d_u + eps)^-1/2 (d_i + eps)^-1/2."""
    import jax.numpy as jnp

    out = dict(graph)
    for pre in ("", "t_"):
        u, i = np.asarray(graph[pre + "u"]), np.asarray(graph[pre + "i"])
        du = np.bincount(u).astype(np.float64) + eps
        di = np.bincount(i).astype(np.float64) + eps
        out[pre + "w"] = jnp.asarray(du[u] ** -0.5 * di[i] ** -0.5, jnp.float64)
    return out


def ours_step(share: str, connect: str, *, exact: bool) -> dict:
    """Our side, as `recbole_equal.ours_step`, in their ids and state_dict keys."""
    from transferjax import config as C
    from transferjax.methods import bitgcf as bitgcf_module
    from transferjax.methods.registry import get_method

    split = RE.tiny_split(share)
    sets = [f"bitgcf.{k}={v}" for k, v in SETTINGS.items()]
    sets += [f"bitgcf.dim={RE.DIM}", f"bitgcf.connect={connect}", "bitgcf.drop_rate=0"]
    cfg = C.RunConfig(
        method="bitgcf",
        data=C.DataConfig(name="synthetic"),
        trainer=C.TrainerConfig(lr=RE.LR, batch_size=RE.B, epochs=1),
    )
    cfg = C.apply_overrides(cfg, sets)
    built = get_method("bitgcf").build(cfg, split)
    (stage,) = built.stages
    known = built.data["bitgcf_known"]
    if not all(bool(np.all(np.asarray(known[d][t]))) for d in NETS for t in ("user", "item")):
        raise RuntimeError("the tiny data has a user or item without training rows")
    v, batch, key = RE.float64_view(cfg, built)
    if exact:
        g = v["bitgcf_graph"]
        v["bitgcf_graph"] = {**g, **{d: exact_weights(g[d], 1e-7) for d in NETS}}

    def rows(final, ego, b, **kw):  # the batch's positives and the negatives drawn for them
        return b["user"], b["item"], kw["negatives"]

    calls = RE.recorded_rows(stage, v, batch, key, bitgcf_module, "domain_loss", rows)
    value, grads, stepped = RE.one_step(stage, v, batch, key)

    ids = recbole_ids(split, share)
    fields, graph = {}, {}
    for d, (user, item, neg) in zip(NETS, calls, strict=True):
        neg = neg.reshape(len(user), -1)
        users = np.concatenate([user, np.repeat(user, neg.shape[1])])
        items = np.concatenate([item, neg.reshape(-1)])
        fields[f"{d}_user_id"] = ids[d]["user"][users]
        fields[f"{d}_item_id"] = ids[d]["item"][items]
        fields[f"{d}_label"] = np.r_[np.ones(len(user)), np.zeros(neg.size)]
        tr = getattr(split, f"{d}_train")
        graph[f"{d}_user"], graph[f"{d}_item"] = ids[d]["user"][tr.user], ids[d]["item"][tr.item]
    meta = {
        "config": {
            "embedding_size": RE.DIM,
            "n_layers": SETTINGS["n_layers"],
            "reg_weight": SETTINGS["reg"],
            "lambda_source": SETTINGS["lambda_source"],
            "lambda_target": SETTINGS["lambda_target"],
            "drop_rate": 0.0,
            "connect_way": connect,
        },
        "lr": RE.LR,
        "float32_graph": not exact,  # theirs as shipped, else built in float64
        **{k: int(x) for k, x in ids.items() if k not in NETS},
    }
    return {
        "meta": meta,
        "state": _state(v["bitgcf"], ids),
        "batch": fields,
        "graph": graph,
        "loss": float(value),
        "grads": _state(grads, ids),
        "stepped": _state(stepped, ids),
    }


def compare(python, src, share: str, connect: str, *, exact: bool) -> dict:
    """`recbole_equal.differences` of one step (`exact`: both graphs' weights in float64)."""
    ours = ours_step(share, connect, exact=exact)
    arrays = RE.inputs(ours)
    arrays.update({f"graph/{k}": a for k, a in ours["graph"].items()})
    theirs = RE.official_step(python, src, "BiTGCF", arrays)
    return RE.differences(theirs, ours)


def main(argv=None) -> int:
    args = RE.equal_parser(__doc__, shipped=True).parse_args(argv)
    src, python = RE.official_env(args)
    ok = True
    for exact, tol in ((False, args.tol_shipped), (True, args.tol)):
        for share in ("items", "users"):
            for connect in ("concat", "mean"):
                d = compare(python, src, share, connect, exact=exact)
                good = max(d["loss"], d["grad"], d["step"]) <= tol
                ok &= good
                graphs = "float64 graphs, 1e-7 both" if exact else "graphs as shipped"
                print(
                    f"BiTGCF, shared {share}, {connect}, {graphs}: loss {d['value']:.4f},"
                    f" |loss diff| {d['loss']:.2e}, max |grad diff| {d['grad']:.2e}, max |param"
                    f" diff after Adam| {d['step']:.2e} ({d['n_params']} tensors)"
                    f" {'ok' if good else 'DIFFERENT'} (tol {tol:g})"
                )
    print(f"official {R.OFFICIAL.url} @ {R.OFFICIAL.short} (bitgcf): {'equal' if ok else 'NOT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
