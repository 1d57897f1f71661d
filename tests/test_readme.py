"""The README's method example runs as written and matches the built-in target-only MF."""

import pathlib
import re

import jax
import numpy as np

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
