"""COLMAP model and PLY export round trips."""

import numpy as np
import pycolmap
import pytest

from cotracker3_plugin.reconstruct import Scene, write_colmap_model, write_ply
from cotracker3_plugin.reconstruct.synthetic import make_synthetic_scene


def _scene_from_truth(distortion=(0.0, 0.0, 0.0, 0.0)):
    s = make_synthetic_scene(6, 40, noise_px=0.0, seed=4)
    wfc = s.world_from_cam.copy()
    registered = np.ones(6, dtype=bool)
    registered[2] = False
    wfc[2] = np.nan
    rng = np.random.default_rng(0)
    ids = np.arange(0, 40, 2)  # every other track has a point
    scene = Scene(intrinsics=s.K[None], image_size=s.tracks.frame_size, camera_index=np.zeros(6, int),
                  world_from_cam=wfc, registered=registered, points=s.points[ids],
                  colors=rng.integers(0, 256, (len(ids), 3)), track_ids=ids,
                  distortion=np.asarray(distortion, float))
    return s, scene


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_round_trip(tmp_path, binary):
    s, scene = _scene_from_truth()
    names = [f"img_{i:03d}.jpg" for i in range(6)]
    out = write_colmap_model(scene, tmp_path / "sparse" / "0", binary=binary, image_names=names,
                             tracks=s.tracks)
    ext = ".bin" if binary else ".txt"
    assert {"cameras", "images", "points3D"} <= {p.stem for p in out.iterdir() if p.suffix == ext}
    rec = pycolmap.Reconstruction(str(out))
    assert rec.num_reg_images() == 5 and rec.num_points3D() == 20
    cam = rec.cameras[1]
    assert cam.model.name == "PINHOLE"
    # COLMAP's pixel centres are at +0.5.
    np.testing.assert_allclose(cam.params, [600, 600, 320.0, 240.0])
    for image_id, image in rec.images.items():
        i = image_id - 1
        assert image.name == names[i] and i != 2
        m = np.eye(4)
        m[:3, :4] = image.cam_from_world().matrix()
        np.testing.assert_allclose(np.linalg.inv(m), scene.world_from_cam[i], atol=1e-9)
    # Every observation reprojects onto its track position (noise-free tracks).
    errs = []
    for p in rec.points3D.values():
        assert p.track.length() >= 2
        for el in p.track.elements:
            img = rec.images[el.image_id]
            uv = img.project_point(p.xyz)
            errs.append(np.linalg.norm(uv - img.points2D[el.point2D_idx].xy))
    assert max(errs) < 1e-3  # tracks are float32
    cols = {tuple(p.xyz.round(6)): tuple(p.color) for p in rec.points3D.values()}
    for xyz, c in zip(scene.points, scene.colors):
        assert cols[tuple(xyz.round(6))] == tuple(c)


def test_colmap_distortion_gives_opencv_camera(tmp_path):
    _, scene = _scene_from_truth(distortion=(-0.05, 0.01, 0.0, 0.0))
    out = write_colmap_model(scene, tmp_path / "m")
    rec = pycolmap.Reconstruction(str(out))
    assert rec.cameras[1].model.name == "OPENCV"
    np.testing.assert_allclose(rec.cameras[1].params[4:], [-0.05, 0.01, 0, 0])
    assert rec.image(1).name == "frame_00001.png"
    assert rec.num_points3D() == 20 and rec.compute_num_observations() == 0  # no tracks given


def _read_ply(path):
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    n = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    assert len(data) - end == n * dt.itemsize
    return np.frombuffer(data[end:], dtype=dt)


def test_ply_round_trip(tmp_path):
    _, scene = _scene_from_truth()
    path = write_ply(scene, tmp_path / "points.ply")
    v = _read_ply(path)
    np.testing.assert_allclose(np.stack([v["x"], v["y"], v["z"]], 1), scene.points, atol=1e-5)
    np.testing.assert_array_equal(np.stack([v["r"], v["g"], v["b"]], 1), scene.colors)


@pytest.mark.slow
def test_ply_readable_by_open3d(tmp_path):
    import open3d as o3d

    _, scene = _scene_from_truth()
    pcd = o3d.io.read_point_cloud(str(write_ply(scene, tmp_path / "points.ply")))
    np.testing.assert_allclose(np.asarray(pcd.points), scene.points, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pcd.colors) * 255, scene.colors, atol=1e-3)
