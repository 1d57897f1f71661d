"""DisenCDR / UniCDR Amazon Sport <-> Phone, the dual-domain leave-one-out split, implicit.

All 4,998 users are in both domains and warm: each is evaluated on its released held-out item
of the target domain (protocol.name=released_loo; `test.txt`, the items that occur in train, as
the papers evaluate; `--set protocol.test_file=test_original` keeps every user's item). A valid
item per user is carved from train (seeded; never from test) and selects the epoch on
NDCG@10. Each held-out item is ranked against 999 negatives among the target's train items,
fixed by protocol.seed; reports HR@1/5/10, NDCG@5/10 and MRR. Methods that fit warm users:
popularity, mf, cmf, disencdr, unicdr, the graph methods and the phi family (phi, dann, mmd,
coral, infonce); EMCDR and PTUPCDR score a warm user with its own target factors, so they reduce
to target-only MF here. DisenCDR's official budget is `--set trainer.batch_size=1024 --set
trainer.epochs=50` (Adam at the experiment's lr 1e-3); UniCDR's official batch is `--set
trainer.batch_size=512` (rows of each domain per step; its --batch_size 1024 is split over the
two domains).

    transferjax run experiments/disencdr_sport_phone.py                     # CMF, Sport -> Phone
    transferjax run experiments/disencdr_sport_phone.py --set method=mf     # target-only BPR-MF
    transferjax run experiments/disencdr_sport_phone.py --set method=disencdr  # DisenCDR
    transferjax run experiments/disencdr_sport_phone.py --set method=unicdr    # UniCDR
    transferjax run experiments/disencdr_sport_phone.py --set data.target=sport  # Phone -> Sport
    transferjax run experiments/disencdr_sport_phone.py --set protocol.test_file=test_original
    transferjax run experiments/disencdr_sport_phone.py --quick             # smoke variant
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
        name="disencdr_sport_phone",
        method="cmf",
        data=DataConfig(name="disencdr", target="phone"),
        protocol=ProtocolConfig(name="released_loo", n_negatives=999, seed=0),
        eval=EvalConfig(select="ndcg@10", ranking="sampled", ks=(1, 5, 10)),
        trainer=TrainerConfig(lr=1e-3, batch_size=256, epochs=40),
        mf=MFConfig(dim=64, reg=1e-4, loss="bpr", epochs=20, lr=3e-3, batch_size=1024),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=2, mf_epochs=1)
