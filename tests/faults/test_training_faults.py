"""Divergence is caught: a non-finite loss or a non-finite/absurd metric stops the stage with a
DivergenceError naming the method, stage, epoch, trial and learning-rate key
(`trainer.on_nonfinite=raise`), or marks only that trial failed (`fail`) in metrics.json, the
summary, sweeps and reports; no NaN is ever selected or written as a normal result."""

import csv
import dataclasses
import hashlib
import io
import json
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.faults import TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import ConfigError, DivergenceError, RunFolderError
from transferjax.methods.mf import MFConfig
from transferjax.reports import collect_runs, report_main, summarize, to_csv, to_markdown
from transferjax.train import run as R
from transferjax.train.divergence import (
    divergence_message,
    loss_problem,
    metric_problem,
    rating_bound,
)
from transferjax.train.evaluate import make_evaluate
from transferjax.train.result import select_best
from transferjax.train.trainer import make_train

CFG = C.RunConfig(
    method="mf",
    data=C.DataConfig(name="synthetic", synthetic=TINY),
    protocol=C.ProtocolConfig(beta=0.3, seed=1),
    trainer=C.TrainerConfig(lr=1e-2, batch_size=64, epochs=2, checkpoint_every=0),
    mf=MFConfig(dim=4, epochs=1, batch_size=128),
)
QUIET = dict(echo=lambda *_: None, progress=False)


@pytest.fixture(scope="module")
def split():
    return build_split(CFG.protocol, build_dataset(CFG.data))


def _train(cfg, split, keys=None, trials=None, **kw):
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split), trials=trials, **kw)
    return train(jax.random.key(0) if keys is None else keys)


def _no_nan_json(path: pathlib.Path):
    """Parses JSON refusing NaN/Infinity (which json.dump writes for non-finite floats)."""

    def refuse(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


# --- the rules, as pure functions --------------------------------------------------------------


@pytest.mark.parametrize(
    "history,metric,expected",
    [
        ([{"rmse": 1.0}, {"rmse": math.nan}, {"rmse": 0.9}], "rmse", 2),
        ([{"rmse": math.inf}, {"rmse": 1.1}], "rmse", 1),
        ([{"rmse": -math.inf}, {"rmse": 1.1}], "rmse", 1),  # -inf is no best error
        ([{"ndcg@10": math.inf}, {"ndcg@10": 0.2}], "ndcg@10", 1),
        ([{"ndcg@10": 0.3}, {"ndcg@10": math.nan}], "ndcg@10", 0),
    ],
)
def test_select_best_never_picks_a_non_finite_metric(history, metric, expected):
    assert select_best(history, metric) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_select_best_with_nothing_finite_is_a_divergence(bad):
    with pytest.raises(DivergenceError, match="no evaluation has a finite valid rmse"):
        select_best([{"rmse": bad}, {"rmse": bad}], "rmse")


@pytest.mark.parametrize(
    "metrics,expected",
    [
        ({"rmse": 0.9, "mae": 0.7}, None),
        ({"rmse": 3999.0}, None),  # below 1e3 x (5 - 1)
        ({"rmse": 6.8e13}, "valid rmse = 6.8e+13 exceeds 4000 (1000 x the rating range)"),
        ({"mae": math.inf}, "valid mae is inf"),
        ({"ndcg@10": math.nan}, "valid ndcg@10 is nan"),
    ],
)
def test_metric_rule(metrics, expected):
    assert metric_problem(metrics, bound=4000.0, split="valid") == expected


@pytest.mark.parametrize(
    "kw,expected",
    [
        (
            dict(stage="target_mf", epoch=3, trial="seed 2", setting="trainer.lr", value=0.5),
            "method 'mf' diverged in stage 'target_mf' at epoch 3 (seed 2): R; "
            "lower trainer.lr (now 0.5)",
        ),
        (
            dict(stage="mapping", epoch=1, trial="", setting="trainer.lr", earlier=("mf.lr",)),
            "method 'mf' diverged in stage 'mapping' at epoch 1: R; "
            "lower trainer.lr (or mf.lr, the earlier stages' rate)",
        ),
        (
            dict(stage="final", epoch=0, trial="", setting=None),
            "method 'mf' diverged in stage 'final' at epoch 0: R; check the input data's ratings",
        ),
    ],
)
def test_divergence_message(kw, expected):
    assert divergence_message(method="mf", reason="R", **kw) == expected


def test_loss_rule_and_rating_bound(split):
    assert loss_problem({"loss": 0.5}) is None
    assert loss_problem({"loss": math.nan}) == "training loss is nan"
    assert loss_problem({"loss": math.inf, "mse": 1.0}) == "training loss is inf"
    r = split.target_train.rating
    assert rating_bound(split) == 1e3 * max(float(r.max() - r.min()), 1.0)


# --- the trainer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,overrides,stage,setting,why",
    [
        # today exits 0 with NaN in metrics.json
        ("mf", ["trainer.optimizer=sgd", "trainer.lr=1e6"], "target_mf", "trainer.lr", "is nan"),
        # Adam at that rate: a finite loss and an RMSE of ~1e13, caught by the absurd-metric rule
        ("mf", ["trainer.lr=1e6"], "target_mf", "trainer.lr", r"\(1000 x the rating range\)"),
        # EMCDR's pre-training runs at mf.lr, its mapping at trainer.lr
        pytest.param(
            "emcdr", ["mf.lr=1e30"], "source_mf", "mf.lr", "loss is", marks=pytest.mark.slow
        ),
        pytest.param(
            "emcdr",
            ["trainer.optimizer=sgd", "trainer.lr=1e30"],
            "mapping",
            "trainer.lr",
            "training loss is|valid (rmse|mae)",
            marks=pytest.mark.slow,
        ),
    ],
)
@pytest.mark.slow
def test_divergence_names_method_stage_epoch_and_setting(
    split, method, overrides, stage, setting, why
):
    cfg = C.apply_overrides(CFG, [f"method={method}", *overrides])
    with pytest.raises(DivergenceError) as e:
        _train(cfg, split)
    msg = str(e.value)
    assert f"method '{method}' diverged in stage '{stage}' at epoch 1" in msg, msg
    assert f"lower {setting} (now " in msg and re.search(why, msg), msg
    assert "trainer.on_nonfinite=fail" in msg, msg


