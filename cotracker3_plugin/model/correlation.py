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


def sample_frame_patches(fmap: torch.Tensor, centers: torch.Tensor, radius: int) -> torch.Tensor:
    """Bilinear patches around per-frame centres, exactly as the official code samples them.

    fmap (B*S, C, H, W); centers (B*S, N, 2) as (x, y) in pixels of ``fmap``.
    Returns (B*S, C, N, (2r+1)^2). (The official code samples a depth-1 volume with a 3-D
    grid sample; we do the same so the rounding matches.)
    """
    bs, c, h, w = fmap.shape
    n = centers.shape[1]
    k = 2 * radius + 1
    xy = centers[:, :, None, None, :] + patch_offsets(radius, centers.device)  # (BS, N, k, k, 2)
    grid = _normalise(torch.cat([xy, torch.zeros_like(xy[..., :1])], dim=-1), (1, h, w))
    out = F.grid_sample(fmap.unsqueeze(2), grid, align_corners=True, padding_mode="border")
    return out.view(bs, c, n, k * k)


def fast_feature_map(fmap: torch.Tensor, radius: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The layout :func:`correlation_volume_fast` reads: (..., C, H, W) -> (..., W + 2P, H + 2P, C).

    Transposed channels-last (x outermost, then y, then channels), so that the 2r+2 pixels of a patch
    column with their channels are one contiguous run of memory, and padded by P = 2r+2 border
    pixels on every side (``padding_mode="border"``), so that a patch never needs its indices clamped
    one by one. Made once per window; ``dtype`` (default: the map's) is the correlation's.
    """
    *lead, c, h, w = fmap.shape
    pad = 2 * radius + 2
    padded = F.pad(fmap.reshape(-1, c, h, w), (pad, pad, pad, pad), mode="replicate")
    out = padded.permute(0, 3, 2, 1).to(dtype or fmap.dtype).contiguous()
    return out.reshape(*lead, w + 2 * pad, h + 2 * pad, c)


def _integer_neighbourhood(
    fmap_fast: torch.Tensor, centers: torch.Tensor, radius: int
) -> tuple[torch.Tensor, ...]:
    """The (2r+2) x (2r+2) integer pixels around each centre and the bilinear fractions.

    fmap_fast (B*S, W + 2P, H + 2P, C) from :func:`fast_feature_map`; centers (B*S, N, 2). Returns
    values (B*S, N, 2r+2 [x], 2r+2 [y], C) and fractions fx, fy (B*S, N, 1, 1, 1). This reproduces
    ``padding_mode="border"``: a patch further outside the map than the padding is moved onto the
    padding, where (as at its true place) every pixel is the same border pixel, whatever the weights.
    """
    bs, wp, hp, c = fmap_fast.shape
    pad = 2 * radius + 2
    n = centers.shape[1]
    k1 = 2 * radius + 2
    base = torch.floor(centers)
    frac = centers - base
    # Patch origin (its first column and row) in padded pixels, kept inside the padded map.
    x0 = (base[..., 0].long() + (pad - radius)).clamp_(0, wp - k1)
    y0 = (base[..., 1].long() + (pad - radius)).clamp_(0, hp - k1)
    frame = torch.arange(bs, device=centers.device).view(bs, 1, 1) * (wp * hp)
    steps = torch.arange(k1, device=centers.device)
    starts = (frame + (x0[..., None] + steps) * hp + y0[..., None]).reshape(-1)  # (BS * N * k1,) columns
    flat = fmap_fast.reshape(bs * wp * hp, c).contiguous()  # the strided view below needs it
    if torch.is_grad_enabled() and flat.requires_grad:
        # Training: one row per pixel (overlapping views back-propagate slowly).
        vals = flat.index_select(0, (starts[:, None] + steps).reshape(-1))
    else:
        # Each patch column with its channels is one contiguous run: gather k1 x C values at a time
        # through an overlapping view (a third of the time of gathering the pixels one by one).
        columns = torch.as_strided(flat, (flat.shape[0] - k1 + 1, k1 * c), (c, 1))
        vals = columns[starts]
    fx = frac[..., 0].view(bs, n, 1, 1, 1)
    fy = frac[..., 1].view(bs, n, 1, 1, 1)
    return vals.view(bs, n, k1, k1, c), fx, fy


def _per_frame(rhs: torch.Tensor, s: int) -> torch.Tensor:
    """(B, ...) -> (B*s, ...): each clip's query patches repeated for its s frames."""
    return rhs.unsqueeze(1).expand(rhs.shape[0], s, *rhs.shape[1:]).reshape(-1, *rhs.shape[1:])


def query_operand(query_patches: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, k*k, N, C) query patches -> the (B, N, C, k*k) operand of :func:`correlation_volume_fast` and
    :func:`correlation_volume` in ``dtype``: made once per window, not once per chunk of frames."""
    return query_patches.permute(0, 2, 3, 1).to(dtype).contiguous()


def correlation_volume_fast(
    fmap_fast: torch.Tensor, centers: torch.Tensor, query_patches: torch.Tensor, radius: int,
    *, operand: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`correlation_volume` of :func:`sample_frame_patches`, computed faster.

    Patch offsets are integers, so every sample of a patch has the same bilinear weights.
    Correlate the query patch with the (2r+2)^2 integer neighbours first (one small matmul per
    frame), then interpolate the correlations (bilinear sampling and the dot product are both
    linear, so this is the same function; only the float rounding differs).

    fmap_fast (B*S, W + 2P, H + 2P, C) from :func:`fast_feature_map`; centers (B*S, N, 2);
    query_patches (B, k*k, N, C), or ``operand``, the same already made by :func:`query_operand`
    (pass ``query_patches=None`` then). Returns (B*S*N, k^4).
    """
    vals, fx, fy = _integer_neighbourhood(fmap_fast, centers, radius)
    bs, n, k1, _, c = vals.shape
    # The feature maps' dtype for both operands (the ``out=`` product below needs one; under
    # autocast the maps are bf16 and the query patches float32); a no-op in float32.
    rhs = operand if operand is not None else query_operand(query_patches, vals.dtype)  # (B, N, C, k*k)
    kk = rhs.shape[-1]
    s = bs // rhs.shape[0]
    vals = vals.view(bs, n, k1 * k1, c)
    if torch.is_grad_enabled() and (vals.requires_grad or rhs.requires_grad):
        # One batched matmul: per-frame slices would each back-propagate into a zero-filled
        # copy of the whole tensor (quadratic in the frame count).
        corr = torch.matmul(vals, _per_frame(rhs, s))
    else:
        corr = vals.new_empty((bs, n, k1 * k1, kk))
        for i in range(bs):
            torch.bmm(vals[i], rhs[i // s], out=corr[i])
    # Interpolate in the products' dtype (lerp needs one): float32, or under autocast bf16, which
    # corr_mlp rounds its input to anyway. Casting the volumes to float32 and back cost more than
    # the products (a fifth of the bundled model's tracking time); the fractions' bf16 rounding
    # moves a sample by at most 1/256 of a feature pixel.
    corr = corr.view(bs, n, k1, k1, kk)
    fx, fy = fx.to(corr.dtype), fy.to(corr.dtype)
    corr = torch.lerp(corr[:, :, :-1], corr[:, :, 1:], fx)  # along x -> (BS, N, k, k+1, kk)
    corr = torch.lerp(corr[:, :, :, :-1], corr[:, :, :, 1:], fy)  # along y -> (BS, N, k, k, kk)
    return corr.reshape(bs * n, kk * kk)


def correlation_volume(frame_patches: torch.Tensor, query_patches: torch.Tensor | None, *,
                       operand: torch.Tensor | None = None) -> torch.Tensor:
    """All pairwise dot products between target-frame patches and query patches.

    frame_patches (B*S, C, N, k*k) from :func:`sample_frame_patches`; query_patches (B, k*k, N, C), or
    ``operand``, the same made once per window by :func:`query_operand` (the same numbers either way).
    Returns (B*S*N, k^4) flattened as (target x, target y, query x, query y), i.e. the official
    ``einsum("btnhwc,bnijc->btnhwij")`` without 1/sqrt(C) scaling, with the same numbers.
    """
    bs, c, n, kk = frame_patches.shape
    # (B, N, C, k*k); converting a prepared operand is a no-op unless autocast changed the patches' dtype
    rhs = query_operand(query_patches, frame_patches.dtype) if operand is None else operand.to(frame_patches.dtype)
    s = bs // rhs.shape[0]
    # One small batched matmul per frame reads the patches in place (the einsum would first
    # copy all of them into a permuted layout).
    lhs = [frame_patches[i].permute(1, 2, 0) for i in range(bs)]  # (N, k*k, C) views
    if torch.is_grad_enabled() and (frame_patches.requires_grad or rhs.requires_grad):
        out = torch.matmul(frame_patches.permute(0, 2, 3, 1), _per_frame(rhs, s))  # see correlation_volume_fast
    else:
        out = frame_patches.new_empty((bs, n, kk, kk))
        for i in range(bs):
            torch.bmm(lhs[i], rhs[i // s], out=out[i])
    return out.view(bs * n, kk * kk)
