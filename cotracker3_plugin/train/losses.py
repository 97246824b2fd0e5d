"""CoTracker3 training losses, numerically identical to the official Kubric training step.

All predictions come from ``model(..., is_train=True)``'s ``train_data``: for every window a
list over refinement iterations of tensors ``(B, S, N[, 2])``; visibility and confidence are
probabilities (after the sigmoid), coordinates are pixels at model resolution (x right, y down).

Terms (ARCHITECTURE.md §4.3, pitfall 16):

* track loss on visible points: Huber (delta 6) averaged over (x, y), masked mean over
  ``valid * vis_gt``, iteration ``i`` of ``n`` weighted ``gamma ** (n - 1 - i)``, the weighted
  sum divided by ``n``, then averaged over windows; weight 0.05;
* the same with L1 on occluded points (mask ``valid * (1 - vis_gt)``); weight 0.01;
* visibility BCE: plain mean over every element (no mask), averaged over iterations and windows;
* confidence BCE against "the detached prediction lies within 12 px", multiplied by ``vis_gt``
  but divided by all S*N elements; averaged over iterations, windows, then the batch.

Losses are computed in float32; call them outside any autocast region (``binary_cross_entropy``
refuses to run under CUDA autocast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Added to the mask sum of every masked mean, as the official ``reduce_masked_mean``.
MASK_EPS = 1e-6

Windows = Sequence[Sequence[torch.Tensor]]


@dataclass
class LossConfig:
    """Weights and constants of the combined CoTracker3 loss (official Kubric defaults)."""

    gamma: float = 0.8
    """Discount of earlier refinement iterations: iteration i of n gets gamma**(n-1-i)."""
    huber_delta: float = 6.0
    """Huber threshold (pixels at model resolution) of the visible-point track loss."""
    confidence_threshold: float = 12.0
    """A prediction within this many pixels of the truth is the positive confidence target."""
    visible_weight: float = 0.05
    """Weight of the Huber track loss on visible points."""
    occluded_weight: float = 0.01
    """Weight of the L1 track loss on occluded points (1/5 of the visible weight); 0 disables it."""
    visibility_weight: float = 1.0
    """Weight of the visibility BCE; 0 disables it (pseudo-label fine-tuning)."""
    confidence_weight: float = 1.0
    """Weight of the confidence BCE; 0 disables it (pseudo-label fine-tuning)."""


def huber(diff: torch.Tensor, delta: float) -> torch.Tensor:
    """Elementwise Huber: 0.5 d^2 where |d| <= delta, else delta (|d| - delta / 2)."""
    a = diff.abs()
    quadratic = (a <= delta).to(diff.dtype)
    return quadratic * 0.5 * diff**2 + (1.0 - quadratic) * delta * (a - 0.5 * delta)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(x * mask) / (eps + sum(mask)) over every axis (the batch included)."""
    return (x * mask).sum() / (MASK_EPS + mask.sum())


def sequence_track_loss(
    coords: Windows,
    traj_gt: Sequence[torch.Tensor],
    mask: Sequence[torch.Tensor],
    gamma: float = 0.8,
    huber_delta: float | None = 6.0,
) -> torch.Tensor:
    """Discounted per-iteration track loss, averaged over windows.

    ``coords[j][i]`` (B,S,N,2), ``traj_gt[j]`` (B,S,N,2), ``mask[j]`` (B,S,N) (already the
    product of the valid mask and the visible or occluded indicator). ``huber_delta=None``
    gives L1.
    """
    total = coords[0][0].new_zeros((), dtype=torch.float32)
    for preds, gt, m in zip(coords, traj_gt, mask, strict=True):
        n = len(preds)
        gt = gt.float()
        m = m.float()
        window = total.new_zeros(())
        for i, pred in enumerate(preds):
            diff = pred.float() - gt
            err = huber(diff, huber_delta) if huber_delta is not None else diff.abs()
            window = window + gamma ** (n - 1 - i) * masked_mean(err.mean(dim=-1), m)
        total = total + window / n
    return total / len(coords)


def sequence_visibility_loss(vis: Windows, vis_gt: Sequence[torch.Tensor]) -> torch.Tensor:
    """Visibility BCE on probabilities, plain mean over all elements, iterations and windows."""
    total = vis[0][0].new_zeros((), dtype=torch.float32)
    for preds, gt in zip(vis, vis_gt, strict=True):
        gt = gt.float()
        window = sum(F.binary_cross_entropy(p.float(), gt) for p in preds)
        total = total + window / len(preds)
    return total / len(vis)


