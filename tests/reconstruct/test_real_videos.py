"""Reconstruction on real videos of ../shared/data with KLT tracks (no model weights needed)."""

import numpy as np

from cotracker3_plugin.evaluate.klt import klt_video_tracks
from cotracker3_plugin.io.video import read_video
from cotracker3_plugin.reconstruct import ReconstructConfig, reconstruct_detailed
from cotracker3_plugin.reconstruct.align import rotation_angle_deg
from cotracker3_plugin.tracks import Tracks


def _klt(frames: np.ndarray) -> Tracks:
    xy, vis, queries = klt_video_tracks(frames)
    return Tracks(xy, vis, vis.astype(np.float32), queries.astype(np.float32), frames.shape[1:3])


def test_panning_shot_with_a_big_moving_subject_maps_with_the_camera_fixed(data_dir):
    # DAVIS bear: the camera follows a walking bear, turning ~4 degrees and moving a little. A free
    # camera runs away (COLMAP's own SIFT pipeline registers 10/41 frames and no point here); the
    # retry with a fixed pinhole camera must register every frame along a smooth path.
    clip = read_video(data_dir / "videos" / "bear.mp4", stride=2, max_side=480)
    res = reconstruct_detailed(_klt(clip.frames), clip, ReconstructConfig(num_threads=2))
    rep, sc = res.report, res.scene
    assert "camera fixed" in rep.camera_fixed and not rep.camera_implausible
    assert rep.frames_registered == clip.num_frames == 41
    assert rep.points > 500 and rep.mean_reprojection_error < 1.0
    wfc = sc.world_from_cam
    turn = rotation_angle_deg(np.einsum("tji,tjk->tik", wfc[:-1, :3, :3], wfc[1:, :3, :3]))
    assert turn.max() < 1.0, turn  # frame-to-frame: a smooth pan, no flips
    steps = np.linalg.norm(np.diff(wfc[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 5 * np.median(steps), steps  # no jumps in the camera path


def test_parallax_share_tells_turning_from_moving_cameras():
    # The retry with a fixed camera is only tried when the tracks show parallax (test_pipeline
    # checks that a turning camera still gets no poses).
    from cotracker3_plugin.reconstruct.correspondences import parallax_share

    rng = np.random.default_rng(0)
    T, n, f = 12, 300, 500.0
    pts = rng.uniform([-6, -3, 5], [6, 3, 10], (n, 3))
    yaw = np.radians(np.linspace(-8, 8, T))
    R = np.stack([[[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]] for a in yaw])
    pc = np.einsum("tij,nj->tni", R, pts)
    xy = f * pc[..., :2] / pc[..., 2:] + [319.5, 239.5] + rng.normal(0, 0.5, (T, n, 2))
    vis = (xy[..., 0] > 0) & (xy[..., 0] < 639) & (xy[..., 1] > 0) & (xy[..., 1] < 479)
    assert parallax_share(xy, vis) < 0.005
    # The same points seen from a camera that also moves sideways: parallax.
    shift = np.linspace(-1.5, 1.5, T)[:, None, None] * np.array([1.0, 0, 0])
    pc2 = np.einsum("tij,nj->tni", R, pts) - shift
    xy2 = f * pc2[..., :2] / pc2[..., 2:] + [319.5, 239.5]
    vis2 = (xy2[..., 0] > 0) & (xy2[..., 0] < 639) & (xy2[..., 1] > 0) & (xy2[..., 1] < 479)
    assert parallax_share(xy2, vis2) > 0.2


def test_fixed_camera_retry_finds_the_phone_focal_length_on_fox(data_dir, monkeypatch):
    # fox has reference poses and a free camera that works (0.4% ATE). Make the free camera fail
    # to check the fallback on real footage: the focal it picks by reprojection error must be the
    # nearest of its candidates to the reference (688 px at 540x960) and the poses close to it.
    import json

    import cv2

    from cotracker3_plugin.reconstruct import pipeline
    from cotracker3_plugin.reconstruct.align import compare_poses, opengl_to_opencv

    meta = json.loads((data_dir / "fox" / "transforms.json").read_text())
    frames = sorted(meta["frames"], key=lambda f: f["file_path"])
    images = np.stack([cv2.cvtColor(cv2.resize(cv2.imread(str(data_dir / "fox" / f["file_path"])), (270, 480),
                                               interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for f in frames])
    ref = opengl_to_opencv(np.array([f["transform_matrix"] for f in frames], dtype=np.float64))
    true_focal = meta["fl_x"] * 270 / meta["w"]

    free_failure = pipeline._mapping_failure
    calls = []

    def first_fails(m, frame_size):
        calls.append(1)
        return "the free camera was made to fail" if len(calls) == 1 else free_failure(m, frame_size)

    monkeypatch.setattr(pipeline, "_mapping_failure", first_fails)
    res = reconstruct_detailed(_klt(images), None, ReconstructConfig(num_threads=2))
    assert res.report.camera_fixed.startswith("the free camera was made to fail")
    candidates = [k * 480 for k in pipeline.RETRY_FOCALS]
    assert res.report.focal == min(candidates, key=lambda f: abs(f - true_focal))
    e = compare_poses(res.scene.world_from_cam, ref)
    assert res.report.frames_registered == 50
    assert e.ate_relative < 0.015 and e.rotation_error_mean_deg < 1.5, e
