"""The reproduction harness's shared pieces (`benchmarks.reproduce.common`) and the parts of its
scripts that need neither the network nor PyTorch: exports round-trip, tables, sections kept by
the quality suite, fetching a pinned commit, the official logs' summaries."""

import ast
import dataclasses
import json
import subprocess
import textwrap

import numpy as np
import pytest

from benchmarks import quality as Q
from benchmarks import sections as S
from benchmarks.reproduce import cdrib_eval as CE
from benchmarks.reproduce import common as K
from benchmarks.reproduce import ptupcdr as P
from benchmarks.reproduce import recbole_cdr as R
from benchmarks.reproduce import recbole_equal as RE
from transferjax.data.protocols import cold_start_split
from transferjax.data.types import CrossDomainData, Interactions


def _tiny_split():
    """10 source users (0-7 shared with target users 2-9), 6 + 5 items, integer ratings."""
    rng = np.random.default_rng(0)

    def domain(n_users, n_items, name):
        pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.6]
        u, i = np.array(pairs).T
        return Interactions(u, i, rng.integers(1, 6, len(u)), n_users, n_items, name=name)

    src, tgt = domain(10, 6, "book"), domain(12, 5, "music")
    overlap = np.stack([np.arange(8), np.arange(2, 10)], 1)
    data = CrossDomainData(source=src, target=tgt, overlap=overlap, name="tiny")
    return cold_start_split(data, beta=0.5, seed=0)


def _as_set(*cols):
    return set(zip(*(np.asarray(c).tolist() for c in cols)))


def test_ptupcdr_export_round_trips(tmp_path):
    split = _tiny_split()
    info = K.export_ptupcdr(split, tmp_path)
    got = K.read_ptupcdr(tmp_path)
    assert sorted(got) == ["test", "train_meta", "train_src", "train_tgt", "valid"]
    ids = K.ptupcdr_ids(split)
    n_s, n_si = split.data.source.n_users, split.data.source.n_items
    # one user space: target users 2-9 are source users 0-7; 0, 1, 10, 11 get ids from 10 on
    assert ids["tgt_uid"].tolist() == [10, 11, 0, 1, 2, 3, 4, 5, 6, 7, 12, 13]
    assert info["uid"] == 14 and info["iid"] == n_si + split.data.target.n_items
    back_u = {int(v): t for t, v in enumerate(ids["tgt_uid"])}

    s_u, s_i, s_y, _ = got["train_src"]
    src = split.source_train
    assert _as_set(s_u, s_i, s_y) == _as_set(src.user, src.item, src.rating.astype(int))
    t_u, t_i, t_y, _ = got["train_tgt"]
    tr = split.target_train
    assert _as_set([back_u[u] for u in t_u.tolist()], t_i - n_si, t_y) == _as_set(
        tr.user, tr.item, tr.rating.astype(int)
    )
    m_u = got["train_meta"][0]
    assert {back_u[u] for u in m_u.tolist()} == set(split.warm_pairs[:, 1].tolist())
    for name, held in (("test", split.test), ("valid", split.valid)):
        u, i, y, seq = got[name]
        users = held.pairs[held.row, 1]
        assert _as_set([back_u[x] for x in u.tolist()], i - n_si, y) == _as_set(
            users, held.item, held.rating.astype(int)
        )
        for uid, s in zip(u.tolist(), seq):  # the source items the user rated >= 4, file order
            keep = (src.user == uid) & (src.rating >= 4)
            assert s == src.item[keep].tolist() and uid < n_s
    assert info["rows"]["test"] == len(split.test) and info["rows"]["valid"] == len(split.valid)


def test_ptupcdr_export_refuses_fractional_ratings(tmp_path):
    split = _tiny_split()
    src = split.source_train
    bad = Interactions(src.user, src.item, src.rating + 0.5, src.n_users, src.n_items)
    with pytest.raises(ValueError, match="integers"):
        K.export_ptupcdr(dataclasses.replace(split, source_train=bad), tmp_path)


def test_cdrib_export_round_trips(tmp_path):
    parts = {"train": ([0, 0, 3], [5, 1, 2]), "test": ([7], [4]), "valid": ([], [])}
    K.export_cdrib(parts, tmp_path)
    assert (tmp_path / "train.txt").read_text() == "0\t5\n0\t1\n3\t2\n"
    got = K.read_cdrib(tmp_path)
    for name, (u, i) in parts.items():
        assert got[name][0].tolist() == u and got[name][1].tolist() == i


def test_mean_std_fmt_and_comparison_table():
    assert K.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert K.mean_std([0.5]) == (0.5, 0.0, 1)
    assert K.mean_std([float("nan")])[2] == 0
    assert K.fmt([0.1, 0.3]) == "0.2000 ± 0.1414 (n=2)" and K.fmt(None) == "-"
    table = K.comparison_table(
        [
            {"label": "test MAE", "ours": [0.7, 0.72], "official": [0.9], "note": "x"},
            {"label": "wall s", "ours": [12.0], "digits": 1},
        ],
        columns={"ours": "ours", "official": "official code"},
    )
    assert table.splitlines() == [
        "|  | ours | official code | note |",
        "|---|---:|---:|---|",
        "| test MAE | 0.7100 ± 0.0141 (n=2) | 0.9000 ± 0.0000 (n=1) | x |",
        "| wall s | 12.0 ± 0.0 (n=1) | - |  |",
    ]


