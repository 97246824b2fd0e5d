"""Compare checkpoints (e.g. the bundled model before/after fine-tuning) and KLT in one table.

Usage:
    python benchmarks/bundled_model_eval.py --models pretrain=runs/pretrain/final.safetensors \\
        finetune=runs/finetune/final.safetensors [--json out.json] [--quick]

A model spec is NAME=WHAT where WHAT is a checkpoint path (also a trainer's checkpoints/step_*.pth), an official name
(cotracker3_offline / cotracker3_online), ``bundled``, or ``random`` (an untrained small model at
96x128, a floor for the numbers). KLT (21x21 window, 4 levels) is always added unless --no-klt.

Columns (every tracker sees the same inputs):
* bench AJ / d_avg / OA: TAP-Vid metrics ("first" queries, 256x256) on a real-image benchmark made
  on the fly by ``make-benchmark`` with a fixed seed (homography camera + real occluders, exact GT);
  models run under the official evaluation protocol at their own model resolution;
* BADJA d_avg / med px: hand-labelled animal joints (bear, camel, dog), d_avg on the 256 scale and the
  median error in original pixels (480p);
* synth d_avg / med px: held-out synthetic clips (seeds disjoint from training and from the trainer's
  held-out evaluation), "first" queries, 256-scale d_avg and median error in clip pixels;
* FB px: forward-backward consistency on the real videos of the shared data: a 10x10 grid tracked
  forward from frame 0, the end points tracked backward from the last frame, median distance (pixels
  of the decoded clip, longer side --fb-side) between start and return, over points seen at the end;
* fps: frames per second of the forward pass on those videos (100 points; CPU unless --device).
Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cotracker3_plugin.evaluate.badja import evaluate_badja
from cotracker3_plugin.evaluate.klt import KLTTracker, klt_track
from cotracker3_plugin.evaluate.make_benchmark import BenchmarkConfig, make_benchmark, write_benchmark
from cotracker3_plugin.evaluate.metrics import compute_tapvid_metrics
from cotracker3_plugin.evaluate.runner import ModelTracker, evaluate_tapvid
from cotracker3_plugin.evaluate.tapvid import iter_tapvid

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: Held-out synthetic seeds: training uses (seed, position), the trainer's evaluation 1_000_003.
SYNTH_SEED = 7_000_001


def load_tracker_model(spec: str, device: str):
    from cotracker3_plugin.model import CoTrackerConfig
    from cotracker3_plugin.train.finetune import load_weights
    from cotracker3_plugin.weights import build_model

    if spec == "random":
        torch.manual_seed(0)
        cfg = CoTrackerConfig.small()
        cfg.model_resolution = (96, 128)
        return build_model(cfg, False).to(device).eval()
    # load_weights also reads the trainer's resumable checkpoints (checkpoints/step_*.pth)
    return load_weights(None if spec == "bundled" else spec, device=device)


# -- trackers with one interface: f(frames (T,H,W,3) uint8, queries (N,3) t,x,y) -> (xy, visible) ----


class PredictTracker:
    """A model through the public ``predict.track`` API (used for the real videos and fps)."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from cotracker3_plugin.predict import track

        with torch.no_grad():
            tr = track(frames, self.model, queries=queries)
        return tr.xy, tr.visible


