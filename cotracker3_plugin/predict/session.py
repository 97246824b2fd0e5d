"""``OnlineSession``: push frames as they arrive, get tracks as they become final.

Drives the online model exactly like the official online demo (a model call every 8 frames on
the last 16, and the tail at :meth:`OnlineSession.finish`), so a session fed frame by frame
reproduces ``CoTrackerOnlinePredictor``. Memory is constant in the video length apart from the
output arrays: only the last ``window_len`` resized frames are kept.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.precision import Precision, autocast, precision_name, resolve_precision
from cotracker3_plugin.predict.api import (
    build_grid_queries,
    finalize,
    model_device,
    model_hw,
)
from cotracker3_plugin.predict.inputs import RULES, check_mask
from cotracker3_plugin.predict.offline import support_queries
from cotracker3_plugin.predict.online import Streamer
from cotracker3_plugin.predict.resize import resize_frames, xy_from_model, xy_to_model
from cotracker3_plugin.tracks import Tracks


def _extend_streaming_state(model, extra: int) -> None:
    """Grow the online model's per-track streaming buffers by ``extra`` tracks (zeros).

    New tracks get an all-zero query patch (filled in when their query frame is streamed) and
    zero outputs on earlier frames; they are never carried over from those frames because their
    query frame lies after them.
    """
    try:
        support = model.online_track_support
        model.online_track_support = [None if p is None else F.pad(p, (0, 0, 0, extra))
                                      for p in support]
        if model.online_coords_predicted is not None:
            model.online_coords_predicted = F.pad(model.online_coords_predicted, (0, 0, 0, extra))
            model.online_vis_predicted = F.pad(model.online_vis_predicted, (0, extra))
            model.online_conf_predicted = F.pad(model.online_conf_predicted, (0, extra))
    except AttributeError as e:  # a model without the streaming state of CoTrackerThreeOnline
        raise UserError(f"{type(model).__name__} does not support adding queries while streaming "
                        "(no online state). Use CoTrackerThreeOnline.") from e


class OnlineSession:
    """Stream a video through an online CoTracker3 model.

    >>> session = OnlineSession(model, grid_size=10)          # doctest: +SKIP
    >>> for frame in frames:                                   # doctest: +SKIP
    ...     new = session.push(frame)     # Tracks of newly final frames, or None
    >>> tracks = session.finish()        # all frames

    Queries are ``(t, x, y)`` in pixels of the pushed frames; ``t`` may lie in the future.
    ``precision`` is as in :func:`~cotracker3_plugin.predict.track` ("fp32" by default: the
    official numbers; "bf16" / "auto" run the model under autocast).
    """

    def __init__(self, model, queries=None, *, grid_size: int = 10, grid_query_frame: int = 0,
                 segm_mask=None, add_support_grid: bool = False, support_grid_size: int = 6,
                 rule: str = "package", iters: int = 6, precision: Precision = "fp32"):
        if rule not in RULES:
            raise UserError(f"rule must be one of {RULES}, got {rule!r}.")
        if queries is None and grid_size < 1:
            raise UserError(f"grid_size must be >= 1, got {grid_size}.")
        if iters < 1:
            raise UserError(f"iters must be >= 1, got {iters}.")
        if not hasattr(model, "init_video_online_processing"):
            raise UserError(f"{type(model).__name__} is not an online model. Load "
                            "'cotracker3_online' or use track() for offline models.")
        self.model = model.eval()
        self.rule = rule
        self.iters = iters
        self.dtype = resolve_precision(precision, model_device(model))
        self._init_queries = queries
        self._grid = (grid_size, grid_query_frame, segm_mask)
        self._support = support_grid_size if add_support_grid else 0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all frames and outputs; the next push starts a new video (same queries)."""
        self._hw: tuple[int, int] | None = None
        self._streamer: Streamer | None = None
        self._q_m = torch.zeros(0, 3)  # user queries, model space
        self._q_in = torch.zeros(0, 3)  # user queries, input pixels
        self._pending = self._init_queries
        self._emitted = 0
        self._out: list[Tracks] = []

    @property
    def num_frames(self) -> int:
        """Frames pushed so far."""
        return 0 if self._streamer is None else self._streamer.num_frames

    @property
    def num_points(self) -> int:
        return int(self._q_m.shape[0])

    def _start(self, hw: tuple[int, int]) -> None:
        self._hw = hw
        res = model_hw(self.model)
        if self._pending is None:
            grid_size, grid_query_frame, segm_mask = self._grid
            mask = check_mask(segm_mask, hw) if segm_mask is not None else None
            self._q_m = build_grid_queries(grid_size, grid_query_frame, res, mask)
            self._q_in = self._q_m.clone()
            self._q_in[:, 1:] = xy_from_model(self._q_m[:, 1:], hw, res)
        else:
            self._q_in = self._check(self._pending, min_t=0)
            self._q_m = self._q_in.clone()
            self._q_m[:, 1:] = xy_to_model(self._q_in[:, 1:], hw, res)
        self._pending = None
        self._streamer = Streamer(self.model, self._model_queries(), iters=self.iters)

    def _model_queries(self) -> torch.Tensor:
        q = self._q_m[None].to(model_device(self.model))
        if self._support:
            q = torch.cat([q, support_queries(self._support, model_hw(self.model), q)], dim=1)
        return q

    def _check(self, queries, min_t: int) -> torch.Tensor:
        q = torch.as_tensor(np.asarray(queries.cpu() if isinstance(queries, torch.Tensor) else queries,
                                       dtype=np.float32)).reshape(-1, 3)
        if len(q) == 0 or not torch.isfinite(q).all():
            raise UserError("queries must be a non-empty (N, 3) array of finite (t, x, y) rows.")
        assert self._hw is not None
        h, w = self._hw
        if ((q[:, 1] < -0.5) | (q[:, 1] > w - 0.5) | (q[:, 2] < -0.5) | (q[:, 2] > h - 0.5)).any():
            raise UserError(f"a query lies outside the {w}x{h} frame. Queries are (t, x, y) in "
                            "pixels of the pushed frames.")
        if (q[:, 0] < min_t).any():
            raise UserError(f"a query is at frame {float(q[:, 0].min()):g}, but frames before "
                            f"{min_t} were already processed. Add queries at frame >= {min_t}.")
        return q

    # ------------------------------------------------------------------ input
    def _to_tensor(self, frames) -> torch.Tensor:
        if isinstance(frames, torch.Tensor):
            x = frames
            if x.ndim == 3:  # (3, H, W)
                x = x[None, None]
            elif x.ndim == 4:  # (k, 3, H, W)
                x = x[None]
            if x.ndim != 5 or x.shape[2] != 3 or x.shape[0] != 1:
                raise UserError(f"frames tensor must be (1, k, 3, H, W), got {tuple(frames.shape)}.")
        else:
            a = np.asarray(frames)
            if a.ndim == 3:
                a = a[None]
            if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
                raise UserError(f"frames must be (H, W, 3) or (k, H, W, 3) uint8 RGB, got "
                                f"{a.shape} {a.dtype}.")
            x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)[None]
        hw = (int(x.shape[3]), int(x.shape[4]))
        if self._hw is not None and hw != self._hw:
            raise UserError(f"frame size changed from {self._hw} to {hw} within one video. "
                            "Call reset() before a new video.")
        return x

    def push(self, frames) -> Tracks | None:
        """Add frames ((H,W,3) or (k,H,W,3) uint8, or (1,k,3,H,W) tensor).

        Returns the tracks of the frames that became final (``meta["first_frame"]`` gives the
        index of the first returned frame), or None when no frame became final.
        """
        x = self._to_tensor(frames)
        if x.shape[1] == 0:
            return None
        if self._streamer is None:
            hw = (int(x.shape[3]), int(x.shape[4]))
            if hw[0] < 2 or hw[1] < 2:
                raise UserError(f"frames are {hw[0]}x{hw[1]}; at least 2x2 pixels are needed.")
            self._start(hw)
        assert self._streamer is not None
        res = model_hw(self.model)
        dev = model_device(self.model)
        step = self._streamer.step
        # feed in pieces of at most one step so only a window's worth is resized at a time
        for a in range(0, x.shape[1], step):
            frames = resize_frames(x[:, a:a + step].to(dev).float(), res)
            with autocast(dev, self.dtype):
                self._streamer.feed(frames)
        return self._emit(self._streamer.num_final)

    def add_queries(self, queries) -> None:
        """Track more points from now on: (M, 3) ``(t, x, y)``, t >= the frames already processed."""
        if self._streamer is None:
            if self._pending is None:
                raise UserError("the session tracks a grid; give explicit queries at creation "
                                "to add more later, or push a frame first.")
            self._pending = np.concatenate([np.asarray(self._pending, np.float32).reshape(-1, 3),
                                            np.asarray(queries, np.float32).reshape(-1, 3)])
            return
        if self._support:  # the model's buffers hold support points after the user points
            raise UserError("add_queries is not supported together with add_support_grid=True. "
                            "Create the session without the support grid.")
        q_in = self._check(queries, min_t=self._streamer.processed_end)
        res = model_hw(self.model)
        assert self._hw is not None
        q_m = q_in.clone()
        q_m[:, 1:] = xy_to_model(q_in[:, 1:], self._hw, res)
        self._q_in = torch.cat([self._q_in, q_in])
        self._q_m = torch.cat([self._q_m, q_m])
        if self._streamer.calls > 0:
            self._streamer.activate()
            _extend_streaming_state(self.model, len(q_in))
            self._streamer.save()
        self._streamer.queries = self._model_queries()
        # already-emitted frames have no values for the new points: pad them (not visible)
        for i, part in enumerate(self._out):
            t = part.num_frames
            self._out[i] = Tracks(
                xy=np.concatenate([part.xy, np.broadcast_to(q_in[None, :, 1:].numpy(), (t, len(q_in), 2))], 1),
                visible=np.concatenate([part.visible, np.zeros((t, len(q_in)), bool)], 1),
                confidence=np.concatenate([part.confidence, np.zeros((t, len(q_in)), np.float32)], 1),
                queries=self._q_in.numpy(), frame_size=part.frame_size, meta=part.meta)

    def _emit(self, upto: int) -> Tracks | None:
        assert self._streamer is not None and self._hw is not None
        if upto <= self._emitted or self._streamer.raw is None:
            return None
        a = self._emitted
        n = self.num_points
        raw = tuple(r[:, a:upto, :n] for r in self._streamer.raw)
        q_local = self._q_m.clone()
        q_local[:, 0] -= a
        part = finalize(raw, q_local, self._q_in, input_hw=self._hw, res=model_hw(self.model),
                        rule=self.rule, offline=False,
                        meta={"mode": "online", "rule": self.rule, "first_frame": str(a),
                              "precision": precision_name(self.dtype)},
                        unknown_before_query=self.rule == "package")
        self._out.append(part)
        self._emitted = upto
        return part

    def finish(self) -> Tracks:
        """Process the remaining frames and return the tracks of the whole video."""
        if self._streamer is None or self._streamer.num_frames == 0:
            raise UserError("no frames were pushed. Push the video's frames before finish().")
        with autocast(model_device(self.model), self.dtype):
            self._streamer.flush()
        self._emit(self._streamer.num_frames)
        parts = self._out
        return Tracks(xy=np.concatenate([p.xy for p in parts]),
                      visible=np.concatenate([p.visible for p in parts]),
                      confidence=np.concatenate([p.confidence for p in parts]),
                      queries=self._q_in.numpy(), frame_size=self._hw,
                      meta={"mode": "online", "rule": self.rule,
                            "precision": precision_name(self.dtype)})