def test_reproduce_sections_are_replaced_in_place_and_kept_by_quality(tmp_path, monkeypatch):
    out = tmp_path / "B.md"
    S.put_section(out, "speed", "## Speed")
    K.put_reproduce_section(out, "ptupcdr", "## Reproduction one")
    K.put_reproduce_section(out, "cdrib_eval", "## Reproduction two")
    K.put_reproduce_section(out, "ptupcdr", "## Reproduction one, rerun")
    text = out.read_text()
    assert S.section_names(text) == ["speed", "reproduce-ptupcdr", "reproduce-cdrib_eval"]
    assert "rerun" in text and "## Reproduction one\n" not in text
    assert S.is_kept_section("reproduce-x") and not S.is_kept_section("reproducex")
    assert S.is_kept_section("shift-gain") and not S.is_kept_section("shift-gainx")

    import transferjax.train.run as R

    monkeypatch.setattr(Q, "suite", lambda *, quick: [])
    monkeypatch.setattr(R, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    Q.run_quality(quick=True, runs_dir=tmp_path / "runs", out=out, seeds=1, report_only=True)
    text = out.read_text()
    assert text.startswith("# transferjax quality benchmark")
    assert S.section_names(text) == ["speed", "reproduce-ptupcdr", "reproduce-cdrib_eval"]


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_fetch_checks_out_the_pinned_commit_and_resets_local_edits(tmp_path):
    repo = tmp_path / "origin"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    for n in (1, 2):
        (repo / "code.py").write_text(f"VERSION = {n}\n")
        _git("add", "code.py", cwd=repo)
        _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"v{n}", cwd=repo)
    first = subprocess.run(
        ["git", "rev-list", "--max-parents=0", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    off = K.Official("x", "https://example.invalid/never-used", first)
    dest = tmp_path / "scratch" / "src"
    got = K.fetch(off, dest, source=repo, echo=lambda *_: None)
    assert (got / "code.py").read_text() == "VERSION = 1\n"
    (got / "code.py").write_text("edited\n")
    (got / "stray.txt").write_text("x")
    (got / "saved").mkdir()
    (got / "saved" / "model.pth").write_text("a run still writing")
    K.fetch(off, dest, keep=("saved",), echo=lambda *_: None)  # reused: no clone
    assert (got / "code.py").read_text() == "VERSION = 1\n" and not (got / "stray.txt").exists()
    assert (got / "saved" / "model.pth").exists()  # kept: another run's output
    with pytest.raises(RuntimeError):
        K.fetch(K.Official("x", "", "0" * 40), tmp_path / "other", source=repo)


def _log(evals, results):
    recs = [{"event": "data_ready", "t": 0.0}]
    t = 0.0
    for stage, vals in evals:
        for ep, (v, tr) in enumerate(vals, 1):
            recs.append({"event": "train", "stage": f"train_{stage}", "epoch": ep, "start": t})
            t += 1.0
            recs[-1]["t"] = t
            recs.append(
                {
                    "event": "eval",
                    "stage": f"test_{stage}",
                    "epoch": ep,
                    "start": t,
                    "valid_mae": v,
                    "valid_rmse": v,
                    "test_mae": tr,
                    "test_rmse": tr + 0.1,
                    "t": t + 0.5,
                }
            )
            t += 0.5
    return recs + [{"event": "results", **results, "t": t}]


def test_official_ptupcdr_log_is_selected_on_valid():
    res = {f"{k}_{m}": 9.0 for k in ("tgt", "aug", "emcdr", "ptupcdr") for m in ("mae", "rmse")}
    res["ptupcdr_mae"] = 0.5
    recs = _log(
        [
            ("tgt", [(3.0, 3.0)]),
            ("aug", [(2.0, 2.0)]),
            ("map", [(1.5, 1.5)]),
            ("meta", [(1.0, 0.9), (0.8, 0.95), (0.8, 0.5), (1.2, 0.6)]),
        ],
        res,
    )
    got = P.summarize_official(recs)
    meta = got["meta"]
    assert meta["selected_epoch"] == 2  # first of the tied best valid values, never test's 3
    assert meta["test"] == {"mae": 0.95, "rmse": pytest.approx(1.05)}
    assert meta["own_best"]["mae"] == 0.5
    # each epoch is 1 s of training and 0.5 s of evaluation; aug and map are off PTUPCDR's path
    assert meta["wall_to_selected_s"] == 5 * 1.5  # tgt, aug, map, meta 1 and 2
    assert meta["wall_to_selected_path_s"] == meta["wall_to_selected_s"] - 2 * 1.5
    assert [c["epoch"] for c in meta["curve"]] == [1, 2, 3, 4]


def test_driver_pad_sequences_matches_keras_semantics():
    """The tensorflow stand-in (patch 1) without importing the driver (which needs torch)."""
    text = P.DRIVER.read_text()
    fn = next(
        n
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.FunctionDef) and n.name == "pad_sequences"
    )
    ns = {"np": np}
    exec(ast.get_source_segment(text, fn), ns)
    out = ns["pad_sequences"]([[1, 2, 3], [], [4] * 3 + [5, 6]], maxlen=4, padding="post")
    assert out.dtype == np.int32
    assert out.tolist() == [[1, 2, 3, 0], [0, 0, 0, 0], [4, 4, 5, 6]]  # keeps the LAST 4


def test_cdrib_predict_extraction_runs_on_given_scores(tmp_path):
    """`load_official`'s extraction path and `OfficialEval.predict` on a stand-in `predict`
    written like CDRIB's (the real one needs the checkout)."""
    src = textwrap.dedent(
        """
        for epoch in range(3):
            def predict(dataloder, choose):
                MRR = HT_1 = HT_5 = HT_10 = NDCG_5 = NDCG_10 = n = 0.0
                for batch in dataloder:
                    f = trainer.source_predict if choose else trainer.target_predict
                    preds = f(batch)
                    for pred in preds:
                        rank = (-pred).argsort().argsort()[0].item()
                        n += 1
                        MRR += 1 / (rank + 1)
                        if rank < 1:
                            HT_1 += 1
                        if rank < 5:
                            NDCG_5 += 1 / np.log2(rank + 2)
                            HT_5 += 1
                        if rank < 10:
                            NDCG_10 += 1 / np.log2(rank + 2)
                            HT_10 += 1
                return MRR / n, NDCG_5 / n, NDCG_10 / n, HT_1 / n, HT_5 / n, HT_10 / n
        """
    )
    path = tmp_path / "train_rec.py"
    path.write_text(src)
    off = CE.OfficialEval(None, CE._function_source(path, "predict"), None, tmp_path)
    cands = np.arange(20).reshape(2, 10)
    table = np.linspace(1.0, 0.0, 20)  # lower item ids score higher

    got = off.predict([(np.array([0, 1]), cands)], 1, lambda b: table[np.asarray(b[1])])
    # row 0: positive 0 beats all (rank 0); row 1: positive 10 beats 11..19 (rank 0)
    assert got == {
        "mrr": 1.0,
        "ndcg@5": 1.0,
        "ndcg@10": 1.0,
        "hr@1": 1.0,
        "hr@5": 1.0,
        "hr@10": 1.0,
    }
    got = off.predict(
        [(np.array([0]), cands[:, ::-1].copy())], 0, lambda b: table[np.asarray(b[1])]
    )
    assert got["hr@10"] == 1.0 and got["hr@5"] == 0.0 and got["mrr"] == pytest.approx(0.1)


def test_sampling_stats_flags_positives_and_repeats():
    split = _tiny_split()
    ho = split.test
    users = ho.pairs[ho.row, 1].astype(np.int64)
    n_items = split.data.target.n_items
    pos = ho.item.astype(np.int64)
    cands = np.stack([pos, pos, (pos + 1) % n_items, (pos + 1) % n_items], 1)
    st = CE.sampling_stats(split, users, cands)
    assert st["own_positive"] == 1.0 and st["any_positive"] == 1.0
    assert st["rows_with_repeats"] == 1.0 and st["mean_repeats"] == 1.0
    assert json.loads(json.dumps(st)) == st  # plain JSON values


_RECBOLE_LOG = """\
05 Dec 09:58    INFO  \x1b[1;32mStart training with SOURCE mode\x1b[0m
05 Dec 09:58    INFO  epoch 0 training [time: 3.00s, train loss: 181.2141]
05 Dec 09:58    INFO  epoch 0 evaluating [time: 1.00s, valid_score: 0.400000]
05 Dec 09:58    INFO  valid result: 
recall@10 : 0.1    mrr@10 : 0.4    ndcg@10 : 0.2    hit@10 : 0.7    precision@10 : 0.2
05 Dec 09:58    INFO  epoch 1 training [time: 3.00s, train loss: 100.0]
05 Dec 09:58    INFO  epoch 1 evaluating [time: 1.00s, valid_score: 0.300000]
05 Dec 09:58    INFO  valid result: 
recall@10 : 0.1    mrr@10 : 0.3    ndcg@10 : 0.2    hit@10 : 0.7    precision@10 : 0.2
05 Dec 09:58    INFO  Finished training, best eval result in epoch 0
05 Dec 09:58    INFO  Start training with OVERLAP mode
05 Dec 09:58    INFO  epoch 0 training [time: 0.50s, train loss: 1.0]
05 Dec 09:58    INFO  epoch 0 evaluating [time: 0.25s, valid_score: 0.500000]
05 Dec 09:58    INFO  valid result: 
recall@10 : 0.2    mrr@10 : 0.5    ndcg@10 : 0.3    hit@10 : 0.8    precision@10 : 0.3
05 Dec 09:58    INFO  epoch 1 training [time: 0.50s, train loss: 0.9]
05 Dec 09:58    INFO  epoch 1 evaluating [time: 0.25s, valid_score: 0.500000]
05 Dec 09:58    INFO  valid result: 
recall@10 : 0.2    mrr@10 : 0.5    ndcg@10 : 0.3    hit@10 : 0.8    precision@10 : 0.3
05 Dec 09:58    INFO  epoch 2 training [time: 0.50s, train loss: 0.8]
05 Dec 09:58    INFO  epoch 2 evaluating [time: 0.25s, valid_score: 0.450000]
05 Dec 09:58    INFO  valid result: 
recall@10 : 0.2    mrr@10 : 0.45    ndcg@10 : 0.3    hit@10 : 0.8    precision@10 : 0.3
05 Dec 09:58    INFO  Loading model structure and parameters from saved/EMCDR.pth
05 Dec 09:58 INFO \x1b[1;33mbest valid \x1b[0m: OrderedDict([('recall@10', 0.2), ('mrr@10', 0.5)])
05 Dec 09:58 INFO \x1b[1;33mtest result\x1b[0m: OrderedDict([('recall@10', 0.25), ('mrr@10', 0.6)])
"""


def test_recbole_log_gives_the_valid_selected_test_and_the_time_to_it():
    r = R.parse_recbole_log(_RECBOLE_LOG)
    assert r["test"] == {"recall@10": 0.25, "mrr@10": 0.6}
    assert r["best_valid"] == {"recall@10": 0.2, "mrr@10": 0.5}
    src, ovl = r["phases"]
    assert (src["mode"], src["best_epoch"], src["early_stopped"]) == ("SOURCE", 0, True)
    # no "Finished" line: the last epoch with the top valid score (RecBole's >= rule)
    assert (ovl["mode"], ovl["best_epoch"], ovl["early_stopped"]) == ("OVERLAP", 1, False)
    assert ovl["epochs"][2]["valid"]["mrr@10"] == 0.45
    assert (r["selected_phase"], r["selected_epoch"]) == ("OVERLAP", 1)
    assert r["wall_to_selected_s"] == pytest.approx(8.0 + 1.5)  # all of SOURCE, OVERLAP 0-1


def test_recbole_log_without_a_test_result_is_an_error():
    with pytest.raises(ValueError, match="test result"):
        R.parse_recbole_log(_RECBOLE_LOG.rsplit("\n", 2)[0])
    counts = {"target": {"users": 943, "items": 1196, "inters": 81705}}
    assert R.parse_counts("noise\nCOUNTS " + json.dumps(counts) + "\n") == counts
    with pytest.raises(ValueError):
        R.parse_counts("nothing")


def test_recbole_settings_line_reads_the_model_yaml_over_overall(tmp_path):
    props = tmp_path / "recbole_cdr" / "properties"
    (props / "model").mkdir(parents=True)
    (props / "overall.yaml").write_text(
        "# training settings\nlearning_rate: 0.001\nseed: 2022\neval_args:\n  mode: full\n"
        'train_epochs: ["BOTH:300"]\n'
    )
    (props / "model" / "EMCDR.yaml").write_text('train_epochs: ["SOURCE:3","OVERLAP:3"]\nk: 1')
    line = R.their_settings(tmp_path, "EMCDR")
    assert line == 'learning_rate: 0.001, train_epochs: ["SOURCE:3","OVERLAP:3"], k: 1'


def _recbole_props(root):
    props = root / "recbole_cdr" / "properties"
    (props / "model").mkdir(parents=True)
    (props / "dataset").mkdir()
    (props / "overall.yaml").write_text(
        "learner: adam\nlearning_rate: 0.001\ntrain_batch_size: 2048\nweight_decay: 0.0\n"
        'neg_sampling:\n  uniform: 1\ntrain_epochs: ["BOTH:300"]\nstopping_step: 10\n'
    )
    (props / "model" / "CoNet.yaml").write_text(
        "embedding_size: 64\nreg_weight: 1e-2\nmlp_hidden_size: [64,32,16,8]"
    )
    (props / "model" / "DTCDR.yaml").write_text(
        "embedding_size: 32\nbase_model: NeuMF\nmlp_hidden_size: [32, 16]\n"
        "dropout_prob: 0.2\nalpha: 0.3\n"
    )
    (props / "dataset" / "sample.yaml").write_text("source_domain:\n  dataset: ml-1m\n")


def test_recbole_pointwise_models_get_their_settings(tmp_path):
    _recbole_props(tmp_path)
    conet = R.matched_settings("conet", R.their_config(tmp_path, "CoNet"))
    assert conet == (
        "trainer.lr=0.001",
        "trainer.batch_size=1024",  # 2048 rows: 1024 positives and one negative each
        "trainer.epochs=300",
        "trainer.patience=11",  # stopping_step 10: stops after the 11th evaluation without gain
        "conet.n_neg=1",
        "conet.dim=64",
        "conet.layers=64,32,16,8",
        "conet.score_cross=false",  # their predict: the target network alone
    )
    extra = 'train_epochs: ["BOTH:1"]\nneg_sampling:\n  uniform: 3'
    cfg, sets = R.our_config("dtcdr", theirs=R.their_config(tmp_path, "DTCDR", extra))
    assert "trainer.epochs=1" in sets and "trainer.batch_size=512" in sets
    no_stop = R.their_config(tmp_path, "DTCDR", "stopping_step: 0")
    assert "trainer.patience=0" in R.matched_settings("dtcdr", no_stop)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.lr) == (1, 512, 1e-3)
    assert (cfg.dtcdr.dim, cfg.dtcdr.layers, cfg.dtcdr.dropout) == (32, (32, 16), 0.2)
    assert (cfg.dtcdr.alpha, cfg.dtcdr.n_neg, cfg.method) == (0.3, 3, "dtcdr")
    with pytest.raises(ValueError, match="pass theirs"):
        R.our_config("conet")
    with pytest.raises(ValueError, match="NeuMF"):
        R.matched_settings("dtcdr", R.their_config(tmp_path, "DTCDR", "base_model: DMF"))
    # a run with an extra config is kept apart from the full runs, and the file carries it
    assert R.official_tag("") == "" and R.official_tag(extra).startswith("-x")
    assert R.official_tag(extra) != R.official_tag('train_epochs: ["BOTH:2"]')
    assert R.extra_config(1, extra).endswith("seed: 2023\n" + extra + "\n")
    assert R.extra_config(1) == "show_progress: False\nuse_gpu: False\nseed: 2023\n"


