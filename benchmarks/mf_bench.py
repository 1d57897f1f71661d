"""MF training speed: the library's JAX path against PyTorch references, and its scaling.

JAX variants run the library's own path: `transferjax.methods.mf.domain_mf` builds the
`Stage` (dense Adam, or row-sparse lazy Adam with `mf.sparse=True`) and
`transferjax.train.trainer.make_epoch_fn` runs one epoch as a jitted `lax.scan` over fixed
batches with the state donated. Compile time is `lower(...).compile()`.

PyTorch variants (`benchmarks.torch_ref`) train the same model from the same initial weights
with the same hyperparameters (dim 32, init N(0, 0.1^2), reg 1e-3, Adam lr 1e-2, batch 1024,
the last batch padded and masked as in JAX): fused dense Adam eager, the whole step under
`torch.compile` (its compile time is the first call's time), and `nn.Embedding(sparse=True)`
with `SparseAdam`.

Every variant trains the same epochs (one warm-up epoch, then the rounds of
`benchmarks.measure.interleaved`, one epoch each); throughput is rows per second of the median
timed epoch, and the validation RMSE after the last epoch checks that the variants learn
equally well.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.measure import Variant, interleaved, xla_memory_mb
from transferjax import config as C
from transferjax.data.types import Interactions
from transferjax.methods.mf import MFConfig

LR, BATCH, DIM, REG, INIT_STD = 1e-2, 1024, 32, 1e-3, 0.1
# Adagrad learning rates: the best of `benchmarks.mf_lr.GRID` by validation RMSE on another
# random split of ML-1M (seed 1; the suite reports split seed 0): `python -m benchmarks.mf_lr`.
ADAGRAD_LR = {"jax_rowwise": 3.0, "torch_sparse": 0.03}


def _lr(lr: float | None, *, adagrad: bool, key: str) -> float:
    """`lr` if given, else the suite's rate: `ADAGRAD_LR[key]` for Adagrad, `LR` for Adam."""
    if lr is not None:
        return lr
    return ADAGRAD_LR[key] if adagrad else LR


def load_ml1m(cache_dir=None) -> Interactions:
    """ML-1M ratings with items compacted to the 3,706 rated ones (6,040 users, 1,000,209)."""
    from transferjax.data.fetch import load_movielens

    r = load_movielens("ml-1m", cache_dir=cache_dir).ratings
    rated, item = np.unique(r.item, return_inverse=True)
    return Interactions(
        user=r.user,
        item=item.astype(np.int32),
        rating=r.rating,
        n_users=r.n_users,
        n_items=len(rated),
        name="ml-1m",
    )


def random_split(inter: Interactions, *, valid_frac: float = 0.1, seed: int = 0):
    """A random (train, valid) split of the rows."""
    perm = np.random.default_rng(seed).permutation(len(inter))
    n_valid = int(round(valid_frac * len(inter)))
    return inter.select(np.sort(perm[n_valid:])), inter.select(np.sort(perm[:n_valid]))


def synthetic(*, n_users: int, n_items: int, n: int, seed: int = 0) -> Interactions:
    """n uniformly random (user, item) pairs with ratings in 1..5 (duplicates allowed)."""
    rng = np.random.default_rng(seed)
    return Interactions(
        user=rng.integers(0, n_users, n, dtype=np.int32),
        item=rng.integers(0, n_items, n, dtype=np.int32),
        rating=rng.integers(1, 6, n).astype(np.float32),
        n_users=n_users,
        n_items=n_items,
        name="synthetic",
    )


def sparse_available() -> bool:
    """Whether the library offers row-sparse MF updates (`mf.sparse`)."""
    return any(f.name == "sparse" for f in dataclasses.fields(MFConfig))


def _cfg(sparse: bool) -> C.RunConfig:
    cfg = C.RunConfig()
    mf = {"dim": DIM, "reg": REG, "init_std": INIT_STD, "loss": "mse"}
    if sparse:
        mf["sparse"] = True
    return dataclasses.replace(cfg, mf=dataclasses.replace(cfg.mf, **mf))


