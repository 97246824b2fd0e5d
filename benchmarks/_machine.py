"""What a benchmark ran on, and where its results go (shared by the benchmark scripts).

Why: a timing means nothing without the machine that made it. CoTracker3's speed on CPU depends
on the vector units oneDNN can use (AVX2, AVX-512, AVX512-BF16, AMX), on the thread count and on
the torch build, so every results file records them, and the same numbers go to a JSON file (for
tools) and a markdown table (for people) under ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: CPU flags that decide which kernels oneDNN and ATen can use.
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_fp16", "avx512_fp16")

#: A conv and a matmul in fp32 and bf16, run with ONEDNN_VERBOSE=1 to see the kernels oneDNN picks.
_ONEDNN_PROBE = """
import torch
torch.set_num_threads(1)
x = torch.randn(2, 64, 64, 64).contiguous(memory_format=torch.channels_last)
conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
lin = torch.nn.Linear(512, 512)
with torch.no_grad():
    conv(x); lin(torch.randn(256, 512))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x); lin(torch.randn(256, 512))
"""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> dict[str, bool]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return {f: f in have for f in _FLAGS}
    except OSError:
        pass
    return {}


def onednn_probe(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The ISA oneDNN reports and the kernels it picks for a conv / matmul in fp32 and bf16.

    Runs in a subprocess (``ONEDNN_VERBOSE`` is read once per process); ``env`` adds variables
    such as ``ONEDNN_MAX_CPU_ISA`` so a row that caps the ISA records what it really used.
    """
    full_env = {**os.environ, **(env or {}), "ONEDNN_VERBOSE": "1"}
    try:
        out = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE], capture_output=True, text=True,
                             env=full_env, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    isa, kernels = None, []
    for line in out.splitlines():
        parts = line.split(",")
        if "isa:" in line:
            isa = line.split("isa:", 1)[1].strip()
        elif len(parts) > 6 and parts[2] == "primitive" and parts[3] == "exec" and parts[5] != "reorder":
            src = next((p for p in parts if p.startswith("src:")), "")
            kernels.append(f"{parts[5]} {parts[6]} ({src.split(':')[1] if ':' in src else '?'})")
    return {"isa": isa, "kernels": sorted(set(kernels))}


def machine_info(threads: int | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """CPU model and flags, threads, torch version and CPU capability, oneDNN's ISA and kernels."""
    import torch

    mkldnn = torch.backends.mkldnn
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_available": bool(mkldnn.is_available()),
        "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                                           "COTRACKER3_CPU_BF16") if k in os.environ},
        "onednn": onednn_probe(env),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    from cotracker3_plugin.precision import resolve_precision

    info["auto_precision_cpu"] = str(resolve_precision("auto", "cpu"))
    return info


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A markdown table; ``columns`` are (header, row key, format spec) and missing values are '-'."""
    head = "| " + " | ".join(c[0] for c in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    lines = [head, rule]
    for r in rows:
        cells = []
        for _, key, spec in columns:
            v = r.get(key)
            cells.append("-" if v is None else (format(v, spec) if spec else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_markdown(info: dict[str, Any]) -> str:
    flags = ", ".join(f for f, on in info.get("cpu_flags", {}).items() if on) or "unknown"
    one = info.get("onednn", {})
    return (f"- CPU: {info['cpu_model']} ({info['cpu_count']} logical CPUs; flags: {flags})\n"
            f"- torch {info['torch']}, {info['torch_threads']} threads, CPU capability "
            f"{info['torch_cpu_capability']}; precision auto on CPU = {info['auto_precision_cpu']}\n"
            f"- oneDNN ISA: {one.get('isa')}; kernels: {'; '.join(one.get('kernels', [])) or '-'}\n"
            + (f"- environment: {info['env']}\n" if info.get("env") else ""))


def write_results(name: str, payload: dict[str, Any], markdown: str, out_dir: Path = RESULTS) -> tuple[Path, Path]:
    """``<out_dir>/<name>.json`` and ``<name>.md``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / f"{name}.json", out_dir / f"{name}.md"
    jpath.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    mpath.write_text(markdown.rstrip() + "\n")
    return jpath, mpath