def test_recbole_bitgcf_gets_their_settings(tmp_path):
    """Ours against their BiTGCF: BiTGCF.yaml's values (RecBole-CDR's file at the pinned commit)
    and overall.yaml's training settings; they are `bitgcf`'s defaults apart from training."""
    from transferjax.methods.bitgcf import BiTGCFConfig

    _recbole_props(tmp_path)
    (tmp_path / "recbole_cdr" / "properties" / "model" / "BiTGCF.yaml").write_text(
        "embedding_size: 64\nn_layers: 2\nreg_weight: 1e-3\nlambda_source: 0.8\n"
        "lambda_target: 0.8\nconnect_way: concat\ndrop_rate: 0.3"
    )
    cfg, sets = R.our_config("bitgcf", theirs=R.their_config(tmp_path, "BiTGCF"))
    assert sets == (
        "trainer.lr=0.001",
        "trainer.batch_size=1024",
        "trainer.epochs=300",
        "trainer.patience=11",
        "bitgcf.n_neg=1",
        "bitgcf.dim=64",
        "bitgcf.n_layers=2",
        "bitgcf.reg=1e-3",
        "bitgcf.lambda_source=0.8",
        "bitgcf.lambda_target=0.8",
        "bitgcf.connect=concat",
        "bitgcf.drop_rate=0.3",
    )
    assert cfg.bitgcf == BiTGCFConfig() and cfg.method == "bitgcf"
    assert (cfg.trainer.lr, cfg.trainer.batch_size, cfg.trainer.epochs) == (1e-3, 1024, 300)
    short = R.their_config(tmp_path, "BiTGCF", 'train_epochs: ["BOTH:1"]\nn_layers: 3')
    cfg, _ = R.our_config("bitgcf", theirs=short)
    assert (cfg.trainer.epochs, cfg.bitgcf.n_layers) == (1, 3)


