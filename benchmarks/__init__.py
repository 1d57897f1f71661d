"""Benchmarks of transferjax, kept out of the installed library: run them from the repository
root (they read `experiments/` and write BENCHMARKS.md and `benchmarks/results/` there), each
as a module, `python -m benchmarks.NAME --help` for its flags:

    python -m benchmarks.quality [--quick]    # quality suite -> BENCHMARKS.md
    python -m benchmarks.speed [--quick]      # speed suite -> benchmarks/results/speed.json and
                                              # the speed section of BENCHMARKS.md
    python -m benchmarks.op_profile           # where a training step spends its time
    python -m benchmarks.sparse_step          # the parts of a row-sparse MF step
    python -m benchmarks.seeds_vmap           # seeds vmapped, threaded or sequential
    python -m benchmarks.mf_lr                # Adagrad learning rates of the speed suite
    python -m benchmarks.phi_layer            # phi's first layer: packed vs dense
    python -m benchmarks.dann_step            # the dann method's step, each first-layer form
    python -m benchmarks.score_candidates     # candidate scoring: gather vs all items
    python -m benchmarks.reproduce.ptupcdr    # PTUPCDR's official code on our Douban split
    python -m benchmarks.reproduce.cdrib_eval # CDRIB's official evaluation of our rankings
    python -m benchmarks.reproduce.cdrib_train # CDRIB's official training beside ours

The other modules (`mf_bench`, `dann_bench`, `dann_torch`, `ell`, `rank_bench`, `measure`,
`speed_report`, `torch_ref`, `sections`) are the suites' parts; `reproduce/common` holds what
the reproduction scripts share. PyTorch is an optional extra
(`transferjax[torch]`); without it the speed suite measures the JAX variants only and marks the
PyTorch ones as skipped.
"""
