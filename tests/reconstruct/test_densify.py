"""Dense triangulation: exact on exact tracks, filters that catch planted outliers, PLY outputs, real scene."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct.dense_grid import neighbor_consistent, spread_frames
from cotracker3_plugin.reconstruct.densify import (
    DenseCloud,
    DensifyConfig,
    densify,
    make_track_fn,
    write_dense_ply,
)
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.reconstruct.synthetic import look_at
from cotracker3_plugin.tracks import Tracks

# --------------------------------------------------------------------------- synthetic world
#: Clip frames are half the size of the images the Scene's cameras were made for.
T, H, W = 16, 120, 160
SCENE_HW = (240, 320)
K_SCENE = np.array([[300.0, 0, 159.5], [0, 290.0, 119.5], [0, 0, 1]])
DIST = np.array([0.04, -0.01, 0.001, -0.0005])
#: A panel in front of a tilted back wall: depth edges for the neighbour check, occlusions.
PANEL = (4.0, 0.6)  # z, half size


def _k_clip() -> np.ndarray:
    """K_SCENE for frames scaled by 1/2 (pixel centres at integers: c' = (c + 0.5) / 2 - 0.5)."""
    k = K_SCENE.copy()
    k[0, 0] /= 2
    k[1, 1] /= 2
    k[0, 2] = (k[0, 2] + 0.5) / 2 - 0.5
    k[1, 2] = (k[1, 2] + 0.5) / 2 - 0.5
    return k


def _camera():
    import pycolmap

    k = _k_clip()
    return pycolmap.Camera(model="OPENCV", width=W, height=H,
                           params=[k[0, 0], k[1, 1], k[0, 2], k[1, 2], *DIST])


def _poses() -> np.ndarray:
    xs = np.linspace(-1.5, 1.5, T)
    return np.stack([look_at(np.array([x, 0.2 * np.sin(x), 0.0]), np.array([0.0, 0.0, 6.0])) for x in xs])


def _raycast(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """First hit (N, 3) of rays with the panel or the back wall z = 6 + 0.2 x."""
    tz = (PANEL[0] - origin[2]) / dirs[:, 2]
    hit = origin + tz[:, None] * dirs
    on_panel = (tz > 0) & (np.abs(hit[:, 0]) < PANEL[1]) & (np.abs(hit[:, 1]) < PANEL[1])
    # back wall: z = 6 + 0.2 x  ->  o_z + t d_z = 6 + 0.2 (o_x + t d_x)
    tw = (6 + 0.2 * origin[0] - origin[2]) / (dirs[:, 2] - 0.2 * dirs[:, 0])
    return np.where(on_panel[:, None], hit, origin + tw[:, None] * dirs)


def _world_of_pixels(wfc: np.ndarray, xy: np.ndarray) -> np.ndarray:
    n = _camera().cam_from_img(np.asarray(xy, dtype=np.float64))
    d = np.concatenate([n, np.ones((len(n), 1))], axis=1) @ wfc[:3, :3].T
    return _raycast(wfc[:3, 3], d)


def _project(wfc: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cfw = np.linalg.inv(wfc)
    pc = X @ cfw[:3, :3].T + cfw[:3, 3]
    front = pc[:, 2] > 1e-6
    xy = np.full((len(X), 2), np.nan)
    xy[front] = _camera().img_from_cam(pc[front])
    return xy, front


def exact_track_fn(clip: Clip, queries: np.ndarray) -> Tracks:
    """Exact tracks: each query pixel's surface point projected (with distortion) into every frame."""
    wfc = _poses()
    q = np.asarray(queries, dtype=np.float64)
    X = np.zeros((len(q), 3))
    for t in np.unique(q[:, 0].astype(int)):
        sel = q[:, 0].astype(int) == t
        X[sel] = _world_of_pixels(wfc[t], q[sel, 1:])
    xy = np.zeros((T, len(q), 2))
    vis = np.zeros((T, len(q)), bool)
    for t in range(T):
        p, front = _project(wfc[t], X)
        inside = front & (p[:, 0] >= 0) & (p[:, 0] <= W - 1) & (p[:, 1] >= 0) & (p[:, 1] <= H - 1)
        seen = np.zeros(len(q), bool)
        if inside.any():  # not occluded: the surface seen at that pixel is the point itself
            back = _world_of_pixels(wfc[t], p[inside])
            seen[inside] = np.linalg.norm(back - X[inside], axis=1) < 1e-6 * np.linalg.norm(X[inside], axis=1)
        xy[t] = np.nan_to_num(p)
        vis[t] = seen
    return Tracks(xy=xy, visible=vis, confidence=vis.astype(np.float32), queries=q, frame_size=(H, W))


@pytest.fixture(scope="module")
def world() -> tuple[Scene, Clip]:
    rng = np.random.default_rng(0)
    clip = Clip(rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8), fps=10.0)
    scene = Scene(intrinsics=K_SCENE[None], image_size=SCENE_HW, camera_index=np.zeros(T, np.int64),
                  world_from_cam=_poses(), registered=np.ones(T, bool), points=np.zeros((0, 3)),
                  colors=np.zeros((0, 3), np.uint8), track_ids=np.zeros(0, np.int64), distortion=DIST)
    return scene, clip


def _truth(cloud: DenseCloud) -> np.ndarray:
    """The surface point behind each point's query pixel."""
    wfc = _poses()
    out = np.zeros_like(cloud.points)
    for t in np.unique(cloud.query_frames):
        sel = cloud.query_frames == t
        out[sel] = _world_of_pixels(wfc[t], cloud.query_xy[sel])
    return out


#: Exact geometry (the photometric sweep is tested on rendered frames in test_photometric.py: these
#: frames are noise, unrelated to the geometry).
EXACT = dict(grid_size=24, num_query_frames=3, chunk_size=500, voxel_size=0.0, photometric=False)


# --------------------------------------------------------------------------- exactness
def test_exact_tracks_give_exact_points_with_distortion_and_rescaled_cameras(world):
    scene, clip = world
    done = []
    cloud = densify(scene, clip, exact_track_fn, DensifyConfig(**EXACT), progress=lambda a, b: done.append((a, b)))
    assert len(cloud) > 0.8 * 3 * 24 * 24
    rel = np.linalg.norm(cloud.points - _truth(cloud), axis=1) / np.linalg.norm(_truth(cloud), axis=1)
    assert rel.max() <= 1e-6
    assert cloud.errors.max() < 1e-4 and cloud.num_views.min() >= 3
    # colour from the query frame, at the query pixel
    xi, yi = np.rint(cloud.query_xy).astype(int).T
    np.testing.assert_array_equal(cloud.colors, clip.frames[cloud.query_frames, yi, xi])
    s = cloud.stats
    assert done == [(i + 1, 4) for i in range(4)]  # 1728 queries in chunks of 500
    assert s.queries == 3 * 24 * 24 and s.points == len(cloud) and s.total_s > 0
    assert sum(s.removed().values()) == s.queries - len(cloud)
    assert s.query_frames == sorted(s.query_frames) and 0 < s.query_frames[0] and s.query_frames[-1] < T - 1


def test_gauss_newton_steps_beat_the_ray_intersection_when_depths_differ():
    """A camera moving towards the scene sees each point at depths from 8 to 3: the ray intersection
    (least squares in space) over-weights the far views; Gauss-Newton on the reprojection error does not."""
    from cotracker3_plugin.reconstruct.mapping import make_camera
    from cotracker3_plugin.reconstruct.triangulate import triangulate_tracks

    rng = np.random.default_rng(0)
    n, t = 2000, 16
    wfc = np.stack([look_at(np.array([0.3 * np.sin(i), 0.2 * np.cos(i), 4.5 * i / (t - 1)]), np.array([0, 0, 8.0]))
                    for i in range(t)])
    X = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1, 1, n), rng.uniform(6, 7, n)], 1)
    cfw = np.linalg.inv(wfc)
    pc = np.einsum("tij,nj->tni", cfw[:, :3, :3], X) + cfw[:, None, :3, 3]
    xy = pc[..., :2] / pc[..., 2:] * 500 + [319.5, 239.5]
    cam = make_camera("PINHOLE", 640, 480, 500, colmap_pixels=False)
    err = {}
    for noise in (0.0, 0.5):
        obs = xy + rng.normal(0, noise, xy.shape)
        for it in (0, 3):
            tri = triangulate_tracks(obs, np.ones((t, n), bool), wfc, np.ones(t, bool), [cam], np.zeros(t, int),
                                     max_error=10, min_angle_deg=0, refine_iters=it)
            assert len(tri.points) == n
            err[noise, it] = np.linalg.norm(tri.points - X[tri.track_ids], axis=1) / np.linalg.norm(X, axis=1)
    assert err[0.0, 3].max() < 1e-9  # exact stays exact
    assert np.median(err[0.5, 3]) < 0.9 * np.median(err[0.5, 0])


