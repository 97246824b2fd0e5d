"""Query grids in model space (the official ``get_points_on_a_grid`` convention).

Points are ``(x, y)`` pixels; ``extent`` is ``(height, width)``.
"""

from __future__ import annotations

import torch


def grid_points(size: int, extent: tuple[int, int] | tuple[float, float],
                center: tuple[float, float] | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """(size*size, 2) float32 points (x, y), row-major (y outer, x inner).

    The margin is ``width / 64`` on both axes (the official rule). ``size == 1`` gives the
    centre of the extent (ignoring ``center``, as the official helper does).
    """
    h, w = float(extent[0]), float(extent[1])
    if size == 1:
        return torch.tensor([[w / 2, h / 2]], dtype=torch.float32, device=device)
    cy, cx = (h / 2, w / 2) if center is None else (float(center[0]), float(center[1]))
    margin = w / 64
    ys = torch.linspace(margin - h / 2 + cy, h / 2 + cy - margin, size, device=device)
    xs = torch.linspace(margin - w / 2 + cx, w / 2 + cx - margin, size, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)


def mask_filter(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bool (M,) selecting ``points`` (x, y) whose rounded pixel is non-zero in ``mask`` (h, w).

    ``mask`` must already be at the resolution the points are expressed in.
    """
    rows = points[:, 1].round().long().cpu()
    cols = points[:, 0].round().long().cpu()
    return mask.cpu()[rows, cols].bool()


def dense_offsets(height: int, width: int, grid_size: int = 80) -> tuple[int, int, int]:
    """(step, grid_width, grid_height) of the official dense mode for an H x W input."""
    step = max(1, width // grid_size)
    return step, width // step, height // step


def dense_chunk(height: int, width: int, offset: int, query_frame: int,
                grid_size: int = 80) -> torch.Tensor:
    """(M, 3) queries ``(t, x, y)`` in input pixels of dense chunk ``offset``.

    Chunk ``o`` holds every pixel ``(col*step + o % step, row*step + o // step)``, row-major;
    the ``step**2`` chunks together cover the ``grid_width*step x grid_height*step`` area.
    """
    step, gw, gh = dense_offsets(height, width, grid_size)
    ox, oy = offset % step, offset // step
    q = torch.zeros(gw * gh, 3)
    q[:, 0] = query_frame
    q[:, 1] = torch.arange(gw).repeat(gh) * step + ox
    q[:, 2] = torch.arange(gh).repeat_interleave(gw) * step + oy
    return q
