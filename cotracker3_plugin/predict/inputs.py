"""Validation and normalisation of user inputs for the predictors (errors name the fix)."""

from __future__ import annotations

import numpy as np
import torch

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip

RULES = ("package", "official")


def video_to_tensor(video, device: torch.device | str = "cpu") -> torch.Tensor:
    """Clip / (T,H,W,3) uint8 array / (1,T,3,H,W) tensor -> (1, T, 3, H, W) tensor in [0, 255].

    No copy: uint8 stays uint8 (a long clip as float32 would take 4x the memory); the
    predictors convert one window at a time.
    """
    if isinstance(video, Clip):
        video = video.frames
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] != 3:
            raise UserError(
                f"video array must be (T, H, W, 3) RGB, got shape {video.shape}. "
                "Pass a Clip, a (T, H, W, 3) uint8 array or a (1, T, 3, H, W) tensor.")
        if video.dtype != np.uint8:
            raise UserError(f"video array must be uint8 (0..255), got {video.dtype}. "
                            "Convert it with `frames.astype(np.uint8)` after scaling to 0..255.")
        out = torch.from_numpy(np.ascontiguousarray(video)).to(device).permute(0, 3, 1, 2)[None]
    elif isinstance(video, torch.Tensor):
        if video.ndim != 5 or video.shape[2] != 3:
            raise UserError(
                f"video tensor must be (B, T, 3, H, W), got shape {tuple(video.shape)}. "
                "Permute (T, H, W, 3) frames with `.permute(0, 3, 1, 2)[None]`.")
        if video.shape[0] != 1:
            raise UserError(f"video tensor has batch size {video.shape[0]}; track() takes one "
                            "video. Call it once per video (video[i:i+1]).")
        out = video.to(device)
    else:
        raise UserError(f"video must be a Clip, a numpy array or a torch tensor, got "
                        f"{type(video).__name__}. Read it with cotracker3_plugin.io first.")
    t, h, w = out.shape[1], out.shape[3], out.shape[4]
    if t == 0:
        raise UserError("the video has no frames. Check the file, the frame range and the stride.")
    if h < 2 or w < 2:
        raise UserError(f"frames are {h}x{w} pixels; at least 2x2 is needed. Check the input.")
    return out if out.dtype == torch.uint8 else out.float()


def check_queries(queries, num_frames: int, hw: tuple[int, int]) -> torch.Tensor:
    """(N, 3) or (1, N, 3) ``(t, x, y)`` in input pixels -> (N, 3) float32 tensor, validated."""
    q = torch.as_tensor(np.asarray(queries.cpu() if isinstance(queries, torch.Tensor) else queries,
                                   dtype=np.float32))
    if q.ndim == 3 and q.shape[0] == 1:
        q = q[0]
    if q.ndim != 2 or q.shape[1] != 3:
        raise UserError(f"queries must be (N, 3) rows of (t, x, y), got shape {tuple(q.shape)}. "
                        "Stack them as [[frame, x, y], ...].")
    if q.shape[0] == 0:
        raise UserError("queries is empty. Give at least one (t, x, y) row or use a grid "
                        "(queries=None, grid_size=10).")
    if not torch.isfinite(q).all():
        raise UserError("queries contain NaN or infinite values. Remove those rows.")
    h, w = hw
    t, x, y = q[:, 0], q[:, 1], q[:, 2]
    bad_t = (t < 0) | (t > num_frames - 1)
    if bad_t.any():
        i = int(bad_t.nonzero()[0])
        raise UserError(f"query {i} is at frame {float(t[i]):g}, but the clip has frames "
                        f"0..{num_frames - 1}. Use a frame index inside the clip.")
    # pixel centres are at integer coordinates; allow the whole area of the border pixels
    bad_xy = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
    if bad_xy.any():
        i = int(bad_xy.nonzero()[0])
        raise UserError(f"query {i} at (x={float(x[i]):g}, y={float(y[i]):g}) lies outside the "
                        f"{w}x{h} frame. Queries are (t, x, y) in pixels of the input video "
                        "(x to the right, y down); did you swap x and y?")
    return q


def check_mask(segm_mask, hw: tuple[int, int]) -> torch.Tensor:
    """(H, W) or (1, 1, H, W) mask -> (1, 1, H, W) float tensor."""
    m = torch.as_tensor(np.asarray(segm_mask.cpu() if isinstance(segm_mask, torch.Tensor)
                                   else segm_mask))
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or tuple(m.shape) != tuple(hw):
        raise UserError(f"segm_mask must be ({hw[0]}, {hw[1]}) like the frames, got shape "
                        f"{tuple(m.shape)}. Resize it to the video (nearest neighbour).")
    return m.float()[None, None]


def check_options(*, grid_size: int, grid_query_frame: int, num_frames: int, rule: str,
                  iters: int, support_grid_size: int, queries_given: bool, dense: bool,
                  mask_given: bool) -> None:
    if rule not in RULES:
        raise UserError(f"rule must be one of {RULES}, got {rule!r}.")
    if iters < 1:
        raise UserError(f"iters must be >= 1, got {iters}. The official predictors use 6.")
    if support_grid_size < 0:
        raise UserError(f"support_grid_size must be >= 0 (0 = none), got {support_grid_size}.")
    if dense and queries_given:
        raise UserError("dense=True tracks every pixel; do not pass queries with it.")
    if mask_given and (queries_given or dense):
        raise UserError("segm_mask restricts a query grid; it cannot be combined with explicit "
                        "queries or dense=True. Drop one of them.")
    if not queries_given and not dense and grid_size < 1:
        raise UserError(f"grid_size must be >= 1, got {grid_size}. Use dense=True to track "
                        "every pixel.")
    if not queries_given and not 0 <= grid_query_frame <= num_frames - 1:
        raise UserError(f"grid_query_frame {grid_query_frame} is outside the clip (frames "
                        f"0..{num_frames - 1}). Pick a frame inside the clip.")
