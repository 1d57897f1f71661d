"""Settings are validated when a config is resolved, before any data is read or any program
compiled: each bad value fails with a ConfigError naming the full key, the value and the
allowed range; every registered section's numeric fields are covered by a rule."""

import dataclasses
import math
import types

import jax
import pytest

from tests.faults import TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import ConfigError
from transferjax.train import run as R
from transferjax.train import trainer as trainer_module
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train

CFG = C.RunConfig(
    method="mf",
    data=C.DataConfig(name="synthetic", synthetic=TINY),
    protocol=C.ProtocolConfig(beta=0.3, seed=1),
    trainer=C.TrainerConfig(lr=1e-2, batch_size=64, epochs=1, checkpoint_every=0),
)

CORE_CLASSES = (
    C.RunConfig,
    C.DataConfig,
    C.SyntheticConfig,
    C.ProtocolConfig,
    C.TrainerConfig,
    C.EvalConfig,
)


def _numeric_keys() -> list[tuple[str, type, str]]:
    """(full key, owning class, field name) of every numeric setting of a RunConfig."""

    def walk(cls, prefix):
        out = [(f"{prefix}{n}", cls, n) for n, _ in C._checked_fields(cls)]
        for f in dataclasses.fields(cls):
            t = C._hints(cls).get(f.name)
            if dataclasses.is_dataclass(t):
                out += walk(t, f"{prefix}{f.name}.")
        return out

    keys = walk(C.RunConfig, "")
    for name, cls in sorted(C.sections().items()):
        keys += walk(cls, f"{name}.")
    return keys


def _bad_value(rng: C.Range) -> str:
    """A value just outside `rng` (NaN where the range is unbounded)."""
    if rng.lo is not None:
        return str(int(rng.lo) if rng.lo_open else int(rng.lo) - 1)
    if rng.hi is not None:
        return str(int(rng.hi) + 1)
    return "nan"


def test_every_numeric_field_of_every_section_has_a_rule():
    for cls in (*CORE_CLASSES, *C.sections().values()):
        for name, rng in C._checked_fields(cls):
            assert rng is not None, (
                f"{cls.__name__}.{name} has no allowed range: give it "
                "`setting(default, allowed=...)` or a name that `NAME_RULES` covers"
            )
            default = getattr(cls(), name) if cls is not C.RunConfig else getattr(CFG, name)
            values = default if isinstance(default, tuple) else (default,)
            assert all(rng.contains(v) for v in values), (cls.__name__, name, default)


@pytest.mark.parametrize("key,cls,name", _numeric_keys(), ids=[k for k, _, _ in _numeric_keys()])
def test_each_numeric_setting_rejects_a_value_outside_its_range(key, cls, name):
    rng = C.allowed(cls, name)
    bad = _bad_value(rng)
    with pytest.raises(ConfigError) as e:
        C.apply_overrides(CFG, [f"{key}={bad}"])
    msg = str(e.value)
    assert key in msg and rng.describe() in msg, msg
    assert bad in msg or str(float(bad)) in msg, msg


@pytest.mark.parametrize(
    "override,message",
    [
        ("mf.dim=0", "mf.dim must be an integer >= 1, got 0"),
        # 0 epochs would map untrained factors (EMCDR, PTUPCDR pre-training)
        ("mf.epochs=0", "mf.epochs must be an integer >= 1, got 0"),
        ("trainer.epochs=0", "trainer.epochs must be an integer >= 1, got 0"),
        ("trainer.lr=0", "trainer.lr must be a finite number > 0, got 0.0"),
        ("trainer.lr=-1e-3", "trainer.lr must be a finite number > 0, got -0.001"),
        ("trainer.lr=nan", "trainer.lr must be a finite number > 0, got nan"),
        ("trainer.lr=inf", "trainer.lr must be a finite number > 0, got inf"),
        ("mf.lr=1e400", "mf.lr must be a finite number > 0, got inf"),
        ("trainer.batch_size=-3", "trainer.batch_size must be an integer >= 1, got -3"),
        ("trainer.eval_every=0", "trainer.eval_every must be an integer >= 1, got 0"),
        ("trainer.checkpoint_every=-1", "trainer.checkpoint_every must be an integer >= 0, got -1"),
        ("seeds=0", "seeds must be an integer >= 1, got 0"),
        ("protocol.beta=1", "protocol.beta must be in (0, 1), got 1.0"),
        ("protocol.valid_frac=0", "protocol.valid_frac must be in (0, 1), got 0.0"),
        ("protocol.n_negatives=-5", "protocol.n_negatives must be an integer >= 0, got -5"),
        ("cmf.source_weight=1.5", "cmf.source_weight must be in [0, 1], got 1.5"),
        ("phi.source_weight=-0.1", "phi.source_weight must be in [0, 1], got -0.1"),
        ("eval.ks=0,5", "each element of eval.ks must be an integer >= 1, got (0, 5)"),
        ("eval.ks=", "eval.ks must name at least one value (an integer >= 1), got ()"),
        ("phi.dims=64,0", "each element of phi.dims must be an integer >= 1, got (64, 0)"),
        ("emcdr.hidden=0", "emcdr.hidden must be an integer >= 1, got 0"),
        ("align.disc_hidden=0", "align.disc_hidden must be an integer >= 1, got 0"),
        ("align.temperature=0", "align.temperature must be a finite number > 0, got 0.0"),
        (
            "align.mmd_factors=1,-2",
            "each element of align.mmd_factors must be a finite number > 0, got (1.0, -2.0)",
        ),
        (
            "data.synthetic.density_target=0",
            "data.synthetic.density_target must be in (0, 1], got 0.0",
        ),
        ("data.synthetic.shift_deg=270", "data.synthetic.shift_deg must be in [0, 180], got 270.0"),
    ],
)
def test_bad_setting_names_key_value_and_range(override, message):
    with pytest.raises(ConfigError) as e:
        C.apply_overrides(CFG, [override])
    assert str(e.value) == message


