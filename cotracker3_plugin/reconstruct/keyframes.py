"""Key frames solved at a trial focal length: the world the motion test and self-calibration start from.

Why a room of its own: before the focal length is known, a few key frames get cameras with the camera held
fixed at a rough focal (a fixed camera maps where a free one runs away). A camera that follows its subject
can make the mapper reconstruct the subject rather than the room, so the solve is repeated without what
the first explained, and the solution whose tracks cover more of the frames is taken as the world.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from cotracker3_plugin.reconstruct.cameras import CameraSolution, SolveOptions, solve_cameras
from cotracker3_plugin.reconstruct.correspondences import estimate_pair, frame_pairs, select_sfm_tracks
from cotracker3_plugin.reconstruct.motion import MotionConfig, MultiViewTest, multiview_test

log = logging.getLogger(__name__)

__all__ = ["KeyframeSolve", "residual_limit", "solve_keyframes"]


@dataclass
class KeyframeSolve:
    """The key frames' cameras at a trial focal, and which tracks they explain."""

    solution: CameraSolution
    focal: float
    test: MultiViewTest
    """Which tracks and observations these cameras explain."""


def _solve_once(xy: np.ndarray, usable: np.ndarray, keys: np.ndarray, frame_size: tuple[int, int],
                focals: list[float], opts: SolveOptions, max_tracks: int, seed: int
                ) -> tuple[CameraSolution | None, float]:
    """Poses of the key frames with the camera fixed at the first of ``focals`` that maps (a fixed camera
    maps where a free one runs away; its focal only has to be roughly right)."""
    pairs = frame_pairs(len(keys), window=3)
    xk = xy[keys]
    geoms = [estimate_pair(xk, usable[keys], i, j, 2.0, seed=seed) for i, j in pairs]
    static = np.ones(xy.shape[1], dtype=bool)
    ids = select_sfm_tracks(xk, usable[keys], static, frame_size, max_tracks, seed, min_per_frame=60)
    sfm = np.zeros_like(static)
    sfm[ids] = True
    key_opts = replace(opts, register_skipped_frames=False, final_bundle_adjustment=False, min_views=3)
    on_keys = np.zeros(len(xy), dtype=bool)
    on_keys[keys] = True
    for f in focals:
        sol = solve_cameras(xy=xy, frame_size=frame_size, frames=keys, usable_sfm=usable[keys] & sfm[None],
                            geoms=geoms, static=static, usable_static=usable & on_keys[:, None], opts=key_opts,
                            camera_model="SIMPLE_PINHOLE", focal=f, refine_focal=False)
        if not sol.failure and sol.registered.sum() >= 3:
            return sol, f
        log.info("key frames at f=%.0f px: %s", f, sol.failure or "fewer than 3 frames")
    return None, float("nan")


def _coverage(xy: np.ndarray, usable: np.ndarray, frame_size: tuple[int, int], cells: int = 16) -> int:
    """Cells of a ``cells`` x ``cells`` grid holding an observation, summed over the frames."""
    h, w = frame_size
    total = 0
    for t in range(len(xy)):
        p = xy[t, usable[t]]
        c = (np.clip(p[:, 1] / h * cells, 0, cells - 1).astype(np.int64) * cells
             + np.clip(p[:, 0] / w * cells, 0, cells - 1).astype(np.int64))
        total += len(np.unique(c))
    return total


def solve_keyframes(xy: np.ndarray, usable: np.ndarray, keys: np.ndarray, frame_size: tuple[int, int],
                     focals: list[float], opts: SolveOptions, motion: MotionConfig, max_tracks: int, seed: int
                     ) -> KeyframeSolve | None:
    """The key frames' cameras relative to the static world, for the multi-view motion test and
    self-calibration.

    A camera that pans to follow its subject can make the mapper reconstruct the subject rather
    than the room (both pass the two-view test). So: solve, set aside the tracks that solution
    explains, solve the rest again, and keep the solution whose tracks cover more of the frames (the
    world surrounds what moves in it; counting tracks or observations would favour a subject that the
    camera keeps in view while the room's tracks come and go).
    """
    found: list[tuple[CameraSolution, float, float]] = []
    use = usable.copy()
    for _ in range(2 if motion.enabled else 1):
        sol, f = _solve_once(xy, use, keys, frame_size, focals, opts, max_tracks, seed)
        if sol is None:
            break
        limit = residual_limit(sol, motion)
        found.append((sol, f, limit))
        t = multiview_test(xy, usable, sol.world_from_cam, sol.registered, sol.camera, limit)
        use &= ~(t.tested & ~t.dynamic())[None]  # set aside what this solution explains
        if (use[keys].sum(0) >= 3).sum() < 0.1 * (usable[keys].sum(0) >= 3).sum():
            break  # nothing sizeable left to be another world
    if not found:
        return None
    # Both tests at the tighter limit (a solution that mixes the subject with parts of the room fits
    # both loosely); each track goes to the solution that explains more of it; the solution whose
    # tracks cover more of the key frames is the world.
    limit = min(lim for _, _, lim in found)
    tests = [multiview_test(xy, usable, sol.world_from_cam, sol.registered, sol.camera, limit)
             for sol, _, _ in found]
    share = np.stack([np.where(t.tested, t.moving_share, np.inf) for t in tests])
    owner = np.where(share.min(0) <= 0.5, share.argmin(0), -1)
    scores = [_coverage(xy[keys], usable[keys] & (owner == i)[None], frame_size) for i in range(len(found))]
    for i, ((sol, f, _), sc) in enumerate(zip(found, scores)):
        log.info("key frames solved at f=%.0f px: %d frames, %d tracks of theirs covering %d cells", f,
                 int(sol.registered.sum()), int(np.sum(owner == i)), sc)
    best = int(np.argmax(scores))
    return KeyframeSolve(found[best][0], found[best][1], tests[best])


def residual_limit(sol: CameraSolution, motion: MotionConfig) -> float:
    """Reprojection error (px) above which an observation is not explained by a solution."""
    ref = float(np.median(sol.tri.errors)) if len(sol.tri.errors) else 1.0
    return max(motion.multiview_min_error, motion.multiview_factor * ref)
