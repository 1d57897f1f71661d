"""The README's method example runs as written and matches the built-in target-only MF."""

import pathlib
import re

import jax
import numpy as np
import pytest

from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README has {len(found)} python blocks with {marker!r}"
    return found[0]


def test_readme_method_example_trains_like_builtin_mf():
    exec(_block('@register("my_method"'), {})
    base = C.apply_overrides(
        C.RunConfig(),
        [
            "data.synthetic.n_overlap=200",
            "data.synthetic.n_source_only=50",
            "data.synthetic.n_target_only=50",
            "data.synthetic.n_items_source=80",
            "data.synthetic.n_items_target=60",
            "trainer.epochs=2",
            "trainer.batch_size=128",
        ],
    )
    split = build_split(base.protocol, build_dataset(base.data))
    out = {}
    for method in ("my_method", "mf"):
        cfg = C.override(base, "method", method)
        r = make_train(cfg, split, evaluate=make_evaluate(cfg, split))(jax.random.key(0))
        out[method] = [h["valid"]["rmse"] for h in r.history]
    # Same MF stage, same cold-user fallback (zero factors): the same numbers.
    assert np.all(np.isfinite(out["my_method"])) and len(out["my_method"]) == 2
    np.testing.assert_allclose(out["my_method"], out["mf"], rtol=1e-6)


def test_readme_commands_name_existing_entry_points():
    """Every `transferjax SUB` the docs give is a library subcommand, and every benchmark they
    give is a `python -m benchmarks.NAME` module with a `main(argv=None)`."""
    import importlib

    from transferjax import cli

    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    docs = README.read_text(encoding="utf-8") + (README.parent / "BENCHMARKS.md").read_text(
        encoding="utf-8"
    )
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", docs, re.S))
    used = set(re.findall(r"`transferjax ([a-z]+)\b", docs)) | set(
        re.findall(r"(?:^|&& )transferjax ([a-z]+)\b", shell, re.M)
    )
    assert used and used <= set(sub.choices), used - set(sub.choices)
    assert "python benchmarks/" not in docs
    # full dotted module names, not a placeholder such as benchmarks.NAME or reproduce.NAME
    mods = set(re.findall(r"python -m (benchmarks(?:\.[a-z_]+)+)\b(?!\.)", docs))
    assert {"benchmarks.quality", "benchmarks.speed", "benchmarks.reproduce.ptupcdr"} <= mods
    for name in mods:
        assert callable(importlib.import_module(name).main), name


@pytest.mark.slow
def test_readme_flax_encoder_example_serves_as_phi():
    """The README's Flax self-attention encoder, registered by name, is phi of a dann run."""
    import jax.numpy as jnp
    import pytest

    from tests import view0
    from transferjax.methods.registry import get_method

    pytest.importorskip("flax")
    exec(_block('register_encoder("self_attention"'), {})
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            "method=dann",
            "phi.encoder=self_attention",
            "phi.max_len=20",
            "phi.expert_dim=8",
            "data.synthetic.n_overlap=100",
            "data.synthetic.n_source_only=20",
            "data.synthetic.n_target_only=20",
            "data.synthetic.n_items_source=40",
            "data.synthetic.n_items_target=30",
        ],
    )
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    built = get_method("dann").build(cfg, split)
    stage = built.stages[0]
    batch = {k: jnp.asarray(v[:16]) for k, v in stage.examples.items()}
    batch["mask"] = jnp.ones(16, bool)
    view = view0(built)
    loss, grads = jax.jit(
        jax.value_and_grad(lambda p: stage.loss({**view, "phi": p}, batch, jax.random.key(0))[0])
    )(view["phi"])
    assert np.isfinite(float(loss))
    assert float(jnp.abs(grads["enc_s"]["Embed_0"]["embedding"]).sum()) > 0