def sequence_confidence_loss(
    coords: Windows,
    conf: Windows,
    traj_gt: Sequence[torch.Tensor],
    vis_gt: Sequence[torch.Tensor],
    threshold: float = 12.0,
) -> torch.Tensor:
    """Confidence BCE against "within ``threshold`` px" of the truth; returns a per-batch (B,) tensor.

    The distance test uses the detached prediction; the BCE is multiplied by the GT visibility
    and averaged over all S*N elements of the window (not only the visible ones).
    """
    total: torch.Tensor | float = 0.0
    for c_preds, p_preds, gt, vis in zip(coords, conf, traj_gt, vis_gt, strict=True):
        gt = gt.float()
        vis = vis.float()
        window: torch.Tensor | float = 0.0
        for c, p in zip(c_preds, p_preds, strict=True):
            err2 = ((c.detach().float() - gt) ** 2).sum(dim=-1)
            target = (err2 <= threshold**2).float()
            bce = F.binary_cross_entropy(p.float(), target, reduction="none") * vis
            window = window + bce.mean(dim=(1, 2))
        total = total + window / len(p_preds)
    return total / len(coords)


def window_starts(num_frames: int, online: bool, window_len: int = 16) -> list[int]:
    """First frames of the supervised windows: one window (0) offline; 0, S/2, ... < T - S/2 online."""
    if not online:
        return [0]
    step = window_len // 2
    return list(range(0, num_frames - step, step))


def cotracker_loss(
    train_data: tuple,
    traj_gt: torch.Tensor,
    vis_gt: torch.Tensor,
    valid: torch.Tensor,
    online: bool,
    window_len: int = 16,
    cfg: LossConfig | None = None,
) -> dict[str, torch.Tensor]:
    """Combined CoTracker3 training loss, as the official Kubric training step combines it.

    Args:
        train_data: the model's ``(coords, vis, conf, valid_mask)`` training output.
        traj_gt: (B, T, N, 2) ground-truth pixels at model resolution.
        vis_gt: (B, T, N) ground-truth visibility (1 visible, 0 occluded).
        valid: (B, T, N) per-point validity from the data (all ones for Kubric).
        online: online model (windows of ``window_len`` every ``window_len // 2`` frames,
            supervision only from each track's query frame on) or offline (one window, all frames).
        window_len: the online model's window length.
        cfg: weights and constants; official defaults when None.

    Returns:
        ``track_visible_huber``, ``track_occluded_l1``, ``confidence_bce``, ``visibility_bce``
        (raw terms), their ``*_weighted`` versions where the weight is not 1, and ``total``.
        Disabled terms (weight 0) are absent.
    """
    cfg = cfg or LossConfig()
    coords, vis, conf, valid_mask = train_data
    T = traj_gt.shape[1]
    starts = window_starts(T, online, window_len)
    if len(starts) != len(coords):
        raise ValueError(f"the model returned {len(coords)} windows, the loss expects {len(starts)} for T={T}")
    span = window_len if online else T
    vis_gt = vis_gt.float()
    valid = valid.float()
    gts, vgs, vals = [], [], []
    for s in starts:
        gts.append(traj_gt[:, s : s + span, :, :2].float())
        vgs.append(vis_gt[:, s : s + span])
        v = valid[:, s : s + span]
        if online:
            v = v * valid_mask[:, s : s + span].float()
        vals.append(v)

    out: dict[str, torch.Tensor] = {}
    total = traj_gt.new_zeros((), dtype=torch.float32)
    if cfg.visible_weight:
        t = sequence_track_loss(coords, gts, [v * g for v, g in zip(vals, vgs)], cfg.gamma, cfg.huber_delta)
        out["track_visible_huber"] = t
        out["track_visible_weighted"] = t * cfg.visible_weight
        total = total + out["track_visible_weighted"]
    if cfg.occluded_weight:
        t = sequence_track_loss(coords, gts, [v * (1 - g) for v, g in zip(vals, vgs)], cfg.gamma, None)
        out["track_occluded_l1"] = t
        out["track_occluded_weighted"] = t * cfg.occluded_weight
        total = total + out["track_occluded_weighted"]
    if cfg.confidence_weight:
        t = sequence_confidence_loss(coords, conf, gts, vgs, cfg.confidence_threshold).mean()
        out["confidence_bce"] = t
        total = total + cfg.confidence_weight * t
    if cfg.visibility_weight:
        t = sequence_visibility_loss(vis, vgs)
        out["visibility_bce"] = t
        total = total + cfg.visibility_weight * t
    out["total"] = total
    return out
