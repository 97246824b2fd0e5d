"""A video whose tracks do not survive a gap: every frame must still get an accurate pose."""

import cv2
import numpy as np
import pytest

from cotracker3_plugin.evaluate.klt import global_similarity
from cotracker3_plugin.reconstruct import ReconstructConfig, reconstruct_detailed
from cotracker3_plugin.reconstruct.align import compare_poses
from cotracker3_plugin.reconstruct.synthetic import make_synthetic_scene


def test_tracks_split_by_a_gap_all_frames_registered():
    T = 30
    s = make_synthetic_scene(T, 2000, noise_px=0.5, seed=2)
    vis = s.tracks.visible
    # Most tracks (the long ones) end at frame 19; the rest start at frame 15 (a short overlap);
    # the mapper only gets a few hundred tracks.
    vis[20:, :1600] = False
    vis[:15, 1600:] = False
    cfg = ReconstructConfig(num_threads=1, max_sfm_tracks=300)
    res = reconstruct_detailed(s.tracks, None, cfg)
    assert res.report.frames_registered == T, res.report.unregistered_frames
    # The mapper itself gets enough tracks on both sides (absolute pose would only patch it up).
    assert res.report.frames_registered_by_mapper == T
    e = compare_poses(res.scene.world_from_cam, s.world_from_cam)
    assert e.rotation_error_max_deg < 0.5 and e.ate_relative < 0.01, e


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.uniform(0, 255, (h // 8, w // 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img += cv2.resize(rng.uniform(0, 255, (h // 2, w // 2)).astype(np.float32), (w, h)) * 0.5
    return np.clip(img / img.max() * 255, 0, 255).astype(np.uint8)


def _view(big: np.ndarray, cx: float, cy: float, angle: float, scale: float, size=(480, 640)) -> np.ndarray:
    """The (H, W) window of ``big`` centred at (cx, cy), rotated by ``angle`` deg, zoomed by ``scale``."""
    h, w = size
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += [(w - 1) / 2 - cx, (h - 1) / 2 - cy]
    g = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR)
    return np.repeat(g[..., None], 3, axis=2)


def test_global_similarity_recovers_rotation_scale_and_shift():
    big = _texture(1200, 1200)
    a = _view(big, 600, 600, 0, 1.0)[..., 0]
    b = _view(big, 620, 590, 10, 0.85)[..., 0]
    m, peak = global_similarity(a, b)
    # OpenCV's angle convention (counter-clockwise on screen, y down).
    assert np.degrees(np.arctan2(-m[1, 0], m[0, 0])) == pytest.approx(10, abs=0.5)
    assert np.hypot(m[0, 0], m[1, 0]) == pytest.approx(0.85, abs=0.01)
    assert peak > 0.5
    # Where a's centre pixel lands in b: b is centred at (420, 390) of the big image.
    expected = cv2.getRotationMatrix2D((620, 590), 10, 0.85) @ [600, 600, 1] - [620 - 319.5, 590 - 239.5]
    assert np.linalg.norm(m @ [319.5, 239.5, 1] - expected) < 4
