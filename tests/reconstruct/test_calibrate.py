"""Self-calibration of the focal length on synthetic tracks with a known lens."""

import numpy as np
import pytest

from cotracker3_plugin.reconstruct import ReconstructConfig, reconstruct_detailed
from cotracker3_plugin.reconstruct.align import compare_poses
from cotracker3_plugin.reconstruct.calibrate import CalibrationConfig, self_calibrate
from cotracker3_plugin.reconstruct.synthetic import look_at, make_synthetic_scene


def _with_outliers(tracks, share: float, seed: int):
    """``share`` of the visible observations jump by 20-60 px (slipped tracks)."""
    rng = np.random.default_rng(seed)
    xy = tracks.xy.copy()
    hit = tracks.visible & (rng.random(tracks.visible.shape) < share)
    xy[hit] += rng.uniform(20, 60, (hit.sum(), 2)) * rng.choice([-1, 1], (hit.sum(), 2))
    tracks.xy = xy
    return tracks


@pytest.mark.parametrize("focal", [350.0, 600.0, 1100.0])
def test_the_focal_length_is_found_whatever_it_is(focal):
    # 10% of the points on an object that moves on its own, 2% slipped observations, 0.5 px noise; the
    # key frames are first solved at 0.9 x 640 = 576 px, far from 350 and 1100.
    s = make_synthetic_scene(24, 500, focal=focal, noise_px=0.5, moving_fraction=0.1, seed=4,
                             radius=6.0 * focal / 600)
    tracks = _with_outliers(s.tracks, 0.02, seed=1)
    res = reconstruct_detailed(tracks, None, ReconstructConfig(num_threads=2))
    cal = res.report.calibration
    assert cal["determined"] and cal["source"] == "self-calibrated", cal["message"]
    assert cal["focal"] == pytest.approx(focal, rel=0.02)
    assert res.report.focal == pytest.approx(focal, rel=0.01)  # then refined by bundle adjustment
    assert not res.report.camera_fixed
    assert cal["rise_at_10pct"] > 0.01 and np.isfinite(cal["relative_std"])
    e = compare_poses(res.scene.world_from_cam, s.world_from_cam, res.scene.registered)
    assert e.num_registered == 24 and e.ate_relative < 0.01


def test_sideways_translation_leaves_the_focal_undetermined():
    # A camera that slides sideways without turning: changing f scales every depth by the same
    # factor and fits the tracks exactly as well. Say so rather than print a number.
    rng = np.random.default_rng(0)
    T, f, h, w = 20, 500.0, 480, 640
    pts = rng.uniform([-4, -3, 6], [4, 3, 12], (400, 3))
    wfc = np.stack([look_at(np.array([x, 0, 0]), np.array([x, 0, 1.0])) for x in np.linspace(-1, 1, T)])
    cfw = np.linalg.inv(wfc)
    pc = np.einsum("tij,nj->tni", cfw[:, :3, :3], pts) + cfw[:, None, :3, 3]
    xy = f * pc[..., :2] / pc[..., 2:] + [(w - 1) / 2, (h - 1) / 2] + rng.normal(0, 0.3, (T, len(pts), 2))
    vis = (xy[..., 0] > 4) & (xy[..., 0] < w - 5) & (xy[..., 1] > 4) & (xy[..., 1] < h - 5)
    est = self_calibrate(xy, vis, wfc, np.arange(0, T, 2), (h, w), f, CalibrationConfig(),
                         fallback=(576.0, "default (0.9 x side)"))
    assert not est.determined and est.focal == 576.0 and est.source == "default (0.9 x side)"
    assert "does not determine the focal length" in est.message
