"""Trackers for dense triangulation: a function ``(clip, queries) -> Tracks``.

:func:`~cotracker3_plugin.reconstruct.densify.densify` calls the tracker once per chunk of
queries, so it sees only a function; :func:`make_track_fn` builds one from a loaded
CoTracker3 model or from ``"klt"`` (OpenCV pyramidal Lucas-Kanade, no network).
Queries are ``(t, x, y)`` in pixels of the clip (x right, y down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import numpy as np

from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.tracks import Tracks

__all__ = ["TrackFn", "make_track_fn"]

log = logging.getLogger(__name__)

#: A tracker: tracks in pixels of ``clip`` for the (N, 3) ``(t, x, y)`` queries.
TrackFn = Callable[[Clip, np.ndarray], Tracks]


def _klt(window: int, levels: int) -> TrackFn:
    def klt(clip: Clip, queries: np.ndarray) -> Tracks:
        from cotracker3_plugin.evaluate.klt import klt_track

        # Sticky loss: once the forward-backward check fails, the point stays lost. A dense cloud
        # wants fewer, right observations; re-acquiring a point after a failure is where KLT
        # lands on the wrong texture.
        xy, visible = klt_track(clip.frames, queries, win_size=window, levels=levels, sticky_loss=True)
        return Tracks(xy=xy, visible=visible, confidence=visible.astype(np.float32), queries=queries,
                      frame_size=clip.frame_size, meta={"tracker": f"klt {window}px"})
    return klt


def make_track_fn(tracker, *, refine: bool | Literal["auto"] = "auto", backward_tracking: bool | None = None,
                  klt_window: int = 9, klt_levels: int = 3) -> TrackFn:
    """A :data:`TrackFn` for ``tracker``: a CoTracker3 model (``weights.load_model``) or ``"klt"``.

    Args:
        tracker: the loaded model, or the string ``"klt"``.
        refine: sharpen the model's tracks with Lucas-Kanade
            (:func:`~cotracker3_plugin.refine.sharpen_tracks`); ``"auto"`` does it for the
            bundled small model, whose coarse positions (it runs at 192x256) would cost depth
            accuracy. Ignored for KLT.
        backward_tracking: passed to :func:`~cotracker3_plugin.predict.track`; ``None``: on for the
            online model (it only tracks forward from a query frame, and query frames lie inside
            the clip), off for the offline model (it tracks both ways already).
        klt_window, klt_levels: LK window side (px) and pyramid levels of ``"klt"``. Chained KLT
            drifts; a small window drifts less, because the patch changes less from frame to
            frame (static_room, 20 frames from the query: median error 1.0 px with 21 px windows,
            0.54 px with 9 px), at the price of losing more points early.
    """
    if isinstance(tracker, str):
        if tracker != "klt":
            raise ValueError(f"unknown tracker {tracker!r}: pass a loaded CoTracker3 model or 'klt'")
        return _klt(klt_window, klt_levels)
    from cotracker3_plugin.predict.api import is_online_model, track

    model = tracker
    online = is_online_model(model)
    backward = online if backward_tracking is None else bool(backward_tracking)
    label = str(getattr(model, "weights_label", ""))
    sharpen = label.startswith("bundled") if refine == "auto" else bool(refine)

    def model_track(clip: Clip, queries: np.ndarray) -> Tracks:
        tracks = track(clip, model, queries=queries, backward_tracking=backward)
        if sharpen:
            from cotracker3_plugin.refine import sharpen_tracks

            tracks = sharpen_tracks(tracks, clip.frames)
        return tracks

    log.debug("dense tracker: %s model%s", "online" if online else "offline",
              ", Lucas-Kanade sharpening" if sharpen else "")
    return model_track