def mf_stage(
    train: Interactions,
    *,
    sparse: bool,
    seed: int,
    epochs: int = 1,
    batch: int = BATCH,
    optimizer: str = "adam",
    lr: float = LR,
):
    """`({"mf": initial params, "hyper": its traced mf.reg}, Stage)` from `domain_mf`, the
    library's MF stage (`optimizer` "adam", or "adagrad": row-wise Adagrad when sparse)."""
    from transferjax.methods.api import hyper_init
    from transferjax.methods.mf import MF_TRACED, domain_mf

    cfg = _cfg(sparse)
    init, stage = domain_mf(
        cfg,
        train,
        name="mf",
        part="mf",
        epochs=epochs,
        lr=lr,
        batch_size=batch,
        select=False,
        optimizer=optimizer,
    )
    return {"mf": init(jax.random.key(seed)), "hyper": hyper_init(cfg, MF_TRACED)}, stage


def _rmse_jax(params: dict, valid: Interactions) -> float:
    from transferjax.models.mf import mf_score

    u, i = jnp.asarray(valid.user), jnp.asarray(valid.item)
    pred = mf_score(params["user"][u], params["user_bias"][u], params, i)
    return float(jnp.sqrt(jnp.mean((pred - jnp.asarray(valid.rating)) ** 2)))


class JaxMF(Variant):
    """The library's MF epoch as the trainer runs it: `make_epoch_fn` over `domain_mf`'s stage,
    dense or sparse; on a CPU the epoch order comes from `host_epoch_indices` (timed with the
    epoch), elsewhere from the in-graph shuffle, as in `make_train`. `optimizer="adagrad"`
    trains with (row-wise, when sparse) Adagrad at `lr` (default `ADAGRAD_LR["jax_rowwise"]`)."""

    def __init__(
        self,
        train: Interactions,
        valid: Interactions | None,
        *,
        sparse: bool,
        seed: int = 0,
        device=None,
        batch: int = BATCH,
        optimizer: str = "adam",
        lr: float | None = None,
    ):
        self.train, self.valid, self.sparse, self.seed = train, valid, sparse, seed
        self.batch, self.optimizer = batch, optimizer
        self.lr = _lr(lr, adagrad=optimizer == "adagrad", key="jax_rowwise")
        self.device = device or jax.devices()[0]

    def _idx(self, key):
        from transferjax.data.batches import host_epoch_indices

        if self.device.platform != "cpu":  # the trainer shuffles in the graph there
            return None
        n = len(self.train)
        return jax.device_put(host_epoch_indices(key, n, min(self.batch, n)), self.device)

    def setup(self) -> None:
        from transferjax.train.trainer import make_epoch_fn

        params, stage = mf_stage(
            self.train,
            sparse=self.sparse,
            seed=self.seed,
            batch=self.batch,
            optimizer=self.optimizer,
            lr=self.lr,
        )
        self.part = jax.device_put(params["mf"], self.device)
        self.frozen = jax.device_put({"hyper": params["hyper"]}, self.device)
        self.state = stage.optimizer.init(self.part)
        self.examples = jax.device_put(
            {k: jnp.asarray(v) for k, v in stage.examples.items()}, self.device
        )
        self.key, self.epoch = jax.random.key(self.seed + 1), 0
        t0 = time.perf_counter()
        self.compiled = (
            make_epoch_fn(stage)
            .lower(self.part, self.state, self.frozen, self.examples, self.key, self._idx(self.key))
            .compile()
        )
        self.compile_s = time.perf_counter() - t0

    def run(self) -> float:
        key = jax.random.fold_in(self.key, self.epoch)
        self.part, self.state, stats = self.compiled(
            self.part, self.state, self.frozen, self.examples, key, self._idx(key)
        )
        self.epoch += 1
        jax.block_until_ready((self.part, stats))
        return float(stats["loss"])

    def info(self) -> dict:
        return {"compile_s": self.compile_s, "epochs": self.epoch, **xla_memory_mb(self.compiled)}

    def finish(self) -> dict:
        return {"valid_rmse": None if self.valid is None else _rmse_jax(self.part, self.valid)}


