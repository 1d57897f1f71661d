"""Scaling: step time and per-device memory against the device count, on the "data" axis
(data parallel) or the "model" axis (embedding tables split by rows, `--axis model`).

For each device count N (`--devices`, default 1,2,4) a fresh process (`XLA_FLAGS=
--xla_force_host_platform_device_count=N` on a CPU; on a GPU/TPU machine the real devices, N
at most their count) trains each configuration with `trainer.mesh=data=N` (or `model=N`)
through the library's own trainer (`transferjax.train.run.build_trainer`, the registered
method's compiled epoch programs; a GPU worker sees the first N GPUs through
CUDA_VISIBLE_DEVICES; on a TPU slice run the worker yourself, `--worker N`, on an N-chip host):

  mf_sparse  target-only MF with row-sparse lazy Adam (`mf.sparse=true`)
  dann       the phi multi-task model with the adversarial domain discriminator

on the synthetic generator (`--users` overlapping users; the experiment
`experiments/synthetic_emcdr.py`'s other settings). Reported per configuration and N:
  step_ms      training time of one step (the trainer's train time over the steps it took,
               compiles excluded: `Result.train_time`);
  args_mb, temp_mb, out_mb   XLA's memory analysis of the compiled epoch program, per device
               (`Compiled.memory_analysis()`: the arguments, the scratch buffers and the
               outputs one device holds; on "data" params are replicated, so arguments
               do not fall with N; on "model" the tables and their optimizer slots do);
  table_mb     the bytes one device holds of the trained embedding tables' params (the
               leaves `transferjax.train.mesh.TABLES` names; their optimizer slots split
               alike): 1/N of one device's on "model", all of it on "data";
  test_rmse    the run's cold-test RMSE at its selected epoch (equal across N up to float
               summation order, as `tests/train/test_mesh.py` checks).

On a CPU the N fake devices share the same cores: step times there show the cost of the
all-reduces and of splitting, not a speed-up. A GPU or TPU machine gives the real figures.
The memory of loading a 100M-interaction pair is measured by `benchmarks.large_data`.

    python -m benchmarks.scaling                       # 1, 2, 4 devices; JSON to stdout
    python -m benchmarks.scaling --devices 1,8 --users 20000 --epochs 3 --out scaling.json
    python -m benchmarks.scaling --axis model          # tables split over 1, 2, 4 devices
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

CONFIGS = {
    "mf_sparse": ["method=mf", "mf.sparse=true"],
    "dann": ["method=dann"],
}
EXPERIMENT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "synthetic_emcdr.py"


def table_bytes(params) -> int:
    """Bytes of the embedding tables (`transferjax.train.mesh.table_axis`) of `params` that
    the first device holds."""
    import jax

    from transferjax.train.mesh import table_axis

    return sum(
        x.addressable_shards[0].data.nbytes
        for path, x in jax.tree_util.tree_leaves_with_path(params)
        if table_axis(path) is not None
    )


def worker(
    n: int, *, users: int, epochs: int, configs: list[str], axis: str = "data"
) -> list[dict]:
    """In a process with n devices: train each configuration on `data=n` (or `model=n`);
    its figures."""
    import jax

    from transferjax import config as C
    from transferjax.data.registry import build_dataset, build_split
    from transferjax.train.run import build_trainer

    out = []
    for name in configs:
        sets = CONFIGS[name] + [
            # one device: "auto" (on a CPU one device, whatever the fake count)
            "trainer.mesh=" + ("auto" if n == 1 else f"{axis}={n}"),
            f"trainer.epochs={epochs}",
            f"mf.epochs={epochs}",
            f"data.synthetic.n_overlap={users}",
            "trainer.checkpoint_every=0",
            "eval.groups=off",
        ]
        cfg = C.apply_overrides(C.load(str(EXPERIMENT)), sets)
        split = build_split(cfg.protocol, build_dataset(cfg.data))
        train = build_trainer(cfg, split)
        r = train(jax.random.key(0))
        steps = sum(
            -(-len(next(iter(s.examples.values()))) // s.batch_size) * s.epochs
            for s in train.built.stages
        )
        mem = [p.memory_analysis() for p in train.programs.compiled.values()]
        mb = 1 / 2**20
        out.append(
            {
                "config": name,
                "devices": n,
                "axis": axis,
                "device_kind": jax.devices()[0].device_kind,
                "steps": steps,
                "step_ms": 1e3 * r.train_time / steps,
                "compile_s": r.compile_time,
                "args_mb": max(m.argument_size_in_bytes for m in mem) * mb,
                "temp_mb": max(m.temp_size_in_bytes for m in mem) * mb,
                "out_mb": max(m.output_size_in_bytes for m in mem) * mb,
                "table_mb": table_bytes(r.params) * mb,
                "test_rmse": None if r.best is None else r.best["test"].get("rmse"),
            }
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", default="1,2,4", help="device counts, comma-separated")
    p.add_argument("--configs", default=",".join(CONFIGS), help=",".join(CONFIGS))
    p.add_argument("--users", type=int, default=3000, help="overlapping synthetic users")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--axis", choices=("data", "model"), default="data", help="the mesh axis")
    p.add_argument("--out", help="JSON file (default: stdout)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    configs = a.configs.split(",")
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        p.error(f"unknown configs {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    if a.worker is not None:
        rows = worker(a.worker, users=a.users, epochs=a.epochs, configs=configs, axis=a.axis)
        print(json.dumps(rows))
        return 0
    rows = []
    for n in (int(x) for x in a.devices.split(",")):
        env = dict(os.environ)
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(n)))  # GPUs: the first n
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--worker", str(n)]
        cmd += ["--users", str(a.users), "--epochs", str(a.epochs), "--configs", a.configs]
        cmd += ["--axis", a.axis]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode:
            sys.stderr.write(res.stderr)
            return res.returncode
        rows += json.loads(res.stdout.strip().splitlines()[-1])
    text = json.dumps(rows, indent=1)
    if a.out:
        pathlib.Path(a.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
