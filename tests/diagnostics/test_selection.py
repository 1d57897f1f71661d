"""Validators in runs and sweeps: which are computed, the held-out warm users, selection by
`eval.select=unsup/<name>` in its direction, and errors that name the setting."""

import json

import numpy as np
import pytest

from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.diagnostics import selection
from transferjax.errors import ConfigError
from transferjax.train.run import run
from transferjax.train.sweep import sweep

TINY = [
    "data.synthetic.n_overlap=80",
    "data.synthetic.n_source_only=20",
    "data.synthetic.n_target_only=20",
    "data.synthetic.n_items_source=40",
    "data.synthetic.n_items_target=30",
    "data.synthetic.density_source=0.2",
    "data.synthetic.density_target=0.15",
    "mf.dim=4",
    "trainer.checkpoint_every=0",
    "trainer.epochs=3",
    "mf.epochs=2",
]


def _cfg(*sets):
    return C.apply_overrides(C.load("experiments/synthetic_emcdr.py"), [*TINY, *sets])


def test_requested_names_all_typos_and_methods_without_vectors():
    assert selection.requested(_cfg()) == ()
    assert selection.requested(_cfg("eval.validators=all")) == selection.V.NAMES
    got = selection.requested(_cfg("eval.validators=all"), represent=False)
    assert "dev" not in got and "snd" in got
    assert selection.requested(_cfg("eval.validators=unsup/snd,im", "eval.select=unsup/dev")) == (
        "dev",
        "im",
        "snd",
    )
    with pytest.raises(ConfigError, match=r"eval.validators.*'devv'.*source_risk, dev"):
        selection.requested(_cfg("eval.validators=devv"))
    with pytest.raises(ConfigError, match=r"eval.select asks for the 'dev' validator.*'emcdr'"):
        selection.requested(_cfg("eval.select=unsup/dev"), represent=False)


def test_carve_holdout_moves_whole_warm_users_out_of_training():
    cfg = _cfg()
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    out, held = selection.carve_holdout(split, frac=0.25, seed=0, n_negatives=5)
    users = held.pairs[:, 1]
    assert len(users) == round(0.25 * len(split.warm_pairs)) and len(held) >= 2
    assert not np.isin(out.target_train.user, users).any()
    assert not np.isin(out.warm_pairs[:, 1], users).any()
    assert len(out.warm_pairs) + len(users) == len(split.warm_pairs)
    assert len(out.target_train) + len(held) == len(split.target_train)
    assert not np.isin(users, split.valid.pairs[:, 1]).any()
    # each held-out row is one of its user's training rows; no negative is a positive
    tt = split.target_train
    seen = set(zip(tt.user.tolist(), tt.item.tolist(), strict=True))
    assert all((u, i) in seen for u, i in zip(held.target_user, held.item, strict=True))
    pos = {(u, i) for u, i in zip(held.target_user, held.item, strict=True)}
    for u, negs in zip(held.target_user, held.negatives, strict=True):
        assert not any((u, int(n)) in pos for n in negs)
    with pytest.raises(ConfigError, match="validators.holdout"):
        selection.carve_holdout(split, frac=0.001, seed=0, n_negatives=None)


@pytest.mark.slow
def test_a_run_selects_by_a_validator_in_its_direction(tmp_path):
    m = run(
        _cfg("eval.validators=all", "eval.select=unsup/im"),
        out_dir=tmp_path / "r",
        echo=lambda *_: None,
        progress=False,
    )
    hist = [h["valid"] for h in m["history"]]
    names = [f"unsup/{n}" for n in selection.V.NAMES]
    assert all(set(names) <= set(h) and np.isfinite([h[k] for k in names]).all() for h in hist)
    assert m["select_metric"] == "unsup/im"
    assert m["selected"]["index"] == int(np.argmax([h["unsup/im"] for h in hist]))
    assert (
        json.loads((tmp_path / "r" / "manifest.json").read_text())["config"]["eval"]["validators"]
        == "all"
    )


def test_select_errors_name_the_setting(tmp_path):
    kw = {"echo": lambda *_: None, "progress": False}
    with pytest.raises(ConfigError, match=r"eval.select='unsup/dve'.*unsup/dev"):
        run(_cfg("eval.select=unsup/dve"), out_dir=tmp_path / "a", **kw)
    with pytest.raises(ConfigError, match=r"eval.select asks for the 'dev' validator.*'mf'"):
        run(_cfg("method=mf", "eval.select=unsup/dev"), out_dir=tmp_path / "b", **kw)
    with pytest.raises(ConfigError, match="eval.validators"):
        run(_cfg("eval.validators=snd,bogus"), out_dir=tmp_path / "c", **kw)


@pytest.mark.slow
def test_a_sweep_chooses_by_a_validator(tmp_path):
    got = sweep(
        _cfg("eval.select=unsup/source_risk"),
        grids=["trainer.lr=1e-3,3e-2"],
        out_dir=tmp_path / "s",
        echo=lambda *_: None,
    )
    vals = [p["valid"] for p in got["points"]]
    assert "unsup/source_risk" in got["select_metric"]
    assert got["chosen"]["index"] == int(np.argmin(vals))


@pytest.mark.slow
def test_ranking_runs_read_the_sampled_ndcg_loss(tmp_path):
    cfg = _cfg(
        "data.synthetic.implicit=true",
        "protocol.n_negatives=10",
        "eval.ranking=sampled",
        "eval.validators=source_risk,dev",
        "validators.n_negatives=5",
    )
    assert selection.ranks_by_loss(cfg, build_split(cfg.protocol, build_dataset(cfg.data)))
    m = run(cfg, out_dir=tmp_path / "r", echo=lambda *_: None, progress=False)
    for h in m["history"]:
        assert 0.0 <= h["valid"]["unsup/source_risk"] < 1.0
        assert np.isfinite(h["valid"]["unsup/dev"]) and "unsup/im" not in h["valid"]
