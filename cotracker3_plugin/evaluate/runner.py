"""Run a tracker on TAP-Vid-format data the way the official evaluation does.

A *tracker* is any ``(frames (T,H,W,3) uint8, queries (N,3) (t,x,y)) -> (xy (T,N,2),
visible (T,N) bool)`` callable (:class:`~cotracker3_plugin.evaluate.badja.Tracker`).
:class:`ModelTracker` wraps a CoTracker3 network with the official evaluation protocol:

- offline model ("joint" protocol): all queries at once plus the 5×5 support grid at t = 0,
  6 iterations, visible = σ(vis)·σ(conf) > 0.6, no query-point overwrite;
- online model ("online" protocol): streamed in 16-frame chunks every 8 frames, no support
  grid, same visibility rule.

Both resize the video to the model resolution (bilinear, align_corners=True) and scale
coordinates corner-aligned ((W'−1)/(W−1)) both ways. In strided mode the official evaluator
re-runs the tracker on the time-reversed video and takes the backward value wherever the
forward coordinate is exactly 0.0; :func:`evaluate_tapvid` does the same when given a
``backward_tracker``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np

from cotracker3_plugin.evaluate.badja import Tracker
from cotracker3_plugin.evaluate.metrics import compute_tapvid_metrics
from cotracker3_plugin.evaluate.tapvid import TapVidSample

log = logging.getLogger(__name__)

VIS_THRESHOLD = 0.6


def support_grid(size: int, extent: tuple[int, int]) -> np.ndarray:
    """The official evaluation grid: (size², 2) ``(x, y)``, row-major, margin = width / 64."""
    He, We = extent
    if size == 1:
        return np.array([[We / 2, He / 2]], dtype=np.float32)
    m = We / 64
    ys = np.linspace(m, He - m, size)
    xs = np.linspace(m, We - m, size)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def is_online_model(model) -> bool:
    """True for the online (sliding-window, streaming) CoTracker3 variant."""
    return "online" in type(model).__name__.lower()


class ModelTracker:
    """A CoTracker3 network under the official evaluation protocol (see the module docstring).

    Args:
        model: a CoTracker3 network following the project's model contract.
        protocol: ``"joint"`` (offline evaluation), ``"online"`` (streaming) or ``None`` to
            pick from the model's type.
        grid_size: support grid side for the joint protocol (official: 5; 0 for none).
        iters: refinement iterations (official: 6).
        vis_threshold: visible where σ(vis)·σ(conf) exceeds it (official: 0.6).
        resolution: (H, W) the video is resized to; default ``model.model_resolution``
            (384×512). Smaller values (multiples of 4) are for quick tests only.
    """

    def __init__(self, model, protocol: str | None = None, grid_size: int = 5, iters: int = 6,
                 vis_threshold: float = VIS_THRESHOLD, resolution: tuple[int, int] | None = None) -> None:
        self.model = model
        self.protocol = protocol or ("online" if is_online_model(model) else "joint")
        if self.protocol not in ("joint", "online"):
            raise ValueError(f"protocol must be 'joint' or 'online', got {self.protocol!r}")
        self.grid_size = grid_size
        self.iters = iters
        self.vis_threshold = vis_threshold
        self.resolution = resolution

    def _resolution(self) -> tuple[int, int]:
        if self.resolution is not None:
            return tuple(self.resolution)
        return tuple(getattr(self.model, "model_resolution", (384, 512)))

    def __call__(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy, prob = self.predict(frames, queries)
        return xy, prob > self.vis_threshold

    def predict(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tracks (T, N, 2) in pixels of ``frames`` and the visibility probability (T, N)."""
        import torch
        import torch.nn.functional as F

        T, H, W = frames.shape[:3]
        mh, mw = self._resolution()
        try:
            device = next(self.model.parameters()).device
        except (AttributeError, StopIteration):
            device = torch.device("cpu")
        video = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
        video = F.interpolate(video, size=(mh, mw), mode="bilinear", align_corners=True)[None]
        sx, sy = (mw - 1) / (W - 1), (mh - 1) / (H - 1)
        q = np.asarray(queries, dtype=np.float32).reshape(-1, 3).copy()
        N = len(q)
        q[:, 1] *= sx
        q[:, 2] *= sy
        if self.protocol == "joint" and self.grid_size > 0:
            g = support_grid(self.grid_size, (mh, mw))
            q = np.concatenate([q, np.concatenate([np.zeros((len(g), 1), np.float32), g], 1)])
        qt = torch.from_numpy(q).to(device)[None]
        with torch.no_grad():
            if self.protocol == "joint":
                coords, vis, conf, _ = self.model(video, qt, iters=self.iters)
            else:
                coords, vis, conf = self._stream(video, qt)
        coords = coords[0, :, :N].float().cpu().numpy()
        prob = (vis[0, :, :N] * conf[0, :, :N]).float().cpu().numpy()
        coords[..., 0] /= sx
        coords[..., 1] /= sy
        return coords, prob

    def _stream(self, video, queries):
        """The official online evaluation: chunks [k, k+16) for k = 0, 8, … while k < T − 8."""
        model = self.model
        win = int(getattr(model, "window_len", 16))
        step = win // 2
        T = video.shape[1]
        model.init_video_online_processing()
        out = None
        for ind in range(0, max(T - step, 1), step):
            out = model(video[:, ind : ind + 2 * step], queries, iters=self.iters, is_online=True)
        coords, vis, conf = out[:3]
        return coords, vis, conf