def test_ptupcdr_ours_is_the_quality_suites_douban_cell():
    """The reproduction trains exactly the quality table's ptupcdr cell (its task settings
    included), so the two report the same model."""
    from benchmarks import quality as Q
    from transferjax import config as C

    (task,) = [t for t in Q.suite(quick=False) if t.name == "douban_book_music"]
    want = C.to_dict(Q.task_config(task, "ptupcdr", seeds=1))
    got = C.to_dict(P.our_config())
    for k in ("name", "seeds"):
        want.pop(k), got.pop(k)
    assert got["eval"].pop("curves") == "all"  # its curves: every metric per epoch, same model
    want["eval"].pop("curves")
    assert got == want
    assert got["mf"]["sparse"] is True


def _tiny_disencdr_pair(root):
    """A DisenCDR-format Sport/Phone pair: 6 users in both domains, rows listed user by user
    but with items out of order, every held-out item also trained by someone."""
    rng = np.random.default_rng(3)
    for folder, n_items in (("sport_phone", 12), ("phone_sport", 10)):
        train, held = [], []
        for u in range(6):
            items = rng.permutation(n_items)[:5]
            train += [(u, int(i)) for i in items[:4]]
            held.append((u, int(items[4])))
        seen = {i for _, i in train}
        (root / folder).mkdir(parents=True)
        lines = lambda rows: "".join(f"{u}\t{i}\t1\n" for u, i in rows)  # noqa: E731
        (root / folder / "train.txt").write_text(lines(train))
        (root / folder / "test_original.txt").write_text(lines(held))
        (root / folder / "test.txt").write_text(lines((u, i) for u, i in held if i in seen))
    return root


def _first_appearance(path):
    """The official loaders' id maps: ids numbered in order of first appearance in a file."""
    users, items = {}, {}
    for line in path.read_text().splitlines():
        u, i, _ = map(int, line.split("\t"))
        users.setdefault(u, len(users))
        items.setdefault(i, len(items))
    return users, items


def test_disencdr_export_is_our_split_in_the_official_layout(tmp_path):
    from benchmarks.reproduce import disencdr as D
    from transferjax.data.disencdr import load_disencdr
    from transferjax.data.protocols import released_loo_split

    data = load_disencdr(_tiny_disencdr_pair(tmp_path / "data"), target="phone")
    split = released_loo_split(data, seed=0, n_negatives=3)
    counts = D.export_split(
        split, tmp_path / "x", source="sport", target="phone", released=tmp_path / "data"
    )
    ds = tmp_path / "x" / "dataset"
    read = lambda p: [tuple(map(int, ln.split("\t")[:2])) for ln in p.read_text().splitlines()]  # noqa: E731
    src, tgt = read(ds / "sport_phone" / "train.txt"), read(ds / "phone_sport" / "train.txt")
    assert set(src) == _as_set(split.source_train.user, split.source_train.item)
    assert set(tgt) == _as_set(split.target_train.user, split.target_train.item)
    valid = _as_set(split.valid.pairs[split.valid.row, 1], split.valid.item)
    assert valid and not valid & set(tgt)  # the carved valid rows leave the target's train
    assert [u for u, _ in tgt] == sorted(u for u, _ in tgt)
    # both train files number the users alike (the official loaders pair them by number)
    users_s, _ = _first_appearance(ds / "sport_phone" / "train.txt")
    users_t, items_t = _first_appearance(ds / "phone_sport" / "train.txt")
    assert users_s == users_t
    test = read(ds / "phone_sport" / "test.txt")
    assert set(test) == _as_set(split.test.pairs[split.test.row, 1], split.test.item)
    assert (ds / "sport_phone" / "test.txt").read_text() == (
        tmp_path / "data" / "sport_phone" / "test.txt"
    ).read_text()
    c = np.load(tmp_path / "x" / "candidates.npz")
    for part, held in (("valid", split.valid), ("test", split.test)):
        assert c[f"{part}_user"].tolist() == held.pairs[held.row, 1].tolist()
        assert c[f"{part}_items"][:, 0].tolist() == held.item.tolist()  # the positive first
        assert c[f"{part}_items"][:, 1:].tolist() == held.negatives.tolist()
        assert set(c[f"{part}_items"].ravel().tolist()) <= set(items_t)  # all in its item map
    assert counts == {
        "source_train": len(src),
        "target_train": len(tgt),
        "valid": len(valid),
        "test": len(test),
    }


def test_disencdr_driver_metrics_match_the_official_rank_loop():
    from benchmarks.reproduce.disencdr_driver import rank_metrics

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    scores[:5, 0] = 10.0  # positives ranked first
    scores[5:10, 0] = -10.0  # ... and last
    got = rank_metrics(scores)
    ranks = [int((-row).argsort().argsort()[0]) for row in scores]  # the official loop
    assert got["hr@10"] == pytest.approx(np.mean([r < 10 for r in ranks]))
    ndcg = [1 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks]
    assert got["ndcg@10"] == pytest.approx(np.mean(ndcg))
    assert got["hr@1"] == pytest.approx(np.mean([r == 0 for r in ranks]))
    assert got["mrr"] == pytest.approx(np.mean([1 / (r + 1) for r in ranks]))


def test_disencdr_driver_reads_the_script_defaults(tmp_path):
    from benchmarks.reproduce.disencdr_driver import script_defaults

    script = tmp_path / "train_rec.py"
    script.write_text(
        textwrap.dedent("""
        import argparse, torch
        parser = argparse.ArgumentParser()
        parser.add_argument('--lr', type=float, default=0.001, help='x')
        parser.add_argument('--GNN', type=int, default=2)
        parser.add_argument('--cpu', action='store_true')
        parser.add_argument('--cuda', type=bool, default=torch.cuda.is_available())
        parser.add_argument('--load', dest='load', action='store_true', default=False)
        parser.add_argument('--optim', choices=['sgd', 'adam'], default='adam')
    """)
    )
    assert script_defaults(script) == {
        "lr": 0.001,
        "GNN": 2,
        "cpu": False,
        "cuda": None,
        "load": False,
        "optim": "adam",
    }


def test_disencdr_official_summary_selects_on_valid():
    from benchmarks.reproduce.disencdr import summarize_official

    def ep(e, v, t, own=None):
        rec = {"epoch": e, "train_s": 2.0 + e, "t": 10.0 * e}
        rec["valid"] = {"ndcg@10": v}
        rec["test"] = {"ndcg@10": t}
        return rec | ({"own": {"target_ndcg": own, "target_hit": 2 * own}} if own else {})

    log = {
        "epochs": [
            ep(1, 0.1, 0.5),
            ep(2, 0.3, 0.2, own=0.4),
            ep(3, 0.3, 0.1),
            ep(4, 0.2, 0.6, own=0.7),
        ]
    }
    s = summarize_official(log)
    assert s["selected_epoch"] == 2 and s["test"]["ndcg@10"] == 0.2  # the first best valid
    assert s["own_best"] == 0.7 and s["own_best_hit"] == 1.4  # the script's pick: best on test
    assert s["test_best"] == 0.6  # epochs with its own evaluation (2, 4) only
    assert s["wall_to_selected_s"] == 20.0 and s["wall_s"] == 40.0
    assert s["train_s_per_epoch"] == 4.5


