"""Config overrides: types, choices, unknown keys, round trip."""

import dataclasses

import pytest

from transferjax import config as C


def test_override_parses_by_field_type():
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            "trainer.lr=0.05",
            "trainer.epochs=7",
            "mf.loss=bpr",
            "eval.ks=1,5",
            "method=mf",
            "data.synthetic.implicit=true",
            "data.synthetic.shift_deg=45",
        ],
    )
    assert cfg.trainer.lr == 0.05 and isinstance(cfg.trainer.lr, float)
    assert cfg.trainer.epochs == 7 and isinstance(cfg.trainer.epochs, int)
    assert cfg.mf.loss == "bpr"
    assert cfg.eval.ks == (1, 5)
    assert cfg.method == "mf"
    assert cfg.data.synthetic.implicit is True
    assert cfg.data.synthetic.shift_deg == 45.0
    # the original is untouched (frozen dataclasses)
    assert C.RunConfig().trainer.lr != 0.05


def test_unknown_key_lists_valid_keys():
    with pytest.raises(C.ConfigError, match=r"unknown config key 'trainer.lrr'.*lr"):
        C.apply_overrides(C.RunConfig(), ["trainer.lrr=0.1"])
    with pytest.raises(C.ConfigError, match=r"unknown config key 'trainr.lr'.*trainer"):
        C.apply_overrides(C.RunConfig(), ["trainr.lr=0.1"])


def test_bad_values_are_rejected_with_choices():
    with pytest.raises(C.ConfigError, match=r"choose one of \['adam'"):
        C.apply_overrides(C.RunConfig(), ["trainer.optimizer=adamx"])
    with pytest.raises(C.ConfigError, match="not a valid int"):
        C.apply_overrides(C.RunConfig(), ["trainer.epochs=many"])
    with pytest.raises(C.ConfigError, match="beta must be in"):
        C.apply_overrides(C.RunConfig(), ["protocol.beta=1.5"])
    with pytest.raises(C.ConfigError, match="is a section"):
        C.apply_overrides(C.RunConfig(), ["trainer=3"])
    with pytest.raises(C.ConfigError, match="key=value"):
        C.apply_overrides(C.RunConfig(), ["trainer.lr"])


def test_dict_round_trip_and_flatten():
    cfg = C.apply_overrides(C.RunConfig(), ["eval.ks=3,7", "trainer.lr=0.2"])
    back = C.from_dict(C.RunConfig, C.to_dict(cfg))
    assert back == cfg
    flat = C.flatten(cfg)
    assert flat["trainer.lr"] == 0.2 and flat["data.synthetic.seed"] == 0
    with pytest.raises(C.ConfigError, match="unknown keys"):
        C.from_dict(C.RunConfig, {**C.to_dict(cfg), "bogus": 1})


def test_configs_are_frozen_keyword_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        C.RunConfig().name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        C.TrainerConfig(0.1)  # type: ignore[misc]


def test_experiment_files_load(tmp_path):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "experiments"
    files = sorted(root.glob("*.py"))
    assert files
    for f in files:
        cfg = C.load(str(f))
        assert isinstance(cfg, C.RunConfig)
        assert C.load(str(f), quick=True).trainer.epochs <= cfg.trainer.epochs
    with pytest.raises(C.ConfigError, match="not found"):
        C.load(str(tmp_path / "nope.py"))


def test_same_config_accepts_a_folder_written_before_a_field_was_added():
    cfg = C.apply_overrides(C.RunConfig(), ["trainer.lr=0.05", "method=emcdr"])
    stored = C.to_dict(cfg)
    assert C.same_config(stored, cfg)
    del stored["align"]["temperature"]  # as if written before the field existed
    assert C.same_config(stored, cfg)
    assert not C.same_config(stored, C.override(cfg, "align.temperature", "0.5"))
    assert not C.same_config({**C.to_dict(cfg), "gone": 1}, cfg)  # a removed field
    assert not C.same_config(C.to_dict(C.override(cfg, "trainer.lr", "0.1")), cfg)