# --------------------------------------------------------------------------- filters
def test_filters_remove_planted_outliers(world, caplog):
    scene, clip = world
    cfg = DensifyConfig(**dict(EXACT, chunk_size=4000))  # one chunk: the planted rows are known
    frame = int(spread_frames(np.arange(T), 3)[1])  # the middle query frame
    G = EXACT["grid_size"]
    rows = {"jump": [5 * G + 5, 5 * G + 15, 18 * G + 4], "far": [8 * G + 2, 20 * G + 20],
            "moving": [12 * G + 3, 3 * G + 20]}
    planted_xy: dict[str, np.ndarray] = {}

    def planted(c, q):
        tr = exact_track_fn(c, q)
        xy, wfc = tr.xy.copy(), _poses()
        on_frame = np.flatnonzero(q[:, 0] == frame)
        j, f, m = (on_frame[rows[k]] for k in ("jump", "far", "moving"))
        for k, idx in zip(rows, (j, f, m)):
            planted_xy[k] = q[idx, 1:]
        xy[frame + 2:, j] += [25.0, 0.0]  # jumps to other surface patches away from the query frame
        xy[:frame - 1, j] -= [0.0, 25.0]
        X = _world_of_pixels(wfc[frame], q[f, 1:])  # consistent, but so far away that the rays are parallel
        Xf = wfc[frame, :3, 3] + 1e5 * (X - wfc[frame, :3, 3])
        Xm = _world_of_pixels(wfc[frame], q[m, 1:])  # a point that moves in 3D
        for t in range(T):
            xy[t, f] = _project(wfc[t], Xf)[0]
            xy[t, m] = _project(wfc[t], Xm + (t - frame) * np.array([0.0, 0.08, 0.0]))[0]  # across the epipolar lines
        vis = tr.visible.copy()
        vis[:, np.concatenate([j, f, m])] = True
        return Tracks(xy, vis, vis.astype(np.float32), tr.queries, tr.frame_size)

    mask = np.zeros((T, H, W), bool)
    mask[:, 10:40, 100:140] = True  # "moving" pixels: no query, no observation there
    with caplog.at_level(logging.INFO, logger="cotracker3_plugin.reconstruct.densify"):
        cloud = densify(scene, clip, planted, cfg, exclude_mask=mask)
    s = cloud.stats
    assert s.excluded > 0
    xi, yi = np.rint(cloud.query_xy).astype(int).T
    assert not mask[cloud.query_frames, yi, xi].any()
    # No planted track gave a point, and every point is exact.
    from_frame = cloud.query_xy[cloud.query_frames == frame]
    for pts in planted_xy.values():
        assert not np.isclose(from_frame[:, None], pts[None]).all(-1).any()
    rel = np.linalg.norm(cloud.points - _truth(cloud), axis=1) / np.linalg.norm(_truth(cloud), axis=1)
    assert rel.max() <= 1e-6
    # Jumps fail the reprojection test, far points the angle; a moving point can fit a few views
    # near its query frame, and then floats off its neighbours' surface.
    assert s.reprojection >= len(rows["jump"]) and s.angle >= len(rows["far"])
    assert s.reprojection + s.neighbors >= len(rows["jump"]) + len(rows["moving"])
    assert s.excluded + s.visibility + s.reprojection + s.angle + s.neighbors + s.outliers == s.queries - len(cloud)
    assert "densify:" in caplog.text


