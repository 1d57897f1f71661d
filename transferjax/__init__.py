"""transferjax: cross-domain recommendation by user-interest transfer, in JAX.

The flow: `data` (datasets, protocols, batches) -> `models` (pure math) -> `align` (alignment
objectives) -> `methods` (one module per registered method, with its config section) ->
`train` (the trainer, run folders, sweeps) -> `eval` (metrics, ranking) -> `reports`.
Importing the package registers the built-in methods and their config sections.
"""

__version__ = "0.1.0"

from transferjax import methods  # noqa: E402  (registers the built-in methods and sections)

__all__ = ["methods"]
