"""Ratios, target checks and the markdown table of a speed-suite result (`benchmarks.speed`).

Ratios are JAX / PyTorch throughput (rows/s for MF, steps/s for DANN: the registered `dann`
method's step against its PyTorch reference) of one run; a target passes when its ratio
reaches the threshold. Validation RMSE counts as "equal" within
`RMSE_TOL`.
"""

from __future__ import annotations

RMSE_TOL = 0.005

MF_RATIOS = {  # name: (numerator variant, denominator variant)
    "mf_jax_dense_vs_torch_dense": ("jax_dense", "torch_dense"),
    "mf_jax_dense_vs_torch_dense_compiled": ("jax_dense", "torch_dense_compiled"),
    "mf_jax_dense_vs_best_torch_dense": ("jax_dense", "best_torch_dense"),
    "mf_jax_sparse_vs_torch_dense": ("jax_sparse", "torch_dense"),
    "mf_jax_sparse_vs_torch_sparse": ("jax_sparse", "torch_sparse"),
    "mf_jax_sparse_vs_torch_dense_compiled": ("jax_sparse", "torch_dense_compiled"),
    "mf_jax_sparse_adagrad_vs_torch_dense": ("jax_sparse_adagrad", "torch_dense"),
    "mf_jax_sparse_adagrad_vs_best_torch_dense": ("jax_sparse_adagrad", "best_torch_dense"),
    "mf_jax_sparse_adagrad_vs_torch_sparse": ("jax_sparse_adagrad", "torch_sparse"),
    "mf_jax_sparse_adagrad_vs_torch_sparse_adagrad": ("jax_sparse_adagrad", "torch_sparse_adagrad"),
}
DANN_RATIOS = {
    "dann_jax_vs_torch_dense": ("jax_dann", "torch_dense"),
    "dann_jax_vs_torch_bag": ("jax_dann", "torch_bag"),
    "dann_jax_vs_best_torch": ("jax_dann", "best_torch"),
}
TARGETS = (  # (description, ratio name, threshold)
    (
        "MF: JAX dense >= 2x best PyTorch dense Adam (fused eager or compiled)",
        "mf_jax_dense_vs_best_torch_dense",
        2.0,
    ),
    (
        "MF: JAX row-sparse lazy Adam >= 5x PyTorch fused dense Adam (eager)",
        "mf_jax_sparse_vs_torch_dense",
        5.0,
    ),
    (
        "MF: JAX row-sparse row-wise Adagrad >= 5x PyTorch fused dense Adam (eager)",
        "mf_jax_sparse_adagrad_vs_torch_dense",
        5.0,
    ),
    (
        "MF: JAX row-sparse lazy Adam >= 1.5x PyTorch SparseAdam",
        "mf_jax_sparse_vs_torch_sparse",
        1.5,
    ),
    (
        "MF: JAX row-sparse row-wise Adagrad >= 1.5x PyTorch sparse Adagrad",
        "mf_jax_sparse_adagrad_vs_torch_sparse_adagrad",
        1.5,
    ),
    ("DANN step (the dann method): JAX >= 3x PyTorch dense", "dann_jax_vs_torch_dense", 3.0),
    (
        "DANN step (the dann method): JAX >= 1.2x PyTorch embedding_bag",
        "dann_jax_vs_torch_bag",
        1.2,
    ),
)


def _rate(v: dict | None, key: str):
    return None if not v or key not in v else v[key]


def _with_best_dense(variants: dict, key: str) -> dict:
    """`variants` plus "best_torch_dense": the faster (by `key`) of PyTorch's eager and
    compiled dense variants, where either ran."""
    out = dict(variants)
    dense = [out[k] for k in ("torch_dense", "torch_dense_compiled") if _rate(out.get(k), key)]
    if dense:
        out["best_torch_dense"] = max(dense, key=lambda v: v[key])
    return out


