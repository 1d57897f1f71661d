"""Runs CDRIB's official training (`CDRIB/train_rec.py` at the pinned commit) and scores its
model on given candidate lists after every epoch; started by `benchmarks.reproduce.cdrib_train`
in a child interpreter whose PYTHONPATH holds the official `CDRIB/` folder (its modules import
each other as top-level `model` and `utils`) and whose working folder is that folder (the
official loader reads `../dataset/<a>_<b>/`, the released split files of the checkout).

    python -m benchmarks.reproduce.cdrib_driver --train-rec CDRIB/train_rec.py \
        --dataset game_video --seed 0 --epochs 20 --candidates c.npz --out log.json

The loop is the script's, which trains both domains at once: its argument defaults (read from
`train_rec.py` itself), its `seed_everything`, its two `GraphMaker` graphs, its five
`DataLoader`s built in its order (training rows shuffled once, then source valid, source test,
target valid, target test, each row with 999 negatives drawn at load time), the shared-user
bounds it sets from the test loaders, its `CrossTrainer.reconstruct_graph` per batch, and from
epoch 10 every 5 epochs its own evaluation: its nested `predict` (taken from its source with
`ast`) on both valid loaders, then on a domain's test loader when that domain's valid MRR
improves (a selection on test), and its learning-rate rule (x `lr_decay` once more than
`decay_epoch` evaluations have passed and the source valid MRR did not improve). Added beside
it, without touching its random streams: after every epoch the eval-mode model scores both
domains' rows of `--candidates` (valid and test, the positive first, then its negatives; file
ids, which are ours), with torch's RNG state saved and restored around the extra forward pass
on epochs without its own evaluation. One run-time patch: `torch.Tensor.cuda` returns the
tensor itself (the code calls `.cuda()` on CPU).

With `--count-flops`, no training run: the same setup, then the floating-point operations of
one training step's matrix products (forward and backward), printed as one JSON line.

Writes `--out` after every epoch: {"opt", "epochs": [{"epoch", "loss", "train_s", "t" (wall s
since training began, this epoch's scoring included), "<domain>": {"valid", "test"} (ndcg@k,
hr@k, mrr over that domain's candidate rows) for the script's "source" and "target" domains,
"own" (on its evaluation epochs: the script's printed valid metrics of both domains and, where
valid MRR improved, their test metrics)}]}.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from benchmarks.reproduce.cdrib_eval import METRICS, _function_source
from benchmarks.reproduce.disencdr_driver import (
    driver_parser,
    print_step_flops,
    rank_metrics,
    seeded_graphs,
)

SIDES = {"source": ("source_predict", 3, 1), "target": ("target_predict", 4, 2)}  # loaders


def own_evaluation(epoch: int) -> bool:
    """The script's `if epoch<10 or epoch % 5: continue`, negated."""
    return epoch >= 10 and epoch % 5 == 0


def official_setup(args):
    """The script's setup in its order: (opt, graphs, training loader, {evaluation code:
    loader}, trainer, predict), seeded as its `seed_everything`."""
    from model.trainer import CrossTrainer  # the official modules, on the PYTHONPATH
    from utils.loader import DataLoader

    opt, graphs = seeded_graphs(args)
    train = DataLoader(opt["dataset"], opt["batch_size"], opt, evaluation=-1)
    evals = {
        e: DataLoader(opt["dataset"], opt["batch_size"], opt, evaluation=e) for e in (3, 1, 4, 2)
    }
    opt["shared_user"] = min(evals[1].MIN_USER, evals[2].MIN_USER) + 1
    opt["source_shared_user"] = evals[1].MAX_USER + 1
    opt["target_shared_user"] = evals[2].MAX_USER + 1
    trainer = CrossTrainer(opt)
    ns = {"np": np, "trainer": trainer}
    exec(compile(_function_source(pathlib.Path(args.train_rec), "predict"), "predict", "exec"), ns)
    return opt, graphs, train, evals, trainer, ns["predict"]


def main(argv=None) -> int:
    ap = driver_parser(__doc__, dataset="game_video", epochs=100)
    ap.add_argument(
        "--count-flops", action="store_true", help="print one step's product FLOPs instead"
    )
    args = ap.parse_args(argv)
    if not (args.count_flops or (args.candidates and args.out)):
        ap.error("training needs --candidates and --out")

    import contextlib
    import io

    import torch

    with contextlib.redirect_stdout(io.StringIO()):  # its loaders print their counts
        opt, graphs, train, evals, trainer, predict = official_setup(args)
    if args.count_flops:
        return print_step_flops(trainer, graphs, train, epoch=100)
    cand = np.load(args.candidates)
    rows = {
        side: {p: (cand[f"{side}_{p}_user"], cand[f"{side}_{p}_items"]) for p in ("valid", "test")}
        for side in SIDES
        if f"{side}_valid_user" in cand
    }

    def score(side, part):
        users, items = (torch.as_tensor(np.asarray(x, np.int64)) for x in rows[side][part])
        fn, out, step = getattr(trainer, SIDES[side][0]), [], opt["batch_size"]
        for s in range(0, len(users), step):
            out.append(fn((users[s : s + step], items[s : s + step])))
        return rank_metrics(torch.cat(out).detach().numpy())

    def own(loader, side):
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a dot per 100 rows
            return dict(zip(METRICS, (float(v) for v in predict(loader, side == "source"))))

    log = {"opt": {k: v for k, v in opt.items() if isinstance(v, (int, float, str, bool))}}
    log["epochs"] = []
    history = {side: [0] for side in SIDES}
    current_lr = opt["lr"]
    t0 = time.perf_counter()
    for epoch in range(1, opt["num_epoch"] + 1):
        start, loss = time.perf_counter(), 0.0
        for batch in train:
            loss += trainer.reconstruct_graph(batch, *graphs, epoch)
        rec = {"epoch": epoch, "loss": loss / len(train), "train_s": time.perf_counter() - start}
        trainer.model.eval()
        with torch.no_grad():
            state = torch.get_rng_state()
            trainer.evaluate_embedding(*graphs, epoch)
            if not own_evaluation(epoch):  # ours alone: leave the script's stream as it was
                torch.set_rng_state(state)
            for side in rows:
                rec[side] = {p: score(side, p) for p in ("valid", "test")}
            if own_evaluation(epoch):  # the script's own evaluation, in its order
                rec["own"] = {s: {"valid": own(evals[SIDES[s][1]], s)} for s in SIDES}
                for s in SIDES:
                    if rec["own"][s]["valid"]["mrr"] > max(history[s]):
                        rec["own"][s]["test"] = own(evals[SIDES[s][2]], s)
        rec["t"] = time.perf_counter() - t0
        if "own" in rec:  # its lr rule, on the source valid MRR
            dev = rec["own"]["source"]["valid"]["mrr"]
            if len(history["source"]) > opt["decay_epoch"] and dev <= history["source"][-1]:
                current_lr *= opt["lr_decay"]
                trainer.update_lr(current_lr)
            for s in SIDES:
                history[s].append(rec["own"][s]["valid"]["mrr"])
        log["epochs"].append(rec)
        pathlib.Path(args.out).write_text(json.dumps(log, indent=1) + "\n", encoding="utf-8")
        line = " ".join(
            f"{side} valid/test ndcg@10 {rec[side]['valid']['ndcg@10']:.4f}/"
            f"{rec[side]['test']['ndcg@10']:.4f}"
            for side in rows
        )
        print(f"epoch {epoch}: loss {rec['loss']:.4f} ({rec['train_s']:.1f} s) {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
