"""Runs UniCDR's official training (`UniCDR/train_rec.py` at the pinned commit, `--task
dual-user-intra`) and scores its model on given candidate lists after every epoch; started by
`benchmarks.reproduce.unicdr` in a child interpreter whose PYTHONPATH holds the official
`UniCDR/` folder (its modules import each other as top-level `model` and `utils`) and whose
working folder has the data at `../datasets/dual-user-intra/dataset/<a>_<b>/` (the official
loader's relative paths).

    python -m benchmarks.reproduce.unicdr_driver --train-rec UniCDR/train_rec.py \
        --domains sport_phone --seed 0 --epochs 20 --candidates c.npz --out log.json

The loop is the script's `main()`: its argument defaults (read from `train_rec.py` itself), its
`seed_everything`, its two passes over the training files, `GraphMaker`, `TaskGenerator`s,
`MetaDomain_Dataset` / `MetaDomain_DataLoader` and its valid and test loaders (both from
test.txt for this task, 999 negatives each drawn by Python's `random` at load time) built in
its order; per epoch 500 steps (`iteration_num`), each the sum of one batch per domain
(`reconstruct_graph`) with the exhausted-iterator rule of its lines 248-252; every 5 epochs its
own evaluation (`predict` on its valid loader, then its test loader when valid NDCG@10
improves: a selection on test) and its learning-rate rule. Added beside it, without touching
its random streams: after every training epoch the eval-mode model (`item_embedding_select`,
test-mode contexts of up to 50 items per domain as its `DomainTask` builds them) scores the
target domain's rows of `--candidates` (valid and test, the positive first, then its
negatives; our file ids, shifted by one as its loader shifts items), with Python's and torch's
RNG states saved and restored around it. Two run-time patches: `torch.Tensor.cuda` returns the
tensor itself (its critic calls `.cuda(device)` on CPU), and `random.sample` of a set samples
`tuple(set)`, as Python 3.7-3.10 did themselves (3.11 refuses a set; its negative sampling
calls `random.sample(self.item_set, 1)`).

Writes `--out` after every epoch: {"opt", "epochs": [{"epoch", "loss", "train_s", "t" (wall s
since training began, this epoch's scoring included), "valid", "test" (ndcg@k, hr@k, mrr over
the candidate rows), "own" (every 5 epochs: the script's printed target valid NDCG@10 / HT@10
and, when it improved, its test numbers)}]}.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import pathlib
import random
import time

import numpy as np

from benchmarks.reproduce.disencdr_driver import rank_metrics, script_defaults

ITERATIONS = 500  # train_rec.py's `iteration_num`
EVAL_EVERY = 5  # its `if epoch % 5: continue`
TASK = "dual-user-intra"


def _read_domain(path, ease=None) -> tuple[dict, dict]:
    """The script's pass over one train.txt: {user: [items]} and {user: set} (items + 1),
    or with `ease` given, {user: [[item, weight]]} (its second pass)."""
    lists, sets = {}, {}
    with codecs.open(path, "r", encoding="utf-8") as infile:
        for line in infile:
            line = line.strip().split("\t")
            user, item = int(line[0]), int(line[1]) + 1
            if user not in lists:
                lists[user], sets[user] = [], set()
            if item not in sets[user]:
                lists[user].append(item if ease is None else [item, ease(user, item)])
                sets[user].add(item)
    return lists, sets


_SAMPLE = random.sample


def _sample_sets(population, k, **kw):
    """`random.sample` as Python 3.7-3.10 ran it on a set: over `tuple(population)`."""
    if isinstance(population, (set, frozenset)):
        population = tuple(population)
    return _SAMPLE(population, k, **kw)


def official_setup(args):
    """The script's setup in its order: (opt, task generators, train loader, valid and test
    loaders, trainer), seeded as its `seed_everything`."""
    import torch
    from model.trainer import CrossTrainer  # the official modules, on the PYTHONPATH
    from utils.data import MetaDomain_DataLoader, MetaDomain_Dataset, TaskGenerator
    from utils.GraphMaker import GraphMaker

    if args.aggregator == "item_similarity":  # its EASE-weighted contexts are not driven here
        raise SystemExit("the item_similarity aggregator is not driven here")
    torch.Tensor.cuda = lambda self, *a, **k: self
    random.sample = _sample_sets
    torch.set_num_threads(args.threads)
    opt = script_defaults(args.train_rec)
    opt.update(task=TASK, seed=args.seed, num_epoch=args.epochs, cuda=False)
    opt.update(aggregator=args.aggregator, device=torch.device("cpu"))
    random.seed(opt["seed"])  # the script's seed_everything
    torch.manual_seed(opt["seed"])
    np.random.seed(opt["seed"])
    os.environ["PYTHONHASHSEED"] = str(opt["seed"])

    a, b = args.domains.split("_")
    opt["domains"] = [f"{a}_{b}", f"{b}_{a}"]
    root = pathlib.Path("..", "datasets", TASK, "dataset")
    files = [str(root / d / "train.txt") for d in opt["domains"]]
    opt["user_max"], opt["item_max"], first = [], [], []
    for path in files:
        lists, _ = _read_domain(path)
        first.append(lists)
        opt["user_max"].append(max(lists) + 1)
        opt["item_max"].append(max(max(v) for v in lists.values()) + 1)
    graphs = GraphMaker(opt, first)
    all_list, all_set, gens = [], [], {}
    for idx, path in enumerate(files):
        lists, sets = _read_domain(path, ease=lambda u, i: 1)
        all_list.append(lists)
        all_set.append(sets)
        gens[idx] = TaskGenerator(path, opt, all_list, all_set, idx, graphs)
    opt["domain_id"] = {d: i for i, d in enumerate(opt["domains"])}
    train = MetaDomain_DataLoader(
        MetaDomain_Dataset(gens, num_negatives=opt["num_negative"], meta_split="train"),
        sample_batch_size=opt["batch_size"] // len(opt["domains"]),
        shuffle=True,
    )
    opt["num_domains"] = train.num_domains
    valid, test = {}, {}
    for idx, d in enumerate(opt["domains"]):  # dual-user-intra: both from test.txt
        valid[d] = gens[idx].instance_a_valid_dataloader(str(root / d / "test.txt"), 100)
        test[d] = gens[idx].instance_a_valid_dataloader(str(root / d / "test.txt"), 100)
    return opt, gens, train, valid, test, CrossTrainer(opt)


def _collate(data):
    """The script's `collate_fn_valid` (a closure of `instance_a_valid_dataloader`)."""
    import torch

    cols = [sum((list(row[k]) for row in data), []) for k in range(6)]
    kinds = (torch.LongTensor,) * 3 + (torch.FloatTensor, torch.LongTensor, torch.FloatTensor)
    return tuple(kind(c) for kind, c in zip(kinds, cols, strict=True))


