"""Feature sampling and the 4-D correlation of CoTracker3.

Conventions (those of the official code, which the weights depend on):

* coordinates are in pixels of the sampled map; integer values hit pixel centres
  (``grid_sample`` with ``align_corners=True``) and points outside take the border value;
* a (2r+1) x (2r+1) patch is indexed ``[a, b]`` with offset ``(dx, dy) = (a - r, b - r)``:
  the **first** patch axis is x, the second y.  ``corr_mlp`` weights depend on this order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_offsets(radius: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Offsets (2r+1, 2r+1, 2) as (dx, dy), first axis = x offset, second = y offset."""
    d = torch.linspace(-radius, radius, 2 * radius + 1, device=device)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1)


def _normalise(coords: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Pixel coordinates (last axis ordered like ``sizes`` reversed: x, y[, t]) -> [-1, 1]."""
    scale = torch.tensor([2 / max(s - 1, 1) for s in reversed(sizes)], device=coords.device)
    return coords * scale - 1


def sample_video_patches(
    fmap: torch.Tensor, frames: torch.Tensor, centers: torch.Tensor, radius: int
) -> torch.Tensor:
    """Bilinear patches around ``centers`` on frame ``frames`` of a feature video.

    fmap (B, T, C, H, W); frames (B, N) integer frame indices (out-of-range ones are
    clamped to the border frame); centers (B, N, 2) as (x, y) in pixels of ``fmap``.
    Returns (B, (2r+1)^2, N, C): the official "support" layout.
    """
    b, t, c, h, w = fmap.shape
    n = centers.shape[1]
    k = 2 * radius + 1
    offsets = patch_offsets(radius, centers.device)  # (k, k, 2)
    # Build (x, y, t) sample points, (B, N, k, k, 3), then lay out as (B, k*k, N, 1, 3).
    xy = centers[:, :, None, None, :] + offsets
    tt = frames.to(centers.dtype)[:, :, None, None, None].expand(b, n, k, k, 1)
    pts = torch.cat([xy, tt], dim=-1).reshape(b, n, k * k, 3).permute(0, 2, 1, 3)
    grid = _normalise(pts, (t, h, w)).unsqueeze(3)
    out = F.grid_sample(fmap.permute(0, 2, 1, 3, 4), grid, align_corners=True, padding_mode="border")
    # (B, C, k*k, N, 1) -> (B, k*k, N, C)
    return out.permute(0, 2, 3, 1, 4).reshape(b, k * k, n, c)


def sample_frame_patches(
    fmap: torch.Tensor, centers: torch.Tensor, radius: int, fast: bool = False
) -> torch.Tensor:
    """Bilinear patches around per-frame centres.

    fmap (B*T, C, H, W); centers (B*T, N, 2) as (x, y) in pixels of ``fmap``.
    Returns (B*T, C, N, 2r+1, 2r+1).

    The official code samples a depth-1 volume with a 3-D grid sample; ``fast`` uses the
    equivalent 2-D grid sample (same values up to float rounding).
    """
    bt, c, h, w = fmap.shape
    xy = centers[:, :, None, None, :] + patch_offsets(radius, centers.device)  # (BT, N, k, k, 2)
    if fast:
        k = 2 * radius + 1
        n = centers.shape[1]
        grid = _normalise(xy, (h, w)).reshape(bt, n, k * k, 2)
        out = F.grid_sample(fmap, grid, align_corners=True, padding_mode="border")
        return out.view(bt, c, n, k, k)
    grid = _normalise(torch.cat([xy, torch.zeros_like(xy[..., :1])], dim=-1), (1, h, w))
    return F.grid_sample(fmap.unsqueeze(2), grid, align_corners=True, padding_mode="border")


def correlation_volume(
    frame_patches: torch.Tensor, query_patches: torch.Tensor, batch: int, fast: bool = False
) -> torch.Tensor:
    """All pairwise dot products between target-frame patches and query patches.

    frame_patches (B*S, C, N, k, k) from :func:`sample_frame_patches`; query_patches
    (B, k*k, N, C). Returns (B*S*N, k^4) flattened as (target x, target y, query x, query y).
    No 1/sqrt(C) scaling (as in the official code).
    """
    bs, c, n, k, _ = frame_patches.shape
    s = bs // batch
    tgt = frame_patches.view(batch, s, c, n, k, k).permute(0, 1, 3, 4, 5, 2)  # B S N k k C
    qry = query_patches.view(batch, k, k, n, c).permute(0, 3, 1, 2, 4)  # B N k k C
    if fast:
        # One batched matmul per (b, n): (S*k*k, C) @ (C, k*k).
        lhs = tgt.permute(0, 2, 1, 3, 4, 5).reshape(batch, n, s * k * k, c)
        rhs = qry.reshape(batch, n, k * k, c).transpose(-1, -2)
        vol = torch.matmul(lhs, rhs).view(batch, n, s, k**4).transpose(1, 2)
        return vol.reshape(bs * n, k**4)
    vol = torch.einsum("btnhwc,bnijc->btnhwij", tgt, qry)
    return vol.reshape(bs * n, k**4)
