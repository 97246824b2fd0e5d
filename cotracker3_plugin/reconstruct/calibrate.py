"""Self-calibration: the focal length of an unknown lens from static correspondences.

Why not let bundle adjustment find it: a video camera that pans to follow its subject ties the
focal length only weakly, so a free focal started far from the truth stays far from it (or trades
focal for radial distortion). Asked the other way round the data does decide it: hold the focal
fixed at ``f``, solve poses and points, and the reprojection error left, ``cost(f)``, has a clear
minimum at the true focal. That profile is what this module measures:

1. start from poses and points solved at some focal (a first mapping of key frames);
2. sweep ``f`` over a wide log-spaced range, outwards from the start, each step a bundle adjustment
   of poses and points at that fixed focal, warm-started from its neighbour (a continuation:
   the solution follows the valley as ``f`` changes instead of jumping between minima);
3. re-triangulate at the best ``f`` (more observations agree there), sweep finely around it and
   fit a parabola in ``log f``: its vertex is the estimate, its curvature says how well the data
   determined it.

The criterion is the truncated mean squared reprojection error of a fixed set of observations,
robust to the few that slip. When the profile is flat (too little rise at +-10 % for the number of
observations) or its minimum sits on the edge of the range, the focal is reported as *not
determined* instead of as a measurement.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from cotracker3_plugin.reconstruct.mapping import bundle_adjust, make_camera
from cotracker3_plugin.reconstruct.triangulate import triangulate_tracks

log = logging.getLogger(__name__)

__all__ = ["CalibrationConfig", "FocalEstimate", "self_calibrate"]


@dataclass
class CalibrationConfig:
    """How the focal length is estimated when no metadata gives it."""

    enabled: bool = True
    """Estimate the focal length from the video (unless --reconstruct.focal gives it)."""
    max_keyframes: int = 20
    """Key frames (spread over the clip) on which the focal length is measured."""
    max_points: int = 400
    """Static points (spread over the image) whose reprojection error is measured."""
    range_min: float = 0.3
    """Smallest focal length tried, x the larger image side (a 118 degree fisheye-free ultra-wide)."""
    range_max: float = 4.0
    """Largest focal length tried, x the larger image side (a 14 degree tele)."""
    coarse_step: float = 0.15
    """Relative step of the coarse sweep."""
    fine_step: float = 0.04
    """Relative step of the fine sweep around the coarse minimum."""
    min_evidence: float = 25.0
    """The focal length counts as determined when (observations x relative cost rise 10 % away from the
    minimum, the weaker side) reaches this: a likelihood-ratio of about 5 sigma under Gaussian noise."""
    ba_iterations: int = 8
    """Bundle adjustment iterations per focal length (warm-started, so few are needed)."""
    camera_model: Literal["SIMPLE_PINHOLE", "SIMPLE_RADIAL"] = "SIMPLE_RADIAL"
    """Lens model while measuring: SIMPLE_RADIAL solves a radial distortion k1 at every focal length (real
    lenses have some, and a pinhole would absorb it into the focal length)."""


@dataclass
class FocalEstimate:
    """The focal length found, and how much to trust it."""

    focal: float
    """Focal length in px (the one to use)."""
    source: str
    """"self-calibrated", or where the focal came from when self-calibration did not decide it."""
    determined: bool
    """The data determined the focal length (a clear minimum inside the range)."""
    rise_at_10pct: float = float("nan")
    """Relative rise of the cost 10 % away from the minimum (the smaller side): how sharp the minimum is."""
    curvature: float = float("nan")
    """Second derivative of the relative cost in log focal at the minimum."""
    relative_std: float = float("nan")
    """Rough 1-sigma relative uncertainty of the focal length from the curvature and the cost's noise."""
    cost: float = float("nan")
    """Root of the truncated mean squared reprojection error (px) at the estimate."""
    profile: list[tuple[float, float]] = field(default_factory=list)
    """(focal px, cost px) of every focal length tried (the coarse and the fine sweep, each truncated at 3x
    its centre's median error)."""
    message: str = ""
    key_poses: np.ndarray | None = field(default=None, repr=False)
    """(T, 4, 4) the key frames' poses solved at the estimate (NaN elsewhere; None when not measured)."""
    k1: float = 0.0
    """Radial distortion solved with them."""

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("key_poses", None)
        d["profile"] = [[round(f, 2), round(c, 5)] for f, c in self.profile]
        return d