def reversed_in_time(tracker: Tracker) -> Tracker:
    """A tracker that runs ``tracker`` on the time-reversed video and flips its output back."""

    def run(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, dtype=np.float32).copy()
        q[:, 0] = len(frames) - 1 - q[:, 0]
        xy, vis = tracker(np.ascontiguousarray(frames[::-1]), q)
        return xy[::-1], vis[::-1]

    return run


def track_sample(sample: TapVidSample, tracker: Tracker, backward_tracker: Tracker | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Predicted tracks (Q, T, 2) and predicted occlusion (Q, T) for one sample."""
    queries = sample.queries_txy
    xy, vis = tracker(sample.video, queries)
    xy = np.array(xy, dtype=np.float64)
    vis = np.array(vis, dtype=bool)
    if backward_tracker is not None:
        bxy, bvis = reversed_in_time(backward_tracker)(sample.video, queries)
        # Official rule: take the backward result where the forward coordinate is exactly 0.
        zero = xy == 0
        xy[zero] = np.asarray(bxy, dtype=np.float64)[zero]
        vis[zero[..., 0]] = np.asarray(bvis, dtype=bool)[zero[..., 0]]
    return xy.transpose(1, 0, 2), ~vis.T


def evaluate_tapvid(
    samples: Iterable[TapVidSample],
    tracker: Tracker,
    query_mode: str,
    backward_tracker: Tracker | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run ``tracker`` on every sample and compute TAP-Vid metrics.

    Returns a JSON-ready dict: ``per_video`` (name → metrics, plus ``num_queries`` and
    ``seconds``), ``mean`` (plain mean over videos, as the official evaluator reports) and
    ``num_videos``. In strided mode pass ``backward_tracker`` to apply the official backward
    re-run rule.
    """
    per_video: dict[str, dict[str, float]] = {}
    for sample in samples:
        if len(sample.query_points) == 0:
            log.warning("video %s has no visible track to query; skipped", sample.name)
            continue
        t0 = time.perf_counter()
        pred_xy, pred_occ = track_sample(
            sample, tracker, backward_tracker if query_mode == "strided" else None
        )
        m = compute_tapvid_metrics(
            sample.query_points[None], sample.occluded[None], sample.target_points[None],
            pred_occ[None], pred_xy[None], query_mode,
        )
        row = {k: float(v[0]) for k, v in m.items()}
        row["num_queries"] = int(len(sample.query_points))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        per_video[sample.name] = row
        if progress is not None:
            progress(f"{sample.name}: AJ {100 * row['average_jaccard']:.1f} "
                     f"δ_avg {100 * row['average_pts_within_thresh']:.1f} "
                     f"OA {100 * row['occlusion_accuracy']:.1f}")
    names = [k for k in next(iter(per_video.values()), {}) if k not in ("num_queries", "seconds")]
    mean = {k: float(np.mean([v[k] for v in per_video.values()])) for k in names}
    return {"query_mode": query_mode, "num_videos": len(per_video), "mean": mean, "per_video": per_video}