def _with_valid_rating(split, value):
    """`split` with one cold-valid rating replaced by `value` (3e38: an overflowing error)."""
    rating = np.array(split.valid.rating, copy=True)
    rating[0] = value
    return dataclasses.replace(split, valid=dataclasses.replace(split.valid, rating=rating))


@pytest.mark.parametrize(
    "method,stage,epoch,hint",
    [
        ("mf", "target_mf", 1, "lower trainer.lr"),
        ("item_mean", "final", 0, "check the input data's ratings"),  # closed form: no training
    ],
)
def test_an_infinite_valid_metric_is_a_divergence_not_a_selected_epoch(
    split, method, stage, epoch, hint
):
    bad = _with_valid_rating(split, 3e38)
    cfg = C.apply_overrides(CFG, [f"method={method}"])
    with pytest.raises(DivergenceError) as e:
        _train(cfg, bad)
    msg = str(e.value)
    assert f"diverged in stage '{stage}' at epoch {epoch}" in msg and "valid" in msg, msg
    assert "is inf" in msg and hint in msg, msg


@pytest.mark.slow
def test_vmapped_trials_raise_naming_the_trial(split, tmp_path):
    cfg = C.apply_overrides(CFG, ["trainer.optimizer=sgd"])
    with pytest.raises(DivergenceError) as e:
        R.train_seeds(
            cfg,
            split,
            out=tmp_path,
            writer=_NullWriter(),
            trials=[{"trainer.lr": 1e-2}, {"trainer.lr": 1e6}],
        )
    msg = str(e.value)
    assert "(trial 1 (trainer.lr=1e+06), seed 0)" in msg and "at epoch 1" in msg, msg


def test_under_fail_only_the_diverging_trial_fails(split):
    cfg = C.apply_overrides(CFG, ["trainer.optimizer=sgd", "trainer.on_nonfinite=fail"])
    trials = [{"trainer.lr": 1e-2}, {"trainer.lr": 1e6}]
    ok, bad = _train(cfg, split, keys=jnp.stack([jax.random.key(0)] * 2), trials=trials)
    assert ok.status == "ok" and ok.failure is None and ok.selected is not None
    assert len(ok.history) == cfg.trainer.epochs
    assert all(math.isfinite(v) for h in ok.history for v in h["valid"].values())
    assert bad.status == "failed" and bad.selected is None and bad.best is None
    assert bad.failure["stage"] == "target_mf" and bad.failure["epoch"] == 1
    assert bad.failure["setting"] == "trainer.lr" and "trial 1" in bad.failure["message"]
    assert bad.history == []  # no non-finite evaluation is kept


class _NullWriter:
    def scalars(self, step, values):
        pass

    def close(self):
        pass


# --- run folders, sweeps, reports -------------------------------------------------------------


def test_run_under_fail_writes_failed_status_then_raises(tmp_path):
    cfg = C.apply_overrides(
        CFG, ["trainer.optimizer=sgd", "trainer.lr=1e6", "trainer.on_nonfinite=fail"]
    )
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as e:
        R.run(cfg, out_dir=out, **QUIET)
    assert "1 of 1 seeds failed" in str(e.value) and "metrics.json" in str(e.value)
    assert "stage 'target_mf' at epoch 1" in str(e.value)
    metrics = _no_nan_json(out / "metrics.json")
    assert metrics["status"] == "failed" and metrics["selected"] is None
    assert metrics["failure"]["setting"] == "trainer.lr" and metrics["failure"]["epoch"] == 1
    assert "FAILED: method 'mf' diverged" in (out / "summary.txt").read_text()
    (rec,) = collect_runs(out)
    assert rec.excluded and rec.status == "failed" and "training loss is nan" in rec.problem


