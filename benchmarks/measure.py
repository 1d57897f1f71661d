"""Timing and memory helpers of the speed suite, and the machine description.

- `Peak`: peak memory of a measured block. Host: the process's peak resident set is reset
  (`/proc/self/clear_refs` <- 5, Linux) after a `gc.collect` and `malloc_trim`, and the
  block's figure is `VmHWM` at its end minus `VmRSS` at its start (XLA allocates outside
  Python, so tracemalloc would not see it). GPU: torch's `max_memory_allocated` (reset at the
  start) and JAX's `peak_bytes_in_use`, reported only when the block raised it (JAX cannot
  reset it); `xla_temp_mb` of a compiled program is the static alternative.
- `interleaved`: the driver of a section. Each variant is set up (allocated, compiled) and
  warmed up alone, under `Peak`; then the timed rounds run every variant once per round in a
  rotating order, so that on a shared, loaded machine all variants see the same load and their
  ratios stay meaningful; the median round is reported.
- `median_time`: warm-up, then the median of repeated wall-clock timings, each ended by the
  caller's synchronisation (`block_until_ready`, `torch.cuda.synchronize`).
- `machine_info`: CPU model, cores, load, library versions and the device.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable

MB = 1024.0 * 1024.0


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Peak:
    """Context manager measuring the peak memory of its block (see the module docstring).

    Attributes after exit: `rss_mb` (host peak RSS growth, MB, None where /proc is missing;
    after `restart()` the peak of the steady state only, compile excluded),
    `torch_mb` (CUDA peak allocated growth), `jax_mb` (JAX device peak growth, None on CPU or
    when the block did not raise the device's peak).
    """

    def __init__(self, *, torch_cuda: bool = False, jax_device=None):
        self.torch_cuda = torch_cuda
        self.jax_device = jax_device
        self.rss_mb = self.torch_mb = self.jax_mb = self.warmup_rss_mb = None

    def _jax_stats(self) -> dict | None:
        if self.jax_device is None or self.jax_device.platform == "cpu":
            return None
        try:
            return self.jax_device.memory_stats()
        except Exception:  # noqa: BLE001 - backends without memory stats
            return None

    def __enter__(self) -> Peak:
        _trim()
        self._reset = _reset_hwm()
        self._rss0 = _status_kb("VmRSS")
        self._jax0 = self._jax_stats()
        if self.torch_cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._torch0 = torch.cuda.memory_allocated()
        return self

    def restart(self) -> None:
        """Ends the warm-up phase (compilation): its host peak is kept as `warmup_rss_mb`
        and the peak counter restarts, so `rss_mb` covers the steady state only (still
        measured from the block's starting RSS: data, params and state count)."""
        hwm = _status_kb("VmHWM")
        if self._reset and hwm is not None and self._rss0 is not None:
            self.warmup_rss_mb = round(max(0.0, hwm - self._rss0) / 1024.0, 1)
        _trim()
        self._reset = self._reset and _reset_hwm()

    def __exit__(self, *exc) -> None:
        hwm = _status_kb("VmHWM")
        if self._reset and hwm is not None and self._rss0 is not None:
            self.rss_mb = round(max(0.0, hwm - self._rss0) / 1024.0, 1)
        if self.torch_cuda:
            import torch

            torch.cuda.synchronize()
            self.torch_mb = round((torch.cuda.max_memory_allocated() - self._torch0) / MB, 1)
        after = self._jax_stats()
        if self._jax0 and after and "peak_bytes_in_use" in after:
            if after["peak_bytes_in_use"] > self._jax0.get("peak_bytes_in_use", 0):
                self.jax_mb = round(
                    (after["peak_bytes_in_use"] - self._jax0.get("bytes_in_use", 0)) / MB, 1
                )

    def as_dict(self) -> dict:
        out = {"peak_rss_mb": self.rss_mb}
        if self.warmup_rss_mb is not None:
            out["warmup_peak_rss_mb"] = self.warmup_rss_mb
        if self.torch_cuda:
            out["peak_cuda_mb"] = self.torch_mb
        if self.jax_mb is not None:
            out["peak_device_mb"] = self.jax_mb
        return out


def xla_memory_mb(compiled) -> dict:
    """Static sizes of a compiled JAX program (arguments, outputs, temporaries), MB."""
    try:
        m = compiled.memory_analysis()
        return {
            "xla_args_mb": round(m.argument_size_in_bytes / MB, 1),
            "xla_temp_mb": round(m.temp_size_in_bytes / MB, 1),
        }
    except Exception:  # noqa: BLE001 - not every backend reports it
        return {}


class Variant:
    """One measured variant: `setup()` allocates and compiles, `run()` does one timed unit
    (an epoch, or a block of steps) and synchronises, returning its mean loss; `info()` adds
    facts such as `compile_s`; `finish()` adds end-of-run metrics (validation RMSE)."""

    torch_cuda = False

    def setup(self) -> None:
        raise NotImplementedError

    def run(self) -> float:
        raise NotImplementedError

    def info(self) -> dict:
        return {}

    def finish(self) -> dict:
        return {}


def interleaved(
    variants: dict,
    *,
    rounds: int,
    warmup: int = 1,
    jax_device=None,
    log: Callable[[str], None] = lambda m: None,
) -> dict:
    """Sets up and warms up each variant alone (peak memory), then times `rounds` rounds.

    Returns:
      {name: {"median_s", "times_s", "losses", "setup_s", peak memory..., info, finish}} or
      {name: {"error": ...}} for a variant that raised (the others go on).
    """
    out, live = {}, {}
    for name, v in variants.items():
        log(f"{name}: setup + warm-up")
        try:
            with Peak(torch_cuda=v.torch_cuda, jax_device=jax_device) as peak:
                t0 = time.perf_counter()
                v.setup()
                setup_s = time.perf_counter() - t0
                peak.restart()
                for _ in range(warmup):
                    v.run()
            out[name] = {"setup_s": setup_s, **peak.as_dict()}
            live[name] = v
        except Exception as e:  # noqa: BLE001 - one broken variant must not sink the section
            log(f"{name} FAILED: {e!r}")
            out[name] = {"error": repr(e)[:500]}
    names = list(live)
    times = {n: [] for n in names}
    losses = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % max(1, len(names)) :] + names[: r % max(1, len(names))]
        for name in order:
            t0 = time.perf_counter()
            try:
                losses[name].append(float(live[name].run()))
            except Exception as e:  # noqa: BLE001
                out[name] = {"error": repr(e)[:500]}
                live.pop(name)
                names.remove(name)
                continue
            times[name].append(time.perf_counter() - t0)
        log(
            f"round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names if times[n])
        )
    for name, v in live.items():
        try:
            extra = {**v.info(), **v.finish()}
        except Exception as e:  # noqa: BLE001
            extra = {"finish_error": repr(e)[:500]}
        out[name].update(
            median_s=statistics.median(times[name]),
            times_s=times[name],
            losses=losses[name],
            **extra,
        )
    return out


def median_time(
    fn: Callable[[], object],
    *,
    repeats: int,
    warmup: int = 1,
    sync: Callable[[object], object] = lambda x: x,
) -> tuple[float, list[float]]:
    """Median wall seconds of `sync(fn())` over `repeats` timed calls after `warmup` calls."""
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine_info(jax_device, torch_device=None) -> dict:
    """CPU, cores, load, versions, and the device each framework ran on."""
    import jax
    import numpy as np

    from transferjax.train.outputs import cpu_model, usable_cores

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable_cores(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_backend": jax_device.platform,
        "jax_device": str(getattr(jax_device, "device_kind", jax_device)),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_device"] = str(torch_device) if torch_device is not None else "cpu"
        info["torch_threads_default"] = torch.get_num_threads()
        if torch_device is not None and torch_device.type == "cuda":
            info["torch_gpu"] = torch.cuda.get_device_name(torch_device)
    except ImportError:
        info["torch"] = None
    return info
