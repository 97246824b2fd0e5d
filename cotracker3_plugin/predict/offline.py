"""Offline model passes in model space (the official ``CoTrackerPredictor`` internals).

Everything here works on model-resolution tensors: video (1, T, 3, h, w) float in [0, 255],
queries (1, N, 3) ``(t, x, y)`` in model pixels. Results are raw model outputs
``(coords (1,T,N,2), vis (1,T,N), conf (1,T,N))`` with probabilities (after the sigmoid).
"""

from __future__ import annotations

import torch

from cotracker3_plugin.predict.grid import grid_points

Raw = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def support_queries(size: int, model_hw: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """(1, size*size, 3) support points at t = 0 on the model-space grid."""
    pts = grid_points(size, model_hw, device=like.device).to(like.dtype)
    return torch.cat([torch.zeros_like(pts[:, :1]), pts], dim=1)[None]


def call_model(model, video: torch.Tensor, queries: torch.Tensor, iters: int, **kw) -> Raw:
    """One model call under no-grad, returning (coords, vis, conf)."""
    with torch.no_grad():
        coords, vis, conf, _ = model(video, queries, iters=iters, **kw)
    return coords, vis, conf


def merge_backward(queries: torch.Tensor, fwd: Raw, bwd: Raw) -> Raw:
    """Frames strictly before each track's query frame come from the backward pass.

    ``bwd`` is already flipped back to forward time order. conf is merged like vis (the
    official predictor merges coords and vis only; it does not use conf).
    """
    t = fwd[0].shape[1]
    before = torch.arange(t, device=queries.device)[None, :, None] < queries[:, None, :, 0]
    coords = torch.where(before[..., None], bwd[0], fwd[0])
    vis = torch.where(before, bwd[1], fwd[1])
    conf = torch.where(before, bwd[2], fwd[2])
    return coords, vis, conf


def reverse_queries(queries: torch.Tensor, num_frames: int) -> torch.Tensor:
    q = queries.clone()
    q[..., 0] = num_frames - 1 - q[..., 0]
    return q


def flip_raw(raw: Raw) -> Raw:
    return tuple(r.flip(1) for r in raw)  # type: ignore[return-value]


def offline_pass(model, video: torch.Tensor, queries: torch.Tensor, *, iters: int = 6,
                 backward_tracking: bool = False, record: list | None = None) -> Raw:
    """The offline model on the whole clip, plus the time-reversed pass if requested."""
    fwd = call_model(model, video, queries, iters)
    if record is not None:
        record.append(fwd)
    if not backward_tracking:
        return fwd
    bwd = call_model(model, video.flip(1), reverse_queries(queries, video.shape[1]), iters)
    if record is not None:
        record.append(bwd)
    return merge_backward(queries, fwd, flip_raw(bwd))
