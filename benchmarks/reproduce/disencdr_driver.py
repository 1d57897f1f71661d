"""Runs DisenCDR's official training (`DisenCDR/train_rec.py` at the pinned commit) and scores
its model on given candidate lists after every epoch; started by `benchmarks.reproduce.disencdr`
in a child interpreter whose PYTHONPATH holds the official `DisenCDR/` folder (its modules
import each other as top-level `model` and `utils`) and whose working folder has the data at
`../dataset/<a>_<b>/` (the official loader's relative paths).

    python -m benchmarks.reproduce.disencdr_driver --train-rec DisenCDR/train_rec.py \
        --dataset sport_phone --seed 0 --epochs 50 --candidates c.npz --out log.json

The loop is the script's: its argument defaults (read from `train_rec.py` itself), its
`seed_everything`, its `GraphMaker` graphs and `DataLoader`s built in its order, its
`CrossTrainer.reconstruct_graph` per batch, its evaluation every 10 epochs on its own test
loaders (the script's "dev" sets: the test files with 999 negatives drawn at load time) and
its learning-rate rule. Added beside it, without touching its random streams: after every
epoch the eval-mode embeddings (posterior means) score the target-domain rows of
`--candidates` (valid and test, the positive first, then its negatives; raw file ids), with
torch's RNG state saved and restored around the extra forward pass (the official eval forward
draws noise it then ignores). One run-time patch: `torch.Tensor.cuda` returns the tensor
itself (the code calls `.cuda()` on CPU).

Writes `--out` after every epoch: {"opt", "epochs": [{"epoch", "loss", "train_s", "t" (wall s
since training began, this epoch's scoring included), "valid", "test" (ndcg@k, hr@k, mrr over
the candidate rows), "own" (every 10 epochs: the script's printed source/target hit and
ndcg)}]}.

    python -m benchmarks.reproduce.disencdr_driver --train-rec DisenCDR/train_rec.py \
        --seed 0 --time-steps 5 < lines        # per input line, the times of 5 steps

With `--time-steps`, no training run: the same setup, then per line read from stdin the wall
time of each of that many training steps (`benchmarks.reproduce.step_time` drives it). With
`--count-flops`, the floating-point operations of one training step's matrix products (forward
and backward), printed as one JSON line.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pathlib
import random
import sys
import time

import numpy as np

KS = (1, 5, 10)
TIMED_EPOCH = 100  # `--time-steps`: an epoch past the warm-up (every term on)


def script_defaults(path) -> dict:
    """The defaults of every `parser.add_argument` in `train_rec.py` (literals only; a
    store_true flag defaults to False), read from its source."""
    tree = ast.parse(pathlib.Path(path).read_text(encoding="utf-8"))
    opt = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        name = node.args[0].value.lstrip("-")
        kw = {k.arg: k.value for k in node.keywords}
        if "dest" in kw:
            name = ast.literal_eval(kw["dest"])
        if "default" in kw:
            try:
                opt[name] = ast.literal_eval(kw["default"])
            except ValueError:  # an expression (torch.cuda.is_available()): set by the caller
                opt[name] = None
        elif isinstance(kw.get("action"), ast.Constant) and kw["action"].value == "store_true":
            opt[name] = False
    return opt


def rank_metrics(scores: np.ndarray) -> dict:
    """Metrics of rows of candidate scores [n, 1 + negatives], the positive in column 0; its
    rank is the official `(-pred).argsort().argsort()[0]` (ties broken by position)."""
    rank = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable")[:, 0]
    out = {"mrr": float(np.mean(1.0 / (rank + 1)))}
    for k in KS:
        hit = rank < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.mean(np.where(hit, 1.0 / np.log2(rank + 2), 0.0)))
    return out


def _own_eval(batches, predict) -> tuple[float, float]:
    """The script's evaluation loop over one of its dev loaders: (hit@10, ndcg@10)."""
    ndcg = hit = n = 0.0
    for batch in batches:
        for pred in predict(batch):
            rank = (-pred).argsort().argsort()[0].item()
            n += 1
            if rank < 10:
                ndcg += 1 / np.log2(rank + 2)
                hit += 1
    return hit / n, ndcg / n


