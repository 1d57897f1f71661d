"""The metric writers: TensorBoard event files hold the logged scalars, written without
importing PyTorch, and the JSON-lines log holds the same values."""

import json
import struct
import subprocess
import sys
import textwrap

import pytest


def read_event_scalars(path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in one TFRecord event file."""
    from tensorboardX.proto import event_pb2

    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos : pos + 8])
        ev = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
        pos += 12 + n + 4  # length, its crc, the record, its crc
        out += [(ev.step, v.tag, v.simple_value) for v in ev.summary.value]
    return out


def test_writer_logs_scalars_to_tensorboard_and_jsonl(tmp_path):
    from transferjax.train.writers import make_writer

    w = make_writer(tmp_path)
    w.scalars(3, {"valid/rmse": 0.5, "train/loss": 1.25})
    w.scalars(4, {"valid/rmse": 0.25})
    w.close()
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    want = [(3, "valid/rmse", 0.5), (3, "train/loss", 1.25), (4, "valid/rmse", 0.25)]
    assert read_event_scalars(events) == want
    lines = [json.loads(x) for x in (tmp_path / "scalars.jsonl").read_text().splitlines()]
    assert lines == [
        {"step": 3, "valid/rmse": 0.5, "train/loss": 1.25},
        {"step": 4, "valid/rmse": 0.25},
    ]


@pytest.mark.slow
def test_tensorboard_writer_does_not_import_torch(tmp_path):
    """tensorboardX would import PyTorch (over a second) when installed; the writer hides it
    during the import, and `import torch` still works afterwards."""
    pytest.importorskip("torch")
    code = textwrap.dedent(
        f"""
        import sys
        from transferjax.train.writers import TensorBoardWriter
        w = TensorBoardWriter({str(tmp_path)!r})
        w.scalars(1, {{"a": 1.0}})
        w.close()
        assert "tensorboardX" in sys.modules
        assert "torch" not in sys.modules, "tensorboardX imported torch"
        import torch
        print(torch.ones(2).sum().item())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2.0"
    (events,) = tmp_path.glob("events.out.tfevents.*")
    assert read_event_scalars(events) == [(1, "a", 1.0)]
