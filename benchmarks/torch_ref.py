"""PyTorch reference models of the speed suite: the same math as the JAX models.

- `TorchMF`: biased MF `r_hat = mu + b_u + b_i + <p_u, q_i>` with the loss of
  `transferjax.models.mf.mse_loss`: masked mean of `(r - r_hat)^2 + reg * (|p_u|^2 + |q_i|^2 +
  b_u^2 + b_i^2)`. Tables are `nn.Embedding`s (`sparse=True` for the SparseAdam path).
- `mf_optimizers`: dense Adam (`fused=True` where the device supports it, else `foreach`),
  `SparseAdam` for the tables plus dense Adam for `mu`, or Adagrad over sparse gradients;
  Adam's defaults match optax's (b1 0.9, b2 0.999, eps 1e-8).
- `TorchDANN`: the encoder of the first-layer micro-benchmark `benchmarks.dann_bench`
  (`n_items -> 256 -> 128`, ReLU) over dense interest vectors
  (`addmm`) or their sparse form (`F.embedding_bag(mode="sum", per_sample_weights=...)`), a
  gradient-reversal `autograd.Function`, the discriminator `128 -> 64 -> 1` and the pooled
  binary cross-entropy of `transferjax.models.discriminator.dann_loss` (Ganin & Lempitsky 2015).

`load_jax` copies JAX params (from `mf_init`, `benchmarks.dann_bench.init_params`) into a
model, so both frameworks start from the same weights. The reference of the registered `dann`
method's step is `benchmarks.dann_torch`. Import needs torch (the optional extra
`transferjax[torch]`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GradReverse", "TorchDANN", "TorchMF", "adam", "mf_optimizers", "torch_device"]


def torch_device(platform: str) -> torch.device:
    """`cuda` when the JAX platform is a GPU and CUDA is available, else `cpu`."""
    return torch.device("cuda" if platform == "gpu" and torch.cuda.is_available() else "cpu")


def _t(x, device) -> torch.Tensor:
    return torch.as_tensor(np.array(x, np.float32), device=device)


def adam(params, *, lr: float) -> torch.optim.Optimizer:
    """Dense Adam, fused kernels where supported (CPU since torch 2.4, CUDA), else foreach."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class TorchMF(nn.Module):
    """Biased MF; tables are `nn.Embedding`s (sparse gradients with `sparse=True`)."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, *, sparse: bool = False, mu: float = 0.0
    ):
        super().__init__()
        self.user = nn.Embedding(n_users, dim, sparse=sparse)
        self.item = nn.Embedding(n_items, dim, sparse=sparse)
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        self.mu = nn.Parameter(torch.tensor(float(mu)))

    @torch.no_grad()
    def load_jax(self, params: dict) -> TorchMF:
        """Copies `mf_init` params (user, item, user_bias, item_bias, mu) into the model."""
        dev = self.mu.device
        self.user.weight.copy_(_t(params["user"], dev))
        self.item.weight.copy_(_t(params["item"], dev))
        self.user_bias.weight.copy_(_t(params["user_bias"], dev)[:, None])
        self.item_bias.weight.copy_(_t(params["item_bias"], dev)[:, None])
        self.mu.copy_(_t(params["mu"], dev))
        return self

    def predict(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """f32[b] predicted ratings of (user, item) pairs (i64[b] each)."""
        pu, qi = self.user(user), self.item(item)
        return self.mu + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0] + (pu * qi).sum(-1)

    def loss(self, user, item, rating, mask, *, reg: float) -> torch.Tensor:
        """Masked mean of `(r - r_hat)^2 + reg * ||rows||^2` (as `mse_loss` in JAX)."""
        pu, qi = self.user(user), self.item(item)
        bu, bi = self.user_bias(user)[:, 0], self.item_bias(item)[:, 0]
        err = (rating - (self.mu + bu + bi + (pu * qi).sum(-1))) ** 2
        rows = (pu**2).sum(-1) + (qi**2).sum(-1) + bu**2 + bi**2
        m = mask.to(err.dtype)
        return ((err + reg * rows) * m).sum() / m.sum().clamp(min=1.0)


def mf_optimizers(model: TorchMF, *, kind: str, lr: float) -> list:
    """Optimizers of an MF model: "dense" (Adam, fused where supported), "sparse"
    (SparseAdam over the embedding tables, dense Adam over `mu`) or "sparse_adagrad"
    (`torch.optim.Adagrad`, which takes the tables' sparse gradients, over every parameter);
    the sparse kinds need `sparse=True`."""
    if kind == "dense":
        return [adam(model.parameters(), lr=lr)]
    if kind == "sparse":
        tables = [
            model.user.weight,
            model.item.weight,
            model.user_bias.weight,
            model.item_bias.weight,
        ]
        return [torch.optim.SparseAdam(tables, lr=lr), adam([model.mu], lr=lr)]
    if kind == "sparse_adagrad":
        return [torch.optim.Adagrad(model.parameters(), lr=lr)]
    raise ValueError(f"mf_optimizers: kind must be dense|sparse|sparse_adagrad, got {kind!r}")


class GradReverse(torch.autograd.Function):
    """Identity forward, `-lam * g` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x, lam: float):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


