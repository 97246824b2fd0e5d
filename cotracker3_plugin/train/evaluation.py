"""Held-out evaluation during training: fixed synthetic clips with exact ground truth.

Every track is queried at its first visible frame; the model runs in eval mode over the whole clip
(the online model in its multi-window mode). Reported:

* ``mean_px_error``: mean distance (model pixels) over GT-visible points after the query frame;
* TAP-Vid ``average_jaccard``, ``average_pts_within_thresh`` (delta_avg) and
  ``occlusion_accuracy`` in "first" mode with coordinates rescaled to 256x256 as the benchmark
  does (predicted visibility = vis * conf > 0.6, the evaluation rule), via
  :mod:`cotracker3_plugin.evaluate.metrics`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cotracker3_plugin.evaluate.metrics import compute_tapvid_metrics
from cotracker3_plugin.train.data import TrackingSample, sample_queries

#: Evaluation visibility rule: sigmoid(vis) * sigmoid(conf) above this.
VISIBILITY_THRESHOLD = 0.6


class HeldOutEvaluator:
    """Callable ``f(model) -> metrics`` over fixed samples (see the module doc)."""

    def __init__(self, samples: list[TrackingSample], iters: int = 4, device: torch.device | str = "cpu") -> None:
        self.samples = samples
        self.iters = iters
        self.device = torch.device(device)

    @classmethod
    def synthetic(cls, generator, count: int, seed: int = 1_000_003, iters: int = 4,
                  device: torch.device | str = "cpu") -> HeldOutEvaluator:
        """``count`` clips from a synthetic generator, drawn from seeds no training batch uses."""
        samples = []
        i = 0
        while len(samples) < count and i < 20 * count:
            s = generator.sample(i, np.random.default_rng([seed, i]))
            if s is not None:
                samples.append(s)
            i += 1
        return cls(samples, iters, device)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        errs, totals, metrics = [], [], []
        for s in self.samples:
            traj = s.trajectory[None].to(self.device)
            vis = s.visibility[None].to(self.device)
            q = sample_queries(traj, vis, "first")
            coords, pv, pc, _ = model(s.video[None].to(self.device), q, iters=self.iters)
            coords, pv, pc = coords.float(), pv.float(), pc.float()
            T = traj.shape[1]
            after = torch.arange(T, device=self.device)[None, :, None] > q[:, None, :, 0]
            m = vis & after
            d = (coords - traj).norm(dim=-1)
            errs.append(float((d * m).sum()))
            totals.append(float(m.sum()))
            H, W = s.video.shape[-2:]
            scale = np.array([255.0 / (W - 1), 255.0 / (H - 1)])
            gt = traj[0].permute(1, 0, 2).cpu().numpy() * scale
            pred = coords[0].permute(1, 0, 2).cpu().numpy() * scale
            qn = q[0].cpu().numpy()
            metrics.append(compute_tapvid_metrics(
                query_points=np.stack([qn[:, 0], qn[:, 2], qn[:, 1]], -1)[None],
                gt_occluded=~vis[0].T.cpu().numpy()[None],
                gt_tracks=gt[None],
                pred_occluded=((pv * pc)[0].T.cpu().numpy() <= VISIBILITY_THRESHOLD)[None],
                pred_tracks=pred[None],
                query_mode="first",
            ))
        out = {"mean_px_error": sum(errs) / max(sum(totals), 1.0)}
        for k in ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy"):
            out[k] = float(np.mean([m[k] for m in metrics]))
        return out
