"""The speed suite's PyTorch reference (`benchmarks.dann_torch`) computes the registered `dann`
method's step: given the same params, batch and random masks (cold rows, input/label split),
the same loss and the same gradients, in both of its first-layer forms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import view0
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.phi import PhiConfig
from transferjax.methods.phi import model as PM
from transferjax.methods.registry import get_method

torch = pytest.importorskip("torch")  # the test extra installs torch==2.13.0

SYN = C.SyntheticConfig(
    n_overlap=80,
    n_source_only=20,
    n_target_only=20,
    n_items_source=40,
    n_items_target=30,
    density_source=0.2,
    density_target=0.15,
    seed=1,
)


@pytest.fixture(scope="module", params=[False, True], ids=["explicit", "implicit"])
def case(request):
    syn = dataclasses.replace(SYN, implicit=request.param)
    cfg = C.RunConfig(
        method="dann",
        data=C.DataConfig(name="synthetic", synthetic=syn),
        protocol=C.ProtocolConfig(beta=0.3, seed=0),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=32, epochs=2),
        phi=PhiConfig(dims=(8, 6), expert_dim=8),
    )
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    return cfg, split, get_method("dann").build(cfg, split)


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k2: v for k, t in tree.items() for k2, v in _flat(t, f"{prefix}{k}/").items()}
    if isinstance(tree, list | tuple):
        return {k2: v for i, t in enumerate(tree) for k2, v in _flat(t, f"{prefix}{i}/").items()}
    return {prefix[:-1]: tree}


@pytest.mark.slow
def test_torch_reference_has_the_loss_and_gradients_of_the_dann_step(case):
    from benchmarks.dann_torch import TorchDann, entries, split

    cfg, data, built = case
    stage = built.stages[0]
    model = PM.PhiModel(cfg, data, objective="dann")
    n_rows = len(stage.examples["src"])
    total = cfg.trainer.epochs * -(-n_rows // cfg.trainer.batch_size)
    view = {**view0(built), "step": jnp.asarray(37, jnp.int32)}  # GRL strength > 0
    batch = {k: jnp.asarray(v[:32]) for k, v in stage.examples.items()}
    batch["mask"] = jnp.arange(32) < 28  # a padded tail
    key = jax.random.key(5)
    s_rows, t_rows, has_s, has_t = model.rows(view, batch)
    masks = model.draw_masks(key, s_rows[2], t_rows[2], has_s, has_t)
    assert bool(masks["cold"].any()) and bool(masks["s_lab"].any())

    # the registered method's stage loss is this loss with the masks drawn from its key
    def loss(p):
        return model.loss_from_masks({**view, "phi": p}, batch, masks, total_steps=total)[0]

    stage_loss = jax.jit(lambda v: stage.loss(v, batch, key)[0])(view)
    want, grads = jax.jit(jax.value_and_grad(loss))(view["phi"])
    np.testing.assert_allclose(stage_loss, want, rtol=1e-6)
    grads = {k: np.asarray(v) for k, v in _flat(grads).items()}
    assert np.abs(grads["enc_t/emb"]).sum() > 0 and np.abs(grads["obj/0/w"]).sum() > 0

    live = np.asarray(batch["mask"])
    users = {
        d: torch.as_tensor(np.where(live, np.asarray(batch[d]), -1)).long() for d in ("src", "tgt")
    }
    flat = lambda m, rows: torch.as_tensor(np.asarray(m)[np.asarray(rows[2])])  # noqa: E731
    for form in ("dense", "bag"):
        net = TorchDann(model, jax.device_get(view["phi"]), form=form)
        bags = {
            d: {k: torch.as_tensor(np.array(v)) for k, v in b.items()}
            for d, b in (("s", view["bags"]["source"]), ("t", view["bags"]["target"]))
        }
        for b in bags.values():
            b["start"], b["length"] = b["start"].long(), b["length"].long()
        ent = {
            "s": split(entries(bags["s"], users["src"]), flat(masks["s_in"], s_rows)),
            "t": split(
                entries(bags["t"], users["tgt"]),
                flat(masks["t_in"], t_rows),
                torch.from_numpy(np.array(masks["cold"])),  # a writable copy
            ),
        }
        got = net.loss(ent, users["src"] >= 0, users["tgt"] >= 0, 37, total_steps=total)
        np.testing.assert_allclose(float(got.detach()), float(want), rtol=1e-5, err_msg=form)
        got.backward()
        for name, g in grads.items():
            tg = net.w(name).grad
            tg = np.zeros_like(g) if tg is None else tg.numpy()
            scale = max(float(np.abs(g).max()), 1e-6)
            np.testing.assert_allclose(
                tg, g, rtol=1e-4, atol=2e-5 * scale, err_msg=f"{form}: {name}"
            )
