"""Resizing between the user's frames and the model resolution (corner-aligned, both ways).

Frames are resized bilinearly with ``align_corners=True``; coordinates are scaled by
``(size_out - 1) / (size_in - 1)`` so that pixel 0 maps to 0 and pixel ``W-1`` to ``W'-1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_frames(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, 3, H, W) float in [0, 255] -> (B, T, 3, h, w) float, bilinear, align_corners=True."""
    b, t, c, h, w = video.shape
    if (h, w) == tuple(size):
        return video
    out = F.interpolate(video.reshape(b * t, c, h, w), size=tuple(size), mode="bilinear",
                        align_corners=True)
    return out.reshape(b, t, c, size[0], size[1])


def frames_to_tensor(frames, device: torch.device | str = "cpu") -> torch.Tensor:
    """(T, H, W, 3) uint8 numpy -> (1, T, 3, H, W) float32 tensor on ``device``."""
    x = torch.from_numpy(frames).to(device)
    return x.permute(0, 3, 1, 2).float()[None]


def _scale(src: tuple[int, int], dst: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    # Computed in Python floats and cast once, like the official code, for bit-equal results.
    return like.new_tensor([(dst[1] - 1) / (src[1] - 1), (dst[0] - 1) / (src[0] - 1)])


def xy_to_model(xy: torch.Tensor, input_hw: tuple[int, int], model_hw: tuple[int, int]) -> torch.Tensor:
    """Scale (..., 2) input pixels into model pixels."""
    return xy * _scale(input_hw, model_hw, xy)


def xy_from_model(xy: torch.Tensor, input_hw: tuple[int, int], model_hw: tuple[int, int]) -> torch.Tensor:
    """Scale (..., 2) model pixels back to input pixels."""
    return xy * _scale(model_hw, input_hw, xy)