def test_scene_moving_masks_are_the_default_exclusion(world):
    """Masks the reconstruction stored with the Scene (scene frames, scene image size) apply to the clip."""
    import copy

    scene, clip = world
    with_masks = copy.copy(scene)
    masks = np.zeros((T, *SCENE_HW), bool)
    masks[:, 20:80, 200:280] = True  # clip pixels 10..40 x 100..140
    with_masks.moving_masks = masks
    cloud = densify(with_masks, clip, exact_track_fn, DensifyConfig(**EXACT))
    xi, yi = np.rint(cloud.query_xy).astype(int).T
    assert cloud.stats.excluded > 0
    assert not ((xi >= 100) & (xi < 140) & (yi >= 10) & (yi < 40)).any()


def test_neighbor_check_drops_a_floating_point_keeps_planes_and_edges():
    yy, xx = np.mgrid[0:12, 0:12].astype(float)
    inv = 1.0 / (5.0 + 0.1 * xx + 0.05 * yy)  # a tilted plane
    inv[:, 8:] = 1.0 / (3.0 + 0.02 * yy[:, 8:])  # a nearer surface from column 8: an occlusion edge
    inv[4, 3] *= 1.1  # one point 10 % off its surface
    inv[10, 10] = np.nan  # a missing point
    passed, testable = neighbor_consistent(inv, tolerance=0.02)
    assert not passed[4, 3]
    assert passed[4, 1] and passed[4, 5]  # its neighbours still pass along other directions
    assert passed[2:10, 7].all() and passed[2:10, 8].all()  # both sides of the edge
    assert not testable[0, 0] and not passed[0, 0]  # a corner has no opposite pair
    assert not passed[10, 10]


