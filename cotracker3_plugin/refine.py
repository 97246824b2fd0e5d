"""Sub-pixel sharpening of coarse tracks with Lucas-Kanade (OpenCV).

A learned tracker run at a low model resolution keeps points associated over long ranges,
but its positions are coarse (the bundled model runs at 192x256). Pyramidal LK from each
track's query patch, started at the tracker's own estimate, converges to the sub-pixel
position where the patch still looks like the query patch, and fails visibly (no
convergence, a large residual, a long jump) where it does not.

- :func:`refine_observations`: the refined positions and which observations converged
  (structure from motion keeps only those);
- :func:`sharpen_tracks`: the tracker's tracks after chained KLT from each query for as long as
  KLT holds the point, with converged observations moved to LK's positions and the rest left as
  they were (``cotracker3 track --refine-tracks``, and the ``+lk`` teachers of fine-tuning).
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from cotracker3_plugin.tracks import Tracks

__all__ = ["PROVENANCE_SOURCES", "exposure_normalised", "provenance", "provenance_meta", "refine_observations",
           "sharpen_tracks"]

#: Where an output position of :func:`sharpen_tracks` comes from: chained KLT, the network's position
#: moved by Lucas-Kanade, or the network's own position.
PROVENANCE_SOURCES = ("klt", "lk", "network")


def provenance_meta(klt: np.ndarray, lk: np.ndarray, visible: np.ndarray) -> dict[str, str]:
    """``Tracks.meta`` entries saying where the positions came from, so the default's behaviour is on
    record with the tracks (tracks.npz, summaries): ``provenance_<source>`` is the share of all
    observations (T x N) from that source, ``provenance_<source>_visible`` the share of the visible ones
    (0 for every source when none is visible). Sources are ``klt`` (``klt`` mask), ``lk`` (``lk`` and
    not ``klt``) and ``network`` (the rest); each set of shares sums to 1. Strings with six decimals:
    meta holds strings."""
    klt = np.asarray(klt, bool)
    lk = np.asarray(lk, bool) & ~klt
    visible = np.asarray(visible, bool)
    masks = {"klt": klt, "lk": lk, "network": ~(klt | lk)}
    total, seen = klt.size, int(visible.sum())
    out = {}
    for name, m in masks.items():
        out[f"provenance_{name}"] = f"{int(m.sum()) / total if total else 0.0:.6f}"
        out[f"provenance_{name}_visible"] = f"{int((m & visible).sum()) / seen if seen else 0.0:.6f}"
    return out


def provenance(tracks: Tracks) -> dict[str, float]:
    """The provenance shares of ``tracks`` as floats (keys ``klt``, ``lk``, ``network`` and the same with
    ``_visible``); tracks that were never sharpened (no such meta) are the network's alone."""
    if "provenance_network" not in tracks.meta:
        none = np.zeros(tracks.visible.shape, bool)
        meta = provenance_meta(none, none, tracks.visible)
    else:
        meta = tracks.meta
    return {k.removeprefix("provenance_"): float(v) for k, v in meta.items() if k.startswith("provenance_")}


def exposure_normalised(gray: np.ndarray) -> np.ndarray:
    """The frame at a fixed mean and contrast: LK compares raw intensities, and phones change exposure."""
    g = gray.astype(np.float32)
    return np.clip((g - g.mean()) * (48.0 / max(float(g.std()), 1.0)) + 128.0, 0, 255).astype(np.uint8)