class TorchMFVariant(Variant):
    """`TorchMF` trained from `init` with dense (fused) Adam, optionally `torch.compile`-d,
    or with SparseAdam (`kind="sparse"`), or sparse-gradient Adagrad (`kind="sparse_adagrad"`,
    lr `ADAGRAD_LR["torch_sparse"]` unless `lr` is given); batches as in JAX (padded, masked
    last batch)."""

    def __init__(
        self,
        train: Interactions,
        valid: Interactions | None,
        *,
        kind: str,
        compile: bool,
        init: dict,
        device,
        seed: int = 0,
        batch: int = BATCH,
        lr: float | None = None,
    ):
        self.train, self.valid, self.kind, self.compile = train, valid, kind, compile
        self.init, self.device, self.seed, self.batch = init, device, seed, batch
        self.lr = _lr(lr, adagrad=kind == "sparse_adagrad", key="torch_sparse")
        self.torch_cuda = device.type == "cuda"

    def setup(self) -> None:
        import torch

        from benchmarks.torch_ref import TorchMF, mf_optimizers

        t, dev = self.train, self.device
        self.model = TorchMF(t.n_users, t.n_items, DIM, sparse=self.kind.startswith("sparse")).to(
            dev
        )
        self.model.load_jax(self.init)
        opts = mf_optimizers(self.model, kind=self.kind, lr=self.lr)
        model = self.model
        self.user, self.item = (
            torch.tensor(a.astype(np.int64), device=dev) for a in (t.user, t.item)
        )
        self.rating = torch.tensor(t.rating, device=dev)

        def step(u, i, r, m):
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss = model.loss(u, i, r, m, reg=REG)
            loss.backward()
            for o in opts:
                o.step()
            return loss.detach()

        self.step = torch.compile(step) if self.compile else step
        n = len(t)
        b = self.batch
        self.steps = -(-n // b)
        self.gen = torch.Generator(device=dev).manual_seed(self.seed)
        self.pad = torch.zeros(self.steps * b - n, dtype=torch.int64, device=dev)
        self.mask = (torch.arange(self.steps * b, device=dev) < n).view(self.steps, b)
        self.compile_s, self.epoch = None, 0

    def _sync(self) -> None:
        if self.torch_cuda:
            import torch

            torch.cuda.synchronize()

    def run(self) -> float:
        import torch

        t0 = time.perf_counter()
        perm = torch.randperm(len(self.train), generator=self.gen, device=self.device)
        idx = torch.cat([perm, self.pad]).view(self.steps, self.batch)
        out = []
        for k in range(self.steps):
            ix = idx[k]
            out.append(self.step(self.user[ix], self.item[ix], self.rating[ix], self.mask[k]))
            if self.compile and self.compile_s is None:
                self._sync()
                self.compile_s = time.perf_counter() - t0
        loss = float(torch.stack(out).mean())
        self._sync()
        self.epoch += 1
        return loss

    def info(self) -> dict:
        return {"compile_s": self.compile_s, "epochs": self.epoch}

    def finish(self) -> dict:
        import torch

        if self.valid is None:
            return {"valid_rmse": None}
        with torch.no_grad():
            vu, vi = (
                torch.tensor(a.astype(np.int64), device=self.device)
                for a in (self.valid.user, self.valid.item)
            )
            err = self.model.predict(vu, vi) - torch.tensor(self.valid.rating, device=self.device)
            return {"valid_rmse": float(torch.sqrt(torch.mean(err**2)))}


def summarize(res: dict, n: int, *, batch: int = BATCH) -> dict:
    """Adds rows/s and ms/step (from the median epoch) to `interleaved` results."""
    steps = -(-n // batch)
    for r in res.values():
        if "median_s" in r:
            r["examples_per_s"] = n / r["median_s"]
            r["step_ms"] = 1000.0 * r["median_s"] / steps
            r["train_loss"] = r["losses"][-1]
    return res


def scaling(
    points: list[tuple[int, int, int]],
    *,
    sparse_too: bool,
    rounds: int,
    device=None,
    log=lambda m: None,
) -> list[dict]:
    """JAX MF step time and peak memory per (users, items, interactions) on synthetic data,
    dense and (with `sparse_too`) row-sparse interleaved at each point."""
    rows = []
    for n_users, n_items, n in points:
        inter = synthetic(n_users=n_users, n_items=n_items, n=n)
        variants = {"dense": JaxMF(inter, None, sparse=False, device=device)}
        if sparse_too:
            variants["sparse"] = JaxMF(inter, None, sparse=True, device=device)
        res = summarize(interleaved(variants, rounds=rounds, jax_device=device, log=log), n)
        for kind, r in res.items():
            keep = (
                "step_ms",
                "compile_s",
                "times_s",
                "error",
                "peak_rss_mb",
                "warmup_peak_rss_mb",
                "peak_device_mb",
                "xla_args_mb",
                "xla_temp_mb",
            )
            rows.append(
                {
                    "kind": kind,
                    "n_users": n_users,
                    "n_items": n_items,
                    "interactions": n,
                    **{k: r[k] for k in keep if k in r},
                }
            )
    return rows