def test_step_time_reads_json_lines_and_writes_the_ratio(tmp_path, monkeypatch):
    """The official timer's replies are found among the official code's own prints; the section
    gives each side's median step and the ratio official / ours."""
    import io

    from benchmarks.reproduce import step_time as ST

    stream = io.StringIO('number_user 7\nreal graph loaded!\n{"steps_s": [1.0, 3.0]}\n')
    assert ST._json_line(stream) == {"steps_s": [1.0, 3.0]}
    with pytest.raises(RuntimeError, match="ended early"):
        ST._json_line(io.StringIO("no json here\n"))
    res = {"official": [2.0, 2.4, 1.8, 2.2], "ours": [0.5, 0.4], "compile_s": 3.0}
    report = tmp_path / "B.md"
    monkeypatch.setattr(ST.D, "_torch_version", lambda: "x")  # no torch needed for the text
    counts = {"source_train": 10, "target_train": 20}
    ST.write_section(report, res=res, steps=2, rounds=2, cpu=0, cmd="cmd", counts=counts)
    text = report.read_text()
    assert "| official `reconstruct_graph` | 2.100 | 1.800 | 4 |" in text
    assert "| ours, `disencdr`'s epoch program | 0.450 | 0.400 | 2 |" in text
    assert "**4.67x**" in text
    assert "FLOPs of one step" not in text  # a result without counts: no FLOP columns
    # with the counts: each side's GFLOP and rate, and the ceiling official / ours on this core
    flops = {"official": {"dense": 3e9, "sparse": 1e9, "steps_per_epoch": 9}, "ours": 2e9}
    res = {**res, "flops": flops, "gemm": 10.0}
    ST.write_section(report, res=res, steps=2, rounds=2, cpu=0, cmd="cmd", counts=counts)
    text = report.read_text()
    assert "| official `reconstruct_graph` | 2.100 | 1.800 | 4 | 4.0 | 1.9 |" in text
    assert "| ours, `disencdr`'s epoch program | 0.450 | 0.400 | 2 | 2.0 | 4.4 |" in text
    # ours takes at least 2 GFLOP / 10 GFLOP/s = 0.2 s, so the ratio is at most 2.1 / 0.2
    assert "0.200 s, so on this core official / ours is at most 10.50x" in text


def test_recbole_epoch_time_leaves_the_first_epoch_out_and_writes_the_ratio(tmp_path):
    from benchmarks.reproduce import recbole_epoch_time as ET

    res = {
        "conet": {
            "official": [9.0, 3.0, 3.4, 3.2],  # the first: data-loader start
            "ours": [7.0, 1.0, 1.2, 0.8],  # the first: compile
            "steps": 65,
            "compile_s": 2.0,
            "batch": 1024,
            "step_flops": 1e9,
        }
    }
    assert ET.medians(res["conet"]) == (3.2, 1.0)
    report = tmp_path / "B.md"
    ET.write_section(report, res=res, epochs=4, cpu=1, cmd="cmd", gemm=100.0)
    text = report.read_text()
    # 65 steps of 1 GFLOP: 65 / 3.2 and 65 / 1.0 GFLOP/s
    assert "| CoNet | 3.20 | 1.00 | **3.20x** | 65 | 1.0 | 20.3 | 65.0 |" in text
    assert "measured in the same run): 100 GFLOP/s" in text
    assert "pinned to core 1" in text and "conet 2.0 s" in text
    with pytest.raises(SystemExit, match="at least 2"):
        ET.main(["--epochs", "1"])
    with pytest.raises(SystemExit, match="choose from"):
        ET.main(["--models", "cmf"])


@pytest.mark.slow
def test_method_steps_times_the_registered_step_past_a_warmup():
    """`MethodSteps` runs a method's first stage as the trainer's epoch program, `steps` steps
    per run, from the step counter `step0`."""
    from benchmarks.method_steps import MethodSteps
    from tests.methods.test_disencdr import _cfg, user_overlap_split

    v = MethodSteps(_cfg(**{"trainer.batch_size": 32}), user_overlap_split(), steps=2, step0=50)
    v.setup()
    losses = [v.run() for _ in range(2)]
    assert int(v.state.step) == 54 and v.stage.name == "disencdr"
    assert len(v.examples["source_user"]) == 64 and np.all(np.isfinite(losses))


def test_product_flops_counts_products_forward_and_backward_through_scan_and_cond():
    """`product_flops`: 2 m n k per product, 2 per element a float scatter-add accumulates (a
    sparse product by nonzeros), a scan's body times its length, a cond's costliest branch, the
    gradient's products counted; integer work (a threefry hash) counts nothing."""
    import jax
    import jax.numpy as jnp

    from benchmarks.method_steps import product_flops
    from transferjax.models import draws

    def f(a, b, key):
        c = jax.lax.scan(lambda c, _: (jnp.tanh(c @ b), None), a, None, length=3)[0]
        c = jnp.where(draws.bernoulli(key, 0.5, c.shape), c, 0.0)
        return jax.lax.cond(c.sum() > 0, lambda: (c @ b.T).sum(), lambda: c.sum())

    a, b, key = jnp.ones((4, 6)), jnp.ones((6, 6)), jax.random.key(0)
    one = 2 * 4 * 6 * 6  # one [4, 6] x [6, 6] product
    assert product_flops(jax.make_jaxpr(f)(a, b, key)) == 3 * one + one
    # the gradient: each product's two transposed products, for a and for b
    grad = jax.make_jaxpr(jax.value_and_grad(f, argnums=(0, 1)))(a, b, key)
    assert product_flops(grad) == 3 * (3 * one + one)
    # a batched product: 2 x output size x contracted size
    bmm = jax.make_jaxpr(lambda x, y: jnp.einsum("bij,bjk->bik", x, y))(
        jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6))
    )
    assert product_flops(bmm) == 3 * 2 * 4 * 5 * 6
    assert product_flops(jax.make_jaxpr(lambda k: draws.bits(k, (64, 64)))(key)) == 0
    # a sparse product over 4 nonzeros of a [7, 5] matrix times a [5, 3] one: 2 x 4 x 3
    rows, cols, w = jnp.array([0, 0, 1, 6]), jnp.array([0, 1, 2, 3]), jnp.ones(4)
    spmm = lambda v: jax.ops.segment_sum(v[cols] * w[:, None], rows, num_segments=7)  # noqa: E731
    assert product_flops(jax.make_jaxpr(spmm)(jnp.ones((5, 3)))) == 2 * 4 * 3
    assert product_flops(jax.make_jaxpr(lambda i: jnp.zeros(7, jnp.int32).at[i].add(1))(rows)) == 0


def _np_recbole_conet_loss(state, batch, share: str, m: int) -> float:
    """RecBole-CDR's `CoNet.calculate_loss` (source_forward, target_forward, BCELoss, the
    unweighted norms of `crossparas`) in numpy, on its state_dict keys (nn.Linear weights are
    [out, in]) and its interaction fields."""

    def net_input(net, u, i):
        return np.concatenate(
            [state[f"{net}_user_embedding.weight"][u], state[f"{net}_item_embedding.weight"][i]], 1
        )

    total = 0.0
    for net in ("source", "target"):
        u, i, y = (batch[f"{net}_{k}"] for k in ("user_id", "item_id", "label"))
        a = {n: net_input(n, u, i) for n in ("source", "target")}
        over = (u if share == "users" else i) < m
        n_layers = sum(k.startswith("crossparas.") for k in state)
        for layer in range(n_layers):
            h = state[f"crossparas.{layer}.weight"].T
            new = {}
            for n, other in (("source", "target"), ("target", "source")):
                lin = f"{n}_crossunit_linear.{layer}"
                out = a[n] @ state[f"{lin}.weight"].T + state[f"{lin}.bias"]
                out[over] += (a[other] @ h)[over]
                new[n] = np.maximum(out, 0.0)
            a = new
        out = f"{net}_outputunit.0"
        z = a[net] @ state[f"{out}.weight"][0] + state[f"{out}.bias"][0]
        p = 1.0 / (1.0 + np.exp(-z))
        total += float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    n_cross = sum(k.startswith("crossparas.") for k in state)
    return total + sum(np.linalg.norm(state[f"crossparas.{k}.weight"]) for k in range(n_cross))


