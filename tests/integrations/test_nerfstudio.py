"""ns-process-data-track: the dataset it writes loads with nerfstudio's own data parser.

A synthetic scene (known cameras on an arc around known 3D points, tracks = exact
projections) goes through ``process_data`` with the scene given, so the test checks the
writer and the nerfstudio conventions, not the mapper.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nerfstudio.process_data.colmap_utils")

from cotracker3_nerfstudio.process_data import (  # noqa: E402
    ProcessDataConfig,
    frame_stride,
    image_names,
    process_data,
    query_grid,
)

from cotracker3_plugin.errors import OutputExistsError, UserError  # noqa: E402
from cotracker3_plugin.io.clip import Clip  # noqa: E402
from cotracker3_plugin.reconstruct import Scene  # noqa: E402
from cotracker3_plugin.tracks import Tracks  # noqa: E402

H, W, T, P = 120, 160, 10, 150
K = np.array([[140.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
#: Frame 3 is left unregistered: it must be absent from transforms.json.
UNREGISTERED = 3


def look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """world_from_cam (OpenCV axes: z forward, y down) for a camera at ``center`` facing ``target``."""
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, -1.0, 0.0])  # world y up -> camera y down
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z], axis=1)
    m[:3, 3] = center
    return m


def synthetic() -> tuple[Clip, Tracks, Scene]:
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(P, 3)) + np.array([0.3, 0.2, -0.1])
    angles = np.linspace(-0.6, 0.6, T)
    poses = np.stack([look_at(np.array([4 * np.sin(a), 0.5, 4 * np.cos(a)]), np.zeros(3)) for a in angles])
    xy = np.zeros((T, P, 2))
    for t in range(T):
        cam = (np.linalg.inv(poses[t]) @ np.c_[points, np.ones(P)].T)[:3]
        uv = K @ cam
        xy[t] = (uv[:2] / uv[2]).T
    assert (xy[..., 0] > 0).all() and (xy[..., 0] < W - 1).all() and (xy[..., 1] < H - 1).all()
    frames = rng.integers(0, 255, size=(T, H, W, 3), dtype=np.uint8)
    vis = np.ones((T, P), bool)
    tracks = Tracks(xy=xy, visible=vis, confidence=vis.astype(np.float32),
                    queries=np.c_[np.zeros(P), xy[0]], frame_size=(H, W))
    registered = np.ones(T, bool)
    registered[UNREGISTERED] = False
    poses[UNREGISTERED] = np.nan
    colors = rng.integers(0, 255, size=(P, 3), dtype=np.uint8)
    scene = Scene(intrinsics=K[None], image_size=(H, W), camera_index=np.zeros(T, int),
                  world_from_cam=poses, registered=registered, points=points, colors=colors,
                  track_ids=np.arange(P), distortion=np.array([0.01, -0.002, 0.0, 0.0]))
    return Clip(frames, fps=10.0), tracks, scene


def opencv_c2w_to_nerfstudio(c2w: np.ndarray) -> np.ndarray:
    """nerfstudio's transforms.json pose: OpenGL camera axes, world rotated so that z is up."""
    m = c2w.copy()
    m[:3, 1:3] *= -1
    m = m[[0, 2, 1, 3]]
    m[2] *= -1
    return m


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Clip, Tracks, Scene]:
    clip, tracks, scene = synthetic()
    out = tmp_path_factory.mktemp("ns") / "dataset"
    process_data(clip, out, ProcessDataConfig(num_downscales=2), tracker=tracks, scene=scene)
    return out, clip, tracks, scene


