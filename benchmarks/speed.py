"""The speed suite: transferjax's JAX paths against PyTorch references, in one process.

    python -m benchmarks.speed [--quick] [--out benchmarks/results/speed.json]
                               [--device cpu|gpu] [--only mf,batch,dann,rank,scale]
                               [--torch-threads N] [--no-compile]
                               [--report BENCHMARKS.md] [--section speed-NAME] [--no-report]

(from the repository root). Besides the JSON and its markdown, the tables replace the marked
section `--section` (default `speed`; one per machine, e.g. `speed-h100`) of `--report`
(default BENCHMARKS.md), which `python -m benchmarks.quality` keeps when it regenerates the
file; `--no-report` leaves the report alone.

Sections (each variant measured side by side on the same machine, warm, median of repeats):
- "mf": MF training on ML-1M (90/10 random split, batch 1024, dim 32, Adam lr 1e-2):
  rows/s, compile time, peak memory and validation RMSE after the same epochs for JAX dense
  Adam, row-sparse lazy Adam and row-sparse row-wise Adagrad (`mf.sparse`) vs PyTorch fused
  dense Adam (eager and `torch.compile`), `SparseAdam` and Adagrad over sparse gradients
  (`benchmarks.mf_bench`; the Adagrad learning rates come from `benchmarks.mf_lr`); the JAX
  epochs are the trainer's (`make_epoch_fn`, epoch order shuffled on the host by
  `host_epoch_indices`).
- "batch": the same MF comparison (JAX row-sparse Adam and Adagrad and dense, PyTorch eager
  dense and sparse) at batch 256, 1,024 and 4,096 (quick: 256 and 4,096): dense Adam pays for
  whole tables every step, row-sparse updates for the rows a batch touches, so the ratio moves
  with the batch.
- "dann": one training step of the registered `dann` method as the trainer runs it (built by
  `get_method("dann").build`, its stage's compiled epoch program over `dann_steps` steps:
  encoders, heads, losses, cold simulation, DANN objective, Adam) on the ML-1M-like synthetic
  profile (256 rows per step, each with a source and a target bag; `benchmarks.dann_step`),
  vs its PyTorch reference in two first-layer forms, dense and `embedding_bag`
  (`benchmarks.dann_torch`; same params, batches, shapes and Adam).
- "ranking": full ranking of all 6,040 users over all 3,706 items (`benchmarks.rank_bench`).
- "scaling": JAX MF step time and peak memory vs items and interactions, dense vs sparse.

The device is JAX's default backend (or `--device`); PyTorch follows it (CUDA when JAX runs on
a GPU and CUDA is available). On a CPU, each PyTorch variant runs at 1 thread and at the
default (all cores), both timed in the same interleaved rounds, and the faster counts (the
tables name it; eager and compiled variants can differ), unless `--torch-threads` fixes it.
`torch.compile` compile times are measured with a fresh inductor cache (cold). Ratios are
JAX / PyTorch throughput from the same run.
Output: the JSON at `--out` and a markdown table beside it (same name, `.md`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import sys
import tempfile
import time

import jax

from benchmarks.sections import is_speed_section, put_section

DEFAULT_OUT = pathlib.Path("benchmarks/results/speed.json")  # from the repository root
SECTIONS = ("mf", "batch", "dann", "rank", "scale")

PROFILES = {  # MF trains 1 + mf_rounds epochs; DANN runs (1 + dann_rounds) * dann_steps steps
    "quick": {
        "mf_rounds": 3,
        "dann_steps": 10,
        "dann_rounds": 5,
        "rank_repeats": 3,
        "scale_rounds": 2,
        "items": (1_000, 10_000, 100_000),
        "interactions": (100_000, 1_000_000),
        "batches": (256, 4096),
        "batch_rounds": 1,
    },
    "full": {
        "mf_rounds": 5,
        "dann_steps": 20,
        "dann_rounds": 7,
        "rank_repeats": 5,
        "scale_rounds": 2,
        "items": (1_000, 10_000, 100_000, 1_000_000),
        "interactions": (100_000, 1_000_000, 10_000_000),
        "batches": (256, 1024, 4096),
        "batch_rounds": 2,
    },
}
SCALE_USERS, SCALE_ITEMS_FIXED, SCALE_N_FIXED = 10_000, 10_000, 100_000


def _log(msg: str) -> None:
    print(f"[speed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _try(name: str, fn, *args, **kwargs) -> dict:
    """Runs one variant; a failure is recorded as {"error": ...} instead of ending the run."""
    _log(f"{name} ...")
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - one broken variant must not sink the suite
        _log(f"{name} FAILED: {e!r}")
        return {"error": repr(e)[:500]}
    _log(f"{name} done in {time.perf_counter() - t0:.1f}s")
    return out


def _torch(platform: str):
    """(torch module or None, torch device or None)."""
    try:
        import torch
    except ImportError:
        return None, None
    from benchmarks.torch_ref import torch_device

    return torch, torch_device(platform)


class _Threads:
    """A PyTorch variant set up and run with `threads` intra-op threads (a process-wide setting
    in torch, so it is set again before each of the variant's calls)."""

    def __init__(self, torch, variant, threads: int):
        self.torch, self.v, self.threads = torch, variant, threads
        self.torch_cuda = variant.torch_cuda

    def _call(self, fn):
        self.torch.set_num_threads(self.threads)
        return fn()

    def setup(self):
        return self._call(self.v.setup)

    def run(self):
        return self._call(self.v.run)

    def info(self) -> dict:
        return {**self.v.info(), "threads": self.threads}

    def finish(self) -> dict:
        return self._call(self.v.finish)


def _thread_counts(torch, tdev, fixed: int | None) -> list[int]:
    """PyTorch's CPU thread counts to time: `fixed`, else 1 and the default (and all cores).
    Empty on a GPU (threads do not apply)."""
    if tdev.type == "cuda":
        return []
    if fixed:
        return [fixed]
    return sorted({1, torch.get_num_threads(), max(1, os.cpu_count() or 1)})


def _at_threads(torch, makers: dict, counts: list[int]) -> dict:
    """A fresh PyTorch variant per thread count, from `makers` {NAME: () -> variant}, as
    NAME@T (timed in the same interleaved rounds, so the choice of threads sees the same load
    as the comparison); just NAME where no thread counts apply."""
    if not counts:
        return {n: make() for n, make in makers.items()}
    return {f"{n}@{t}": _Threads(torch, make(), t) for n, make in makers.items() for t in counts}


def _fastest_threads(res: dict, rate: str) -> dict:
    """Folds NAME@T results into NAME: the thread count with the highest `rate`, plus
    `rate_by_threads`; results without @ pass through."""
    out, groups = {}, {}
    for name, r in res.items():
        base, at, t = name.partition("@")
        if at:
            groups.setdefault(base, {})[int(t)] = r
        else:
            out[name] = r
    for base, by in groups.items():
        ok = {t: r for t, r in by.items() if rate in r}
        best = max(ok, key=lambda t: ok[t][rate]) if ok else min(by)
        out[base] = {
            **by[best],
            "threads": best,
            "rate_by_threads": {str(t): r.get(rate) for t, r in sorted(by.items())},
        }
    return out


def _jax_mf_variants(train, valid, dev, *, batch: int) -> dict:
    """The JAX MF variants: dense Adam, and row-sparse lazy Adam and row-wise Adagrad where
    the row-sparse path is available."""
    from benchmarks import mf_bench as M

    v = {"jax_dense": M.JaxMF(train, valid, sparse=False, device=dev, batch=batch)}
    if M.sparse_available():
        v["jax_sparse"] = M.JaxMF(train, valid, sparse=True, device=dev, batch=batch)
        v["jax_sparse_adagrad"] = M.JaxMF(
            train, valid, sparse=True, optimizer="adagrad", device=dev, batch=batch
        )
    return v


def _mf(prof, dev, torch, tdev, *, threads, compile_ok) -> dict:
    from benchmarks import mf_bench as M
    from benchmarks.measure import interleaved

    train, valid = M.random_split(M.load_ml1m())
    out = {
        "setup": {
            "n_train": len(train),
            "n_valid": len(valid),
            "n_users": train.n_users,
            "n_items": train.n_items,
            "batch": M.BATCH,
            "dim": M.DIM,
            "lr": M.LR,
            "reg": M.REG,
            "adagrad_lr": M.ADAGRAD_LR,
            "epochs": 1 + prof["mf_rounds"],
        }
    }
    v = _jax_mf_variants(train, valid, dev, batch=M.BATCH)
    if torch is not None:
        out["torch_threads_timed"] = counts = _thread_counts(torch, tdev, threads)
        init = jax.device_get(M.mf_stage(train, sparse=False, seed=0)[0]["mf"])
        kw = dict(init=init, device=tdev)
        kinds = {
            "torch_dense": ("dense", False),
            "torch_dense_compiled": ("dense", True),
            "torch_sparse": ("sparse", False),
            "torch_sparse_adagrad": ("sparse_adagrad", False),
        }
        v.update(
            _at_threads(
                torch,
                {
                    name: functools.partial(M.TorchMFVariant, train, valid, kind=k, compile=c, **kw)
                    for name, (k, c) in kinds.items()
                    if compile_ok or not c
                },
                counts,
            )
        )
    res = interleaved(v, rounds=prof["mf_rounds"], jax_device=dev, log=lambda m: _log("mf " + m))
    out["variants"] = _fastest_threads(M.summarize(res, len(train)), "examples_per_s")
    if not M.sparse_available():
        out["variants"]["jax_sparse"] = {"pending": "mf.sparse is not in this transferjax yet"}
    return out


def _batch(prof, dev, torch, tdev, *, threads) -> dict:
    """MF on ML-1M at each batch size of the profile: JAX row-sparse and dense against
    PyTorch fused dense Adam and SparseAdam (eager), interleaved per batch size. Dense Adam
    pays for the whole tables every step, row-sparse updates for the rows a batch touches, so
    their ratio moves with the batch size."""
    from benchmarks import mf_bench as M
    from benchmarks.measure import interleaved

    train, valid = M.random_split(M.load_ml1m())
    counts = []
    if torch is not None:
        counts = _thread_counts(torch, tdev, threads)
        init = jax.device_get(M.mf_stage(train, sparse=False, seed=0)[0]["mf"])
    rows = []
    for b in prof["batches"]:
        v = _jax_mf_variants(train, valid, dev, batch=b)
        if torch is not None:
            v.update(
                _at_threads(
                    torch,
                    {
                        f"torch_{k}": functools.partial(
                            M.TorchMFVariant,
                            train,
                            valid,
                            kind=k,
                            compile=False,
                            init=init,
                            device=tdev,
                            batch=b,
                        )
                        for k in ("dense", "sparse")
                    },
                    counts,
                )
            )
        res = M.summarize(
            interleaved(
                v,
                rounds=prof["batch_rounds"],
                jax_device=dev,
                log=lambda m, b=b: _log(f"batch {b} " + m),
            ),
            len(train),
            batch=b,
        )
        for name, r in _fastest_threads(res, "examples_per_s").items():
            rows.append(
                {
                    "batch": b,
                    "variant": name,
                    **{
                        k: r[k]
                        for k in ("examples_per_s", "step_ms", "valid_rmse", "error", "threads")
                        if k in r
                    },
                }
            )
    return {"epochs": 1 + prof["batch_rounds"], "torch_threads_timed": counts, "rows": rows}


def _dann(prof, dev, torch, tdev, *, threads) -> dict:
    """The registered `dann` method's step against its PyTorch reference, interleaved."""
    from benchmarks import dann_step as S
    from benchmarks.measure import interleaved

    split, steps = S.profile_split("ml1m_like"), prof["dann_steps"]
    out = {
        "setup": {
            "profile": "ml1m_like",
            **S.setup_facts(split),
            "dims": S.DIMS,
            "lr": S.LR,
            "steps_per_round": steps,
            "rounds": prof["dann_rounds"],
        }
    }
    v = {"jax_dann": S.JaxDannStep(split, steps=steps, device=dev)}
    if torch is not None:
        from benchmarks.dann_torch import TorchDannStep

        out["torch_threads_timed"] = counts = _thread_counts(torch, tdev, threads)
        model, phi, examples = S.reference_inputs(split, steps=steps)
        v.update(
            _at_threads(
                torch,
                {
                    f"torch_{form}": functools.partial(
                        TorchDannStep,
                        model,
                        phi,
                        examples,
                        form=form,
                        steps=steps,
                        batch=S.BATCH,
                        device=tdev,
                    )
                    for form in ("dense", "bag")
                },
                counts,
            )
        )
    res = interleaved(
        v, rounds=prof["dann_rounds"], jax_device=dev, log=lambda m: _log("dann " + m)
    )
    out["variants"] = _fastest_threads(S.summarize(res), "steps_per_s")
    return out


def _rank(prof, dev) -> dict:
    from benchmarks import rank_bench as R
    from benchmarks.mf_bench import load_ml1m

    return _try("full ranking", R.bench, load_ml1m(), repeats=prof["rank_repeats"], device=dev)


def _scale(prof, dev) -> dict:
    from benchmarks import mf_bench as M

    out = {
        "setup": {
            "n_users": SCALE_USERS,
            "items_axis_interactions": SCALE_N_FIXED,
            "interactions_axis_items": SCALE_ITEMS_FIXED,
            "epochs": 1 + prof["scale_rounds"],
            "sparse": M.sparse_available(),
        }
    }
    if not M.sparse_available():
        out["sparse"] = {"pending": "mf.sparse is not in this transferjax yet"}
    axes = {
        "items": [(SCALE_USERS, n_i, SCALE_N_FIXED) for n_i in prof["items"]],
        "interactions": [(SCALE_USERS, SCALE_ITEMS_FIXED, n) for n in prof["interactions"]],
    }
    for axis, pts in axes.items():
        out[f"vs_{axis}"] = _try(
            f"scaling vs {axis}",
            M.scaling,
            pts,
            sparse_too=M.sparse_available(),
            rounds=prof["scale_rounds"],
            device=dev,
            log=lambda m: _log("scale " + m),
        )
    return out


def run_speed(
    *,
    out: str,
    quick: bool,
    device: str | None,
    only=None,
    torch_threads: int | None = None,
    compile: bool = True,
) -> dict:
    """Runs the suite, writes `out` (JSON) and `out` with suffix .md; returns the results.

    Args:
      out: JSON path (its folder is created).
      quick: the shrunken profile (fewer epochs, steps, repeats and scaling points).
      device: "cpu" | "gpu" | None (JAX's default backend).
      only: optional subset of ("mf", "dann", "rank", "scale").
      torch_threads: fix PyTorch's CPU threads instead of probing.
      compile: include the `torch.compile` variants.

    Returns:
      The results dict (also holds "markdown", the table written beside the JSON).
    """
    only = tuple(only or SECTIONS)
    bad = set(only) - set(SECTIONS)
    if bad:
        raise ValueError(f"unknown sections {sorted(bad)}; valid: {', '.join(SECTIONS)}")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with torch
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return _run(
            out=out,
            quick=quick,
            device=device,
            only=only,
            torch_threads=torch_threads,
            compile=compile,
        )
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:  # cold torch.compile
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        try:
            return _run(
                out=out,
                quick=quick,
                device=device,
                only=only,
                torch_threads=torch_threads,
                compile=compile,
            )
        finally:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)


