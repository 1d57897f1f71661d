"""Micro-benchmark of phi's first layer in a hand-written DANN step (not the `dann` method).

The speed suite times the registered `dann` method's step (`benchmarks.dann_step`); this
module times a smaller step written by hand to compare forms of the first layer alone: an
encoder (`n_items -> 256 -> 128`, ReLU after each layer) over 256 source and 256 target users'
full bags (ML-1M users' rated items, weight = rating), the discriminator (`128 -> 64 -> 1`) on
gradient-reversed features (`transferjax.models.discriminator.dann_loss`, lambda 1), and Adam
(lr 1e-3); no heads, no interest vector, no input/label split. Batches come from a fixed pool
(`pool` batches, indexed by step modulo the pool inside the scan); every form sees the same
batches.

Forms:
- JAX "bag": the host-built ELL embedding bag of `benchmarks.ell` (fused gathers, custom VJP);
- JAX "bag_flat": `table[items] * w` then `segment_sum` (one gathered row per entry);
- JAX "dense": `relu(x @ emb + b)` on f32[512, n_items] interest vectors;
- PyTorch "dense" (`addmm`) and "bag" (`F.embedding_bag`, per-sample weights, mode "sum"),
  eager and under `torch.compile` (dense only: the bag's variable length would recompile).
JAX steps run as a jitted `lax.scan` of `steps` steps with the state donated. All variants
start from the same weights and run the same steps on the same batches, so their losses agree
at first (the tests check one step) and then drift apart with float rounding.
`python -m benchmarks.op_profile --cases dann_bag` profiles the "bag" form op by op.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import ell
from benchmarks.dann_step import summarize  # noqa: F401  (steps/s of its results)
from benchmarks.measure import Variant, xla_memory_mb
from transferjax.data.types import Interactions
from transferjax.models.discriminator import dann_loss, discriminator_init
from transferjax.models.mlp import mlp_apply
from transferjax.models.phi import encoder

DIMS, DISC_HIDDEN, LR, LAM = (256, 128), (64,), 1e-3, 1.0
# ELL forward chunks grouped by 4 item ranges (about 0.95 MB of the 3,706 x 256 table each):
# `python -m benchmarks.op_profile --cases dann_bag --item-blocks 1` against the default
# (see `benchmarks.ell`).
ITEM_BLOCKS = 4


def make_pool(
    inter: Interactions,
    *,
    n_pool: int,
    per_side: int = 256,
    seed: int = 0,
    width: int = 16,
    item_blocks: int = ITEM_BLOCKS,
) -> dict:
    """`n_pool` batches of 2 * per_side distinct users (first half source, rest target).

    `width` and `item_blocks` shape the ELL layouts (`benchmarks.ell.bag_layout`).

    Returns a dict of numpy arrays: "flat" per batch (row i32[nnz], item, weight), "dense"
    f32[n_pool, 2B, n_items], "ell" (a stacked `bag_layout` pool), "flat_pad" (row/item/weight
    padded to one nnz; padding rows point at the last row with weight 0), n_rows, n_items.
    """
    order = np.lexsort((inter.item, inter.user))
    users, items, w = inter.user[order], inter.item[order], inter.rating[order]
    starts = np.searchsorted(users, np.arange(inter.n_users + 1))
    rng = np.random.default_rng(seed)
    n_rows, flat = 2 * per_side, []
    for _ in range(n_pool):
        chosen = rng.choice(inter.n_users, n_rows, replace=False)
        sl = [np.arange(starts[u], starts[u + 1]) for u in chosen]
        row = np.repeat(np.arange(n_rows), [len(s) for s in sl]).astype(np.int32)
        cat = np.concatenate(sl)
        flat.append((row, items[cat].astype(np.int32), w[cat].astype(np.float32)))
    dense = np.zeros((n_pool, n_rows, inter.n_items), np.float32)
    for j, (row, it, wt) in enumerate(flat):
        np.add.at(dense[j], (row, it), wt)
    cap = max(len(f[0]) for f in flat)

    def pad(a, fill):
        return np.concatenate([a, np.full(cap - len(a), fill, a.dtype)])

    flat_pad = {
        "row": np.stack([pad(f[0], n_rows - 1) for f in flat]),
        "item": np.stack([pad(f[1], 0) for f in flat]),
        "weight": np.stack([pad(f[2], 0.0) for f in flat]),
    }
    lays = ell.stack_layouts(
        [
            ell.bag_layout(
                *f, n_rows=n_rows, n_items=inter.n_items, width=width, item_blocks=item_blocks
            )
            for f in flat
        ]
    )
    return {
        "flat": flat,
        "dense": dense,
        "ell": lays,
        "flat_pad": flat_pad,
        "n_rows": n_rows,
        "per_side": per_side,
        "n_items": inter.n_items,
        "nnz_mean": float(np.mean([len(f[0]) for f in flat])),
    }


def init_params(n_items: int, *, seed: int = 0) -> dict:
    """`{"phi": {"emb", "b", "mlp"}, "disc": discriminator_init(...)}` (phi's "bag" params)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    init = encoder(kind="bag", n_items=n_items, n_users=1, dims=DIMS)[0]
    return {"phi": init(k1), "disc": discriminator_init(k2, in_dim=DIMS[-1], hidden=DISC_HIDDEN)}


def encode(form: str, phi: dict, data: dict, j, *, n_rows: int) -> jax.Array:
    """phi of pool batch `j` in `form` ("bag" | "bag_flat" | "dense"); data: device arrays."""
    if form == "dense":
        h = data["dense"][j] @ phi["emb"]
    elif form == "bag":
        h = ell.bag_matmul(phi["emb"], jax.tree.map(lambda a: a[j], data["ell"]), n_rows=n_rows)
    elif form == "bag_flat":
        f = jax.tree.map(lambda a: a[j], data["flat_pad"])
        rows = phi["emb"][f["item"]] * f["weight"][:, None]
        h = jax.ops.segment_sum(rows, f["row"], num_segments=n_rows, indices_are_sorted=True)
    else:
        raise ValueError(f"unknown JAX DANN form {form!r}")
    return mlp_apply(phi["mlp"], jax.nn.relu(h + phi["b"]))  # ReLU after every layer


def jax_loss(form: str, params: dict, data: dict, j, *, n_rows: int, per_side: int):
    """DANN loss of pool batch `j`: `dann_loss` on phi's source and target rows."""
    z = encode(form, params["phi"], data, j, n_rows=n_rows)
    return dann_loss(params["disc"], z[:per_side], z[per_side:], lam=LAM)[0]


def _device_data(pool: dict, form: str, device) -> dict:
    key = {"dense": "dense", "bag": "ell", "bag_flat": "flat_pad"}[form]
    return {key: jax.device_put(jax.tree.map(jnp.asarray, pool[key]), device)}


class JaxDANN(Variant):
    """`steps` DANN steps of one form as a jitted `lax.scan` (state donated) per `run()`."""

    def __init__(self, pool: dict, *, form: str, steps: int, seed: int = 0, device=None):
        self.pool, self.form, self.steps, self.seed = pool, form, steps, seed
        self.device = device or jax.devices()[0]

    def setup(self) -> None:
        form, n_pool = self.form, len(self.pool["flat"])
        n_rows, per_side = self.pool["n_rows"], self.pool["per_side"]
        opt = optax.adam(LR)

        def run(params, state, data, t0):
            def step(carry, t):
                p, s = carry
                loss, g = jax.value_and_grad(jax_loss, argnums=1)(
                    form, p, data, t % n_pool, n_rows=n_rows, per_side=per_side
                )
                with jax.numpy_dtype_promotion("standard"):  # optax mixes python scalars
                    upd, s = opt.update(g, s, p)
                    return (optax.apply_updates(p, upd), s), loss

            (params, state), losses = jax.lax.scan(
                step, (params, state), t0 + jnp.arange(self.steps)
            )
            return params, state, jnp.mean(losses)

        self.data = _device_data(self.pool, form, self.device)
        self.params = jax.device_put(init_params(self.pool["n_items"], seed=self.seed), self.device)
        self.state = opt.init(self.params)
        self.t = 0
        t0 = time.perf_counter()
        self.compiled = (
            jax.jit(run, donate_argnums=(0, 1))
            .lower(self.params, self.state, self.data, jnp.int32(0))
            .compile()
        )
        self.compile_s = time.perf_counter() - t0

    def run(self) -> float:
        self.params, self.state, loss = self.compiled(
            self.params, self.state, self.data, jnp.int32(self.t)
        )
        self.t += self.steps
        return float(jax.block_until_ready(loss))

    def info(self) -> dict:
        return {
            "compile_s": self.compile_s,
            "steps": self.steps,
            "steps_total": self.t,
            **xla_memory_mb(self.compiled),
        }


def torch_batches(pool: dict, device) -> list:
    """Per pool batch: (items i64[nnz], offsets i64[2B], weights f32[nnz], dense f32[2B, n])."""
    import torch

    out = []
    for (row, item, w), dense in zip(pool["flat"], pool["dense"], strict=True):
        counts = np.bincount(row, minlength=pool["n_rows"])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out.append(
            tuple(
                torch.tensor(a, device=device)
                for a in (item.astype(np.int64), offsets.astype(np.int64), w, dense)
            )
        )
    return out


class TorchDANNVariant(Variant):
    """`steps` eager (or `torch.compile`-d) PyTorch DANN steps of one form per `run()`."""

    def __init__(
        self, pool: dict, *, form: str, steps: int, device, init: dict, compile: bool = False
    ):
        self.pool, self.form, self.steps, self.device = pool, form, steps, device
        self.init, self.compile = init, compile
        self.torch_cuda = device.type == "cuda"

    def setup(self) -> None:
        import torch

        from benchmarks.torch_ref import TorchDANN, adam

        self.batches = torch_batches(self.pool, self.device)
        model = TorchDANN(self.pool["n_items"], DIMS, DISC_HIDDEN[0]).to(self.device)
        model.load_jax(self.init)
        opt = adam(model.parameters(), lr=LR)
        form, per_side = self.form, self.pool["per_side"]

        def step(items, offsets, weights, dense):
            opt.zero_grad(set_to_none=True)
            z = (
                model.encode_dense(dense)
                if form == "dense"
                else model.encode_bag(items, offsets, weights)
            )
            loss = model.dann_loss(z, per_side, LAM)
            loss.backward()
            opt.step()
            return loss.detach()

        self.step = torch.compile(step) if self.compile else step
        self.t, self.first_s = 0, None

    def run(self) -> float:
        import torch

        t0 = time.perf_counter()
        out = []
        for _ in range(self.steps):
            out.append(self.step(*self.batches[self.t % len(self.batches)]))
            self.t += 1
            if self.first_s is None:
                if self.torch_cuda:
                    torch.cuda.synchronize()
                self.first_s = time.perf_counter() - t0
        loss = float(torch.stack(out).mean())
        if self.torch_cuda:
            torch.cuda.synchronize()
        return loss

    def info(self) -> dict:
        return {
            "compile_s" if self.compile else "first_call_s": self.first_s,
            "steps": self.steps,
            "steps_total": self.t,
        }
