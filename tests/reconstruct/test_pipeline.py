"""End to end on synthetic tracks: known cameras, 1 px noise, 10% moving points."""

import numpy as np
import pytest

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct import ReconstructConfig, reconstruct, reconstruct_detailed
from cotracker3_plugin.reconstruct.align import compare_poses
from cotracker3_plugin.reconstruct.synthetic import make_synthetic_scene

T, N = 24, 300


@pytest.fixture(scope="module")
def synthetic():
    s = make_synthetic_scene(T, N, noise_px=1.0, moving_fraction=0.1, seed=0)
    # Frames 20-23 see nothing usable: they must come back unregistered.
    s.tracks.visible[20:] = False
    frames = np.zeros((T, *s.tracks.frame_size, 3), dtype=np.uint8)
    frames[..., 0] = 200  # red scene: colours come from the clip
    result = reconstruct_detailed(s.tracks, Clip(frames), ReconstructConfig(num_threads=2))
    return s, result


def test_poses_within_half_degree_and_one_percent(synthetic):
    s, res = synthetic
    e = compare_poses(res.scene.world_from_cam, s.world_from_cam, res.scene.registered)
    assert e.num_registered == 20
    assert e.rotation_error_max_deg < 0.5, e
    assert e.ate_relative < 0.01, e
    # No metadata: the focal length is self-calibrated (then refined) to the true 600.
    assert res.report.focal_prior == "self-calibrated" and res.report.calibration["determined"]
    assert res.report.calibration["focal"] == pytest.approx(600, rel=0.02)
    assert res.scene.intrinsics[0, 0, 0] == pytest.approx(600, rel=0.01)


def test_unregistered_frames_reported(synthetic):
    _, res = synthetic
    sc = res.scene
    assert res.report.unregistered_frames == [20, 21, 22, 23]
    assert not sc.registered[20:].any() and np.isnan(sc.world_from_cam[20:]).all()
    assert res.report.frames_registered == 20 == sc.num_registered


def test_moving_tracks_rejected_and_points_accurate(synthetic):
    s, res = synthetic
    sc = res.scene
    assert res.report.tracks_moving >= 0.9 * s.moving.sum()
    src = res.source_track[sc.track_ids]  # the input track of each point
    assert (src >= 0).all() and s.moving[src].sum() <= 1
    assert len(sc.points) > 0.8 * (~s.moving).sum()
    e = compare_poses(sc.world_from_cam, s.world_from_cam, sc.registered)
    err = np.linalg.norm(e.similarity.apply(sc.points) - s.points[src], axis=1)
    # Scene ~4 units across; with 1 px noise focal and k1 trade off against depth a little
    # (true poses give 0.009 here).
    assert np.median(err) < 0.05
    assert np.all(sc.colors == [200, 0, 0])
    assert sc.point_errors.mean() < 2.0 and res.report.mean_reprojection_error < 2.0
    assert set(res.report.runtime_s) == {"correspondences", "sift", "motion", "keyframes", "calibration", "mapping",
                                         "triangulation", "bundle_adjustment", "triangulation_final",
                                         "photometric_refinement", "motion_final", "cleanup"}
    # Moving tracks are flagged on the result's tracks; the masks cover their pixels.
    assert res.tracks.dynamic is not None and res.input_dynamic[s.moving].mean() > 0.9
    assert res.moving_masks.shape == (T, *s.tracks.frame_size) and res.scene.moving_masks is not None


