"""Tracking speed and peak memory: offline ``track()`` and online ``OnlineSession`` streaming.

Each configuration runs in a fresh process (so its peak RSS is its own), with the official
architecture (random weights: the same FLOPs as the trained ones). The input is the reference
clip ``video_48_u8`` (216x389, resized inside to the model resolution 384x512, like the official
timing in ../shared/reference/README.md), looped back and forth for more than 48 frames.

What is timed, for every mode alike: from the uint8 frames in memory to the tracks; building the
network (ours or the official predictor) happens before the clock starts. The offline model runs
through ``track()``; the online model is streamed through ``OnlineSession`` one frame per
``push`` (as a webcam loop would), the way the official online demo streams its predictor.

Modes, each timed in the same run (``--modes``):

* ``exact``: float32 and the official kernels (equal to the official code within the parity tolerances);
* ``fast``: float32, ``model.set_fast()`` (fused attention, gather-based correlation);
* ``fast-whole``: fast, with the correlation volumes of the whole clip at once (the behaviour before
  they were computed in chunks of frames);
* ``bf16-exact`` / ``bf16-fast``: bfloat16 autocast (``precision="bf16"``) with either kernel set;
* ``auto``: what ``cotracker3 track`` does by default (``--precision auto`` and its kernels);
* ``forced-fp32``: ``auto`` on a CPU without bf16 units, emulated: ``COTRACKER3_CPU_BF16=0`` (auto
  resolves to fp32) and ``ONEDNN_MAX_CPU_ISA=AVX512_CORE`` (oneDNN may not use AVX512-BF16 / AMX);
* ``official`` (with ``--official DIR``): the official ``CoTrackerPredictor`` /
  ``CoTrackerOnlinePredictor`` imported from a checkout of facebookresearch/co-tracker at ``DIR``,
  randomly initialised, driven the way its demos drive them. The official code is never part of
  this package; without ``--official`` only our rows run.

Ratios are against the first mode of each configuration. The rows, the machine (CPU model and
flags, threads, torch version and CPU capability, the ISA and kernels oneDNN picks) and the
arguments go to ``benchmarks/results/<--name>.json`` and a markdown table ``<--name>.md``.

    python benchmarks/track_speed.py                       # 48 frames, grid 10, both models
    python benchmarks/track_speed.py --official ../co-tracker --modes official exact fast bf16-fast forced-fp32
    python benchmarks/track_speed.py --frames 24 48 120 --grids 10 30

Measured 2026-12-01 (1 thread, the other core busy), offline, 24 frames, grid 20: fast-whole 54.3 s,
peak 1822 MiB; fast (chunked correlation) 52.4 s, 1850 MiB (1.04x). With the official network the
features dominate memory; the chunks matter for small networks and many tracks: the bundled model on
examples/data/cat.mp4 (400 tracks, 87 frames, `cotracker3 track`) peaked at 1.88 GiB before, 0.98 GiB after,
with identical tracks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import machine_info, machine_markdown, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COTRACKER3_SHARED", ROOT.parent / "shared"))


def load_clip(frames: int) -> np.ndarray:
    path = SHARED / "reference" / "fixtures.npz"
    if path.is_file():
        with np.load(path) as z:
            base = z["video_48_u8"]
    else:  # synthetic stand-in of the same size
        base = np.random.default_rng(0).integers(0, 255, (48, 216, 389, 3), dtype=np.uint8)
    idx = np.arange(frames) % (2 * len(base) - 2)
    idx = np.where(idx < len(base), idx, 2 * len(base) - 2 - idx)  # ping-pong
    return np.ascontiguousarray(base[idx])


#: mode -> (fast kernels, precision, environment of its process); kernels None = as ``cotracker3 track``.
MODES: dict[str, tuple[bool | None, str, dict[str, str]]] = {
    "exact": (False, "fp32", {}),
    "fast": (True, "fp32", {}),
    "fast-whole": (True, "fp32", {}),
    "bf16-exact": (False, "bf16", {}),
    "bf16-fast": (True, "bf16", {}),
    "auto": (None, "auto", {}),
    "forced-fp32": (None, "auto", {"COTRACKER3_CPU_BF16": "0", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}),
}


def build_official(kind: str, device: str, checkout: str) -> torch.nn.Module:
    """The official predictor, randomly initialised (built before the clock starts)."""
    sys.path.insert(0, checkout)
    from cotracker.predictor import CoTrackerOnlinePredictor, CoTrackerPredictor

    torch.manual_seed(0)
    if kind == "offline":
        return CoTrackerPredictor(checkpoint=None, window_len=60, v2=False).eval().to(device)
    return CoTrackerOnlinePredictor(checkpoint=None, window_len=16, v2=False).eval().to(device)


def run_official(predictor: torch.nn.Module, kind: str, video: np.ndarray, grid: int, device: str) -> np.ndarray:
    """The official predictor on ``video``, streamed like its online demo for the online model."""
    if kind == "offline":
        clip = torch.from_numpy(video).permute(0, 3, 1, 2)[None].float().to(device)
        tracks, _ = predictor(clip, grid_size=grid)
        return tracks[0].cpu().numpy()
    step = predictor.step
    first, tracks = True, None
    for i in range(len(video)):
        if i % step == 0 and i != 0:
            chunk = torch.from_numpy(video[max(0, i - 2 * step):i]).permute(0, 3, 1, 2)[None]
            tracks, _ = predictor(chunk.float().to(device), is_first_step=first, grid_size=grid)
            first = False
    last = len(video) - 1  # the demo's final call: the last (last % step) + step + 1 frames
    tail = torch.from_numpy(video[len(video) - min(last % step + step + 1, 2 * step):]).permute(0, 3, 1, 2)[None]
    tracks, _ = predictor(tail.float().to(device), is_first_step=first, grid_size=grid)
    return tracks[0].cpu().numpy()


def build_ours(kind: str, mode: str, device: str) -> tuple[torch.nn.Module, str]:
    """Our network in ``mode``'s kernels (built before the clock starts) and its precision."""
    from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline
    from cotracker3_plugin.precision import fast_kernels_for, resolve_precision

    online = kind == "online"
    torch.manual_seed(0)
    cls = CoTrackerThreeOnline if online else CoTrackerThreeOffline
    model = cls(CoTrackerConfig.online() if online else CoTrackerConfig.offline()).eval().to(device)
    fast, precision, _ = MODES[mode]
    if fast is None:
        fast = fast_kernels_for(resolve_precision(precision, device))
    model.set_fast(fast)
    if mode.endswith("-whole"):
        import cotracker3_plugin.model.cotracker3 as net

        net.INFERENCE_CORRELATION_ROWS = 1 << 62
    return model, precision


