"""Reduced-precision inference: what ``"auto"`` means on this machine, and the autocast context.

Why a module of its own: the precision is chosen in one place (the CLI flag, ``track(precision=)``,
``OnlineSession(precision=)``, the benchmarks) and must mean the same everywhere. Only float32
reproduces the official CoTracker3 numbers bit for bit (the parity fixtures); bfloat16 autocast
runs the convolutions and matrix products in bf16, which is much faster on CPUs with native bf16
units (AVX512-BF16, AMX-BF16) and on recent GPUs.

What bf16 costs, measured (``tests/model/test_precision.py``):

* trained weights (the bundled model): nothing measurable. TAP-Vid-style benchmark
  (``make-benchmark`` seed 0, 6 videos), fp32 exact / bf16 exact / bf16 fast kernels: AJ 48.13 /
  48.17 / 48.13, delta_avg 59.95 / 59.94 / 59.94, OA 82.90 / 82.88 / 82.90; BADJA delta_avg
  21.95 / 22.03 / 22.06.
* the parity fixtures (official architecture, random-like formula weights): the tracks move by
  a median of ~0.3 px. Model level (96x128 input): max ~1 px offline, ~2.4 px online. Predictor
  level (384x512, 6 iterations, pixels of the 216x389 input, exact and fast kernels): offline
  median 0.29-0.33 / max 0.86-1.04 px; online, 21 frames streamed, median 0.32-0.34 / p95
  1.3 / max 4.9-5.1 px; the visibility flags identical. Almost all of it is the bf16 rounding
  of the weights themselves (float32 arithmetic with bf16-rounded weights moves them as much), a
  fixed perturbation of the function, not drift.

Hence ``"auto"`` = bf16 where the hardware computes it natively. On a CPU *without* native bf16
(most AMD and older Intel parts) bf16 is emulated and slower than float32, so ``"auto"`` falls
back to float32 there. float16 is offered for GPUs; on CPUs it is emulated unless the CPU has
AMX-FP16. The library default stays ``"fp32"`` (the official numbers, the same on every machine);
``cotracker3 track`` defaults to ``"auto"``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from cotracker3_plugin.errors import UserError

if TYPE_CHECKING:  # torch is imported on first use, so that `cotracker3 --help` stays fast
    import torch

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

#: Environment variable that, set to 0, makes ``"auto"`` ignore the CPU's bf16 units (to
#: emulate a CPU without them, or to keep float32 results by default on a given machine).
CPU_BF16_ENV = "COTRACKER3_CPU_BF16"

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU flags Linux reports (empty elsewhere)."""
    try:
        text = path.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def _cpu_has_native_bf16() -> bool:
    flags = _cpuinfo_flags()
    if flags:
        return any(f in flags for f in _BF16_FLAGS)
    # not Linux: ask torch (private helpers, present in torch >= 2.3)
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe()) if probe is not None else False


def cpu_has_native_bf16() -> bool:
    """True if the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16) and the environment
    does not say otherwise (``COTRACKER3_CPU_BF16=0``)."""
    if os.environ.get(CPU_BF16_ENV, "").strip() == "0":
        return False
    return _cpu_has_native_bf16()


def _device_type(device: torch.device | str | None) -> str:
    import torch

    return torch.device(device if device is not None else "cpu").type


def resolve_precision(precision: Precision | str, device: torch.device | str | None) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain float32.

    ``"auto"``: bf16 on CPUs with native bf16 and on CUDA devices that support it, else float32.
    An explicit ``"bf16"`` / ``"fp16"`` is honoured even where it is emulated (with a warning):
    the user asked for it.
    """
    import torch

    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    kind = _device_type(device)
    if precision == "auto":
        if kind == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        if kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if kind == "cpu" and dtype is torch.bfloat16 and not cpu_has_native_bf16():
        log.warning("precision bf16 on a CPU without native bf16 units (AVX512-BF16 / AMX-BF16): "
                    "it is emulated and likely slower than fp32.")
    if kind == "cpu" and dtype is torch.float16:
        amx_fp16 = getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)()
        if not amx_fp16:
            log.warning("precision fp16 on a CPU without AMX-FP16: it is emulated and likely slow; "
                        "use bf16 or fp32 on CPU.")
    return dtype


def precision_name(dtype: torch.dtype | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for a :func:`resolve_precision` result (for summaries)."""
    import torch

    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def fast_kernels_for(dtype: torch.dtype | None) -> bool:
    """Whether a model should run its fast kernels (``model.set_fast()``) at this precision.

    In float32 the exact kernels are kept: they are the ones that reproduce the official numbers
    bit for bit. Under bf16 / fp16 there is nothing to reproduce and the fast kernels are faster
    (fused attention; the correlation gathered from bf16 feature maps and interpolated in bf16):
    on 1 CPU thread of an AMX Xeon, official architecture, 8 frames, grid 10: bf16 3.3 s exact vs
    2.65 s fast (float32 exact 6.9 s); bundled model, 24 frames, grid 20: 9.6 s exact vs 4.3 s
    fast (float32 exact 10.0 s). Busy machine: ratios within one run only.
    """
    return dtype is not None


@contextlib.contextmanager
def autocast(device: torch.device | str | None, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``device``'s type with ``dtype``; a no-op for None (float32).

    The no-op matters: float32 runs must not enter an autocast region at all, so they stay
    bit-identical to the official code.
    """
    if dtype is None:
        yield
        return
    import torch

    with torch.autocast(_device_type(device), dtype=dtype):
        yield


__all__ = [
    "CPU_BF16_ENV",
    "PRECISIONS",
    "Precision",
    "autocast",
    "cpu_has_native_bf16",
    "fast_kernels_for",
    "precision_name",
    "resolve_precision",
]
