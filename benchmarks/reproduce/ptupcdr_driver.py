"""Runs PTUPCDR's official code (easezyc/WSDM2022-PTUPCDR) on an exported split.

Not part of transferjax and never imported by it: `python -m benchmarks.reproduce.ptupcdr`
copies this file into its scratch checkout of the official code and runs it there, in a
virtual environment with PyTorch and pandas. The official files stay unmodified on disk; this
driver applies the run-time patches listed in `benchmarks.reproduce.ptupcdr.PATCHES`:

  1. tensorflow: the official run.py imports it only for
     `keras.preprocessing.sequence.pad_sequences`; a module "tensorflow" with a NumPy
     `pad_sequences` of the same semantics (int32, value 0, truncating "pre", padding as asked)
     is put in sys.modules first.
  2. config: the task given by --task (default "douban") is added to config.json's
     `src_tgt_pairs` in memory (uid / iid counts from the export, task 1's batch sizes).
  3. valid set: `Run.get_data` also reads `valid.csv` (our cold-valid users) into a list of
     batches (no DataLoader, so the global torch RNG, which orders the training batches, is
     not touched).
  4. logging: `Run.eval_mae`, when called on the test set, also evaluates that valid list with
     the same `eval_mae` and writes one JSON line per evaluation (stage, epoch, valid and test
     MAE/RMSE, wall time since the data was read); `Run.train` logs each epoch's wall time;
     `Run.main` logs the official `results` (best test MAE and RMSE over epochs, each on its
     own) at the end.

    python ptupcdr_driver.py --log LOG.jsonl --task-json TASK.json [--threads 1] \
        [--required-patches-only] --task douban --seed 0 --epoch 10 --lr 0.01
        # the arguments after the driver's own go to the official entry.prepare
"""

import argparse
import importlib.machinery
import json
import sys
import time
import types

import numpy as np


def pad_sequences(
    sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0
):
    """keras.preprocessing.sequence.pad_sequences for lists of ints (patch 1)."""
    seqs = [list(s) for s in sequences]
    if maxlen is None:
        maxlen = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), maxlen), value, dtype=dtype)
    for i, s in enumerate(seqs):
        if not s:
            continue
        s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if padding == "post":
            out[i, : len(s)] = s
        else:
            out[i, -len(s) :] = s
    return out


_tf = types.ModuleType("tensorflow")
_tf.__spec__ = importlib.machinery.ModuleSpec("tensorflow", None)  # torch._dynamo looks it up
_tf.keras = types.SimpleNamespace(
    preprocessing=types.SimpleNamespace(sequence=types.SimpleNamespace(pad_sequences=pad_sequences))
)
sys.modules["tensorflow"] = _tf

import entry  # noqa: E402  (the official entry.py: argument parsing and seeding)
import run as official  # noqa: E402  (the official run.py)
import torch  # noqa: E402

T0 = [time.perf_counter()]
LOG = []


def log(**rec):
    rec["t"] = time.perf_counter() - T0[0]
    LOG[0].write(json.dumps(rec) + "\n")
    LOG[0].flush()


_get_data = official.Run.get_data
_eval_mae = official.Run.eval_mae
_train = official.Run.train
_main = official.Run.main


def get_data(self):  # patch 3
    out = _get_data(self)
    loader = self.read_log_data(self.input_root + "/valid.csv", self.batchsize_test, history=True)
    X, y = loader.dataset.tensors
    b = self.batchsize_test
    self.data_valid = [(X[i : i + b], y[i : i + b]) for i in range(0, len(X), b)]
    T0[0] = time.perf_counter()
    log(event="data_ready", valid_rows=len(X))
    return out


EPOCHS = {}


def eval_mae(self, model, data_loader, stage):  # patch 4
    if data_loader is getattr(self, "data_valid", None):
        return _eval_mae(self, model, data_loader, stage)
    start = time.perf_counter() - T0[0]
    test = _eval_mae(self, model, data_loader, stage)
    valid = _eval_mae(self, model, self.data_valid, stage)
    EPOCHS[stage] = EPOCHS.get(stage, 0) + 1
    log(
        event="eval",
        stage=stage,
        epoch=EPOCHS[stage],
        start=start,
        test_mae=test[0],
        test_rmse=test[1],
        valid_mae=valid[0],
        valid_rmse=valid[1],
    )
    return test


def train(self, data_loader, model, criterion, optimizer, epoch, stage, mapping=False):
    start = time.perf_counter() - T0[0]
    _train(self, data_loader, model, criterion, optimizer, epoch, stage, mapping)
    log(event="train", stage=stage, epoch=epoch + 1, start=start)


def main(self):
    _main(self)
    log(event="results", **self.results)


def apply_patches():  # patches 3 and 4
    official.Run.get_data = get_data
    official.Run.eval_mae = eval_mae
    official.Run.train = train
    official.Run.main = main


if __name__ == "__main__":
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--log", required=True)
    p.add_argument("--task-json", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--required-patches-only",
        action="store_true",
        help="patches 1 and 2 only (no valid set, no log): to check that 3 and 4 change nothing",
    )
    ours, rest = p.parse_known_args()
    torch.set_num_threads(ours.threads)
    sys.argv = [sys.argv[0], *rest]
    args, config = entry.prepare("config.json")  # seeds random, numpy and torch as entry.py
    config["src_tgt_pairs"][args.task] = json.loads(open(ours.task_json).read())  # patch 2
    LOG.append(open(ours.log, "w"))
    log(event="start", args=vars(args), emb_dim=config["emb_dim"], meta_dim=config["meta_dim"])
    if not ours.required_patches_only:
        apply_patches()
    official.Run(config).main()
    LOG[0].close()