def test_layout_is_ns_process_data(dataset):
    out, clip, tracks, scene = dataset
    names = image_names(T)
    assert sorted(p.name for p in (out / "images").iterdir()) == names
    import cv2

    assert cv2.imread(str(out / "images_2" / names[0])).shape == (H // 2, W // 2, 3)
    assert cv2.imread(str(out / "images_4" / names[0])).shape == (H // 4, W // 4, 3)
    assert not (out / "images_8").exists()
    # PNG frames are the clip's frames exactly (RGB order kept).
    assert np.array_equal(cv2.imread(str(out / "images" / names[5]))[..., ::-1], clip.frames[5])
    for f in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (out / "colmap" / "sparse" / "0" / f).is_file()
    for f in ("transforms.json", "sparse_pc.ply", "tracks.npz", "scene.npz"):
        assert (out / f).is_file()
    assert Tracks.load(out / "tracks.npz").num_points == P
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_transforms_json(dataset):
    out, _, _, scene = dataset
    tf = json.loads((out / "transforms.json").read_text())
    assert (tf["w"], tf["h"]) == (W, H)
    assert tf["camera_model"] == "OPENCV"
    # nerfstudio, like COLMAP, puts pixel centres at +0.5; the Scene at integers.
    assert (tf["fl_x"], tf["fl_y"], tf["cx"], tf["cy"]) == (140.0, 150.0, 80.0, 60.0)
    assert tf["k1"] == pytest.approx(0.01) and tf["k2"] == pytest.approx(-0.002)
    assert tf["ply_file_path"] == "sparse_pc.ply"
    frames = sorted(tf["frames"], key=lambda f: f["file_path"])
    assert len(frames) == T - 1
    expected = [f"images/{n}" for i, n in enumerate(image_names(T)) if i != UNREGISTERED]
    assert [f["file_path"] for f in frames] == expected
    for f in frames:
        i = int(Path(f["file_path"]).stem.split("_")[1]) - 1
        np.testing.assert_allclose(np.array(f["transform_matrix"]),
                                   opencv_c2w_to_nerfstudio(scene.world_from_cam[i]), atol=1e-6)


def test_nerfstudio_dataparser_loads_it(dataset):
    import torch
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    out, _, _, scene = dataset
    # Orientation, centring and scaling off: poses come out as written.
    parser = NerfstudioDataParserConfig(data=out, orientation_method="none", center_method="none",
                                        auto_scale_poses=False, load_3D_points=True,
                                        eval_mode="interval", eval_interval=3).setup()
    train = parser.get_dataparser_outputs("train")
    val = parser.get_dataparser_outputs("val")
    assert len(train.image_filenames) + len(val.image_filenames) == T - 1
    assert len(val.image_filenames) == 3  # registered frames 0, 4, 7 (every 3rd of 9)
    cams = train.cameras
    assert cams.fx[0].item() == pytest.approx(140.0) and cams.fy[0].item() == pytest.approx(150.0)
    assert cams.cx[0].item() == pytest.approx(80.0) and cams.cy[0].item() == pytest.approx(60.0)
    assert int(cams.width[0]) == W and int(cams.height[0]) == H
    assert cams.distortion_params[0, 0].item() == pytest.approx(0.01)
    reg = [i for i in range(T) if i != UNREGISTERED]
    train_idx = [reg[j] for j in range(len(reg)) if j % 3 != 0]
    expected = np.stack([opencv_c2w_to_nerfstudio(scene.world_from_cam[i])[:3] for i in train_idx])
    np.testing.assert_allclose(cams.camera_to_worlds.numpy(), expected, atol=1e-5)
    # Points: same cloud in the nerfstudio world (z up).
    pts = train.metadata["points3D_xyz"].numpy()
    assert pts.shape == (P, 3)
    want = scene.points[:, [0, 2, 1]] * np.array([1, 1, -1])  # nerfstudio world: (x, z, -y)
    np.testing.assert_allclose(np.sort(pts, axis=0), np.sort(want, axis=0), atol=1e-4)
    assert train.metadata["points3D_rgb"].dtype == torch.uint8
    # Scene box: nerfstudio's default aabb (scene_scale 1 -> [-1, 1]^3).
    assert train.scene_box.aabb.tolist() == [[-1, -1, -1], [1, 1, 1]]


def test_nerfstudio_default_parser_roundtrips_scene_poses(dataset):
    """With nerfstudio's defaults (auto-orient, centre, scale), undoing its transform gives the Scene."""
    import torch
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    out, _, _, scene = dataset
    parser = NerfstudioDataParserConfig(data=out, eval_mode="all").setup()
    outputs = parser.get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == T - 1
    back = outputs.transform_poses_to_original_space(outputs.cameras.camera_to_worlds,
                                                     camera_convention="opencv")
    # "Original space" undoes applied_transform too: it is the COLMAP model's world, the Scene's.
    reg = np.flatnonzero(scene.registered)
    got = back.to(torch.float64).numpy()
    np.testing.assert_allclose(got, scene.world_from_cam[reg, :3], atol=1e-4)
    assert outputs.dataparser_scale > 0


def test_pinhole_camera_type_drops_distortion(tmp_path):
    clip, tracks, scene = synthetic()
    out = process_data(clip, tmp_path / "d", ProcessDataConfig(num_downscales=0, camera_type="pinhole"),
                       tracker=lambda c: tracks, scene=scene)
    tf = json.loads((out / "transforms.json").read_text())
    assert (tf["k1"], tf["k2"], tf["p1"], tf["p2"]) == (0.0, 0.0, 0.0, 0.0)
    assert not (out / "images_2").exists()


def test_existing_output_needs_overwrite_and_skip_image_processing_keeps_images(dataset, tmp_path):
    clip, tracks, scene = synthetic()
    out = tmp_path / "d"
    process_data(clip, out, ProcessDataConfig(num_downscales=1), tracker=tracks, scene=scene)
    with pytest.raises(OutputExistsError):
        process_data(clip, out, ProcessDataConfig(num_downscales=1), tracker=tracks, scene=scene)
    (out / "marker.txt").write_text("old")
    cfg = ProcessDataConfig(num_downscales=1, skip_image_processing=True, overwrite=True)
    process_data(clip, out, cfg, tracker=tracks, scene=scene)
    assert not (out / "marker.txt").exists()  # the folder was replaced ...
    assert len(list((out / "images").iterdir())) == T  # ... but the frames were carried over
    assert len(list((out / "images_2").iterdir())) == T


def test_mismatched_tracks_and_no_registration_are_user_errors(tmp_path):
    clip, tracks, scene = synthetic()
    with pytest.raises(UserError, match="Track this clip"):
        process_data(clip, tmp_path / "a", tracker=tracks.subset(frames=slice(0, 5)), scene=scene)
    none = Scene(intrinsics=scene.intrinsics, image_size=(H, W), camera_index=scene.camera_index,
                 world_from_cam=np.full((T, 4, 4), np.nan), registered=np.zeros(T, bool),
                 points=np.zeros((0, 3)), colors=np.zeros((0, 3)), track_ids=np.zeros(0))
    with pytest.raises(UserError, match="No frame"):
        process_data(clip, tmp_path / "b", tracker=tracks, scene=none)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_frame_sampling_and_queries():
    assert frame_stride(87, 300) == 1
    assert frame_stride(900, 300) == 3
    assert frame_stride(1000, 300) == 3  # ns-process-data: floor(frames / target)
    clip = Clip(np.zeros((20, 40, 60, 3), np.uint8))
    q = query_grid(clip, grid_size=5, num_query_frames=3)
    assert q.shape == (75, 3)
    assert sorted(set(q[:, 0].tolist())) == [5.0, 10.0, 14.0]
    assert q[:, 1].min() > 0 and q[:, 1].max() < 59 and q[:, 2].max() < 39


def test_end_to_end_with_pycolmap_mapping(tmp_path):
    """Noisy tracks -> reconstruct (pycolmap) -> dataset -> nerfstudio parser: poses match the truth."""
    import torch
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from cotracker3_plugin.reconstruct.align import compare_poses

    clip, tracks, truth = synthetic()
    tracks.xy += np.random.default_rng(1).normal(0, 0.5, tracks.xy.shape).astype(np.float32)
    out = process_data(clip, tmp_path / "d", ProcessDataConfig(num_downscales=0), tracker=tracks)
    scene = Scene.load(out / "scene.npz")
    assert scene.num_registered == T and len(scene.points) > 0.9 * P
    outputs = NerfstudioDataParserConfig(data=out, eval_mode="all").setup().get_dataparser_outputs("train")
    back = outputs.transform_poses_to_original_space(outputs.cameras.camera_to_worlds,
                                                     camera_convention="opencv").to(torch.float64).numpy()
    order = [int(Path(p).stem.split("_")[1]) - 1 for p in outputs.image_filenames]
    est = np.tile(np.eye(4), (T, 1, 1))
    est[order, :3] = back
    keep = np.arange(T) != UNREGISTERED  # the truth has no pose there
    err = compare_poses(est[keep], truth.world_from_cam[keep])
    assert err.num_registered == T - 1
    assert err.rotation_error_max_deg < 1.0 and err.ate_relative < 0.01


def test_moving_masks_and_dense_cloud_load_with_nerfstudio(tmp_path):
    """Masks of moving pixels (0 = ignore) at every downscale, mask_path per frame, and the dense cloud
    as ``ply_file_path`` (what splatfacto starts from), as nerfstudio's own parser and loaders read them."""
    import dataclasses

    import torch
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from nerfstudio.data.utils.data_utils import get_image_mask_tensor_from_path

    from cotracker3_plugin.reconstruct.densify import DenseCloud

    clip, tracks, scene = synthetic()
    moving = np.zeros((T, H, W), bool)
    moving[:, 20:60, 30:90] = True  # a subject in every frame
    scene = dataclasses.replace(scene, moving_masks=moving)
    rng = np.random.default_rng(1)
    dense_pts = rng.uniform(-1, 1, (500, 3))
    dense = DenseCloud(dense_pts, rng.integers(0, 255, (500, 3), dtype=np.uint8), np.zeros(500),
                       np.full(500, 3), np.zeros(500, np.int64), np.zeros((500, 2)))
    out = tmp_path / "ds"
    process_data(clip, out, ProcessDataConfig(num_downscales=1), tracker=tracks, scene=scene, dense=dense)
    meta = json.loads((out / "transforms.json").read_text())
    assert all(f["mask_path"] == "masks/" + Path(f["file_path"]).name for f in meta["frames"])
    assert (out / "masks_2" / "frame_00001.png").is_file() and (out / "sfm_pc.ply").is_file()
    parser = NerfstudioDataParserConfig(data=out, orientation_method="none", center_method="none",
                                        auto_scale_poses=False, load_3D_points=True, downscale_factor=1,
                                        eval_mode="all").setup()
    outputs = parser.get_dataparser_outputs("train")
    assert len(outputs.mask_filenames) == T - 1
    mask = get_image_mask_tensor_from_path(outputs.mask_filenames[0])
    assert mask.shape == (H, W, 1) and mask.dtype == torch.bool
    assert not mask[20:60, 30:90].any() and mask[:20].all() and mask[60:].all()
    half = get_image_mask_tensor_from_path(out / "masks_2" / "frame_00001.png")
    assert half.shape == (H // 2, W // 2, 1) and not half[10:30, 15:45].any()
    # sparse_pc.ply is the dense cloud, in nerfstudio's world (x, z, -y of the Scene's).
    pts = outputs.metadata["points3D_xyz"].numpy()
    assert pts.shape == (500, 3)
    want = dense_pts[:, [0, 2, 1]] * np.array([1, 1, -1])
    np.testing.assert_allclose(np.sort(pts, axis=0), np.sort(want, axis=0), atol=1e-4)
    # --no-masks: no masks, no mask_path.
    out2 = tmp_path / "ds2"
    process_data(clip, out2, ProcessDataConfig(num_downscales=1, masks=False), tracker=tracks, scene=scene)
    assert not (out2 / "masks").exists()
    assert "mask_path" not in json.loads((out2 / "transforms.json").read_text())["frames"][0]