def test_densify_rejects_bad_inputs(world):
    scene, clip = world
    with pytest.raises(UserError, match="grid_size"):
        densify(scene, clip, exact_track_fn, DensifyConfig(grid_size=1))
    with pytest.raises(UserError, match="exclude_mask"):
        densify(scene, clip, exact_track_fn, DensifyConfig(**EXACT), exclude_mask=np.zeros((T, 10, 10), bool))
    wide = Clip(np.zeros((T, H, 2 * W, 3), np.uint8))
    with pytest.raises(UserError, match="aspect"):
        densify(scene, wide, exact_track_fn, DensifyConfig(**EXACT))
    with pytest.raises(ValueError, match="klt"):
        make_track_fn("sift")
    with pytest.raises(UserError, match="max_depth_per_pixel"):
        densify(scene, clip, exact_track_fn, DensifyConfig(max_depth_per_pixel=0.0))
    from cotracker3_plugin.reconstruct.photometric import PhotometricConfig

    with pytest.raises(UserError, match="photometric sweep: min_score"):
        densify(scene, clip, exact_track_fn, DensifyConfig(photometric_sweep=PhotometricConfig(min_score=2.0)))


# --------------------------------------------------------------------------- outputs
def test_dense_ply_reads_in_open3d_and_in_nerfstudio(world, tmp_path):
    import open3d as o3d

    scene, clip = world
    cloud = densify(scene, clip, exact_track_fn, DensifyConfig(**EXACT))
    path = write_dense_ply(cloud, tmp_path / "dense_pc.ply")
    pcd = o3d.io.read_point_cloud(str(path))
    np.testing.assert_allclose(np.asarray(pcd.points), cloud.points, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.rint(np.asarray(pcd.colors) * 255).astype(np.uint8), cloud.colors)
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary left behind

    # nerfstudio reads transforms.json["ply_file_path"] with open3d, in the world after applied_transform.
    pytest.importorskip("nerfstudio.data.dataparsers.nerfstudio_dataparser")
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    applied = np.eye(4)[[0, 2, 1]][:3]
    applied[2] *= -1  # nerfstudio's colmap_to_json: world z up
    write_dense_ply(cloud, tmp_path / "ds" / "dense_pc.ply", transform=applied)
    k = _k_clip()
    import cv2

    (tmp_path / "ds" / "images").mkdir()
    frames = []
    for i in range(T):
        cv2.imwrite(str(tmp_path / "ds" / "images" / f"frame_{i + 1:05d}.png"), clip.frames[i][..., ::-1])
        c2w = scene.world_from_cam[i].copy()
        c2w[:3, 1:3] *= -1  # OpenCV -> OpenGL camera axes
        frames.append({"file_path": f"images/frame_{i + 1:05d}.png",
                       "transform_matrix": (np.vstack([applied, [0, 0, 0, 1]]) @ c2w).tolist()})
    (tmp_path / "ds" / "transforms.json").write_text(json.dumps({
        "w": W, "h": H, "fl_x": k[0, 0], "fl_y": k[1, 1], "cx": k[0, 2] + 0.5, "cy": k[1, 2] + 0.5,
        "camera_model": "OPENCV", "frames": frames, "applied_transform": applied.tolist(),
        "ply_file_path": "dense_pc.ply"}))
    parser = NerfstudioDataParserConfig(data=tmp_path / "ds", orientation_method="none", center_method="none",
                                        auto_scale_poses=False, load_3D_points=True, eval_mode="all").setup()
    meta = parser.get_dataparser_outputs("train").metadata
    got = meta["points3D_xyz"].numpy()
    np.testing.assert_allclose(got, cloud.points @ applied[:, :3].T + applied[:, 3], atol=1e-4)
    np.testing.assert_array_equal(meta["points3D_rgb"].numpy(), cloud.colors)


