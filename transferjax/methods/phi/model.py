"""The multi-task transfer model over phi encoders, with an alignment
objective from `transferjax.align.objectives`.

Model. A user's source and target bags (`bags`) go through two encoders, `z_s = phi_s(x_s)`,
`z_t = phi_t(x_t)` (cfg.phi.encoder: a kind of `transferjax.models.phi`, whose "bag" reads the
shrunk mean of centred ratings, or a registered encoder, `encoders`; layers cfg.phi.dims, common
space dims[-1]), merged as the masked mean of the available ones,
`h = (u_s z_s + u_t z_t) / max(u_s + u_t, 1)` (u: the row uses that vector; h = 0 for neither).
A residual multi-task head (`heads`, cfg.phi.head) gives one representation per task, each
with an output layer over all items of its domain: source click, source rating (explicit source
data), target click, target rating (explicit target data).

Losses. Click: sigmoid BCE against the user's interests, every rated item a positive (also for
explicit data: a rating is an interaction, as in the ranking protocols). Rating: MSE on
observed ratings only. Task weights cfg.phi.task_weighting: "fixed" (source tasks
source_weight, target tasks 1 - source_weight) or "uncertainty" (Kendall et al. 2018). Plus
cfg.align.weight times the alignment objective cfg.align.objective on the phi outputs
(rows paired by user; z_s over rows that use a source vector, z_t over rows that use a target
vector).

Cold users and no label leakage. A cold user has no target vector: its h is z_s alone
(phi_s of its source vector) through the target heads. Training simulates this and never shows
a model the entries it predicts: every step each user's bag is split at random into input
entries (prob SOURCE_KEEP / TARGET_KEEP) and label entries; encoders read only input entries,
losses only label entries (input items are left out of the BCE). Users with both domains are
also simulated cold with prob COLD_RATE: their whole target bag becomes labels and h = z_s, the
path a cold user takes at test time. Gradients: phi_s is trained by the source tasks only;
target tasks and the alignment see z_s through stop_gradient, so a few hundred users with both
domains cannot make phi_s memorise their target ratings (as EMCDR fixes the source factors while
fitting its bridge), and the alignment moves phi_t into phi_s's space (as ADDA, Tzeng et al.
2017, adapts only the target encoder). phi_t learns from the target tasks of rows that are not
simulated cold and from the alignment.

Scoring: `predict` = the target rating head (explicit data); `score_items` / `score_all` = the
target click logits. Users with target training data use both vectors (all their training
entries), cold users z_s only, users with neither h = 0. The interest bags are compact CSR
arrays in the method's data (`Built.data["bags"]`), so evaluation looks users up by index.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transferjax.align.objectives import get_objective
from transferjax.methods.api import (
    Built,
    Represent,
    Scorer,
    all_items_pay,
    hyper_init,
    selected_stage,
)
from transferjax.methods.phi import bags as U
from transferjax.methods.phi import encoders as PE
from transferjax.methods.phi import heads as O
from transferjax.methods.phi.config import PhiConfig  # noqa: F401  (registers the phi section)
from transferjax.methods.registry import register
from transferjax.models import draws
from transferjax.models import heads as H

COLD_RATE = 0.5  # share of users with both domains simulated cold per step
SOURCE_KEEP = 0.5  # share of a source bag's entries that are input in a step (rest: labels)
TARGET_KEEP = 0.5  # the same for target bags of rows not simulated cold


class PhiModel:
    """One phi model: static structure (domain specs, tasks, objective) and pure functions."""

    def __init__(self, cfg, split, *, objective: str):
        self.cfg, self.split, self.objective = cfg, split, get_objective(objective)
        self.bags_s, self.spec_s = U.domain_bags(split.source_train, max_len=cfg.phi.max_len)
        self.bags_t, self.spec_t = U.domain_bags(split.target_train, max_len=cfg.phi.max_len)
        self.explicit = self.spec_t.explicit
        self.tasks = (
            ("src_click",)
            + (("src_rating",) if self.spec_s.explicit else ())
            + ("tgt_click",)
            + (("rating",) if self.explicit else ())
        )
        self.n_tasks = len(self.tasks)
        self.dim = int(cfg.phi.dims[-1])
        self.head_init, self.head_apply = O.head_fns(cfg.phi, dim=self.dim, n_tasks=self.n_tasks)
        self.enc_s = PE.domain_encoder(cfg.phi.encoder, self.spec_s, dims=cfg.phi.dims)
        self.enc_t = PE.domain_encoder(cfg.phi.encoder, self.spec_t, dims=cfg.phi.dims)

    def init(self, key) -> dict:
        """Trainable params: encoders, head, output layers, objective params."""
        pc, d, sp = self.cfg.phi, self.dim, self.split
        k_s, k_t, k_h, k_o, k_obj = jax.random.split(key, 5)
        ko = dict(zip(self.tasks, jax.random.split(k_o, self.n_tasks), strict=True))
        out = {
            "src_click": O.click_out_init(ko["src_click"], dim=d, inter=sp.source_train),
            "tgt_click": O.click_out_init(ko["tgt_click"], dim=d, inter=sp.target_train),
        }
        for task, inter, spec in (
            ("src_rating", sp.source_train, self.spec_s),
            ("rating", sp.target_train, self.spec_t),
        ):
            if task in self.tasks:
                out[task] = O.rating_out_init(ko[task], dim=d, inter=inter, mu=spec.mu)
        p = {
            "enc_s": self.enc_s[0](k_s),
            "enc_t": self.enc_t[0](k_t),
            "head": self.head_init(k_h),
            "out": out,
            "obj": self.objective.init(k_obj, dim=d, cfg=self.cfg),
        }
        if pc.task_weighting == "uncertainty":
            p["log_vars"] = jnp.zeros((self.n_tasks,), jnp.float32)
        return p

    def forward(self, p, src_in, tgt_in, *, users_s, users_t, use_s, use_t, train=False):
        """(z_s, z_t f32[b, D], task representations: list of f32[b, D]).

        Args:
          src_in, tgt_in: (items, rating, mask) input entries [b, L] of each domain.
          users_s, users_t: i32[b] user indices (-1: none; read by the "id" kind).
          use_s, use_t: bool[b] which vectors enter the merge.
          train: target tasks read the merge of stop_gradient(z_s) (module docstring); the
            rows are a training batch: distinct users, padded rows empty (`loss`).
        """
        z_s = self.enc_s[1](p["enc_s"], *src_in, users_s, distinct=train)
        z_t = self.enc_t[1](p["enc_t"], *tgt_in, users_t, distinct=train)
        a_s, a_t = use_s.astype(jnp.float32)[:, None], use_t.astype(jnp.float32)[:, None]
        merge = lambda zs: (a_s * zs + a_t * z_t) / jnp.maximum(a_s + a_t, 1.0)
        reps = self.head_apply(p["head"], merge(z_s))
        if train:
            reps_t = self.head_apply(p["head"], merge(jax.lax.stop_gradient(z_s)))
            reps = [
                r if k.startswith("src") else rt
                for k, r, rt in zip(self.tasks, reps, reps_t, strict=True)
            ]
        return z_s, z_t, reps

    def terms(self, p, src_in, src_lab, tgt_in, tgt_lab, *, users_s, users_t, has_s, has_t):
        """Per-row task losses for given input and label entries (disjoint masks).

        Args:
          src_in, src_lab, tgt_in, tgt_lab: (items i32[b, L], rating f32[b, L], mask bool[b, L]).
          users_s, users_t: i32[b] user indices.
          has_s, has_t: bool[b] rows that have that domain (its vector may be used).

        Returns:
          {"z_s", "z_t", "use_s", "use_t"} and per task f32[b] rows: click BCE, or for rating
          tasks a pair (sum of squared errors, count of label ratings).
        """
        use_s = has_s & jnp.any(src_in[2], axis=1)
        use_t = has_t & jnp.any(tgt_in[2], axis=1)
        z_s, z_t, reps = self.forward(
            p,
            src_in,
            tgt_in,
            users_s=users_s,
            users_t=users_t,
            use_s=use_s,
            use_t=use_t,
            train=True,
        )
        rep = dict(zip(self.tasks, reps, strict=True))
        out = {"z_s": z_s, "z_t": z_t, "use_s": use_s, "use_t": use_t}
        for task in self.tasks:
            src = task.startswith("src")
            inp, lab = (src_in, src_lab) if src else (tgt_in, tgt_lab)
            if task.endswith("click"):
                out[task] = O.click_rows(p["out"][task], rep[task], inp, lab)
            else:
                mu = (self.spec_s if src else self.spec_t).mu
                out[task] = O.rating_rows(p["out"][task], rep[task], mu, lab)
        return out

    def rows(self, params, batch) -> tuple:
        """(source rows, target rows: (items, rating, mask) [b, L]; has_s, has_t bool[b]). Padded
        rows read empty bags: a batch holds each user at most once (the packed capacity)."""
        src, tgt, live = batch["src"], batch["tgt"], batch["mask"]
        s = U.gather_rows(
            params["bags"]["source"], jnp.where(live, src, -1), max_len=self.spec_s.max_len
        )
        t = U.gather_rows(
            params["bags"]["target"], jnp.where(live, tgt, -1), max_len=self.spec_t.max_len
        )
        return s, t, (src >= 0) & live, (tgt >= 0) & live

    def draw_masks(self, key, s_mask, t_mask, has_s, has_t) -> dict:
        """The random parts of a training step (module docstring): each real entry's split into
        input and label (`split_entries`) and the rows simulated cold.

        Returns:
          {"s_in", "s_lab": bool[b, Ls], "t_in", "t_lab": bool[b, Lt], "cold": bool[b],
           "key": the objective's key}; the target split before the cold simulation.
        """
        k_cold, k_s, k_t, k_obj = jax.random.split(key, 4)
        cold = has_s & has_t & draws.bernoulli(k_cold, COLD_RATE, has_s.shape)
        s_in, s_lab = U.split_entries(k_s, s_mask, keep=SOURCE_KEEP)
        t_in, t_lab = U.split_entries(k_t, t_mask, keep=TARGET_KEEP)
        return {
            "s_in": s_in,
            "s_lab": s_lab,
            "t_in": t_in,
            "t_lab": t_lab,
            "cold": cold,
            "key": k_obj,
        }

    def loss(self, params, batch, key, *, total_steps: int):
        """Stage loss `(params, batch, key) -> (loss, aux)`: `loss_from_masks` with the masks
        drawn from `key` (`draw_masks`)."""
        (_, _, s_mask), (_, _, t_mask), has_s, has_t = self.rows(params, batch)
        masks = self.draw_masks(key, s_mask, t_mask, has_s, has_t)
        return self.loss_from_masks(params, batch, masks, total_steps=total_steps)

    def loss_from_masks(self, params, batch, masks: dict, *, total_steps: int):
        """The loss of a training step given its random parts `masks` (`draw_masks`).

        A row simulated cold (`masks["cold"]`) gets its whole target bag as labels. Returns
        (loss f32[], aux {task: f32[], "align": f32[], objective's aux}).
        """
        p = params["phi"]
        (s_items, s_rating, _), (t_items, t_rating, t_mask), has_s, has_t = self.rows(params, batch)
        cold = masks["cold"][:, None]
        t_in, t_lab = masks["t_in"] & ~cold, masks["t_lab"] | (t_mask & cold)
        r = self.terms(
            p,
            (s_items, s_rating, masks["s_in"]),
            (s_items, s_rating, masks["s_lab"]),
            (t_items, t_rating, t_in),
            (t_items, t_rating, t_lab),
            users_s=batch["src"],
            users_t=batch["tgt"],
            has_s=has_s,
            has_t=has_t,
        )
        losses = []
        for task in self.tasks:
            w = (has_s if task.startswith("src") else has_t).astype(jnp.float32)
            if task.endswith("click"):  # mean over the rows of that domain
                losses.append(jnp.sum(r[task] * w) / jnp.maximum(jnp.sum(w), 1.0))
            else:  # mean over all label ratings of the batch
                sse, n = r[task]
                losses.append(jnp.sum(sse * w) / jnp.maximum(jnp.sum(n * w), 1.0))
        losses = jnp.stack(losses)
        hyper = params["hyper"]
        if self.cfg.phi.task_weighting == "uncertainty":
            total = H.uncertainty_weights(losses, p["log_vars"])
        else:
            sw = hyper["phi.source_weight"]
            total = H.fixed_weights(
                losses, weights=[sw if k.startswith("src") else 1.0 - sw for k in self.tasks]
            )
        align, obj_aux = self.objective.fn(
            jax.lax.stop_gradient(r["z_s"]),
            r["z_t"],
            mask_s=r["use_s"],
            mask_t=r["use_t"],
            paired=True,
            params=p["obj"],
            step=params["step"].astype(jnp.float32),
            total_steps=total_steps,
            cfg=self.cfg,
            key=masks["key"],
            hyper=hyper,
        )
        aux = {**dict(zip(self.tasks, losses, strict=True)), "align": align, **obj_aux}
        return total + hyper["align.weight"] * align, aux

    def _reps(self, params, src, tgt) -> list:
        s = U.gather_rows(params["bags"]["source"], src, max_len=self.spec_s.max_len)
        t = U.gather_rows(params["bags"]["target"], tgt, max_len=self.spec_t.max_len)
        return self.forward(
            params["phi"],
            s,
            t,
            users_s=src,
            users_t=tgt,
            use_s=jnp.any(s[2], axis=1),
            use_t=jnp.any(t[2], axis=1),
        )[2]

    def reps(self, params, src, tgt) -> list:
        """Task representations of evaluation users (src -1: none; cold: empty target bag).

        Rating evaluation passes one row per held-out rating, so a chunk repeats each user many
        times: when a chunk of c rows has at most c // 8 distinct (src, tgt) pairs, the users are
        encoded once each (same values, a fraction of the work), else row by row.
        """
        c = src.shape[0]
        k = c // 8
        if k < 1:
            return self._reps(params, src, tgt)
        order = jnp.lexsort((tgt, src))
        s, t = src[order], tgt[order]
        n_pairs = 1 + jnp.sum((s[1:] != s[:-1]) | (t[1:] != t[:-1]))

        def dedup():
            pairs, inv = jnp.unique(
                jnp.stack([src, tgt], 1), axis=0, size=k, fill_value=-1, return_inverse=True
            )
            return [r[inv.reshape(-1)] for r in self._reps(params, pairs[:, 0], pairs[:, 1])]

        return jax.lax.cond(n_pairs <= k, dedup, lambda: self._reps(params, src, tgt))

    def represent(self) -> Represent:
        """z_s = phi_s(source bag) of source users and z_t = phi_t(target bag) of target users,
        over all their training entries (as scoring reads them)."""

        def side(apply, enc: str, domain: str, spec):
            def fn(params, users):
                rows = U.gather_rows(params["bags"][domain], users, max_len=spec.max_len)
                return apply(params["phi"][enc], *rows, users)

            return fn

        return Represent(
            source=side(self.enc_s[1], "enc_s", "source", self.spec_s),
            target=side(self.enc_t[1], "enc_t", "target", self.spec_t),
            space=f"phi outputs ({self.objective.name}): phi_s(source bag) vs phi_t(target bag)",
        )

    def scorer(self) -> Scorer:
        i_click = self.tasks.index("tgt_click")
        n_items, mu = self.spec_t.n_items, self.spec_t.mu

        def score_all(params, src, tgt):
            o = params["phi"]["out"]["tgt_click"]
            return self.reps(params, src, tgt)[i_click] @ o["w"] + o["b"]

        def score_items(params, src, tgt, items):
            if all_items_pay(items, n_items):
                return jnp.take_along_axis(score_all(params, src, tgt), items, axis=1)
            t = self.reps(params, src, tgt)[i_click]
            return O.click_at(params["phi"]["out"]["tgt_click"], t, items)

        def predict(params, src, tgt, items):
            t = self.reps(params, src, tgt)[self.tasks.index("rating")]
            return O.rating_at(params["phi"]["out"]["rating"], t, mu, items)

        return Scorer(
            score_items=score_items, score_all=score_all, predict=predict if self.explicit else None
        )


# Config keys the phi losses read as traced values (view["hyper"]).
PHI_TRACED = ("phi.source_weight", "align.weight", "align.lam", "align.temperature")


def build_phi(cfg, split, *, objective: str | None = None) -> Built:
    """The phi model trained in one selected stage with alignment `objective`
    (default cfg.align.objective); lr, epochs and batch size from cfg.trainer."""
    model = PhiModel(cfg, split, objective=objective or cfg.align.objective)
    src, tgt = U.joint_rows(split)
    tc = cfg.trainer
    total_steps = tc.epochs * -(-len(src) // min(tc.batch_size, len(src)))
    loss = lambda params, batch, k: model.loss(params, batch, k, total_steps=total_steps)
    stage = selected_stage(
        cfg, name="phi", part="phi", loss=loss, examples={"src": src, "tgt": tgt}
    )
    return Built(
        init=lambda key: {"phi": model.init(key)},
        stages=(stage,),
        scorer=model.scorer(),
        data={"bags": {"source": model.bags_s, "target": model.bags_t}},
        hyper=hyper_init(cfg, PHI_TRACED),
        represent=model.represent(),
    )


@register("phi", traced=PHI_TRACED)
def build_phi_method(cfg, split) -> Built:
    """Multi-task transfer model over phi encoders; alignment from align.objective."""
    return build_phi(cfg, split)


def _forced(name: str, doc: str):
    def build(cfg, split) -> Built:
        return build_phi(cfg, split, objective=name)

    build.__doc__, build.__name__ = doc, f"build_{name}"
    return register(name, traced=PHI_TRACED)(build)


build_dann = _forced("dann", "phi model with DANN alignment (gradient reversal, discriminator).")
build_mmd = _forced("mmd", "phi model with multi-kernel MMD alignment (median bandwidths).")
build_coral = _forced("coral", "phi model with Deep CORAL alignment (covariances).")
build_infonce = _forced("infonce", "phi model with InfoNCE between a user's two vectors.")
