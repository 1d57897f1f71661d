"""diagnostics.log=on: the shift diagnostics of every evaluation, in the history and the log,
without changing any metric."""

import jax
import numpy as np
import pytest

from tests.diagnostics.test_shift import _tiny
from transferjax import diagnostics as D
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train


@pytest.mark.slow
def test_logging_diagnostics_while_training_changes_no_metric():
    """diagnostics.log=on adds a "diagnostics" entry to each evaluation and logs it as
    diagnostics/<measure>; the metrics are those of the default (off)."""
    runs = {}
    for log in ("off", "on"):
        cfg, split = _tiny("emcdr", f"diagnostics.log={log}", "diagnostics.max_users=40")
        logged = []
        train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
        r = train(jax.random.key(0), log=lambda step, scalars, out=logged: out.append(scalars))
        runs[log] = (r.history, logged)
    off, on = runs["off"][0], runs["on"][0]
    assert len(on) == len(off) == 2
    for a, b in zip(off, on):
        assert a["valid"] == b["valid"] and a.get("test") == b.get("test")
        assert a["train"] == b["train"]
        assert "diagnostics" not in a
        assert set(b["diagnostics"]) == set(D.MEASURES)
        assert all(np.isfinite(v) for v in b["diagnostics"].values())
    keys = {k for s in runs["on"][1] for k in s}
    assert {f"diagnostics/{m}" for m in D.MEASURES} <= keys
    assert not any(k.startswith("diagnostics/") for s in runs["off"][1] for k in s)
