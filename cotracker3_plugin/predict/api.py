"""``track()``: CoTracker3 on a clip, returning :class:`~cotracker3_plugin.tracks.Tracks`.

Coordinates are pixels of the input (x right, y down); queries are ``(t, x, y)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.precision import Precision, autocast, precision_name, resolve_precision
from cotracker3_plugin.predict.grid import dense_chunk, dense_offsets, grid_points, mask_filter
from cotracker3_plugin.predict.inputs import (
    check_mask,
    check_options,
    check_queries,
    video_to_tensor,
)
from cotracker3_plugin.predict.long import windowed_offline_pass
from cotracker3_plugin.predict.offline import (
    Raw,
    flip_raw,
    merge_backward,
    offline_pass,
    reverse_queries,
    support_queries,
)
from cotracker3_plugin.predict.online import Streamer
from cotracker3_plugin.predict.resize import resize_frames, xy_from_model, xy_to_model
from cotracker3_plugin.tracks import VISIBILITY_THRESHOLD, Tracks

log = logging.getLogger(__name__)

#: The official offline predictor's rule: ``vis > 0.9``, confidence ignored.
OFFICIAL_OFFLINE_VIS_THRESHOLD = 0.9
Progress = Callable[[int, int], None]


def is_online_model(model) -> bool:
    """True for the online (sliding-window, streaming) CoTracker3 network."""
    try:
        from cotracker3_plugin.model import CoTrackerThreeOnline

        if isinstance(model, CoTrackerThreeOnline):
            return True
    except ImportError:  # model package not importable: fall back to duck typing
        pass
    return hasattr(model, "init_video_online_processing")


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def model_hw(model) -> tuple[int, int]:
    h, w = getattr(model, "model_resolution", (384, 512))
    return int(h), int(w)


def finalize(raw: Raw, queries_m: torch.Tensor, queries_in: torch.Tensor, *,
             input_hw: tuple[int, int], res: tuple[int, int], rule: str, offline: bool,
             meta: dict[str, str], unknown_before_query: bool = False) -> Tracks:
    """Raw model-space outputs of the N user points -> Tracks in input pixels.

    rule "official": offline ``vis > 0.9`` with the query point forced (position, visible);
    online ``vis*conf > 0.6``, nothing forced. rule "package": ``vis*conf > 0.6`` for both,
    and the query point forced (position, visible, confidence 1). ``queries_m`` times are
    relative to the first frame of ``raw`` (a query outside it is not forced).
    ``unknown_before_query``: frames before the query frame get the query position, confidence 0
    (the online model does not track backwards in time).
    """
    n = queries_m.shape[0]
    t = raw[0].shape[1]
    coords = raw[0][0, :, :n].clone()
    vis = raw[1][0, :, :n]
    confidence = vis * raw[2][0, :, :n]
    if rule == "official":
        visible = vis > OFFICIAL_OFFLINE_VIS_THRESHOLD if offline else confidence > VISIBILITY_THRESHOLD
    else:
        visible = confidence > VISIBILITY_THRESHOLD
    q = queries_m.to(coords)
    if unknown_before_query:
        before = torch.arange(t, device=coords.device)[:, None] < q[None, :, 0]
        coords = torch.where(before[..., None], q[None, :, 1:], coords)
        confidence = confidence.masked_fill(before, 0.0)
        visible = visible & ~before
    if offline or rule == "package":
        tq = q[:, 0].long()
        inside = (tq >= 0) & (tq < t)
        tq, ar = tq[inside], torch.arange(n, device=coords.device)[inside]
        coords[tq, ar] = q[inside, 1:]
        visible[tq, ar] = True
        if rule == "package":
            confidence = confidence.clone()
            confidence[tq, ar] = 1.0
    xy = xy_from_model(coords, input_hw, res)
    return Tracks(xy=xy.cpu().numpy(), visible=visible.cpu().numpy(),
                  confidence=confidence.cpu().numpy(), queries=queries_in.cpu().numpy(),
                  frame_size=input_hw, meta=meta)


def build_grid_queries(grid_size: int, grid_query_frame: int, res: tuple[int, int],
                       mask: torch.Tensor | None) -> torch.Tensor:
    """(M, 3) model-space grid queries, filtered by ``mask`` (1,1,H,W) resized nearest."""
    pts = grid_points(grid_size, res)
    if mask is not None:
        small = F.interpolate(mask, size=res, mode="nearest")[0, 0]
        pts = pts[mask_filter(pts, small)]
        if len(pts) == 0:
            raise UserError(f"no point of the {grid_size}x{grid_size} grid falls inside segm_mask. "
                            "Use a larger grid_size or a larger mask.")
    return torch.cat([torch.full_like(pts[:, :1], float(grid_query_frame)), pts], dim=1)


#: Frames converted to float and resized at a time (see ``_Frames``).
RESIZE_CHUNK = 16


class _Frames:
    """Model-resolution frames [a, b) of a (1, T, 3, H, W) video, resized on demand."""

    def __init__(self, video: torch.Tensor, res: tuple[int, int], device: torch.device):
        self.video, self.res, self.device = video, res, device

    def __call__(self, a: int, b: int) -> torch.Tensor:
        # A few frames at a time: only the model-resolution result is needed, never a float32
        # copy of the whole clip at its own resolution (12 bytes per pixel: 1.9 GB for 300
        # frames at 960x540). Frames are resized independently, so the result is the same.
        parts = [resize_frames(self.video[:, i:min(i + RESIZE_CHUNK, b)].to(self.device).float(), self.res)
                 for i in range(a, b, RESIZE_CHUNK)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def online_pass(model, frames: _Frames, num_frames: int, queries: torch.Tensor, *, iters: int,
                backward_tracking: bool = False, record: list | None = None,
                progress: Progress | None = None) -> Raw:
    """Stream the clip through the online model (official demo order); optional reversed pass."""

    def stream(qs: torch.Tensor, reverse: bool) -> Raw:
        st = Streamer(model, qs, iters=iters, record=record)
        step = st.step
        for a in range(0, num_frames, step):
            b = min(a + step, num_frames)
            chunk = frames(num_frames - b, num_frames - a).flip(1) if reverse else frames(a, b)
            st.feed(chunk)
            if progress is not None:
                progress(b, num_frames)
        st.flush()
        assert st.raw is not None
        return st.raw

    fwd = stream(queries, False)
    if not backward_tracking:
        return fwd
    bwd = stream(reverse_queries(queries, num_frames), True)
    return merge_backward(queries, fwd, flip_raw(bwd))


def track(video, model, *, queries=None, grid_size: int = 10, grid_query_frame: int = 0,
          segm_mask=None, backward_tracking: bool = False, dense: bool = False,
          online: bool | None = None, rule: str = "package", iters: int = 6,
          support_grid_size: int = 6, window: int | None = None, overlap: int | None = None,
          precision: Precision = "fp32", progress: Progress | None = None,
          record: list | None = None) -> Tracks:
    """Track points through ``video`` with a CoTracker3 ``model``.

    Args:
        video: a ``Clip``, a (T, H, W, 3) uint8 RGB array, or a (1, T, 3, H, W) tensor (0..255).
        model: ``CoTrackerThreeOffline`` or ``CoTrackerThreeOnline`` (see ``weights.load_model``).
        queries: (N, 3) ``(t, x, y)`` in pixels of ``video``; ``None`` uses a grid.
        grid_size: a ``grid_size x grid_size`` grid on frame ``grid_query_frame`` (model-space
            grid with a width/64 margin, as the official predictors).
        segm_mask: (H, W) mask; only grid points inside it are tracked.
        backward_tracking: also run on the reversed clip and use it for frames before each
            query frame (the offline model already tracks backwards within one window; this
            matters for the online model and for windowed runs).
        dense: track every pixel (the official dense mode, in chunks of one pixel per step x step
            cell, step = W // 80).
        online: use the streaming sliding-window path; ``None`` decides from the model type.
        rule: "package" (``visible = vis*conf > 0.6`` for both models, query point forced) or
            "official" (each official predictor's own rule, bit-compatible output).
        iters: refinement iterations (6 like every official inference path).
        support_grid_size: the offline path adds this grid (at t = 0) to explicit queries and
            mask grids, as the official predictor does, to give the model context; 0 = none.
        window, overlap: offline model only; run on overlapping windows of ``window`` frames
            (bounded memory for long clips; see ``predict.long`` for the trade-off). ``overlap``
            defaults to ``window // 4``.
        precision: "fp32" (the default: the official float32 numbers, the same on every
            machine), "bf16" / "fp16" (autocast: faster where the hardware has native units,
            tracks differ by a fraction of a pixel, see ``cotracker3_plugin.precision``) or
            "auto" (bf16 where the CPU / GPU computes it natively, else fp32).
        progress: called as ``progress(done, total)``.
        record: if a list, every model call's raw (coords, vis, conf) is appended (tests).

    Returns:
        Tracks with xy in input pixels, ``confidence = vis * conf`` and ``visible`` by ``rule``.
    """
    vid = video_to_tensor(video)  # uint8 stays uint8; frames are converted window by window
    num_frames, hw = vid.shape[1], (int(vid.shape[3]), int(vid.shape[4]))
    check_options(grid_size=grid_size, grid_query_frame=grid_query_frame, num_frames=num_frames,
                  rule=rule, iters=iters, support_grid_size=support_grid_size,
                  queries_given=queries is not None, dense=dense, mask_given=segm_mask is not None)
    online = is_online_model(model) if online is None else online
    if window is not None:
        if online:
            raise UserError("window= is for the offline model; the online model already works in "
                            "bounded memory. Drop window= or use an offline model.")
        overlap = window // 4 if overlap is None else overlap
        if window < 2 or not 1 <= overlap < window:
            raise UserError(f"need window >= 2 and 1 <= overlap < window, got window={window}, "
                            f"overlap={overlap}.")
    res = model_hw(model)
    device = model_device(model)
    dtype = resolve_precision(precision, device)
    frames = _Frames(vid, res, device)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    meta = {"mode": "online" if online else "offline", "rule": rule, "iters": str(iters),
            "precision": precision_name(dtype)}
    if getattr(model, "weights_label", None):
        meta["model"] = str(model.weights_label)
    try:
        if dense:
            with autocast(device, dtype):
                return _track_dense(frames, num_frames, hw, model, grid_query_frame=grid_query_frame,
                                    backward_tracking=backward_tracking, online=online, rule=rule,
                                    iters=iters, window=window, overlap=overlap, progress=progress,
                                    record=record, meta=meta)
        if queries is not None:
            q_in = check_queries(queries, num_frames, hw)
            q_m = q_in.clone()
            q_m[:, 1:] = xy_to_model(q_in[:, 1:], hw, res)
            add_support = True
        else:
            mask = check_mask(segm_mask, hw) if segm_mask is not None else None
            q_m = build_grid_queries(grid_size, grid_query_frame, res, mask)
            q_in = q_m.clone()
            q_in[:, 1:] = xy_from_model(q_m[:, 1:], hw, res)
            add_support = mask is not None
        with autocast(device, dtype):  # the model calls only; a no-op for fp32
            raw = _run(frames, num_frames, model, q_m, online=online, iters=iters,
                       backward_tracking=backward_tracking,
                       support_grid_size=support_grid_size if add_support else 0,
                       window=window, overlap=overlap, progress=progress, record=record)
        return finalize(raw, q_m, q_in, input_hw=hw, res=res, rule=rule, offline=not online,
                        meta=meta, unknown_before_query=_unknown_before(online, rule, backward_tracking))
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def _unknown_before(online: bool, rule: str, backward_tracking: bool) -> bool:
    # the online model only tracks forwards; its output before the query frame is meaningless
    return online and rule == "package" and not backward_tracking


def _run(frames: _Frames, num_frames: int, model, q_m: torch.Tensor, *, online: bool, iters: int,
         backward_tracking: bool, support_grid_size: int, window: int | None,
         overlap: int | None, progress: Progress | None, record: list | None) -> Raw:
    """Raw outputs for model-space queries (N, 3); support points (offline only) dropped."""
    n = q_m.shape[0]
    q = q_m[None].to(model_device(model))
    support = None
    if support_grid_size > 0 and not online:
        support = support_queries(support_grid_size, frames.res, q)
    if online:
        raw = online_pass(model, frames, num_frames, q, iters=iters,
                          backward_tracking=backward_tracking, record=record, progress=progress)
    elif window is not None and num_frames > window:
        assert overlap is not None
        raw = windowed_offline_pass(model, frames, num_frames, q, window=window, overlap=overlap,
                                    iters=iters, support=support, progress=progress)
        if backward_tracking:
            def rev(a: int, b: int) -> torch.Tensor:
                return frames(num_frames - b, num_frames - a).flip(1)

            bwd = windowed_offline_pass(model, rev, num_frames, reverse_queries(q, num_frames),
                                        window=window, overlap=overlap, iters=iters,
                                        support=support, progress=progress)
            raw = merge_backward(q.cpu(), raw, flip_raw(bwd))
    else:
        if support is not None:
            q = torch.cat([q, support], dim=1)
        if num_frames > 200:
            log.warning("the offline model processes all %d frames at once (memory grows with "
                        "the clip); pass window=60 for bounded memory", num_frames)
        raw = offline_pass(model, frames(0, num_frames), q, iters=iters,
                           backward_tracking=backward_tracking, record=record)
        if progress is not None:
            progress(1, 1)
    return tuple(r[:, :, :n] for r in raw)  # type: ignore[return-value]


def _track_dense(frames: _Frames, num_frames: int, hw: tuple[int, int], model, *,
                 grid_query_frame: int, backward_tracking: bool, online: bool, rule: str,
                 iters: int, window: int | None, overlap: int | None,
                 progress: Progress | None, record: list | None, meta: dict[str, str]) -> Tracks:
    """Official dense mode: step**2 sparse runs without support points, concatenated along N."""
    step, gw, gh = dense_offsets(hw[0], hw[1])
    parts: list[Tracks] = []
    for offset in range(step * step):
        q_in = dense_chunk(hw[0], hw[1], offset, grid_query_frame)
        q_m = q_in.clone()
        q_m[:, 1:] = xy_to_model(q_in[:, 1:], hw, frames.res)
        raw = _run(frames, num_frames, model, q_m, online=online, iters=iters,
                   backward_tracking=backward_tracking, support_grid_size=0, window=window,
                   overlap=overlap, progress=None, record=record)
        parts.append(finalize(raw, q_m, q_in, input_hw=hw, res=frames.res, rule=rule,
                              offline=not online, meta=meta,
                              unknown_before_query=_unknown_before(online, rule, backward_tracking)))
        if progress is not None:
            progress(offset + 1, step * step)
    return Tracks(xy=np.concatenate([p.xy for p in parts], axis=1),
                  visible=np.concatenate([p.visible for p in parts], axis=1),
                  confidence=np.concatenate([p.confidence for p in parts], axis=1),
                  queries=np.concatenate([p.queries for p in parts], axis=0),
                  frame_size=hw, meta={**meta, "dense_step": str(step)})