def run_ours(model: torch.nn.Module, kind: str, video: np.ndarray, grid: int, precision: str) -> np.ndarray:
    """Offline: ``track()`` on the clip; online: an ``OnlineSession`` fed one frame per push."""
    from cotracker3_plugin.predict import OnlineSession, track

    if kind == "offline":
        return track(video, model, grid_size=grid, precision=precision).xy
    session = OnlineSession(model, grid_size=grid, precision=precision)
    for frame in video:
        session.push(frame)
    return session.finish().xy


def _resolved(precision: str, device: str) -> str:
    """What ``precision`` means on this machine: fp32, bf16 or fp16."""
    from cotracker3_plugin.precision import precision_name, resolve_precision

    return precision_name(resolve_precision(precision, device))


def run_one(kind: str, frames: int, grid: int, mode: str, device: str, threads: int,
            official: str | None = None) -> dict:
    torch.set_num_threads(threads)
    video = load_clip(frames)
    if mode == "official":
        predictor = build_official(kind, device, official)
        precision = "fp32"
    else:
        predictor, precision = build_ours(kind, mode, device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if mode == "official":
        xy = run_official(predictor, kind, video, grid, device)
    else:
        xy = run_ours(predictor, kind, video, grid, precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {
        "model": kind, "frames": frames, "grid": grid, "mode": mode, "device": device,
        "precision": precision, "resolved_precision": _resolved(precision, device),
        "fast": bool(getattr(predictor, "fast", False)),
        "seconds": seconds, "fps": frames / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": rss_before,
        "xy_checksum": float(np.abs(xy).sum()),
        "xy": xy,
    }
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


COLUMNS = [("model", "model", ""), ("frames", "frames", "d"), ("grid", "grid", "d"), ("mode", "mode", ""),
           ("precision", "precision", ""), ("resolved", "resolved_precision", ""), ("fast kernels", "fast", ""), ("seconds", "seconds", ".1f"),
           ("frames/s", "fps", ".2f"), ("peak RSS MiB", "peak_rss_mib", ".0f"), ("speed vs first", "speedup", ".2f"),
           ("max px vs exact", "max_px_vs_exact", ".3f"), ("median px vs exact", "median_px_vs_exact", ".4f"),
           ("oneDNN ISA (if capped)", "onednn_isa", "")]


def _single(args: argparse.Namespace) -> int:
    kind, frames, grid, mode = args.single.split(",")
    row = run_one(kind, int(frames), int(grid), mode, args.device, args.threads, args.official)
    if args.xy_out:  # the main process compares every mode's tracks with the exact mode's
        np.save(args.xy_out, row.pop("xy"))
    row.pop("xy", None)
    print(json.dumps(row))
    return 0


def _run_row(args: argparse.Namespace, kind: str, frames: int, grid: int, mode: str, xy_path: Path) -> dict:
    cmd = [sys.executable, __file__, "--single", f"{kind},{frames},{grid},{mode}", "--device", args.device,
           "--threads", str(args.threads), "--xy-out", str(xy_path)]
    cmd += ["--official", args.official] if args.official else []
    env = {**os.environ, **(MODES[mode][2] if mode in MODES else {})}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{kind} {mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[48])
    ap.add_argument("--grids", type=int, nargs="+", default=[10])
    ap.add_argument("--models", nargs="+", default=["offline", "online"], choices=["offline", "online"])
    ap.add_argument("--modes", nargs="+", default=["exact", "fast", "bf16-fast", "forced-fp32"],
                    choices=["official", *MODES])
    ap.add_argument("--official", metavar="DIR", help="a checkout of facebookresearch/co-tracker (for mode official)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="track_speed", help="results go to benchmarks/results/NAME.{json,md}")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--single", help=argparse.SUPPRESS)  # internal: one configuration
    ap.add_argument("--xy-out", help=argparse.SUPPRESS)  # internal: where --single saves its tracks
    args = ap.parse_args()

    if args.single:
        return _single(args)
    if args.official and "official" not in args.modes:
        args.modes = ["official", *args.modes]
    if "official" in args.modes and not args.official:
        ap.error("mode official needs --official DIR (a checkout of facebookresearch/co-tracker)")
    machine = machine_info(args.threads)
    isa_by_mode = {m: machine_info_isa(MODES[m][2]) for m in args.modes if m in MODES and MODES[m][2]}
    print(machine_markdown(machine), flush=True)
    rows = []
    header = (f"{'model':8} {'frames':>6} {'grid':>4} {'mode':11} {'seconds':>8} {'frames/s':>8} "
              f"{'peak RSS MiB':>12} {'vs first':>8} {'max px vs exact':>15}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models:
            for frames in args.frames:
                for grid in args.grids:
                    base, exact_xy = None, None
                    for mode in args.modes:
                        xy_path = Path(tmp) / f"{kind}_{frames}_{grid}_{mode}.npy"
                        row = _run_row(args, kind, frames, grid, mode, xy_path)
                        xy = np.load(xy_path)
                        if mode == "exact":
                            exact_xy = xy
                        if exact_xy is not None and mode != "official":
                            d = np.linalg.norm(xy - exact_xy, axis=-1)
                            row["max_px_vs_exact"], row["median_px_vs_exact"] = float(d.max()), float(np.median(d))
                        if mode in isa_by_mode:
                            row["onednn_isa"] = isa_by_mode[mode]
                        base = row["seconds"] if base is None else base
                        row["speedup"] = base / row["seconds"]
                        rows.append(row)
                        print(f"{kind:8} {frames:>6} {grid:>4} {mode:11} {row['seconds']:8.1f} {row['fps']:8.2f} "
                              f"{row['peak_rss_mib']:12.0f} {row['speedup']:7.2f}x "
                              f"{row.get('max_px_vs_exact', float('nan')):15.3f}", flush=True)
    payload = {"benchmark": "track_speed", "args": {k: str(v) for k, v in vars(args).items()},
               "machine": machine, "rows": rows}
    md = (f"# Tracking speed ({args.name})\n\n{machine_markdown(machine)}\n"
          "Official architecture, random weights; building the network is not timed; online = "
          "OnlineSession, one frame per push. Speed is relative to the first mode of each configuration; "
          "px vs exact are in pixels of the 216x389 input.\n\n" + markdown_table(rows, COLUMNS))
    jpath, mpath = write_results(args.name, payload, md)
    print(f"results: {jpath} and {mpath}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def machine_info_isa(env: dict[str, str]) -> str | None:
    """oneDNN's ISA under a mode's environment (e.g. a capped ``ONEDNN_MAX_CPU_ISA``)."""
    from _machine import onednn_probe

    return onednn_probe(env).get("isa")


if __name__ == "__main__":
    raise SystemExit(main())
