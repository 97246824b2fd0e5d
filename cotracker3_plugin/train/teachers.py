"""Frozen teacher trackers that pseudo-label real videos (the paper's central idea).

Every teacher answers the same call: ``teacher(video, queries) -> PseudoLabels`` with
video (B, T, 3, H, W) float in [0, 255] and queries (B, N, 3) ``(t, x, y)`` in pixels of
that video. :class:`TeacherPool` draws one teacher uniformly at random for every batch,
as in the paper; teachers are never updated.

CoTracker3 teachers follow the official ``train_on_real_data.py``: the raw model forward
with 4 iterations, online teachers in multi-window mode with a 5x5 helper grid at t = 0,
the offline teacher with 100 uniformly random helper queries; helper tracks are dropped and
pseudo-visibility is ``sigmoid(vis) > 0.9`` (the teacher's confidence is not used).
The classical teacher is OpenCV's pyramidal Lucas-Kanade with a forward-backward check,
which needs no weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class PseudoLabels:
    tracks: torch.Tensor
    """(B, T, N, 2) pixels."""
    visible: torch.Tensor
    """(B, T, N) bool."""
    teacher: str
    """Name of the teacher that made them."""


class Teacher(Protocol):
    name: str

    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> PseudoLabels: ...


def frames_uint8(video: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) float in [0, 255] -> (T, H, W, 3) uint8 for OpenCV."""
    return video.permute(0, 2, 3, 1).clamp(0, 255).round().to(torch.uint8).cpu().numpy()


def helper_grid(size: int, height: int, width: int) -> torch.Tensor:
    """The official ``grid(size, (H, W))`` at t = 0 as (size*size, 3) queries."""
    from cotracker3_plugin.predict.grid import grid_points

    xy = torch.as_tensor(grid_points(size, (height, width)), dtype=torch.float32).reshape(-1, 2)
    return torch.cat([torch.zeros(len(xy), 1), xy], dim=1)


class CoTrackerTeacher:
    """A frozen CoTracker3 (offline or online, any checkpoint) used as a teacher."""

    def __init__(self, model: torch.nn.Module, name: str | None = None, *, iters: int = 4,
                 vis_threshold: float = 0.9, seed: int = 0) -> None:
        self.model = model.eval().requires_grad_(False)
        self.online = "Online" in type(model).__name__
        self.name = name or ("cotracker3_online" if self.online else "cotracker3_offline")
        self.iters = iters
        self.vis_threshold = vis_threshold
        self.rng = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> PseudoLabels:
        b, t, _, h, w = video.shape
        if self.online:
            extra = helper_grid(5, h, w)
        else:  # 100 uniformly random helper queries, as the official offline teacher
            u = torch.rand(100, 3, generator=self.rng)
            extra = torch.stack([(u[:, 0] * t).floor().clamp(max=t - 1), u[:, 1] * w, u[:, 2] * h], 1)
        extra = extra.to(queries)[None].expand(b, -1, -1)
        n = queries.shape[1]
        device = next(self.model.parameters()).device
        coords, vis, _conf, _ = self.model(video.to(device), torch.cat([queries, extra], 1).to(device),
                                           iters=self.iters)
        return PseudoLabels(coords[:, :, :n].to(video.device), (vis[:, :, :n] > self.vis_threshold).to(video.device),
                            self.name)


class KLTTeacher:
    """OpenCV pyramidal Lucas-Kanade with forward-backward check; needs no weights."""

    name = "klt"

    def __init__(self, **klt_options: object) -> None:
        self.options = klt_options

    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> PseudoLabels:
        from cotracker3_plugin.evaluate.klt import klt_track

        tracks, visible = [], []
        for v, q in zip(video, queries):
            frames = frames_uint8(v)
            xy, vis = klt_track(frames, q.cpu().numpy(), **self.options)
            tracks.append(torch.as_tensor(np.asarray(xy), dtype=torch.float32))
            visible.append(torch.as_tensor(np.asarray(vis), dtype=torch.bool))
        return PseudoLabels(torch.stack(tracks).to(video.device), torch.stack(visible).to(video.device), self.name)


class LKRefinedTeacher:
    """Another teacher's labels made precise by Lucas-Kanade (:func:`~cotracker3_plugin.refine.sharpen_tracks`).

    Chained KLT from each query gives the label, visible, for as long as KLT's forward-backward check
    holds the point; after that the teacher's own label stays, moved to where LK from the query patch
    converges close by with a small residual. For a coarse learned teacher this keeps its long-range
    association and adds LK's sub-pixel precision on well-textured points.
    """

    def __init__(self, inner: Teacher) -> None:
        self.inner = inner
        self.name = f"{inner.name}+lk"
        self.rng = getattr(inner, "rng", None)  # the inner teacher's generator, checkpointed with the run

    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> PseudoLabels:
        from cotracker3_plugin.refine import sharpen_tracks
        from cotracker3_plugin.tracks import Tracks

        labels = self.inner(video, queries)
        tracks, visible = labels.tracks.clone(), labels.visible.clone()
        for i, (v, q) in enumerate(zip(video, queries)):
            frames = frames_uint8(v)
            seen = labels.visible[i].cpu().numpy()
            coarse = Tracks(labels.tracks[i].cpu().numpy(), seen, seen.astype(np.float32), q.cpu().numpy(),
                            frames.shape[1:3])
            sharp = sharpen_tracks(coarse, frames)
            tracks[i] = torch.as_tensor(sharp.xy).to(tracks)
            visible[i] = torch.as_tensor(sharp.visible).to(visible)
        return PseudoLabels(tracks, visible, self.name)


class TeacherPool:
    """Draws one teacher uniformly at random per batch (seeded; state saved with checkpoints)."""

    def __init__(self, teachers: list[Teacher], seed: int = 0) -> None:
        if not teachers:
            raise ValueError("at least one teacher is needed")
        self.teachers = teachers
        self.rng = np.random.default_rng(seed)

    def draw(self) -> Teacher:
        return self.teachers[int(self.rng.integers(len(self.teachers)))]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def build_teacher(spec: str, device: str | torch.device = "cpu") -> Teacher:
    """A teacher from a spec: ``klt``, or a model name/path as ``load_model`` takes it
    (optionally prefixed ``online:`` / ``offline:`` to choose the network)."""
    if spec == "klt":
        return KLTTeacher()
    from cotracker3_plugin.weights import load_model

    online = None
    if spec.startswith(("online:", "offline:")):
        kind, spec = spec.split(":", 1)
        online = kind == "online"
    model = load_model(spec, online=online, device=device)
    return CoTrackerTeacher(model, name=f"cotracker3:{spec}")