@pytest.mark.slow
@pytest.mark.parametrize("share", ["items", "users"])
def test_recbole_equal_hands_recbole_our_params_and_the_rows_our_step_trains_on(share):
    """What `recbole_equal` gives RecBole-CDR's CoNet (its state_dict, its interaction fields:
    our recorded positives then negatives with 1 / 0 labels) reproduces our stage loss through
    a numpy transcription of its `calculate_loss`; every parameter is mapped once."""
    import jax

    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):  # as the script runs
        ours = RE.ours_step(share)
    state, batch, meta = ours["state"], ours["batch"], ours["meta"]
    assert len(state) == len(ours["grads"]) == len(ours["stepped"]) == 23
    m = meta[f"overlapped_num_{share}"]
    assert m == 8 and meta[f"overlapped_num_{'users' if share == 'items' else 'items'}"] == 1
    for net in ("source", "target"):
        y = batch[f"{net}_label"]
        assert len(y) == 2 * RE.B and y[: RE.B].all() and not y[RE.B :].any()  # one negative each
        user, item, cross = ours["rows"][net]
        np.testing.assert_array_equal((user if share == "users" else item) < m, cross)
        np.testing.assert_array_equal(batch[f"{net}_user_id"], user)
    assert ours["rows"]["source"][2].any()  # some rows are cross-connected
    want = _np_recbole_conet_loss(state, batch, share, m)
    np.testing.assert_allclose(ours["loss"], want, rtol=1e-12)


def _np_recbole_dtcdr_loss(state, batch, alpha: float) -> float:
    """RecBole-CDR's `DTCDR.calculate_loss` with `base_model: NeuMF` and dropout 0 in numpy:
    max of the two domains' tables, the domain's MLP (Linear l at entry 3l + 1), its predict
    layer, sigmoid, BCELoss, alpha L_s + (1 - alpha) L_t."""
    losses = {}
    for net in ("source", "target"):
        u, i, y = (batch[f"{net}_{k}"] for k in ("user_id", "item_id", "label"))
        e = [
            np.maximum(
                state[f"source_{k}_embedding.weight"][x], state[f"target_{k}_embedding.weight"][x]
            )
            for k, x in (("user", u), ("item", i))
        ]
        a = np.concatenate(e, 1)
        n_layers = sum(k.startswith(f"{net}_mlp_layers.") for k in state) // 2
        for layer in range(n_layers):
            lin = f"{net}_mlp_layers.mlp_layers.{3 * layer + 1}"
            a = np.maximum(a @ state[f"{lin}.weight"].T + state[f"{lin}.bias"], 0.0)
        z = a @ state[f"{net}_predict_layer.weight"][0] + state[f"{net}_predict_layer.bias"][0]
        p = 1.0 / (1.0 + np.exp(-z))
        losses[net] = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return alpha * losses["source"] + (1 - alpha) * losses["target"]


@pytest.mark.slow
@pytest.mark.parametrize("share", ["items", "users"])
def test_recbole_equal_hands_recbole_dtcdr_our_params_and_rows(share):
    import jax

    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        ours = RE.ours_step(share, "dtcdr")
    assert len(ours["state"]) == len(ours["grads"]) == 20
    assert RE.MODELS["dtcdr"].config["alpha"] == 0.3
    want = _np_recbole_dtcdr_loss(ours["state"], ours["batch"], 0.3)
    np.testing.assert_allclose(ours["loss"], want, rtol=1e-12)


@pytest.mark.parametrize("share", ["items", "users"])
def test_bitgcf_equal_puts_our_rows_at_recbole_ids(share):
    """RecBole-CDR's ids: 0 padding, 1..m the shared pairs (one id for both copies), then the
    target-only rows, then the source-only; each domain's rows distinct; its counts include
    the padding row."""
    from benchmarks.reproduce import bitgcf_equal as BE

    split = RE.tiny_split(share)
    ids = BE.recbole_ids(split, share)
    pairs = split.data.item_overlap if share == "items" else split.data.overlap
    side = "item" if share == "items" else "user"
    other = "user" if share == "items" else "item"
    m = len(pairs)
    np.testing.assert_array_equal(ids["source"][side][pairs[:, 0]], np.arange(1, m + 1))
    np.testing.assert_array_equal(ids["target"][side][pairs[:, 1]], np.arange(1, m + 1))
    assert ids[f"overlapped_num_{side}s"] == m + 1 and ids[f"overlapped_num_{other}s"] == 1
    for s in ("user", "item"):
        src, tgt = ids["source"][s], ids["target"][s]
        assert len(set(src)) == len(src) and len(set(tgt)) == len(tgt) and 0 not in set(src)
        n_shared = ids[f"overlapped_num_{s}s"] - 1
        t_only, s_only = tgt[tgt > n_shared], src[src > n_shared]
        assert t_only.max(initial=0) < s_only.min(initial=10**9)  # target-only ids first
        assert ids[f"target_num_{s}s"] == 1 + n_shared + len(t_only)
        assert ids[f"total_num_{s}s"] == 1 + n_shared + len(t_only) + len(s_only)
    state = BE._state(
        {
            d: {
                "user": np.ones((len(ids[d]["user"]), 2)),
                "item": np.ones((len(ids[d]["item"]), 2)),
            }
            for d in ("source", "target")
        },
        ids,
    )
    assert state["source_user_embedding.weight"][0].sum() == 0  # padding row stays zero


def test_recbole_seeds_per_model():
    assert R.parse_seeds("3", ["cmf", "conet"]) == {"cmf": [0, 1, 2], "conet": [0, 1, 2]}
    assert R.parse_seeds("2,conet=4", ["cmf", "conet"]) == {"cmf": [0, 1], "conet": [0, 1, 2, 3]}
    for bad in ("", "x", "2,dtcdr=3", "2,conet=0"):
        with pytest.raises(SystemExit, match="--seeds"):
            R.parse_seeds(bad, ["cmf", "conet"])


def test_recbole_also_runs_for_the_models_its_overrides_name():
    every = ["cmf", "emcdr", "conet"]
    assert R.also_models(("emcdr.tune_embeddings=true",), every) == ["emcdr"]
    assert R.also_models(("emcdr.hidden=128", "conet.dim=32"), every) == ["emcdr", "conet"]
    assert R.also_models(("trainer.epochs=100", "mf.lr=1e-3"), every) == every