class Sharpened:
    """Another tracker's output made precise by Lucas-Kanade (``refine.sharpen_tracks``, as
    ``cotracker3 track`` does for the bundled model): chained KLT while it holds a point, then the
    tracker's positions, moved to sub-pixel where LK from the query patch confirms them."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker

    def __call__(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from cotracker3_plugin.refine import sharpen_tracks
        from cotracker3_plugin.tracks import Tracks

        xy, vis = self.tracker(frames, queries)
        vis = np.asarray(vis, dtype=bool)
        coarse = Tracks(xy, vis, vis.astype(np.float32), queries, frames.shape[1:3])
        sharp = sharpen_tracks(coarse, frames)
        return sharp.xy, sharp.visible


def klt_predict(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return klt_track(frames, queries)


# -- held-out synthetic clips -----------------------------------------------------------------------


def synthetic_clips(count: int, seed: int = SYNTH_SEED) -> list:
    from cotracker3_plugin.train.synthetic import SyntheticConfig, SyntheticGenerator

    gen = SyntheticGenerator(SyntheticConfig(num_frames=24, height=96, width=128, num_tracks=64))
    out, i = [], 0
    while len(out) < count and i < 20 * count:
        s = gen.sample(i, np.random.default_rng([seed, i]))
        if s is not None:
            out.append(s)
        i += 1
    return out


def eval_synthetic(samples: list, tracker) -> dict:
    rows, errs = [], []
    for s in samples:
        frames = s.video.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
        vis = s.visibility.numpy().astype(bool)  # (T, N)
        traj = s.trajectory.numpy()  # (T, N, 2)
        keep = vis.any(0)
        vis, traj = vis[:, keep], traj[:, keep]
        t0 = vis.argmax(0)
        n = np.arange(vis.shape[1])
        q = np.stack([t0, traj[t0, n, 0], traj[t0, n, 1]], 1).astype(np.float32)
        xy, pvis = tracker(frames, q)
        T, H, W = frames.shape[:3]
        scale = np.array([255.0 / (W - 1), 255.0 / (H - 1)])
        m = compute_tapvid_metrics(
            np.stack([q[:, 0], q[:, 2] * scale[1], q[:, 1] * scale[0]], 1)[None], ~vis.T[None],
            (traj * scale).transpose(1, 0, 2)[None], ~np.asarray(pvis, bool).T[None],
            (np.asarray(xy) * scale).transpose(1, 0, 2)[None], "first")
        rows.append({k: float(v[0]) for k, v in m.items()})
        after = (np.arange(T)[:, None] > t0[None]) & vis
        errs.append(np.linalg.norm(np.asarray(xy) - traj, axis=-1)[after])
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    mean["median_error_px"] = float(np.median(np.concatenate(errs)))
    return {"num_clips": len(samples), "mean": mean}


# -- forward-backward consistency on real videos -----------------------------------------------------


def real_clips(side: int, max_frames: int, max_videos: int | None = None) -> dict[str, np.ndarray]:
    from cotracker3_plugin.io import load_clip

    out = {}
    for p in sorted((SHARED / "data" / "videos").glob("*.mp4"))[:max_videos]:
        frames = load_clip(p, max_side=side).frames[:max_frames]
        h, w = (frames.shape[1] // 4) * 4, (frames.shape[2] // 4) * 4
        out[p.stem] = np.ascontiguousarray(frames[:, :h, :w])
    return out


def grid_queries(h: int, w: int, n: int = 10) -> np.ndarray:
    ys, xs = np.meshgrid(np.linspace(0.1 * h, 0.9 * h, n), np.linspace(0.1 * w, 0.9 * w, n), indexing="ij")
    return np.stack([np.zeros(n * n), xs.ravel(), ys.ravel()], 1).astype(np.float32)


def eval_forward_backward(clips: dict[str, np.ndarray], tracker) -> dict:
    per_video, frames_done, seconds = {}, 0, 0.0
    for name, frames in clips.items():
        T, H, W = frames.shape[:3]
        q = grid_queries(H, W)
        t0 = time.perf_counter()
        xy, vis = tracker(frames, q)
        seconds += time.perf_counter() - t0
        frames_done += T
        end = np.clip(np.asarray(xy)[-1], 0, [W - 1, H - 1])  # tracks that left the frame: not scored
        seen = np.asarray(vis, bool)[-1]
        back_q = np.concatenate([np.full((len(q), 1), T - 1, np.float32), end], 1)
        xy_b, _ = tracker(frames, back_q)
        err = np.linalg.norm(np.asarray(xy_b)[0] - q[:, 1:], axis=1)
        per_video[name] = {"median_fb_px": float(np.median(err[seen] if seen.any() else err)),
                           "seen_at_end": float(seen.mean()), "frames": int(T), "size": [int(H), int(W)]}
    return {"per_video": per_video, "median_fb_px": float(np.median([v["median_fb_px"] for v in per_video.values()])),
            "fps": frames_done / max(seconds, 1e-9)}


# -- the table ------------------------------------------------------------------------------------------


COLUMNS = [("bench AJ", "bench", "average_jaccard", 100), ("bench d_avg", "bench", "average_pts_within_thresh", 100),
           ("bench OA", "bench", "occlusion_accuracy", 100), ("BADJA d_avg", "badja", "average_pts_within_thresh", 100),
           ("BADJA med px", "badja", "median_error_px", 1), ("synth d_avg", "synthetic", "average_pts_within_thresh", 100),
           ("synth med px", "synthetic", "median_error_px", 1), ("FB px", "fb", "median_fb_px", 1),
           ("fps", "fb", "fps", 1)]


def cell(result: dict, group: str, key: str, mult: float) -> float | None:
    g = result.get(group)
    if g is None:
        return None
    src = g["mean"] if "mean" in g else g
    return None if key not in src else src[key] * mult


def print_table(results: dict[str, dict]) -> None:
    width = max(8, *(len(n) for n in results))
    print(f"{'tracker':<{width}} " + " ".join(f"{c[0]:>12}" for c in COLUMNS))
    for name, res in results.items():
        vals = [cell(res, g, k, m) for _, g, k, m in COLUMNS]
        print(f"{name:<{width}} " + " ".join(f"{v:12.1f}" if v is not None else f"{'-':>12}" for v in vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["bundled=bundled"], help="NAME=PATH|official name|bundled|random")
    ap.add_argument("--no-klt", action="store_true", help="leave KLT out")
    ap.add_argument("--sharpen", action="store_true",
                    help="also score every model with Lucas-Kanade sharpening (NAME+lk rows)")
    ap.add_argument("--json", type=Path, default=Path("bundled_model_eval.json"), help="where to write all numbers")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated benchmark")
    ap.add_argument("--bench-videos", type=int, default=6, help="videos in the generated benchmark")
    ap.add_argument("--bench-dir", type=Path, default=None, help="use this make-benchmark output instead")
    ap.add_argument("--synthetic-clips", type=int, default=16, help="held-out synthetic clips")
    ap.add_argument("--fb-side", type=int, default=256, help="longer side of the real videos for FB/fps")
    ap.add_argument("--fb-frames", type=int, default=48, help="frames of each real video for FB/fps")
    ap.add_argument("--fb-videos", type=int, default=None, help="use only the first N real videos for FB/fps")
    ap.add_argument("--skip", nargs="*", default=[], choices=["bench", "badja", "synthetic", "fb"])
    ap.add_argument("--quick", action="store_true",
                    help="2 benchmark videos, 4 synthetic clips, 3 real videos of 24 frames")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.quick:
        args.bench_videos, args.synthetic_clips, args.fb_frames = 2, 4, 24
        args.fb_videos = args.fb_videos or 3
    if args.threads:
        torch.set_num_threads(args.threads)

    trackers: dict[str, dict] = {}
    for spec in args.models:
        name, _, what = spec.partition("=")
        model = load_tracker_model(what or name, args.device)
        trackers[name] = {"eval": ModelTracker(model), "predict": PredictTracker(model),
                          "resolution": list(model.model_resolution), "source": what or name}
        if args.sharpen:
            trackers[name + "+lk"] = {"eval": Sharpened(ModelTracker(model)), "predict": Sharpened(PredictTracker(model)),
                                      "resolution": list(model.model_resolution), "source": (what or name) + " + LK"}
    if not args.no_klt:
        trackers["klt"] = {"eval": KLTTracker(), "predict": klt_predict, "resolution": None, "source": "klt"}

    results: dict[str, dict] = {n: {"source": t["source"], "model_resolution": t["resolution"]} for n, t in trackers.items()}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if "bench" not in args.skip:
            path = args.bench_dir
            if path is None:
                cfg = BenchmarkConfig(seed=args.seed, num_videos=args.bench_videos)
                path = write_benchmark(make_benchmark(cfg), Path(tmp) / "bench", cfg)
            for name, t in trackers.items():
                t0 = time.perf_counter()
                results[name]["bench"] = evaluate_tapvid(iter_tapvid(Path(path) / "benchmark.pkl", "first"),
                                                         t["eval"], "first")
                print(f"[{time.perf_counter() - t0:6.1f} s] {name}: benchmark")
        if "badja" not in args.skip:
            for name, t in trackers.items():
                t0 = time.perf_counter()
                results[name]["badja"] = evaluate_badja(t["eval"])
                print(f"[{time.perf_counter() - t0:6.1f} s] {name}: BADJA")
        if "synthetic" not in args.skip:
            samples = synthetic_clips(args.synthetic_clips)
            for name, t in trackers.items():
                t0 = time.perf_counter()
                results[name]["synthetic"] = eval_synthetic(samples, t["eval"])
                print(f"[{time.perf_counter() - t0:6.1f} s] {name}: synthetic")
        if "fb" not in args.skip:
            clips = real_clips(args.fb_side, args.fb_frames, args.fb_videos)
            for name, t in trackers.items():
                t0 = time.perf_counter()
                results[name]["fb"] = eval_forward_backward(clips, t["predict"])
                print(f"[{time.perf_counter() - t0:6.1f} s] {name}: forward-backward")
    print()
    print_table(results)
    print(f"\n({time.perf_counter() - start:.0f} s in all, {torch.get_num_threads()} torch threads, {args.device})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                    indent=2))
    print(f"all numbers: {args.json}")


if __name__ == "__main__":
    main()