#: A solution at one focal length: (world_from_cam (T, 4, 4), points (P, 3), radial k1).
_State = tuple[np.ndarray, np.ndarray, float]


def _residuals(xy: np.ndarray, obs: np.ndarray, frames: np.ndarray, f: float, state: _State,
               frame_size: tuple[int, int]) -> np.ndarray:
    """Reprojection errors (px) of the observations ``obs`` (T, P): focal ``f``, principal point at the
    centre, radial distortion k1 (this package's pixels: centres at integers)."""
    wfc, points, k1 = state
    h, w = frame_size
    out = []
    for t in frames:
        o = obs[t]
        cfw = np.linalg.inv(wfc[t])
        xc = points[o] @ cfw[:3, :3].T + cfw[:3, 3]
        z = np.where(np.abs(xc[:, 2:]) > 1e-9, xc[:, 2:], 1e-9)
        uv = xc[:, :2] / z
        uv *= 1 + k1 * np.sum(uv**2, axis=1, keepdims=True)
        err = np.linalg.norm(f * uv + [(w - 1) / 2, (h - 1) / 2] - xy[t, o], axis=1)
        out.append(np.where(xc[:, 2] > 0, err, 1e3))
    return np.concatenate(out) if out else np.zeros(0)


def _sweep(focals: np.ndarray, start: int, state0: _State, solve, cost
           ) -> tuple[list[tuple[float, float]], dict[float, _State]]:
    """cost(f) for each of ``focals`` (ascending): a continuation outwards from ``focals[start]``,
    each solve warm-started from its neighbour's solution. Stops a direction where ``solve`` gives None."""
    states: dict[float, _State] = {}
    costs: dict[float, float] = {}
    for side in (range(start, len(focals)), range(start - 1, -1, -1)):
        state = states.get(float(focals[start]), state0)
        for i in side:
            f = float(focals[i])
            solved = solve(f, state)
            if solved is None:
                break
            state = states[f] = solved
            costs[f] = cost(f, state)
    return sorted(costs.items()), states