def seeded_graphs(args) -> tuple:
    """(opt, graphs): the script's defaults with this run's arguments, seeded as its
    `seed_everything`, then its two `GraphMaker`s' (UV, VU) x 2 and adjacencies (DisenCDR's
    and CDRIB's scripts begin alike); torch patched for the CPU (`Tensor.cuda`) and given
    `args.threads` threads."""
    import torch
    from utils.GraphMaker import GraphMaker  # the official modules, on the PYTHONPATH

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.set_num_threads(args.threads)
    opt = script_defaults(args.train_rec)
    opt.update(dataset=args.dataset, seed=args.seed, num_epoch=args.epochs, cpu=True, cuda=False)
    random.seed(opt["seed"])  # the script's seed_everything
    torch.manual_seed(opt["seed"])
    np.random.seed(opt["seed"])
    os.environ["PYTHONHASHSEED"] = str(opt["seed"])

    a, b = opt["dataset"].split("_")
    source_g = GraphMaker(opt, f"../dataset/{a}_{b}/train.txt")
    target_g = GraphMaker(opt, f"../dataset/{b}_{a}/train.txt")
    return opt, (source_g.UV, source_g.VU, target_g.UV, target_g.VU, source_g.adj, target_g.adj)


def official_setup(args):
    """The script's setup in its order: (opt, graphs, train, source dev, target dev loaders,
    trainer), seeded as its `seed_everything`."""
    from model.trainer import CrossTrainer  # the official modules, on the PYTHONPATH
    from utils.loader import DataLoader

    opt, graphs = seeded_graphs(args)
    train_batch = DataLoader(opt["dataset"], opt["batch_size"], opt, evaluation=-1)
    source_dev = DataLoader(opt["dataset"], opt["batch_size"], opt, evaluation=1)
    target_dev = DataLoader(opt["dataset"], opt["batch_size"], opt, evaluation=2)
    return opt, graphs, train_batch, source_dev, target_dev, CrossTrainer(opt)


def time_steps(args) -> int:
    """`--time-steps N`: per line read from stdin, N consecutive `reconstruct_graph` steps at
    epoch `TIMED_EPOCH` (past the warm-up) over the training batches in the loader's order,
    cycling, printing {"steps_s": [seconds per step]} as one JSON line; stops at end of input."""
    _, graphs, train_batch, _, _, trainer = official_setup(args)
    batches = iter(())
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        times = []
        for _ in range(args.time_steps):
            batch = next(batches, None)
            if batch is None:
                batches = iter(train_batch)
                batch = next(batches)
            t = time.perf_counter()
            trainer.reconstruct_graph(batch, *graphs, TIMED_EPOCH)
            times.append(time.perf_counter() - t)
        print(json.dumps({"steps_s": times}), flush=True)
    return 0


