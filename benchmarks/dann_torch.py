"""PyTorch reference of the registered `dann` method's training step (`benchmarks.dann_step`).

The same model as `transferjax.methods.phi.model.PhiModel` with its defaults ("bag" encoder,
shared-bottom residual head, fixed task weights, DANN objective with the Ganin schedule):
the interest vector (shrunk mean), phi's first layer, ReLU, the MLP with a linear last layer,
the merge of z_s and z_t, the head (target tasks read stop_gradient(z_s)), the click BCE over
every item of a domain without the input items and the rating MSE on label entries, the
discriminator on gradient-reversed z (z_s detached), and Adam. Its params are the JAX ones
(`from_jax`, same layout: `w` f32[in, out]). Two forms of the first layer:

- "dense": the input entries scattered into f32[b, n_items], then `x @ W1` (`addmm`);
- "bag": `torch.nn.functional.embedding_bag(mode="sum", per_sample_weights=...)` over the
  input entries.

PyTorch reads each batch's real entries as flat arrays (row-major, as the CSR bags hold them)
rather than padded [b, L] bags. `TorchDann.loss(entries, has_s, has_t, step)` takes the step's
random parts as arguments (`entries`: per domain the bags' entries with their input/label
split and the rows simulated cold), so a test can feed it the masks the JAX step drew
(`transferjax.methods.phi.model.PhiModel.draw_masks`); `TorchDannStep` draws its own.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.measure import Variant
from benchmarks.torch_ref import GradReverse, adam
from transferjax.methods.phi import model as PM
from transferjax.models import phi as PHI


def _flat(tree, prefix=""):
    """{"a/b/0/w": leaf} of a nested dict / list pytree."""
    if isinstance(tree, dict):
        return {k2: v for k, t in tree.items() for k2, v in _flat(t, f"{prefix}{k}/").items()}
    if isinstance(tree, list | tuple):
        return {k2: v for i, t in enumerate(tree) for k2, v in _flat(t, f"{prefix}{i}/").items()}
    return {prefix[:-1]: tree}


class TorchDann(torch.nn.Module):
    """The dann model of a `PhiModel` (`model`) in PyTorch; params from JAX (`from_jax`)."""

    def __init__(self, model: PM.PhiModel, phi_params: dict, *, form: str = "dense", device=None):
        super().__init__()
        cfg = model.cfg
        if (
            cfg.phi.encoder,
            cfg.phi.head,
            cfg.phi.task_weighting,
            model.objective.name,
            cfg.align.lam_schedule,
        ) != ("bag", "shared_bottom", "fixed", "dann", "ganin"):
            raise ValueError(
                "TorchDann covers the defaults: bag encoder, shared_bottom head, "
                "fixed task weights, dann objective with the ganin schedule"
            )
        if form not in ("dense", "bag"):
            raise ValueError(f"TorchDann: form={form!r}; valid: dense, bag")
        self.form, self.tasks, self.cfg = form, model.tasks, cfg
        self.specs = {"s": model.spec_s, "t": model.spec_t}
        self.p = torch.nn.ParameterDict(
            {
                k.replace("/", "__"): torch.nn.Parameter(
                    torch.as_tensor(np.array(v, np.float32), device=device)
                )
                for k, v in _flat(phi_params).items()
            }
        )
        self.n_mlp = len(phi_params["enc_s"]["mlp"])

    def w(self, path: str) -> torch.Tensor:
        return self.p[path.replace("/", "__")]

    def encode(self, dom: str, e: dict, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(z f32[b, D], rows with an input entry bool[b]) of the domain's input entries."""
        spec, enc = self.specs[dom], f"enc_{dom}"
        inp = e["inp"]
        row, item = e["row"][inp], e["item"][inp]
        n_in = torch.bincount(row, minlength=b)
        w = 1.0 / (n_in[row].to(torch.float32) + PHI.SHRINK)
        if spec.explicit:
            w = (e["rating"][inp] - spec.mu) * w
        emb = self.w(f"{enc}/emb")
        if self.form == "dense":
            x = torch.zeros(b, spec.n_items, device=emb.device)
            x = x.index_put((row, item), w, accumulate=True)
            h = torch.addmm(self.w(f"{enc}/b"), x, emb)
        else:
            offsets = torch.cumsum(n_in, 0) - n_in
            h = F.embedding_bag(item, emb, offsets, mode="sum", per_sample_weights=w)
            h = h + self.w(f"{enc}/b")
        for i in range(self.n_mlp):
            h = torch.addmm(self.w(f"{enc}/mlp/{i}/b"), torch.relu(h), self.w(f"{enc}/mlp/{i}/w"))
        return h, n_in > 0

    def head(self, h: torch.Tensor) -> list:
        bottom = torch.relu(torch.addmm(self.w("head/bottom/0/b"), h, self.w("head/bottom/0/w")))
        t1 = torch.relu(
            torch.einsum("bi,kio->kbo", bottom, self.w("head/towers/0/w"))
            + self.w("head/towers/0/b")[:, None]
        )
        t2 = (
            torch.einsum("kbi,kio->kbo", t1, self.w("head/towers/1/w"))
            + self.w("head/towers/1/b")[:, None]
        )
        return [h + t2[k] for k in range(len(self.tasks))]

    def loss(
        self,
        ent: dict,
        has_s: torch.Tensor,
        has_t: torch.Tensor,
        step: int,
        *,
        total_steps: int,
        source_weight: float | None = None,
    ) -> torch.Tensor:
        """The step's loss.

        Args:
          ent: {"s", "t": {"row" i64[nnz], "item" i64[nnz], "rating" f32[nnz], "inp" bool[nnz],
            "lab" bool[nnz]}} each domain's entries of the batch's rows and their split, the
            target's after the cold simulation; rows i64 in [0, b), grouped by row.
          has_s, has_t: bool[b] rows with that domain.
          step: the stage's step count (the GRL strength's schedule).
        """
        b = has_s.shape[0]
        z_s, in_s = self.encode("s", ent["s"], b)
        z_t, in_t = self.encode("t", ent["t"], b)
        use_s, use_t = has_s & in_s, has_t & in_t
        a_s, a_t = use_s.float()[:, None], use_t.float()[:, None]
        merge = lambda zs: (a_s * zs + a_t * z_t) / torch.clamp(a_s + a_t, min=1.0)  # noqa: E731
        reps, reps_t = self.head(merge(z_s)), self.head(merge(z_s.detach()))
        sw = self.cfg.phi.source_weight if source_weight is None else source_weight
        total = 0.0
        for k, task in enumerate(self.tasks):
            dom = "s" if task.startswith("src") else "t"
            t, e, spec = (reps if dom == "s" else reps_t)[k], ent[dom], self.specs[dom]
            wt, out = (has_s if dom == "s" else has_t).float(), f"out/{task}"
            if task.endswith("click"):
                logits = torch.addmm(self.w(f"{out}/b"), t, self.w(f"{out}/w"))
                y, drop = torch.zeros_like(logits), torch.zeros_like(logits)
                y[e["row"][e["lab"]], e["item"][e["lab"]]] = 1.0
                drop[e["row"][e["inp"]], e["item"][e["inp"]]] = 1.0
                keep = 1.0 - drop
                rows = (keep * (F.softplus(logits) - y * logits)).sum(1) / keep.sum(1).clamp(
                    min=1.0
                )
                task_loss = (rows * wt).sum() / wt.sum().clamp(min=1.0)
            else:
                pred = spec.mu + self.w(f"{out}/b") + t @ self.w(f"{out}/w")
                lab = e["lab"]
                err = (pred[e["row"][lab], e["item"][lab]] - e["rating"][lab]) ** 2
                sse = torch.zeros(b, device=t.device).index_add(0, e["row"][lab], err)
                n = torch.bincount(e["row"][lab], minlength=b).float()
                task_loss = (sse * wt).sum() / (n * wt).sum().clamp(min=1.0)
            total = total + (sw if dom == "s" else 1.0 - sw) * task_loss
        al = self.cfg.align
        p = min(max(step / float(max(total_steps, 1)), 0.0), 1.0)
        lam = al.lam * (2.0 / (1.0 + math.exp(-al.gamma * p)) - 1.0)

        def disc(z):
            h = torch.relu(
                torch.addmm(self.w("obj/0/b"), GradReverse.apply(z, lam), self.w("obj/0/w"))
            )
            return torch.addmm(self.w("obj/1/b"), h, self.w("obj/1/w"))[:, 0]

        ms, mt = use_s.float(), use_t.float()
        align = (
            (ms * F.softplus(disc(z_s.detach()))).sum() + (mt * F.softplus(-disc(z_t))).sum()
        ) / (ms.sum() + mt.sum()).clamp(min=1.0)
        return total + al.weight * align