def test_run_under_raise_writes_no_result(tmp_path):
    cfg = C.apply_overrides(CFG, ["trainer.optimizer=sgd", "trainer.lr=1e6"])
    with pytest.raises(DivergenceError, match="stage 'target_mf' at epoch 1"):
        R.run(cfg, out_dir=tmp_path / "run", **QUIET)
    assert not (tmp_path / "run" / "metrics.json").exists()


def _digest(folder: pathlib.Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    R.run(C.apply_overrides(CFG, ["trainer.epochs=1"]), out_dir=out, **QUIET)
    return out


@pytest.mark.parametrize(
    "overrides,error,text",
    [
        (["trainer.optimizer=sgd", "trainer.lr=1e6"], RunFolderError, "different config"),
        (["trainer.lr=1e6", "trainer.on_nonfinite=fail"], RunFolderError, "different config"),
        (["trainer.lr=-1"], ConfigError, "trainer.lr must be a finite number > 0, got -1.0"),
        (["eval.select=ndcg@10"], RunFolderError, "different config"),
    ],
)
def test_a_failed_rerun_leaves_a_finished_folder_byte_identical(finished, overrides, error, text):
    before = _digest(finished)
    with pytest.raises(error, match=text):
        cfg = C.apply_overrides(CFG, ["trainer.epochs=1", *overrides])
        R.run(cfg, out_dir=finished, **QUIET)
    assert _digest(finished) == before


def test_a_diverging_point_of_a_vmapped_sweep_fails_alone(tmp_path):
    from transferjax.train import sweep as S

    cfg = C.apply_overrides(CFG, ["trainer.optimizer=sgd"])
    rep = S.sweep(cfg, grids=["trainer.lr=1e-2,1e6"], out_dir=tmp_path, echo=lambda *_: None)
    assert sorted(q.name for q in tmp_path.glob("group-*")) == ["group-000"]  # one program
    ok, bad = rep["points"]
    assert ok["status"] == "ok" and math.isfinite(ok["valid"])
    assert bad["status"] == "failed" and bad["valid"] is None
    assert "stage 'target_mf' at epoch 1" in bad["failure"] and "trainer.lr" in bad["failure"]
    assert rep["chosen"]["index"] == 0
    assert _no_nan_json(tmp_path / "point-001" / "metrics.json")["status"] == "failed"
    _no_nan_json(tmp_path / "sweep.json")
    with pytest.raises(DivergenceError, match="every one of the 1 sweep points diverged"):
        S.sweep(cfg, grids=["trainer.lr=1e6"], out_dir=tmp_path / "all", echo=lambda *_: None)
    assert json.loads((tmp_path / "all" / "sweep.json").read_text())["chosen"] is None


def _write(folder, *, method, seed, rmse, status="ok"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": method, "seed": seed}))
    entry = {
        "method": method,
        "dataset": "synthetic",
        "protocol": "warm_ratio",
        "seed": seed,
        "status": status,
        "selected": {"valid": {"rmse": rmse}, "test": {"rmse": rmse}},
    }
    if status == "failed":
        entry["selected"] = None
    if status == "failed":
        entry["failure"] = {"reason": "training loss is nan", "stage": "target_mf", "epoch": 1}
    (folder / "metrics.json").write_text(json.dumps(entry))  # NaN is written as NaN


@pytest.mark.parametrize(
    "bad",
    [
        dict(rmse=math.nan),  # written before divergence was detected
        dict(rmse=math.inf),
        dict(rmse=None, status="failed"),
    ],
)
def test_report_leaves_failed_and_non_finite_seeds_out_of_the_means(tmp_path, bad):
    for seed, v in enumerate((0.9, 1.1)):
        _write(tmp_path / "runs" / f"mf-{seed}", method="mf", seed=seed, rmse=v)
    _write(tmp_path / "runs" / "mf-2", method="mf", seed=2, **bad)
    with pytest.warns(UserWarning, match=r"1 seeds left out of the means.*mf-2 \(seed 2\)"):
        written = report_main(tmp_path / "runs", out_dir=tmp_path / "rep", fmt="md,csv")
    (table,) = summarize(collect_runs(tmp_path / "runs"))
    cell = table.cells[("mf", "rmse")]
    assert cell.n == 2 and cell.mean == pytest.approx(1.0)
    md = to_markdown([table])
    assert "| mf (baseline)\u2021 |" in md and "seeds left out of the means" in md
    assert "mf seed 2" in md and "mf-2" in md
    assert to_csv([table]).splitlines()[1].endswith(",1")  # n_excluded
    report = written["report.md"].read_text()
    assert "## Excluded from the means" in report and "mf-2" in report
    (row,) = csv.DictReader(io.StringIO(written["results.csv"].read_text()))
    assert float(row["mean"]) == pytest.approx(1.0) and row["n"] == "2" and row["n_excluded"] == "1"