def add_ratios(res: dict) -> None:
    """Adds res["ratios"] and res["targets"] (pass/miss per target) in place."""
    ratios = {}
    mf = _with_best_dense(res.get("mf", {}).get("variants", {}), "examples_per_s")
    for name, (a, b) in MF_RATIOS.items():
        x, y = _rate(mf.get(a), "examples_per_s"), _rate(mf.get(b), "examples_per_s")
        if x and y:
            ratios[name] = x / y
    dn = dict(res.get("dann", {}).get("variants", {}))
    torch_dann = [dn[k] for k in ("torch_dense", "torch_bag") if _rate(dn.get(k), "steps_per_s")]
    if torch_dann:
        dn["best_torch"] = max(torch_dann, key=lambda v: v["steps_per_s"])
    for name, (a, b) in DANN_RATIOS.items():
        x, y = _rate(dn.get(a), "steps_per_s"), _rate(dn.get(b), "steps_per_s")
        if x and y:
            ratios[name] = x / y
    batch = res.get("batch", {}).get("rows")
    if batch:
        by = {(r["batch"], r["variant"]): r for r in batch}
        for b in sorted({r["batch"] for r in batch}):
            for num, den in (
                ("jax_sparse", "torch_dense"),
                ("jax_sparse", "torch_sparse"),
                ("jax_sparse_adagrad", "torch_dense"),
            ):
                x = _rate(by.get((b, num)), "examples_per_s")
                y = _rate(by.get((b, den)), "examples_per_s")
                if x and y:
                    ratios[f"mf_batch{b}_{num}_vs_{den}"] = x / y
    res["ratios"] = ratios
    targets = []
    for desc, key, thr in TARGETS:
        val = ratios.get(key)
        if val is None and key.split("_")[0] not in res:  # a section this run left out
            continue
        targets.append(
            {
                "target": desc,
                "value": val,
                "threshold": thr,
                "status": "n/a" if val is None else ("pass" if val >= thr else "MISS"),
            }
        )
    rank = res.get("ranking", {})
    if "wall_s" in rank:
        targets.append(
            {
                "target": "Full ranking of all ML-1M users < 2 s",
                "value": rank["wall_s"],
                "threshold": 2.0,
                "status": "pass" if rank["wall_s"] < 2.0 else "MISS",
            }
        )
    for jx, tv in (
        ("jax_dense", "torch_dense"),
        ("jax_sparse", "torch_sparse"),
        ("jax_sparse", "torch_dense"),
        ("jax_sparse_adagrad", "torch_dense"),
        ("jax_sparse_adagrad", "torch_sparse_adagrad"),
    ):
        a, b = _rate(mf.get(jx), "valid_rmse"), _rate(mf.get(tv), "valid_rmse")
        if a is not None and b is not None:
            targets.append(
                {
                    "target": f"MF valid RMSE: {jx} <= {tv} (+{RMSE_TOL})",
                    "value": a,
                    "threshold": b,
                    "status": "pass" if a <= b + RMSE_TOL else "MISS",
                }
            )
    res["targets"] = targets


