"""transferjax: cross-domain recommendation by user-interest transfer, in JAX.

The flow: `data` (datasets, protocols, batches) -> `models` (pure math) -> `align` (alignment
objectives) -> `methods` (one module per registered method, with its config section) ->
`train` (the trainer, run folders, sweeps) -> `eval` (metrics, ranking) -> `reports`, with
`diagnostics` (domain shift of users' vectors) between `eval` and `train`.
Importing the package registers the built-in methods and their config sections.
"""

__version__ = "0.1.0"

from transferjax import diagnostics, methods  # noqa: E402  (register the built-in sections)

__all__ = ["diagnostics", "methods"]