def test_every_way_to_a_config_is_validated(tmp_path, monkeypatch):
    # an experiment file
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from transferjax.config import RunConfig, TrainerConfig\n"
        "def get_config():\n"
        "    return RunConfig(trainer=TrainerConfig(lr=-1.0))\n"
    )
    with pytest.raises(ConfigError, match=r"trainer\.lr must be a finite number > 0, got -1\.0"):
        C.load(str(exp))
    # a config.json read back
    bad = C.to_dict(CFG)
    bad["mf"]["dim"] = 0
    with pytest.raises(ConfigError, match=r"mf\.dim must be an integer >= 1, got 0"):
        C.from_dict(C.RunConfig, bad)
    # dataclasses.replace of a section into a RunConfig
    with pytest.raises(ConfigError, match=r"mf\.epochs must be an integer >= 1, got 0"):
        dataclasses.replace(CFG, mf=dataclasses.replace(CFG.mf, epochs=0))
    # a float where an int belongs, from Python
    with pytest.raises(ConfigError, match=r"trainer\.batch_size must be an integer >= 1, got 8\.5"):
        C.TrainerConfig(batch_size=8.5)
    # a sweep's per-point values, before any folder is made
    from transferjax.train import sweep as S

    out = tmp_path / "sweep"
    with pytest.raises(ConfigError, match=r"trainer\.lr must be a finite number > 0, got -1\.0"):
        S.sweep(CFG, grids=["trainer.lr=1e-2,-1"], out_dir=out, echo=lambda *_: None)
    assert not out.exists()


def test_a_new_methods_section_is_validated_without_code_of_its_own(monkeypatch):
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NewConfig:
        dim: int = 8
        hidden: int = 16
        lr: float = 1e-3
        dropout: float = 0.1
        weight: float = 1.0
        odd_knob: float = 2.0  # no rule: must be finite

    monkeypatch.setitem(C._SECTIONS, "newmethod", NewConfig)
    assert C.apply_overrides(C.RunConfig(), ["newmethod.dropout=0.5"]).newmethod.dropout == 0.5
    for override, text in (
        ("newmethod.dim=0", "newmethod.dim must be an integer >= 1, got 0"),
        ("newmethod.lr=0", "newmethod.lr must be a finite number > 0, got 0.0"),
        ("newmethod.dropout=1", "newmethod.dropout must be in [0, 1), got 1.0"),
        ("newmethod.weight=-1", "newmethod.weight must be a finite number >= 0, got -1.0"),
        ("newmethod.odd_knob=inf", "newmethod.odd_knob must be a finite number, got inf"),
    ):
        with pytest.raises(ConfigError) as e:
            C.apply_overrides(C.RunConfig(), [override])
        assert str(e.value) == text


@pytest.mark.parametrize(
    "overrides,text",
    [
        (["eval.select=ndcg@10"], "eval.select='ndcg@10' is not computed by this run"),
        (
            [
                "protocol.n_negatives=5",
                "eval.ranking=sampled",
                "eval.rating=off",
                "eval.select=rmse",
            ],
            "eval.select='rmse' is not computed",
        ),
        (["eval.select=hr@7"], "eval.select='hr@7' is not computed"),
        (
            ["protocol.n_negatives=5", "eval.ranking=sampled", "eval.ks=1,5"],
            "eval.select=auto chooses 'ndcg@10', which is not computed",
        ),
        (["eval.ranking=sampled"], "eval.ranking=sampled needs sampled negatives"),
        (["eval.ranking=full", "eval.ks=10,50"], "eval.ks=(10, 50)"),
    ],
)
def test_eval_settings_the_protocol_cannot_give_fail_before_training(overrides, text, monkeypatch):
    cfg = C.apply_overrides(CFG, overrides)
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    method = trainer_module.get_method(cfg.method)

    def never_built(*_):
        raise AssertionError("the method was built before the settings were checked")

    fake = types.SimpleNamespace(traced=method.traced, build=never_built)
    monkeypatch.setattr(trainer_module, "get_method", lambda name: fake)
    with pytest.raises(ConfigError) as e:
        make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    assert text in str(e.value), str(e.value)


@pytest.mark.slow
def test_eval_select_choices_are_the_metrics_an_evaluation_returns():
    cfg = C.apply_overrides(CFG, ["protocol.n_negatives=5", "eval.ranking=both", "eval.ks=1,10"])
    sp = build_split(cfg.protocol, build_dataset(cfg.data))
    ev = make_evaluate(cfg, sp)
    with pytest.raises(ConfigError) as e:
        make_train(C.apply_overrides(cfg, ["eval.select=ndcg@5"]), sp, evaluate=ev)
    assert "choose one of: mae, rmse, mrr, hr@1" in str(e.value)
    train = make_train(cfg, sp, evaluate=ev)
    params = {**train.built.init(jax.random.key(0)), "hyper": train.built.hyper}
    got = ev(train.built.scorer, params, "valid", shared=train.built.data)
    produced = {k for k in got if k not in ("n_interactions", "full_n_users")}
    assert produced == set(ev.metric_names())
    assert all(math.isfinite(v) for v in got.values())


def test_run_with_an_unproduced_select_metric_writes_no_metrics(tmp_path):
    cfg = C.apply_overrides(CFG, ["eval.select=ndcg@10"])
    with pytest.raises(ConfigError, match="eval.select='ndcg@10'"):
        R.run(cfg, out_dir=tmp_path / "run", echo=lambda *_: None, progress=False)
    assert not (tmp_path / "run" / "metrics.json").exists()
