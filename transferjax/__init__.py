"""transferjax: cross-domain recommendation by user-interest transfer, in JAX."""

__version__ = "0.1.0"
