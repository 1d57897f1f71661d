"""Tests of transferjax.diagnostics and `transferjax diagnose`."""