def count_flops(step) -> dict:
    """Floating-point operations of `step()` in torch's matrix products: {"dense": 2 m k n of
    every dense product, "sparse": 2 nnz n of every sparse-dense one (torch's own
    `FlopCounterMode` counts a sparse operand as dense)}."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    products = {torch.ops.aten.mm.default: 0, torch.ops.aten.addmm.default: 1}

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flops = {"dense": 0, "sparse": 0}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in products:
                a, b = args[products[func] :][:2]
                if a.is_sparse or b.is_sparse:
                    sp, other = (a, b) if a.is_sparse else (b, a)
                    n = other.shape[1] if a.is_sparse else other.shape[0]
                    self.flops["sparse"] += 2 * sp._nnz() * n
                else:
                    self.flops["dense"] += 2 * a.shape[0] * a.shape[1] * b.shape[1]
            return func(*args, **(kwargs or {}))

    with Count() as c:
        step()
    return c.flops


def print_step_flops(trainer, graphs, train_batch, *, epoch: int = TIMED_EPOCH) -> int:
    """`--count-flops` of the DisenCDR and CDRIB drivers: prints {"dense", "sparse": FLOPs of
    one `trainer.reconstruct_graph` step's matrix products (`count_flops`), "steps_per_epoch"}
    as one JSON line, for a step at `epoch` (past the warm-up: every term on) on the loader's
    first batch, after one untimed step on it."""
    batch = next(iter(train_batch))
    trainer.reconstruct_graph(batch, *graphs, epoch)
    flops = count_flops(lambda: trainer.reconstruct_graph(batch, *graphs, epoch))
    print(json.dumps({**flops, "steps_per_epoch": len(train_batch)}), flush=True)
    return 0


def driver_parser(doc: str, *, dataset: str, epochs: int) -> argparse.ArgumentParser:
    """The flags the DisenCDR and CDRIB drivers share (the caller adds its other modes)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--train-rec", required=True, help="the official train_rec.py (defaults)")
    ap.add_argument("--dataset", default=dataset)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--candidates", help="training: the candidate lists to score")
    ap.add_argument("--out", help="training: the log written after every epoch")
    return ap


def main(argv=None) -> int:
    ap = driver_parser(__doc__, dataset="sport_phone", epochs=50)
    ap.add_argument("--time-steps", type=int, help="time this many steps per stdin line instead")
    ap.add_argument(
        "--count-flops", action="store_true", help="print one step's product FLOPs instead"
    )
    args = ap.parse_args(argv)
    if args.time_steps:
        return time_steps(args)
    if args.count_flops:
        _, graphs, train_batch, _, _, trainer = official_setup(args)
        return print_step_flops(trainer, graphs, train_batch)
    if not (args.candidates and args.out):
        ap.error("training needs --candidates and --out")

    import torch

    opt, graphs, train_batch, source_dev, target_dev, trainer = official_setup(args)
    cand = np.load(args.candidates)
    user_map, item_map = train_batch.target_user, train_batch.target_item
    rows = {}
    for part in ("valid", "test"):
        users = [user_map[int(u)] for u in cand[f"{part}_user"]]
        items = np.vectorize(item_map.__getitem__, otypes=[np.int64])(cand[f"{part}_items"])
        rows[part] = (torch.as_tensor(np.asarray(users)), torch.as_tensor(items))

    def score(part):
        users, items = rows[part]
        out, step = [], opt["batch_size"]
        for s in range(0, len(users), step):
            out.append(trainer.target_predict((users[s : s + step], items[s : s + step])))
        return rank_metrics(torch.cat(out).detach().numpy())

    log = {"opt": {k: v for k, v in opt.items() if isinstance(v, (int, float, str, bool))}}
    log["epochs"] = []
    dev_history, current_lr = [0], opt["lr"]
    t0 = time.perf_counter()
    for epoch in range(1, opt["num_epoch"] + 1):
        start, loss = time.perf_counter(), 0.0
        for batch in train_batch:
            loss += trainer.reconstruct_graph(batch, *graphs, epoch)
        rec = {"epoch": epoch, "loss": loss / len(train_batch)}
        rec["train_s"] = time.perf_counter() - start
        trainer.model.eval()
        with torch.no_grad():
            if epoch % 10 == 0:  # the script's own evaluation (its RNG use included)
                trainer.evaluate_embedding(*graphs)
                s_hit, s_ndcg = _own_eval(source_dev, trainer.source_predict)
                t_hit, t_ndcg = _own_eval(target_dev, trainer.target_predict)
                rec["own"] = {"source_hit": s_hit, "source_ndcg": s_ndcg}
                rec["own"].update(target_hit=t_hit, target_ndcg=t_ndcg)
            else:  # ours alone: leave the script's random stream as it was
                state = torch.get_rng_state()
                trainer.evaluate_embedding(*graphs)
                torch.set_rng_state(state)
            rec["valid"], rec["test"] = score("valid"), score("test")
        rec["t"] = time.perf_counter() - t0
        if "own" in rec:  # the script's lr rule (it needs > decay_epoch evaluations)
            dev = rec["own"]["target_ndcg"]
            if len(dev_history) > opt["decay_epoch"] and dev <= dev_history[-1]:
                current_lr *= opt["lr_decay"]
                trainer.update_lr(current_lr)
            dev_history.append(dev)
        log["epochs"].append(rec)
        pathlib.Path(args.out).write_text(json.dumps(log, indent=1) + "\n", encoding="utf-8")
        print(
            f"epoch {epoch}: loss {rec['loss']:.4f} ({rec['train_s']:.1f} s) valid ndcg@10 "
            f"{rec['valid']['ndcg@10']:.4f} test ndcg@10 {rec['test']['ndcg@10']:.4f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
