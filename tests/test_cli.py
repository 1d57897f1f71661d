"""The real CLI end to end: run folder contents, error messages, data describe."""

import json
import subprocess
import sys

import pytest

from transferjax import cli

EXP = "experiments/synthetic_emcdr.py"


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "transferjax.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def repo_root():
    import pathlib

    return pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_writes_run_folder(tmp_path, repo_root):
    out = tmp_path / "run"
    p = _run("run", EXP, "--quick", "--set", "trainer.epochs=2", "--out", str(out), cwd=repo_root)
    assert p.returncode == 0, p.stderr
    assert "selected stage=" in p.stdout and "test" in p.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["trainer"]["epochs"] == 2 and cfg["method"] == "emcdr"
    m = json.loads((out / "metrics.json").read_text())
    assert m["select_metric"] == "rmse"
    assert len(m["history"]) == 2  # one evaluation per mapping epoch
    for entry in m["history"]:  # test once, at the selected evaluation (eval.curves=select)
        assert set(entry["valid"]) >= {"mae", "rmse"}
        assert ("test" in entry) == (entry is m["history"][m["selected"]["index"]])
    assert set(m["selected"]["test"]) >= {"mae", "rmse"}
    sel = m["selected"]
    assert sel == {"index": sel["index"], **m["history"][sel["index"]]}
    assert list((out / "tb").glob("events.out.tfevents.*"))
    lines = (out / "scalars.jsonl").read_text().splitlines()
    assert any("valid/rmse" in json.loads(x) for x in lines)


def test_unknown_key_and_bad_value_fail_clearly(tmp_path, repo_root, capsys):
    assert cli.main(["run", str(repo_root / EXP), "--set", "trainer.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'trainer.lrr'" in err and "lr" in err
    assert cli.main(["run", str(repo_root / EXP), "--set", "method=nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "emcdr" in err


def test_data_describe_synthetic(capsys):
    assert cli.main(["data", "describe", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "source" in out and "target" in out and "valid" in out and "test" in out


def test_library_cli_has_no_benchmark_command(capsys):
    """The installed CLI is `run | sweep | report | diagnose | data | methods`; the benchmarks
    live in the checkout's benchmarks/ folder (`python -m benchmarks.quality`, `python -m
    benchmarks.speed`)."""
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {"run", "sweep", "report", "diagnose", "data", "methods"}
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "quality"])
    assert e.value.code == 2 and "invalid choice: 'bench'" in capsys.readouterr().err