def test_recbole_saved_result_of_ours_survives_an_added_config_field(tmp_path):
    """A result saved before a config field existed is found for the config that holds that
    field at its default (not for one that changes it, nor for another seed)."""
    from transferjax import config as C

    cfg = C.apply_overrides(C.RunConfig(), ["method=emcdr", "trainer.lr=0.01"])
    stored = C.to_dict(cfg)
    del stored["emcdr"]["tune_embeddings"]  # as saved before the field was added
    K.save_json(tmp_path / "emcdr-00000000-seed1.json", {"seed": 1, "config": stored})
    K.save_json(tmp_path / "emcdr-11111111-seed2.json", {"seed": 2})  # no config: never matched
    assert R._saved_ours(tmp_path / "emcdr-abcdef12-seed1.json", cfg, 1)["seed"] == 1
    assert R._saved_ours(tmp_path / "emcdr-abcdef12-seed2.json", cfg, 2) is None
    tuned = C.apply_overrides(cfg, ["emcdr.tune_embeddings=true"])
    assert R._saved_ours(tmp_path / "emcdr-abcdef12-seed1.json", tuned, 1) is None
    K.save_json(tmp_path / "emcdr-abcdef12-seed1.json", {"seed": 1, "own": True})
    assert R._saved_ours(tmp_path / "emcdr-abcdef12-seed1.json", tuned, 1)["own"]


def test_recbole_ours_seed_gets_its_own_split():
    """Seed s of ours trains on protocol seed s's split (a new split per seed, as RecBole-CDR
    draws one with each seed), each split built once."""
    from transferjax import config as C

    built = []

    def build(protocol, data):
        built.append(protocol.seed)
        return f"split{protocol.seed}"

    seeds = R.SeedSplits("data", build)
    cfg = C.RunConfig(method="mf")
    for s in (0, 1, 1, 2, 0):
        cfg_s, split = seeds(cfg, s)
        assert (cfg_s.protocol.seed, split, cfg_s.method) == (s, f"split{s}", "mf")
    assert built == [0, 1, 2]


def _np_recbole_lightgcn_loss(state, batch, graph, meta) -> float:
    """recbole 1.0.1's `LightGCN.calculate_loss` in numpy: the binary adjacency of the distinct
    training pairs normalised by (degree + 1e-7)^(-1/2) (`get_norm_adj_mat`), the mean of the
    n_layers + 1 layers, BPRLoss -log(gamma + sigmoid(pos - neg)), EmbLoss (Frobenius norms of
    the batch's ego rows, not squared, over the batch size)."""
    eu, ei = state["user_embedding.weight"], state["item_embedding.weight"]
    nu, ni = meta["n_users"], meta["n_items"]
    a = np.zeros((nu + ni, nu + ni))
    a[graph["user"], nu + graph["item"]] = a[nu + graph["item"], graph["user"]] = 1.0
    d = ((a > 0).sum(1) + 1e-7) ** -0.5
    adj = d[:, None] * a * d[None]
    layers = [np.concatenate([eu, ei])]
    for _ in range(meta["config"]["n_layers"]):
        layers.append(adj @ layers[-1])
    final = np.mean(layers, 0)
    fu, fi = final[:nu], final[nu:]
    u, i, j = (batch[k] for k in ("user_id", "item_id", "neg_item_id"))
    diff = np.sum(fu[u] * fi[i], 1) - np.sum(fu[u] * fi[j], 1)
    bpr = -np.mean(np.log(meta.get("bpr_gamma", 1e-10) + 1 / (1 + np.exp(-diff))))
    norms = sum(np.linalg.norm(x) for x in (eu[u], ei[i], ei[j])) / len(u)
    return bpr + meta["config"]["reg_weight"] * norms


@pytest.mark.slow
def test_lightgcn_equal_hands_recbole_our_params_rows_and_graph():
    """What `lightgcn_equal` gives recbole's LightGCN (tables, (user, item, negative) triples,
    the training rows as its graph) reproduces our stage loss through a numpy transcription of
    its `calculate_loss`; the negatives are not training items of their users."""
    import jax

    from benchmarks.reproduce import lightgcn_equal as LE

    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        ours = LE.ours_step(exact=True)
    b, g, meta = ours["batch"], ours["graph"], ours["meta"]
    assert len(b["user_id"]) == RE.B and meta["bpr_gamma"] == 0.0
    assert not _as_set(b["user_id"], b["neg_item_id"]) & _as_set(g["user"], g["item"])
    want = _np_recbole_lightgcn_loss(ours["state"], b, g, meta)
    np.testing.assert_allclose(ours["loss"], want, rtol=1e-12)
    assert sorted(ours["grads"]) == sorted(ours["state"]) == sorted(ours["stepped"])


def test_recbole_lightgcn_settings_split_files_and_config(tmp_path):
    """Ours copies recbole's LightGCN config; the split goes to recbole as benchmark files
    with our rows, in order; their config reads them without filtering."""
    from benchmarks.reproduce import recbole_lightgcn as L

    props = tmp_path / "properties"
    (props / "model").mkdir(parents=True)
    (props / "overall.yaml").write_text(
        "epochs: 300\ntrain_batch_size: 2048\nlearner: adam\nlearning_rate: 0.001\n"
        "neg_sampling:\n  uniform: 1\nstopping_step: 10\nweight_decay: 0.0\nrequire_pow: False\n"
    )
    (props / "model" / "LightGCN.yaml").write_text(
        "embedding_size: 64\nn_layers: 2\nreg_weight: 1e-05\n"
    )
    theirs = L.their_config(props, "epochs: 7")
    sets = dict(s.split("=", 1) for s in L.matched_settings(theirs))
    assert sets["trainer.epochs"] == "7" and sets["trainer.patience"] == "11"
    assert sets["trainer.batch_size"] == "2048" and float(sets["lightgcn.reg"]) == 1e-5
    assert sets["lightgcn.negatives"] == "unseen" and sets["lightgcn.reg_form"] == "norms"
    assert sets["lightgcn.init"] == "xavier_uniform" and sets["lightgcn.n_layers"] == "2"
    with pytest.raises(ValueError, match="require_pow"):
        L.matched_settings({**theirs, "require_pow": True})
    with pytest.raises(ValueError, match="neg_sampling"):
        L.matched_settings({**theirs, "neg_sampling": {"uniform": 2}})

    split = _tiny_split()
    sizes = L.export_split(split, tmp_path / "d")
    for part, rows in (("train", split.target_train), ("valid", split.valid), ("test", split.test)):
        lines = (tmp_path / "d" / f"{L.DATASET}.{part}.inter").read_text().splitlines()
        assert lines[0] == "user_id:token\titem_id:token" and len(lines) - 1 == sizes[part]
        user = rows.user if part == "train" else rows.target_user
        got = np.array([[int(x) for x in line.split("\t")] for line in lines[1:]])
        np.testing.assert_array_equal(got, np.stack([user, rows.item], 1))
    conf = L.run_config(tmp_path / "d", 2, "epochs: 3")
    import yaml

    c = yaml.safe_load(conf)
    assert c["benchmark_filename"] == ["train", "valid", "test"] and c["seed"] == R.BASE_SEED + 2
    assert c["epochs"] == 3 and c["load_col"] == {"inter": ["user_id", "item_id"]}