def refine_observations(tracks: Tracks, frames: np.ndarray, usable: np.ndarray, *, window: int = 21,
                        levels: int = 2, max_shift: float = 12.0, max_residual: float = 0.7
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel positions for coarse tracks: Lucas-Kanade from each track's query point.

    Every usable observation is re-tracked from the query frame with OpenCV's pyramidal LK,
    starting from the track's own position (so the tracker keeps the association and LK only
    sharpens it), and kept only if LK converges within ``max_shift`` px of that start with a
    patch difference under ``max_residual`` times the reference patch's own contrast (mean absolute
    deviation; unrelated patches of the same texture score about 1.4), on frames brought to one mean
    and contrast (exposure changes). Where the query frame looks
    too different (scale, roll, lighting far from it in time), the track's nearest kept
    observation on the way from the query frame is the reference instead: frames are visited
    outwards from the query frame, so that reference is already refined. For trackers whose positions
    are coarse (a model run at a low resolution); observations that fail are dropped, so precise
    tracks lose more than they gain. ``frames`` (T, H, W, 3) uint8 at the tracks' frame size.
    Returns the refined ``xy`` (T, N, 2) and the kept observations (T, N).
    """
    import cv2

    @functools.lru_cache(maxsize=64)  # frames on demand: a long clip is not copied as a whole
    def gray(t: int) -> np.ndarray:
        return exposure_normalised(cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY))

    T = len(frames)
    lk = dict(winSize=(window, window), maxLevel=levels, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))

    @functools.lru_cache(maxsize=64)
    def contrast_map(t: int) -> np.ndarray:  # mean absolute deviation of a Gaussian-ish patch, from its std
        g = gray(t).astype(np.float32)
        mean = cv2.boxFilter(g, -1, (window, window))
        return 0.8 * np.sqrt(np.maximum(cv2.boxFilter(g * g, -1, (window, window)) - mean * mean, 0)) + 1.0

    def contrast(t: int, pts: np.ndarray) -> np.ndarray:
        px = np.clip(np.rint(pts).astype(np.int64), 0, [frames.shape[2] - 1, frames.shape[1] - 1])
        return contrast_map(t)[px[:, 1], px[:, 0]]

    def lk_from(ref_t: int, ref_pts: np.ndarray, t: int, guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p1, ok, err = cv2.calcOpticalFlowPyrLK(gray(ref_t), gray(t), ref_pts.reshape(-1, 1, 2).astype(np.float32),
                                               guess.reshape(-1, 1, 2).astype(np.float32).copy(), **lk)
        p1 = p1.reshape(-1, 2)
        good = ((ok.ravel() == 1) & (err.ravel() < max_residual * contrast(ref_t, ref_pts))
                & (np.linalg.norm(p1 - guess, axis=1) < max_shift))
        return p1, good

    xy = tracks.xy.astype(np.float32).copy()
    kept = np.zeros_like(usable)
    query_t = np.clip(np.rint(tracks.queries[:, 0]).astype(np.int64), 0, T - 1)
    for q in np.unique(query_t):
        ids = np.flatnonzero(query_t == q)
        start = tracks.queries[ids, 1:3].astype(np.float32)
        kept[q, ids] = usable[q, ids]
        for direction in (1, -1):
            anchor = np.full(len(ids), q)  # the nearest kept frame on the way from q, per track
            for t in range(q + direction, T if direction > 0 else -1, direction):
                seen = np.flatnonzero(usable[t, ids])
                if len(seen) == 0:
                    continue
                sel = ids[seen]
                guess = xy[t, sel]
                p1, good = lk_from(q, start[seen], t, guess)
                # the rest: from the nearest kept observation, grouped by its frame
                for a in np.unique(anchor[seen][~good]):
                    if a == q:
                        continue
                    retry = np.flatnonzero(~good & (anchor[seen] == a))
                    p1[retry], good[retry] = lk_from(int(a), xy[a, sel[retry]], t, guess[retry])
                xy[t, sel[good]] = p1[good]
                kept[t, sel] = good
                anchor[seen[good]] = t
    return xy.astype(tracks.xy.dtype), kept


def sharpen_tracks(tracks: Tracks, frames: np.ndarray, *, window: int = 15, levels: int = 3,
                   max_shift: float = 20.0, klt_handover: bool = True) -> Tracks:
    """``tracks`` made precise with Lucas-Kanade; ``frames`` (T, H, W, 3) uint8 at ``tracks.frame_size``.

    - With ``klt_handover`` (the default), chained KLT comes first: from each query, frame to frame
      forward and backward (:func:`~cotracker3_plugin.evaluate.klt.klt_track`, 21 px window, 4 levels),
      the track takes KLT's position, and is visible, for as long as KLT's forward-backward check
      holds. From the first frame where it fails on, the tracker's own position and visibility take
      over. Chained LK follows gradual changes of appearance at sub-pixel precision but loses points
      for good at occlusions, fast motion and deformation; the learned tracker finds them again.
    - Every visible observation of the tracker is moved to where LK from the query patch converges
      (:func:`refine_observations`), where it does; elsewhere the tracker's position stays.

    ``meta`` records where every position came from (:func:`provenance_meta`: the shares from KLT,
    from LK-sharpened network positions and from raw network positions, of all and of the visible
    observations). Confidence is unchanged, so where KLT holds a point ``visible`` no longer follows it
    (:meth:`~cotracker3_plugin.tracks.Tracks.with_threshold` gives the tracker's own visibility back). The defaults (a 15 px window, 3 pyramid levels, up to 20 px from the
    tracker) suit frames of up to about 1000 px and were chosen on the real-image benchmark and BADJA
    (see the model card).
    """
    if frames.shape[1:3] != tracks.frame_size or len(frames) != tracks.num_frames:
        raise ValueError(f"frames {frames.shape[:3]} do not match tracks over {tracks.num_frames} frames "
                         f"of {tracks.frame_size}")
    # All visible observations, also those KLT will hold: refined ones are the references LK falls
    # back on further from the query frame.
    xy, kept = refine_observations(tracks, frames, tracks.visible, window=window, levels=levels,
                                   max_shift=max_shift)
    xy = np.where(kept[..., None], xy, tracks.xy)
    visible = tracks.visible
    note = f"lk ({int(kept.sum())} of {int(visible.sum())} observations)"
    held = np.zeros_like(kept)
    if klt_handover:
        from cotracker3_plugin.evaluate.klt import klt_track

        klt_xy, held = klt_track(frames, tracks.queries, sticky_loss=True)
        xy = np.where(held[..., None], klt_xy.astype(xy.dtype), xy)
        visible = visible | held
        note = f"klt until lost ({int(held.sum())} observations), then the tracker's with " + note
    meta = {**tracks.meta, "refined": note, **provenance_meta(held, kept, visible)}
    return replace(tracks, xy=xy, visible=visible, meta=meta)
