"""Camera conversions and the pipeline's frame / track selection."""

import numpy as np
import pycolmap
import pytest

from cotracker3_plugin.reconstruct.correspondences import select_frames, select_sfm_tracks
from cotracker3_plugin.reconstruct.mapping import camera_to_scene, make_camera


def test_camera_to_scene_shifts_principal_point_and_reads_distortion():
    cam = pycolmap.Camera(model="SIMPLE_RADIAL", width=640, height=480, params=[500, 320, 240, -0.1])
    K, dist, ours = camera_to_scene(cam)
    np.testing.assert_allclose(K, [[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    np.testing.assert_allclose(dist, [-0.1, 0, 0, 0])
    # The same ray in both conventions: pixel (x, y) here is (x + 0.5, y + 0.5) in COLMAP.
    xy = np.array([[10.0, 20.0], [600.0, 400.0]])
    np.testing.assert_allclose(ours.cam_from_img(xy), cam.cam_from_img(xy + 0.5), atol=1e-12)
    cam2 = pycolmap.Camera(model="OPENCV", width=64, height=48, params=[50, 51, 32, 24, .1, .2, .3, .4])
    np.testing.assert_allclose(camera_to_scene(cam2)[1], [.1, .2, .3, .4])


@pytest.mark.parametrize("model", ["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"])
def test_make_camera_centres_principal_point(model):
    cam = make_camera(model, 640, 480, 700.0)
    assert cam.model.name == model
    assert cam.principal_point_x == 320.0 and cam.principal_point_y == 240.0
    assert make_camera(model, 640, 480, 700.0, colmap_pixels=False).principal_point_x == 319.5


def test_select_frames_stride_and_cap():
    np.testing.assert_array_equal(select_frames(10, 3, 150), [0, 3, 6, 9])
    f = select_frames(1000, 1, 100)
    assert len(f) == 100 and f[0] == 0 and f[-1] == 999


def _still_points(rng: np.random.Generator, T: int, N: int) -> np.ndarray:
    """(T, N, 2) positions of N points that stay put in a 640x480 frame."""
    xy = np.zeros((T, N, 2))
    xy[..., 0] = rng.uniform(0, 640, N)
    xy[..., 1] = rng.uniform(0, 480, N)
    return xy


def test_sfm_tracks_are_static_long_and_spread():
    rng = np.random.default_rng(0)
    T, N = 10, 2000
    xy = _still_points(rng, T, N)
    usable = rng.random((T, N)) < rng.uniform(0.2, 1.0, N)
    static = np.ones(N, bool)
    static[:100] = False
    ids = select_sfm_tracks(xy, usable, static, (480, 640), 300, seed=0)
    assert len(ids) == 300 and ids.min() >= 100
    # Spread: every cell of a coarse 3x3 grid is used about equally.
    cells = (xy[0, ids, 1] // 160) * 3 + xy[0, ids, 0] // (640 / 3)
    counts = np.bincount(cells.astype(int), minlength=9)
    assert counts.min() > 20
    # Long first: the chosen tracks are longer than the average.
    assert usable.sum(0)[ids].mean() > usable.sum(0)[100:].mean()


def test_sfm_tracks_cover_every_frame():
    # Long tracks live in frames 0-19, the frames after them see only shorter tracks: the cap
    # alone would hand the mapper nothing for frames 20-29.
    T, N = 30, 1500
    xy = _still_points(np.random.default_rng(1), T, N)
    usable = np.zeros((T, N), bool)
    usable[:20, :1200] = True
    usable[15:, 1200:] = True
    static = np.ones(N, bool)
    assert usable[20:, select_sfm_tracks(xy, usable, static, (480, 640), 200, seed=0)].sum() == 0
    ids = select_sfm_tracks(xy, usable, static, (480, 640), 200, seed=0, min_per_frame=60)
    assert usable[:, ids].sum(1).min() >= 60
    assert len(ids) == 260  # 200 plus what frames 20-29 lacked (60 tracks they all see)