def test_unicdr_harness_budget_selection_and_the_set_sampling_patch(tmp_path):
    """Ours trains at least the official steps; the official log is selected on our valid
    candidates (the first best), its own number is the last test it printed; the driver's
    `random.sample` of a set draws as Python 3.7-3.10 did (over `tuple(set)`); its reading of
    a train.txt shifts items by one and drops repeats, as `train_rec.py`."""
    import random
    import types

    from benchmarks.reproduce import unicdr as U
    from benchmarks.reproduce import unicdr_driver as UD

    split = types.SimpleNamespace(source_train=range(50_558), target_train=range(37_457))
    assert U.steps_per_epoch(split) == 99
    assert U.our_epochs(split, 10) == 51 and 51 * 99 >= 10 * U.ITERATIONS > 50 * 99

    def ep(e, v, t, own=None):
        rec = {"epoch": e, "train_s": 50.0, "t": 60.0 * e, "valid": {"ndcg@10": v}}
        rec["test"] = {"ndcg@10": t}
        return {**rec, "own": own} if own is not None else rec

    log = {
        "epochs": [
            {"epoch": 0, "train_s": 0.0, "t": 1.0, "own": {"valid_ndcg": 0.1, "test_ndcg": 0.11}},
            ep(1, 0.20, 0.21),
            ep(2, 0.30, 0.28),
            ep(3, 0.30, 0.35),
            ep(5, 0.25, 0.30, own={"valid_ndcg": 0.3, "test_ndcg": 0.31}),
            ep(10, 0.26, 0.30, own={"valid_ndcg": 0.29}),
        ]
    }
    s = U.summarize_official(log)
    assert s["selected_epoch"] == 2 and s["test"]["ndcg@10"] == 0.28
    assert s["own_best"] == 0.31 and s["wall_to_selected_s"] == 120.0
    assert s["train_s_per_step"] == 50.0 / U.ITERATIONS

    ours = {
        "history": [
            {"epoch": k, "valid": {"ndcg@10": k / 100}, "test": {"ndcg@10": k / 50}}
            for k in range(1, 12)
        ]
    }
    table = U.curve([ours], [log], 99).splitlines()
    # official epochs 1, 2, 3, 5, 10 against ours at ceil(500 e / 99) = 6, 11, then the last
    assert [row.split(" | ")[3] for row in table[2:]] == ["6 (594)"] + ["11 (1,089)"] * 4
    assert table[3].split(" | ")[1:3] == ["0.3000", "0.2800"] and "0.1100 | 0.2200" in table[3]

    pop = {5, 3, 17, 1000, 2}
    random.seed(3)
    got = [UD._sample_sets(pop, 2) for _ in range(5)]
    random.seed(3)
    assert got == [random.sample(tuple(pop), 2) for _ in range(5)]

    path = tmp_path / "train.txt"
    path.write_text("4\t0\t1\n4\t7\t1\n4\t0\t1\n1\t2\t1\n")
    lists, sets = UD._read_domain(path)
    assert lists == {4: [1, 8], 1: [3]} and sets == {4: {1, 8}, 1: {3}}
    lists, _ = UD._read_domain(path, ease=lambda u, i: 1)
    assert lists[4] == [[1, 1], [8, 1]]


def test_cdrib_train_summary_selects_each_side_on_our_valid_candidates():
    """One official CDRIB run serves both tasks: Game (Video -> Game) is the script's source
    side, Video its target side; each is selected on its own valid candidates (the first
    best), its own number is the last test the script printed for that side; the script
    evaluates itself from epoch 10 every 5 epochs."""
    from benchmarks.reproduce import cdrib_driver as CD
    from benchmarks.reproduce import cdrib_train as T

    assert T.SIDE == {"game": "source", "video": "target"}
    assert [e for e in range(1, 31) if CD.own_evaluation(e)] == [10, 15, 20, 25, 30]

    def ep(e, sv, st, tv, tt, own=None):
        rec = {"epoch": e, "train_s": 100.0 + e, "t": 110.0 * e}
        rec["source"] = {"valid": {"ndcg@10": sv}, "test": {"ndcg@10": st}}
        rec["target"] = {"valid": {"ndcg@10": tv}, "test": {"ndcg@10": tt}}
        return {**rec, "own": own} if own else rec

    own10 = {"source": {"valid": {}, "test": {"ndcg@10": 0.05}}, "target": {"valid": {}}}
    own15 = {"source": {"valid": {}}, "target": {"valid": {}, "test": {"ndcg@10": 0.07}}}
    log = {
        "epochs": [
            ep(1, 0.2, 0.21, 0.4, 0.41),
            ep(2, 0.3, 0.32, 0.4, 0.45),
            ep(10, 0.3, 0.33, 0.5, 0.52, own=own10),
            ep(15, 0.1, 0.10, 0.1, 0.11, own=own15),
        ]
    }
    game, video = T.summarize_official(log, "game"), T.summarize_official(log, "video")
    assert game["selected_epoch"] == 2 and game["test"]["ndcg@10"] == 0.32
    assert video["selected_epoch"] == 10 and video["test"]["ndcg@10"] == 0.52
    assert game["own_best"] == 0.05 and video["own_best"] == 0.07
    assert game["wall_to_selected_s"] == 220.0 and video["wall_s"] == 1650.0
    assert game["train_s_per_epoch"] == 106.0  # the median epoch

    ours = {
        "history": [
            {"epoch": k, "valid": {"ndcg@10": k / 100}, "test": {"ndcg@10": k / 50}}
            for k in (1, 2, 3)
        ]
    }
    table = T.curve([ours], [log], "video")
    assert table[2] == "| 1 | 0.0100 | 0.0200 | 0.4000 | 0.4100 |"
    assert table[4] == "| 3 | 0.0300 | 0.0600 | - | - |"  # no official epoch 3 in this log


def test_drivers_count_sparse_products_by_nonzeros():
    """`count_flops` (the DisenCDR and CDRIB drivers' `--count-flops`): 2 m k n per dense
    product, 2 nnz n per sparse-dense one (forward and backward), where torch's own counter
    would count the sparse operand as dense."""
    torch = pytest.importorskip("torch")
    from benchmarks.reproduce import cdrib_train as T
    from benchmarks.reproduce import disencdr_driver as DD

    idx = torch.tensor([[0, 1, 2, 2], [0, 1, 2, 5]])
    adj = torch.sparse_coo_tensor(idx, torch.ones(4), (1000, 6), check_invariants=True)
    x = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(8, 3, requires_grad=True)

    def step():
        (torch.spmm(adj, x) @ w).sum().backward()

    got = DD.count_flops(step)
    # forward: adj x (2 * 4 * 8), (adj x) w (2 * 1000 * 8 * 3); backward: grad w = (adj x)^T g
    # (2 * 8 * 1000 * 3), grad (adj x) = g w^T (2 * 1000 * 3 * 8), grad x = adj^T g' (2 * 4 * 8)
    assert got == {"dense": 3 * 2 * 1000 * 8 * 3, "sparse": 2 * (2 * 4 * 8)}

    flops = {"official": {"dense": 3e9, "sparse": 1e9, "steps_per_epoch": 10}, "game": 2e9}
    line = T.flops_line(flops, "game", [{"train_s_per_epoch": 1.0}], [{"train_s_per_epoch": 4.0}])
    assert "official 4.0 GFLOP" in line and "ours 2.0 GFLOP" in line
    assert "official 10 GFLOP/s, ours 20 GFLOP/s" in line


@pytest.mark.slow
@pytest.mark.parametrize("curves", ["select", "all"])
def test_train_ours_times_every_evaluation_of_its_history(curves):
    """`train_ours`'s "eval_s" has one wall time per history entry, in order, whether test is
    scored at every evaluation (`eval.curves=all`) or once after training ("select", the
    default): the harness reads the selected entry's as the wall time to the selected epoch."""
    from transferjax import config as C

    cfg = C.RunConfig(
        method="emcdr",
        eval=C.EvalConfig(curves=curves),
        trainer=C.TrainerConfig(epochs=4, batch_size=4),
    )
    cfg = C.apply_overrides(cfg, ["mf.dim=3", "mf.epochs=1", "emcdr.hidden=4"])
    r = K.train_ours(cfg, _tiny_split(), seed=0)
    assert len(r["history"]) == 4 and len(r["eval_s"]) == 4
    assert all(0 < a < b for a, b in zip(r["eval_s"], r["eval_s"][1:]))
    assert "test" in r["history"][r["selected"]]