def _run(*, out, quick, device, only, torch_threads, compile) -> dict:
    from benchmarks.measure import machine_info
    from benchmarks.speed_report import add_ratios, to_markdown

    dev = jax.devices(device)[0] if device else jax.devices()[0]
    prof = PROFILES["quick" if quick else "full"]
    torch, tdev = _torch(dev.platform)
    t0 = time.perf_counter()
    res = {
        "profile": "quick" if quick else "full",
        "sections": list(only),
        "machine": machine_info(dev, tdev),
    }
    with jax.default_device(dev):
        if "mf" in only:
            res["mf"] = _mf(prof, dev, torch, tdev, threads=torch_threads, compile_ok=compile)
        if "batch" in only:
            res["batch"] = _try(
                "MF vs batch size", _batch, prof, dev, torch, tdev, threads=torch_threads
            )
        if "dann" in only:
            res["dann"] = _dann(prof, dev, torch, tdev, threads=torch_threads)
        if "rank" in only:
            res["ranking"] = _rank(prof, dev)
        if "scale" in only:
            res["scaling"] = _scale(prof, dev)
    res["total_s"] = time.perf_counter() - t0
    if torch is None:
        res["torch_missing"] = "torch is not installed: PyTorch variants skipped"
    add_ratios(res)
    md = to_markdown(res)
    path = pathlib.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1, default=str))
    path.with_suffix(".md").write_text(md)
    res["markdown"] = md
    return res


