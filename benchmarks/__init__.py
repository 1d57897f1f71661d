"""Benchmarks of transferjax: the speed suite (`benchmarks.speed`) and its PyTorch references.

    python -m benchmarks.speed [--quick] [--out benchmarks/results/speed.json]

PyTorch is an optional extra (`transferjax[torch]`); without it the speed suite measures the
JAX variants only and marks the PyTorch ones as skipped.
"""