def entries(bags: dict, users: torch.Tensor) -> dict:
    """The CSR bags' entries of `users` i64[b] (-1: none), row-major: {"row", "item",
    "rating"} (torch tensors; `bags` holds "items", "rating", "start", "length")."""
    u = users.clamp(min=0)
    n = torch.where(users >= 0, bags["length"][u], 0)
    row = torch.repeat_interleave(torch.arange(len(users), device=users.device), n)
    first = torch.cumsum(n, 0) - n
    pos = torch.arange(len(row), device=users.device) - first[row]
    idx = bags["start"][u][row] + pos
    return {"row": row, "item": bags["items"][idx].long(), "rating": bags["rating"][idx]}


def split(ent: dict, keep: torch.Tensor, cold: torch.Tensor | None = None) -> dict:
    """`ent` with its input/label split: input where `keep` bool[nnz], rows `cold` bool[b]
    give every entry to the labels."""
    inp = keep if cold is None else keep & ~cold[ent["row"]]
    return {**ent, "inp": inp, "lab": ~inp}


class TorchDannStep(Variant):
    """`steps` PyTorch steps of the dann model per `run()` over the same rows as
    `benchmarks.dann_step.JaxDannStep` (batch rows reshuffled each epoch), masks drawn here."""

    def __init__(
        self,
        model: PM.PhiModel,
        phi_params: dict,
        examples: dict,
        *,
        form: str,
        steps: int,
        batch: int,
        device,
    ):
        self.model, self.phi_params, self.form = model, phi_params, form
        self.examples, self.steps, self.batch, self.device = examples, steps, batch, device
        self.torch_cuda = device.type == "cuda"

    def setup(self) -> None:
        dev, cfg = self.device, self.model.cfg
        self.net = TorchDann(self.model, self.phi_params, form=self.form, device=dev)
        self.opt = adam(self.net.parameters(), lr=cfg.trainer.lr)
        self.bags = {
            d: {k: torch.as_tensor(np.array(v), device=dev) for k, v in b.items()}
            for d, b in (("s", self.model.bags_s), ("t", self.model.bags_t))
        }
        for b in self.bags.values():
            b["start"], b["length"] = b["start"].long(), b["length"].long()
        self.src = torch.as_tensor(self.examples["src"], device=dev).long()
        self.tgt = torch.as_tensor(self.examples["tgt"], device=dev).long()
        self.t, self.first_s, self.total = 0, None, self.steps * 10
        self.gen = np.random.default_rng(0)

    def _step(self, rows: torch.Tensor) -> torch.Tensor:
        src, tgt = self.src[rows], self.tgt[rows]
        has_s, has_t = src >= 0, tgt >= 0
        cold = has_s & has_t & (torch.rand(len(rows), device=self.device) < PM.COLD_RATE)
        es, et = entries(self.bags["s"], src), entries(self.bags["t"], tgt)
        ent = {
            "s": split(es, torch.rand(len(es["row"]), device=self.device) < PM.SOURCE_KEEP),
            "t": split(et, torch.rand(len(et["row"]), device=self.device) < PM.TARGET_KEEP, cold),
        }
        self.opt.zero_grad(set_to_none=True)
        loss = self.net.loss(ent, has_s, has_t, self.t, total_steps=self.total)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def run(self) -> float:
        t0 = time.perf_counter()
        order = torch.as_tensor(self.gen.permutation(len(self.src)), device=self.device)
        out = []
        for i in range(self.steps):
            out.append(self._step(order[i * self.batch : (i + 1) * self.batch]))
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
        return {"first_call_s": self.first_s, "steps": self.steps, "steps_total": self.t}


__all__ = ["TorchDann", "TorchDannStep", "entries", "split"]