def build_parser() -> argparse.ArgumentParser:
    """The suite's flags."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON path (.md written beside)")
    p.add_argument("--quick", action="store_true", help="shrunken profile (~3 min on 2 cores)")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default=None,
        help="JAX platform (default: JAX's default backend)",
    )
    p.add_argument("--only", default=None, help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch CPU threads (default: each variant timed at 1 thread and "
        "at the default, the faster kept)",
    )
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile variants")
    p.add_argument(
        "--report",
        default="BENCHMARKS.md",
        help="markdown file whose speed section is replaced (default BENCHMARKS.md)",
    )
    p.add_argument(
        "--section",
        default="speed",
        help="name of the marked section written, one per machine (default speed; "
        "names starting with 'speed' survive `python -m benchmarks.quality`)",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="write only the JSON and its markdown, not the report's section",
    )
    return p


def command(args) -> str:
    """The command line that the report's section names as its source."""
    cmd = "python -m benchmarks.speed" + (" --quick" if args.quick else "")
    cmd += f" --only {args.only}" if args.only else ""
    cmd += f" --section {args.section}" if args.section != "speed" else ""
    return cmd


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not args.no_report and not is_speed_section(args.section):  # before any measurement
        p.error(
            f"--section {args.section!r}: a speed section's name starts with 'speed' and "
            "holds only letters, digits, '_', '.' and '-' (e.g. speed-h100)"
        )
    res = run_speed(
        out=args.out,
        quick=args.quick,
        device=args.device,
        only=args.only.split(",") if args.only else None,
        torch_threads=args.torch_threads,
        compile=not args.no_compile,
    )
    print(res["markdown"])
    print(f"written: {args.out} and {pathlib.Path(args.out).with_suffix('.md')}")
    if not args.no_report:
        put_section(
            args.report,
            args.section,
            f"## Speed (generated by `{command(args)}`; JSON: `{args.out}`)\n\n{res['markdown']}",
        )
        print(f"section {args.section} of {args.report} replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