def _f(x, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return out + [""]


def _status(v: dict) -> str | None:
    if "error" in v:
        return "error: " + v["error"][:80]
    if "pending" in v:
        return "pending: " + v["pending"]
    return None


def _threads_note(section: dict) -> str:
    """How the section chose PyTorch's CPU threads."""
    counts = section.get("torch_threads_timed")
    if not counts:
        return "PyTorch threads: n/a"
    if len(counts) == 1:
        return f"PyTorch threads {counts[0]}"
    return (
        "each PyTorch variant timed at "
        + " and ".join(map(str, counts))
        + " threads, the faster shown"
    )


def _name(name: str, v: dict) -> str:
    """A table row's variant, with the thread count a PyTorch variant ran at."""
    return f"{name} ({v['threads']} thr)" if v.get("threads") else name


def to_markdown(res: dict) -> str:
    """The human-readable summary of a result dict."""
    m = res["machine"]
    lines = [
        f"# transferjax speed suite ({res['profile']})",
        "",
        f"CPU {m['cpu']} ({m['cores']} cores, load {m.get('load_avg_1m')}), "
        f"JAX {m['jax']} on {m['jax_backend']} ({m['jax_device']}), "
        f"PyTorch {m.get('torch') or 'not installed'} on {m.get('torch_device', '-')}; "
        f"total {res.get('total_s', 0):.0f} s.",
        "",
    ]
    if "mf" in res:
        mf = res["mf"]
        s = mf["setup"]
        lines += [
            f"## MF training, ML-1M ({s['n_train']:,} train rows, batch {s['batch']}, "
            f"dim {s['dim']}, {s['epochs']} epochs; {_threads_note(mf)})",
            "",
        ]
        if "adagrad_lr" in s:
            ag = s["adagrad_lr"]
            lines += [
                f"Adam lr {s.get('lr')}; Adagrad lr: JAX row-wise {ag.get('jax_rowwise')}, "
                f"PyTorch {ag.get('torch_sparse')} (each the best of a grid on another "
                "split: `python -m benchmarks.mf_lr`).",
                "",
            ]
        rows = []
        for k, v in mf["variants"].items():
            st = _status(v)
            rows.append(
                [_name(k, v), st] + ["" for _ in range(5)]
                if st
                else [
                    _name(k, v),
                    _f(v["examples_per_s"], 0),
                    _f(v["step_ms"], 3),
                    _f(v.get("compile_s")),
                    _f(v.get("peak_rss_mb"), 0),
                    _f(v.get("peak_cuda_mb", v.get("peak_device_mb")), 0),
                    _f(v.get("valid_rmse"), 4),
                ]
            )
        lines += _table(
            [
                "variant",
                "rows/s",
                "ms/step",
                "compile s",
                "peak RSS MB",
                "peak dev MB",
                "valid RMSE",
            ],
            rows,
        )
    if "batch" in res:
        b = res["batch"]
        lines += [
            f"## MF vs batch size (ML-1M, {b.get('epochs', '-')} epochs, learning rate "
            f"as above; eager PyTorch; {_threads_note(b)})",
            "",
        ]
        lines += _table(
            ["batch", "variant", "rows/s", "ms/step", "valid RMSE"],
            [
                [
                    r["batch"],
                    _name(r["variant"], r),
                    _f(r.get("examples_per_s"), 0),
                    _f(r.get("step_ms"), 3),
                    _f(r.get("valid_rmse"), 4),
                ]
                if "error" not in r
                else [r["batch"], r["variant"], _status(r), "", ""]
                for r in b["rows"]
            ]
            if "rows" in b
            else [["-", _status(b), "", "", ""]],
        )
    if "dann" in res:
        d = res["dann"]
        s = d["setup"]
        src, tgt = s["source"], s["target"]
        lines += [
            f"## DANN step: the registered `dann` method ({s['profile']}: "
            f"{s['batch']} rows/step, each a source and a target bag; "
            f"{src['items']:,} / {tgt['items']:,} items, ~{src['entries_per_user']:,.0f} / "
            f"~{tgt['entries_per_user']:,.0f} entries/user; {s['steps_per_round']} steps "
            f"per round; {_threads_note(d)})",
            "",
        ]
        rows = []
        for k, v in d["variants"].items():
            st = _status(v)
            rows.append(
                [_name(k, v), st, "", "", "", ""]
                if st
                else [
                    _name(k, v),
                    _f(v["steps_per_s"], 1),
                    _f(v["step_ms"], 2),
                    _f(v.get("compile_s", v.get("first_call_s"))),
                    _f(v.get("peak_rss_mb"), 0),
                    _f(v.get("peak_cuda_mb", v.get("peak_device_mb")), 0),
                ]
            )
        lines += _table(
            ["variant", "steps/s", "ms/step", "compile/first s", "peak RSS MB", "peak dev MB"], rows
        )
    if "ranking" in res:
        r = res["ranking"]
        lines += ["## Full ranking (all users x all items, top-k, training items excluded)", ""]
        lines += _table(
            ["users", "items", "wall s (median)", "compile s", "peak RSS MB"],
            [
                [
                    r.get("n_users"),
                    r.get("n_items"),
                    _f(r.get("wall_s"), 3),
                    _f(r.get("compile_s")),
                    _f(r.get("peak_rss_mb"), 0),
                ]
            ]
            if "wall_s" in r
            else [[_status(r), "", "", "", ""]],
        )
    if "scaling" in res:
        sc = res["scaling"]
        lines += [
            "## MF scaling (JAX; synthetic uniform interactions, "
            f"{sc['setup']['n_users']:,} users)",
            "",
        ]
        rows = []
        for key, pts in sc.items():
            if not key.startswith("vs_"):
                continue
            if isinstance(pts, dict):
                rows.append([key, _status(pts), "", "", "", "", ""])
                continue
            for p in pts:
                rows.append(
                    [
                        key,
                        p["kind"],
                        p["n_items"],
                        p["interactions"],
                        _f(p.get("step_ms"), 3) if "error" not in p else _status(p),
                        _f(p.get("peak_rss_mb", p.get("peak_device_mb")), 0),
                        _f(p.get("xla_temp_mb"), 1),
                    ]
                )
        if isinstance(sc.get("sparse"), dict):
            rows.append(["sparse", _status(sc["sparse"]), "", "", "", "", ""])
        lines += _table(
            ["series", "update", "items", "interactions", "ms/step", "peak RSS MB", "XLA temp MB"],
            rows,
        )
    if res.get("ratios"):
        lines += ["## Ratios (JAX / PyTorch throughput, same run)", ""]
        lines += _table(["ratio", "value"], [[k, v] for k, v in res["ratios"].items()])
    if res.get("targets"):
        lines += ["## Targets", ""]
        lines += _table(
            ["target", "value", "threshold", "status"],
            [
                [t["target"], _f(t["value"], 3), _f(t["threshold"], 3), t["status"]]
                for t in res["targets"]
            ],
        )
    return "\n".join(lines)