def candidate_scores(opt, trainer, gen, users, items) -> np.ndarray:
    """f32[n, 1 + negatives]: the eval-mode scores of each row's candidates (our item ids)
    for its user, with the test-mode contexts of the script's `DomainTask`."""
    import torch
    from torch.utils.data import DataLoader
    from utils.data import DomainTask

    task = DomainTask(
        opt,
        user_list=[int(u) for u in users],
        item_list=(np.asarray(items) + 1).tolist(),
        positive_set=gen.positive_set,
        positive_list=gen.positive_list,
        item_set=gen.item_set,
        test_mode=1,
        all_domain_list=gen.all_domain_list,
        idx=gen.idx,
    )
    out = []
    for batch in DataLoader(task, batch_size=100, shuffle=False, collate_fn=_collate):
        user, item, c_item, c_score, g_item, g_score = batch
        uf = trainer.model.forward_user(gen.idx, user, c_item, c_score, g_item, g_score)
        out.append(trainer.model.predict_dot(uf, trainer.model.forward_item(gen.idx, item)))
    return torch.cat(out).detach().numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-rec", required=True, help="the official train_rec.py (defaults)")
    ap.add_argument("--domains", default="sport_phone", help="<source>_<target>")
    ap.add_argument("--aggregator", default="mean")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--candidates", required=True, help="the candidate lists to score")
    ap.add_argument("--out", required=True, help="the log written after every epoch")
    args = ap.parse_args(argv)

    import torch

    opt, gens, train, valid, test, trainer = official_setup(args)
    target = 1  # domains [a_b, b_a]: b_a holds the target's rows
    cand = np.load(args.candidates)
    max_item = opt["item_max"][target] - 1
    for part in ("valid", "test"):
        if int(cand[f"{part}_items"].max()) + 1 > max_item:
            raise SystemExit(f"{part} candidates name an item without a training row")

    def score(part):
        rng, torch_rng = random.getstate(), torch.get_rng_state()
        try:
            s = candidate_scores(
                opt, trainer, gens[target], cand[f"{part}_user"], cand[f"{part}_items"]
            )
        finally:
            random.setstate(rng)
            torch.set_rng_state(torch_rng)
        return rank_metrics(s)

    log = {"opt": {k: v for k, v in opt.items() if isinstance(v, (int, float, str, bool))}}
    log["epochs"] = []
    history = [[0] for _ in range(opt["num_domains"])]
    current_lr, t0 = opt["lr"], time.perf_counter()
    for epoch in range(0, opt["num_epoch"] + 1):
        start, losses = time.perf_counter(), []
        for _ in range(ITERATIONS if epoch else 0):  # the script's epoch 0 trains nothing
            trainer.model.train()
            trainer.optimizer.zero_grad()
            trainer.model.item_embedding_select()
            loss = 0
            for idx in range(opt["num_domains"]):
                it = train.get_iterator(idx)
                try:
                    batch = next(it)
                except StopIteration:  # its bare except: a fresh iterator, never kept
                    batch = next(iter(train[idx]))
                cur = trainer.reconstruct_graph(idx, batch)
                loss += cur
                losses.append(cur.item())
            loss.backward()
            trainer.optimizer.step()
        rec = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None}
        rec["train_s"] = time.perf_counter() - start
        trainer.model.eval()
        trainer.model.item_embedding_select()
        with torch.no_grad():
            if epoch:
                rec["valid"], rec["test"] = score("valid"), score("test")
            if epoch % EVAL_EVERY == 0:  # the script's own evaluation and lr rule
                decay_switch, own = 0, {}
                for idx, d in enumerate(valid):
                    metrics = trainer.predict(idx, valid[d])
                    if idx == target:
                        own["valid_ndcg"], own["valid_hit"] = metrics["NDCG_10"], metrics["HT_10"]
                    if metrics["NDCG_10"] > max(history[idx]):
                        test_metrics = trainer.predict(idx, test[d])
                        if idx == target:
                            own["test_ndcg"] = test_metrics["NDCG_10"]
                            own["test_hit"] = test_metrics["HT_10"]
                    else:
                        decay_switch += 1
                    history[idx].append(metrics["NDCG_10"])
                rec["own"] = own
                if epoch > opt["decay_epoch"]:
                    trainer.model.warmup = 0
                if epoch > opt["decay_epoch"] and decay_switch > opt["num_domains"] // 2:
                    current_lr *= opt["lr_decay"]
                    trainer.update_lr(current_lr)
        rec["t"] = time.perf_counter() - t0
        log["epochs"].append(rec)
        pathlib.Path(args.out).write_text(json.dumps(log, indent=1) + "\n", encoding="utf-8")
        if "valid" in rec:
            print(
                f"epoch {epoch}: loss {rec['loss']:.4f} ({rec['train_s']:.1f} s) valid ndcg@10 "
                f"{rec['valid']['ndcg@10']:.4f} test ndcg@10 {rec['test']['ndcg@10']:.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
