"""Sim(3) alignment, ATE and rotation errors."""

import numpy as np
import pytest

from cotracker3_plugin.reconstruct.align import compare_poses, opengl_to_opencv, umeyama
from cotracker3_plugin.reconstruct.synthetic import look_at


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def test_umeyama_recovers_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    R = _rot([1, 2, 3], 37)
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 0.5])
    sim = umeyama(src, dst)
    assert sim.scale == pytest.approx(2.5, rel=1e-9)
    np.testing.assert_allclose(sim.R, R, atol=1e-9)
    np.testing.assert_allclose(sim.t, [1.0, -2.0, 0.5], atol=1e-9)
    np.testing.assert_allclose(sim.apply(src), dst, atol=1e-9)


def test_compare_poses_zero_for_similar_trajectory_and_measures_errors():
    centres = [np.array([6 * np.sin(a), 0.2 * a, -6 * np.cos(a)]) for a in np.linspace(-0.4, 0.4, 10)]
    ref = np.stack([look_at(c, np.zeros(3)) for c in centres])
    R = _rot([0, 1, 1], 80)
    est = ref.copy()
    est[:, :3, :3] = R @ ref[:, :3, :3]
    est[:, :3, 3] = 0.3 * ref[:, :3, 3] @ R.T + 4.0
    e = compare_poses(est, ref)
    assert e.ate == pytest.approx(0, abs=1e-9) and e.rotation_error_max_deg == pytest.approx(0, abs=1e-6)
    # One camera rotated by 2 degrees about its axis, one unregistered.
    est[3, :3, :3] = est[3, :3, :3] @ _rot([0, 0, 1], 2.0)
    est[5] = np.nan
    e = compare_poses(est, ref, use_orientation=False)
    assert e.num_registered == 9 and e.registered_share == pytest.approx(0.9)
    assert e.rotation_error_max_deg == pytest.approx(2.0, abs=1e-6)
    # Shift one centre by 0.1: RMS error is a bit below 0.1 / sqrt(9) after least squares.
    est2 = ref.copy()
    est2[0, :3, 3] += [0.1, 0, 0]
    e2 = compare_poses(est2, ref, use_orientation=False)
    assert 0.02 < e2.ate < 0.1 / 3 + 1e-9
    extent = np.linalg.norm(ref[0, :3, 3] - ref[-1, :3, 3])  # the ends of the arc are farthest apart
    assert e2.ate_relative == pytest.approx(e2.ate / extent)


def test_opengl_to_opencv_flips_y_and_z():
    m = np.eye(4)
    m[:3, 3] = [1, 2, 3]
    out = opengl_to_opencv(m)
    np.testing.assert_array_equal(np.diag(out)[:3], [1, -1, -1])
    np.testing.assert_array_equal(out[:3, 3], [1, 2, 3])


def test_orientation_aided_alignment_fixes_rotation_about_a_line_of_cameras():
    # Cameras on a straight line: centres leave the rotation about the line free.
    ref = np.stack([look_at(np.array([x, 0.0, -5.0]), np.array([x, 0.0, 0.0])) for x in np.linspace(-1, 1, 8)])
    est = ref.copy()
    # Noise on the centres only, perpendicular to the line.
    est[:, 1, 3] += 0.01 * np.array([1, -1, 1, -1, 1, -1, 1, -1])
    assert compare_poses(est, ref).rotation_error_max_deg < 0.1
    assert compare_poses(est, ref, use_orientation=False).rotation_error_max_deg > 0.15