def _parabola_vertex(logf: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    """Vertex (log f) and curvature of the least-squares parabola through the points."""
    a, b, _ = np.polyfit(logf, cost, 2)
    if a <= 0:
        return float(logf[np.argmin(cost)]), 0.0
    return float(-b / (2 * a)), float(2 * a)


def _rise_at(profile: list[tuple[float, float]], f_best: float, rel: float = 0.10) -> float:
    """Relative cost rise ``rel`` away from ``f_best`` on the weaker side (interpolated in log f)."""
    fs = np.log([p[0] for p in profile])
    cs = np.array([p[1] for p in profile])
    c0 = float(np.interp(np.log(f_best), fs, cs))
    rises = []
    for s in (np.log(1 + rel), np.log(1 - rel)):
        x = np.log(f_best) + s
        if x < fs[0] or x > fs[-1]:
            return float("nan")
        rises.append(float(np.interp(x, fs, cs)) / max(c0, 1e-12) - 1)
    return min(rises)


def self_calibrate(xy: np.ndarray, usable: np.ndarray, world_from_cam: np.ndarray, frames: np.ndarray,
                   frame_size: tuple[int, int], focal_start: float, config: CalibrationConfig | None = None, *,
                   fallback: tuple[float, str] | None = None, num_threads: int = -1, seed: int = 0
                   ) -> FocalEstimate:
    """Estimate the focal length from static tracks ``xy`` (T, N, 2) / ``usable`` (T, N) and poses
    ``world_from_cam`` (T, 4, 4) of the key ``frames``, solved at ``focal_start`` px.

    ``fallback`` (focal, source) is what to report when the data do not determine the focal length
    (default: ``focal_start``, "start").
    """
    cfg = config or CalibrationConfig()
    side = max(frame_size)
    fb_focal, fb_source = fallback or (focal_start, "start")
    undetermined = lambda msg, **kw: FocalEstimate(fb_focal, fb_source, False, message=msg, **kw)  # noqa: E731
    if len(frames) < 3:
        return undetermined(f"only {len(frames)} key frames have a pose")

    def points_at(f: float, wfc: np.ndarray, max_error: float):
        cam = make_camera("SIMPLE_PINHOLE", frame_size[1], frame_size[0], f, colmap_pixels=False)
        reg = np.zeros(len(xy), dtype=bool)
        reg[frames] = True
        tri = triangulate_tracks(xy.astype(np.float64), usable, wfc, reg, [cam], np.zeros(len(xy), np.int64),
                                 max_error=max_error, min_angle_deg=1.0, min_views=3)
        pick = _spread(tri.track_ids, xy, tri.inlier_obs, frame_size, cfg.max_points, seed)
        return tri.track_ids[pick], tri.points[pick], tri.inlier_obs[:, pick]

    def profile_around(f_centre: float, wfc: np.ndarray, lo: float, hi: float, step: float, max_error: float,
                       k1_start: float = 0.0):
        ids, pts, obs = points_at(f_centre, wfc, max_error)
        if len(ids) < 30:
            return None
        n_lo = int(np.ceil(np.log(f_centre / lo) / np.log1p(step)))
        n_hi = int(np.ceil(np.log(hi / f_centre) / np.log1p(step)))
        focals = f_centre * (1 + step) ** np.arange(-n_lo, n_hi + 1)
        registered = np.zeros(len(xy), dtype=bool)
        registered[frames] = True
        xs = xy[:, ids].astype(np.float64)

        radial = cfg.camera_model == "SIMPLE_RADIAL"

        def solve(f: float, state: _State) -> _State | None:
            cam = make_camera(cfg.camera_model, frame_size[1], frame_size[0], float(f))
            if radial:
                cam.params = [float(f), *cam.params[1:3], state[2]]
            ba = bundle_adjust(xs, obs, state[0], registered, state[1], cam, refine_focal=False,
                               refine_extra=radial, num_threads=num_threads, max_iterations=cfg.ba_iterations)
            if not (np.all(np.isfinite(ba.world_from_cam[frames])) and np.all(np.isfinite(ba.points))):
                return None
            k1 = float(ba.camera.params[3]) if radial else 0.0
            return ba.world_from_cam, ba.points, k1

        # Truncated mean squared error over a fixed set of observations, the truncation fixed for the
        # sweep (3 x the median error at its centre): robust to slipped tracks, as efficient as a mean
        # for the rest (a median wastes the many observations a video gives).
        start = (wfc, pts, k1_start)
        tau2 = (3.0 * float(np.median(_residuals(xs, obs, frames, f_centre, start, frame_size)))) ** 2

        def cost(f: float, state: _State) -> float:
            r = _residuals(xs, obs, frames, f, state, frame_size)
            return float(np.mean(np.minimum(r**2, max(tau2, 1e-6))))

        prof, states = _sweep(focals, n_lo, start, solve, cost)
        return prof, states, int(obs[frames].sum())

    lo, hi = cfg.range_min * side, cfg.range_max * side
    f_start = float(np.clip(focal_start, lo, hi))
    coarse = profile_around(f_start, world_from_cam, lo, hi, cfg.coarse_step, 8.0)
    if coarse is None or len(coarse[0]) < 5:
        return undetermined("too few static points are seen from three key frames")
    prof, states, _ = coarse
    f_min = min(prof, key=lambda p: p[1])[0]
    fine = profile_around(f_min, states[f_min][0], f_min / 1.2, f_min * 1.2, cfg.fine_step, 4.0, states[f_min][2])
    if fine is None or len(fine[0]) < 5:
        return undetermined("the fine focal sweep failed")
    fprof, fstates, n_obs = fine
    fs = np.array([p[0] for p in fprof])
    cs = np.array([p[1] for p in fprof])
    i = int(np.argmin(cs))
    near = slice(max(0, i - 3), min(len(fs), i + 4))
    vertex, curv = _parabola_vertex(np.log(fs[near]), cs[near] / cs[i])
    f_hat = float(np.exp(np.clip(vertex, np.log(fs[near][0]), np.log(fs[near][-1]))))
    rise = _rise_at(fprof, f_hat)
    # With Gaussian noise of variance ~cost, n observations make the cost rise a log-likelihood of
    # n/2 x (relative rise): the curvature gives the focal's standard deviation, n x rise its evidence.
    rel_std = float(np.sqrt(2.0 / (n_obs * curv))) if curv > 0 else float("inf")
    evidence = n_obs * rise if np.isfinite(rise) else 0.0
    full = sorted((f, float(np.sqrt(c))) for f, c in {**dict(prof), **dict(fprof)}.items())
    nearest = fstates[min(fstates, key=lambda f: abs(np.log(f / f_hat)))]
    est = FocalEstimate(f_hat, "self-calibrated", True, rise, curv, rel_std, float(np.sqrt(cs[i])), full,
                        key_poses=nearest[0], k1=nearest[2])
    edge = f_min <= lo * (1 + cfg.coarse_step) or f_min >= hi / (1 + cfg.coarse_step)
    if edge or evidence < cfg.min_evidence:
        if edge:
            why = "the cost keeps falling to the edge of the range"
        elif not np.isfinite(rise):
            why = "the sweep could not solve the cameras 10% away from its minimum"
        else:
            why = (f"the cost barely changes with the focal length: +{100 * rise:.3f}% 10% away from its "
                   f"minimum over {n_obs} observations")
        est.focal, est.source, est.determined, est.key_poses, est.k1 = fb_focal, fb_source, False, None, 0.0
        est.message = (f"the video does not determine the focal length ({why}; best guess {f_hat:.0f} px): "
                       f"using {fb_focal:.0f} px ({fb_source}); pass --reconstruct.focal if you know it")
    else:
        est.message = (f"focal length {f_hat:.0f} px self-calibrated from {len(frames)} key frames "
                       f"(cost {cs[i]:.3f} px, +{100 * rise:.1f}% at 10% away, ~{100 * rel_std:.1f}% uncertainty)")
    return est


def _spread(ids: np.ndarray, xy: np.ndarray, obs: np.ndarray, frame_size: tuple[int, int], k: int,
            seed: int) -> np.ndarray:
    """Positions in ``ids`` of at most ``k`` points spread over the image (8 x 8 cells), most-seen first."""
    if len(ids) <= k:
        return np.arange(len(ids))
    h, w = frame_size
    n_obs = obs.sum(0)
    mean_xy = np.nansum(np.where(obs[..., None], xy[:, ids], 0), axis=0) / np.maximum(n_obs, 1)[:, None]
    cell = (np.clip(mean_xy[:, 1] / h * 8, 0, 7).astype(int) * 8 + np.clip(mean_xy[:, 0] / w * 8, 0, 7).astype(int))
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(ids)), -n_obs, cell))
    rank = np.empty(len(ids), dtype=np.int64)
    sorted_cells = cell[order]
    rank[order] = np.arange(len(ids)) - np.searchsorted(sorted_cells, sorted_cells, side="left")
    return np.sort(np.lexsort((-n_obs, rank))[:k])