class TorchDANN(nn.Module):
    """phi encoder `n_items -> dims[0] -> dims[1]` (ReLU) and discriminator `-> 64 -> 1`.

    The first layer's weight `emb: f32[n_items, dims[0]]` is laid out as in JAX
    (`benchmarks.dann_bench.init_params`), so the dense form is `relu(x @ emb + b)` and the
    sparse form the embedding bag over the same matrix.
    """

    def __init__(self, n_items: int, dims=(256, 128), disc_hidden: int = 64):
        super().__init__()
        self.emb = nn.Parameter(torch.randn(n_items, dims[0]) * np.sqrt(2.0 / n_items))
        self.b = nn.Parameter(torch.zeros(dims[0]))
        self.fc = nn.Linear(dims[0], dims[1])
        self.d1 = nn.Linear(dims[1], disc_hidden)
        self.d2 = nn.Linear(disc_hidden, 1)

    @torch.no_grad()
    def load_jax(self, params: dict) -> TorchDANN:
        """Copies `benchmarks.dann_bench.init_params` params ({"phi", "disc"})."""
        dev = self.emb.device
        phi, disc = params["phi"], params["disc"]
        if len(phi["mlp"]) != 1 or len(disc) != 2:
            raise ValueError("TorchDANN.load_jax: expects dims of length 2 and one hidden layer")
        self.emb.copy_(_t(phi["emb"], dev))
        self.b.copy_(_t(phi["b"], dev))
        for lin, layer in ((self.fc, phi["mlp"][0]), (self.d1, disc[0]), (self.d2, disc[1])):
            lin.weight.copy_(_t(layer["w"], dev).T)
            lin.bias.copy_(_t(layer["b"], dev))
        return self

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        """x f32[b, n_items] -> f32[b, dims[1]]."""
        return torch.relu(self.fc(torch.relu(torch.addmm(self.b, x, self.emb))))

    def encode_bag(self, items, offsets, weights) -> torch.Tensor:
        """Embedding-bag form: items i64[nnz], offsets i64[b], weights f32[nnz] -> f32[b, d]."""
        h = F.embedding_bag(items, self.emb, offsets, mode="sum", per_sample_weights=weights)
        return torch.relu(self.fc(torch.relu(h + self.b)))

    def dann_loss(self, z: torch.Tensor, n_source: int, lam: float) -> torch.Tensor:
        """Pooled BCE of the discriminator on gradient-reversed features.

        Rows `[:n_source]` are source (label 0), the rest target (label 1); as `dann_loss`.
        """
        logit = self.d2(torch.relu(self.d1(GradReverse.apply(z, lam))))[:, 0]
        label = (torch.arange(z.shape[0], device=z.device) >= n_source).to(logit.dtype)
        return F.binary_cross_entropy_with_logits(logit, label)