def test_too_few_tracks_is_a_user_error():
    s = make_synthetic_scene(5, 6)
    with pytest.raises(UserError, match="at least 2 frames and 8 tracks"):
        reconstruct(s.tracks)
    frames = np.zeros((3, *s.tracks.frame_size, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="clip has 3 frames"):
        reconstruct(make_synthetic_scene(5, 20).tracks, Clip(frames))


@pytest.mark.slow
def test_global_mapper_and_subsampling():
    s = make_synthetic_scene(40, 300, noise_px=1.0, seed=2)
    cfg = ReconstructConfig(mapper="global", max_frames=14, num_threads=2)
    res = reconstruct_detailed(s.tracks, None, cfg)
    assert res.report.frames_mapped == 14
    e = compare_poses(res.scene.world_from_cam, s.world_from_cam, res.scene.registered)
    assert e.num_registered == 40  # the skipped frames get poses from the points
    assert e.rotation_error_max_deg < 0.5 and e.ate_relative < 0.01
    assert np.all(res.scene.colors == 128)


def test_pure_rotation_gives_no_poses_rather_than_wrong_ones():
    # A camera turning on the spot: no parallax, no structure from motion.
    from cotracker3_plugin.tracks import Tracks

    rng = np.random.default_rng(6)
    T, n, f = 12, 300, 500.0
    pts = rng.uniform([-6, -3, 5], [6, 3, 10], (n, 3))
    yaw = np.radians(np.linspace(-8, 8, T))
    R = np.stack([[[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]] for a in yaw])  # cam_from_world
    pc = np.einsum("tij,nj->tni", R, pts)
    xy = f * pc[..., :2] / pc[..., 2:] + [319.5, 239.5] + rng.normal(0, 0.5, (T, n, 2))
    vis = (xy[..., 0] > 0) & (xy[..., 0] < 639) & (xy[..., 1] > 0) & (xy[..., 1] < 479)
    tracks = Tracks(xy, vis, vis.astype(np.float32), np.zeros((n, 3)), (480, 640))
    res = reconstruct_detailed(tracks, None, ReconstructConfig(num_threads=2, max_mapping_seconds=60))
    sc = res.scene
    assert sc.num_registered == 0 and res.report.unregistered_frames == list(range(T))
    assert len(sc.points) == 0
    assert res.report.no_parallax and "no 3D can be had from this video" in res.report.failure


def test_refine_tracks_needs_the_clip(synthetic):
    s, _ = synthetic
    with pytest.raises(UserError, match="refine-tracks needs the video"):
        reconstruct(s.tracks, None, ReconstructConfig(refine_tracks=True))


def test_focal_prior_from_exif_of_the_image_folder(synthetic, tmp_path):
    from PIL import Image

    s, res = synthetic
    assert res.report.focal_prior == "self-calibrated"  # a clip without a source
    h, w = s.tracks.frame_size
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 24  # FocalLengthIn35mmFilm: 24 / 43.27 * 800 = 444 px
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "0000.jpg", exif=exif)
    clip = Clip(np.zeros((T, h, w, 3), np.uint8), source=tmp_path)
    with_exif = reconstruct_detailed(s.tracks, clip, ReconstructConfig(num_threads=2)).report
    assert with_exif.focal_prior.startswith("EXIF FocalLengthIn35mmFilm 24 mm")
    assert with_exif.focal == pytest.approx(600, rel=0.01)  # a prior, still refined to the true focal
    off = reconstruct_detailed(s.tracks, clip, ReconstructConfig(num_threads=2, metadata_focal=False)).report
    assert off.focal_prior == "self-calibrated"


def test_refine_tracks_auto_is_on_for_bundled_model_tracks_only(synthetic, monkeypatch):
    import dataclasses

    from cotracker3_plugin.reconstruct import pipeline

    s, _ = synthetic
    calls = []
    monkeypatch.setattr(pipeline, "refine_observations",
                        lambda tracks, frames, usable: calls.append(1) or (tracks.xy, usable))
    clip = Clip(np.zeros((T, *s.tracks.frame_size, 3), np.uint8))
    bundled = dataclasses.replace(s.tracks, meta={"model": "bundled default"})
    cfg = ReconstructConfig(num_threads=2)
    assert reconstruct_detailed(bundled, clip, cfg).report.tracks_refined and len(calls) == 1
    assert not reconstruct_detailed(bundled, None, cfg).report.tracks_refined  # no frames: skipped
    official = dataclasses.replace(s.tracks, meta={"model": "cotracker3_offline"})
    assert not reconstruct_detailed(official, clip, cfg).report.tracks_refined
    assert reconstruct_detailed(official, clip, dataclasses.replace(cfg, refine_tracks=True)).report.tracks_refined
    assert len(calls) == 2
