"""Evaluate a tracker on TAP-Vid, on a make-benchmark set, or on BADJA, and write results JSON.

TAP-Vid-format data follow the official CoTracker3 evaluation: videos resized to 256x256,
"first" or "strided" queries, metrics AJ, delta_avg (points within 1/2/4/8/16 px) and
occlusion accuracy per video and their plain mean. An offline model runs all queries at
once with a 5x5 support grid; an online model is streamed in 16-frame chunks; visible means
sigmoid(vis)*sigmoid(conf) > 0.6. --tracker klt scores the OpenCV KLT baseline instead.
BADJA (hand-labelled animal joints) reports delta at 256-px scale and the median error in
pixels.

Examples:
  cotracker3 evaluate --dataset tapvid-davis --data tapvid_davis/tapvid_davis.pkl --model cotracker3_offline
  cotracker3 evaluate --dataset tapvid-davis --data tapvid_davis.pkl --mode strided --model cotracker3_online
  cotracker3 evaluate --dataset kinetics --data tapvid_kinetics/ --max-videos 50
  cotracker3 evaluate --dataset benchmark --data bench/benchmark.pkl --tracker klt
  cotracker3 evaluate --dataset badja --tracker klt --output badja_klt.json
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from cotracker3_plugin.cli._common import load_model_verbose, resolve_device, write_summary
from cotracker3_plugin.errors import UserError

log = logging.getLogger("cotracker3_plugin.cli.evaluate")

Dataset = Literal["tapvid-davis", "tapvid-stacking", "kinetics", "robotap", "benchmark", "badja"]


@tyro.conf.configure(tyro.conf.FlagCreatePairsOff)
@dataclass
class Config:
    """Options of `cotracker3 evaluate`."""

    dataset: Dataset = "benchmark"
    """Which data: tapvid-davis (tapvid_davis.pkl), tapvid-stacking (tapvid_rgb_stacking.pkl), kinetics (folder of *_of_0010.pkl), robotap (folder of robotap_split*.pkl), benchmark (a make-benchmark benchmark.pkl or its folder), badja (the shared BADJA tracks)."""
    data: Path | None = None
    """Path of the dataset's pickle file or folder. Optional for badja (default: ../shared/data/tracks/badja)."""
    mode: Literal["first", "strided"] = "first"
    """TAP-Vid query mode: first (one query per track at its first visible frame) or strided (queries every 5 frames). BADJA always uses first."""
    tracker: Literal["model", "klt"] = "model"
    """What to evaluate: a CoTracker3 model (--model) or the OpenCV pyramidal KLT baseline."""
    model: str | None = None
    """Model: cotracker3_offline or cotracker3_online (official weights), a checkpoint path, or unset for the small bundled model."""
    online: bool = False
    """Load the model as the online variant (streamed evaluation, no support grid)."""
    offline: bool = False
    """Load the model as the offline variant (whole clip at once, 5x5 support grid)."""
    iters: int = 6
    """Refinement iterations of the model (the official evaluation uses 6)."""
    support_grid: int = 5
    """Side of the support grid added at frame 0 for the offline model (official: 5; 0 for none)."""
    max_videos: int | None = None
    """Evaluate only the first this-many videos."""
    device: str = "auto"
    """Device: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps."""
    output: Path = Path("results.json")
    """Where to write the results JSON (per-video metrics and their mean); replaced if it exists."""
    verbose: bool = False
    """Debug logging, and full tracebacks on errors."""


def _make_tracker(cfg: Config):
    """(tracker, backward tracker for strided mode, description)."""
    if cfg.tracker == "klt":
        from cotracker3_plugin.evaluate.klt import KLTTracker

        return KLTTracker(), None, {"tracker": "klt", "win_size": 21, "levels": 4}
    if cfg.online and cfg.offline:
        raise UserError("--online and --offline exclude each other; give at most one.")
    from cotracker3_plugin.evaluate.runner import ModelTracker

    device = resolve_device(cfg.device)
    online = True if cfg.online else (False if cfg.offline else None)
    model = load_model_verbose(cfg.model, online=online, device=device)
    model.eval()
    fwd = ModelTracker(model, grid_size=cfg.support_grid, iters=cfg.iters)
    # The official strided re-run always goes through the joint (EvaluationPredictor) path.
    bwd = ModelTracker(model, protocol="joint", grid_size=cfg.support_grid, iters=cfg.iters)
    desc = {"tracker": "model", "model": cfg.model or "bundled default", "model_class": type(model).__name__,
            "protocol": fwd.protocol, "iters": cfg.iters, "support_grid": cfg.support_grid,
            "device": str(device)}
    return fwd, bwd, desc


def _tapvid_path(cfg: Config) -> Path:
    if cfg.data is None:
        raise UserError(f"--dataset {cfg.dataset} needs --data: the pickle file or folder of shards "
                        "(download TAP-Vid from github.com/google-deepmind/tapnet, or make one with "
                        "`cotracker3 make-benchmark`).")
    path = cfg.data
    if cfg.dataset == "benchmark" and path.is_dir() and (path / "benchmark.pkl").is_file():
        path = path / "benchmark.pkl"
    if not path.exists():
        raise UserError(f"--data {path} does not exist. Give the dataset's .pkl file or folder.")
    return path


def run(cfg: Config) -> int:
    t0 = time.perf_counter()
    # Check the data before loading a model (fast failure on a wrong path).
    data_path = None if cfg.dataset == "badja" else _tapvid_path(cfg)
    tracker, backward, desc = _make_tracker(cfg)
    if cfg.dataset == "badja":
        from cotracker3_plugin.evaluate.badja import SEQUENCES, evaluate_badja

        if cfg.mode != "first":
            log.warning("BADJA is scored in first mode only; --mode %s ignored.", cfg.mode)
        seqs = SEQUENCES[: cfg.max_videos] if cfg.max_videos else SEQUENCES
        result = evaluate_badja(tracker, cfg.data, seqs)
        result["query_mode"] = "first"
        for name, row in result["per_video"].items():
            log.info("%s: delta_avg %.1f median error %.1f px", name,
                     100 * row["average_pts_within_thresh"], row["median_error_px"])
    else:
        from cotracker3_plugin.evaluate.runner import evaluate_tapvid
        from cotracker3_plugin.evaluate.tapvid import iter_tapvid

        samples = iter_tapvid(data_path, cfg.mode, max_videos=cfg.max_videos)
        result = evaluate_tapvid(samples, tracker, cfg.mode, backward_tracker=backward,
                                 progress=log.info)
        if result["num_videos"] == 0:
            raise UserError(f"No video in {cfg.data} had a track to query; is it the right file?")
        result["dataset"] = cfg.dataset
    result = {"dataset": result.pop("dataset", cfg.dataset), "data": str(cfg.data) if cfg.data else None,
              **desc, **result, "seconds": round(time.perf_counter() - t0, 2)}
    write_summary(cfg.output, result)
    m = result["mean"]
    line = f"{cfg.dataset} ({result['query_mode']}), {len(result['per_video'])} videos:"
    if "average_jaccard" in m:
        line += (f" AJ {100 * m['average_jaccard']:.1f}  delta_avg {100 * m['average_pts_within_thresh']:.1f}"
                 f"  OA {100 * m['occlusion_accuracy']:.1f}")
    else:
        line += (f" delta_avg {100 * m['average_pts_within_thresh']:.1f}"
                 f"  median error {m['median_error_px']:.1f} px")
    print(line)
    print(f"Results written to {cfg.output}")
    return 0