# --------------------------------------------------------------------------- real scene
def _gt_scene(gt: dict, clip: Clip) -> Scene:
    t = clip.num_frames
    return Scene(intrinsics=gt["K"][None], image_size=clip.frame_size, camera_index=np.zeros(t, np.int64),
                 world_from_cam=gt["cam_to_world"], registered=np.ones(t, bool), points=np.zeros((0, 3)),
                 colors=np.zeros((0, 3), np.uint8), track_ids=np.zeros(0, np.int64))


def depth_errors(cloud: DenseCloud, gt: dict) -> np.ndarray:
    from cotracker3_plugin.evaluate.dense_depth import depth_errors as errors

    return errors(cloud.points, cloud.query_frames, gt["K"], gt["cam_to_world"], gt["depth"])


def _load_room(data_dir, name: str) -> tuple[dict, Clip]:
    from cotracker3_plugin.io import load_clip

    folder = data_dir / "scenes" / name
    with np.load(folder / "gt.npz") as z:
        gt = {k: z[k] for k in z.files}
    return gt, load_clip(folder / "video.mp4")


def test_static_room_klt_points_match_the_rendered_depth(data_dir):
    gt, clip = _load_room(data_dir, "static_room")
    scene, track = _gt_scene(gt, clip), make_track_fn("klt")
    start = time.perf_counter()
    cloud = densify(scene, clip, track, DensifyConfig(grid_size=32, num_query_frames=4))
    assert time.perf_counter() - start < 60
    err = depth_errors(cloud, gt)
    # Measured (KLT, 9 px window, photometric sweep): 2 200 points, median 0.24 % of the path radius, 95 %
    # within 2 %. Without the sweep (below): 2 570 points, median 0.96 %, 75 %: KLT's drift on these blurred
    # textures (median 0.5 px 20 frames from the query) goes straight into the depth.
    assert len(cloud) > 1800
    assert np.median(err) <= 0.004
    assert np.mean(err <= 0.02) >= 0.9
    raw = densify(scene, clip, track, DensifyConfig(grid_size=32, num_query_frames=4, photometric=False))
    raw_err = depth_errors(raw, gt)
    assert np.median(raw_err) >= 2.5 * np.median(err)
    assert cloud.stats.refined > len(cloud) and raw.stats.refined == 0


@pytest.mark.slow
def test_static_room_dense_goal_at_grid_128(data_dir):
    """The dense-cloud goal on static_room: >= 50 000 points, median depth error <= 0.5 % of the path radius,
    >= 90 % within 2 % (KLT, as `cotracker3 run` densifies with the bundled model; about 45 s on 2 CPU cores;
    measured 73 k points, 0.33 %, 92 %)."""
    gt, clip = _load_room(data_dir, "static_room")
    cloud = densify(_gt_scene(gt, clip), clip, make_track_fn("klt"), DensifyConfig(grid_size=128))
    err = depth_errors(cloud, gt)
    assert len(cloud) >= 50_000
    assert np.median(err) <= 0.005
    assert np.mean(err <= 0.02) >= 0.9


@pytest.mark.slow
def test_static_room_bundled_model_default_grid(data_dir):
    """The bundled network itself tracking the default grid (about 2 h on 2 CPU cores; not run in the sessions
    that added the photometric sweep, so its bounds are the pre-sweep ones)."""
    import torch

    from cotracker3_plugin.weights import load_model

    gt, clip = _load_room(data_dir, "static_room")
    model = load_model(None, device="cuda" if torch.cuda.is_available() else "cpu")
    cloud = densify(_gt_scene(gt, clip), clip, make_track_fn(model), DensifyConfig())
    err = depth_errors(cloud, gt)
    assert len(cloud) >= 30_000
    assert np.median(err) <= 0.02
    assert np.mean(err <= 0.02) >= 0.5
