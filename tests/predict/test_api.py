"""track() / OnlineSession behaviour: inputs, validation, rules, streaming, long clips, dense."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from predict_helpers import ConstantVelocityModel

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline
from cotracker3_plugin.predict import OnlineSession, track
from cotracker3_plugin.predict.long import window_starts

RES = (64, 96)  # the tiny networks run at a small model resolution (fast)


def tiny(online: bool):
    cfg = dataclasses.replace(CoTrackerConfig.small(online=online), model_resolution=RES)
    torch.manual_seed(0)
    return (CoTrackerThreeOnline if online else CoTrackerThreeOffline)(cfg).eval()


@pytest.fixture(scope="module")
def offline_model():
    return tiny(False)


@pytest.fixture(scope="module")
def online_model():
    return tiny(True)


@pytest.fixture(scope="module")
def video():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    # a texture shifting right by one pixel per frame
    return np.stack([np.roll(base, t, axis=1) for t in range(20)])


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, match", [
    ({"queries": [[0, 10, 10], [20, 10, 10]]}, "frame 20"),
    ({"queries": [[0, 100, 10]]}, "outside"),
    ({"queries": [[0, 10, -3]]}, "outside"),
    ({"queries": np.zeros((0, 3))}, "empty"),
    ({"queries": [[0, 1]]}, r"\(N, 3\)"),
    ({"queries": [[0, np.nan, 1]]}, "NaN"),
    ({"grid_size": 0}, "grid_size"),
    ({"grid_query_frame": 20}, "grid_query_frame"),
    ({"segm_mask": np.ones((10, 10))}, "segm_mask"),
    ({"segm_mask": np.zeros((60, 80))}, "inside segm_mask"),
    ({"rule": "strict"}, "rule"),
    ({"window": 8, "overlap": 8}, "overlap"),
    ({"dense": True, "queries": [[0, 1, 1]]}, "dense"),
])
def test_bad_inputs_raise_user_error(video, kwargs, match):
    model = ConstantVelocityModel()
    with pytest.raises(UserError, match=match):
        track(video, model, **kwargs)


def test_bad_videos_raise_user_error():
    model = ConstantVelocityModel()
    with pytest.raises(UserError, match="no frames"):
        track(np.zeros((0, 8, 8, 3), np.uint8), model)
    with pytest.raises(UserError, match="uint8"):
        track(np.zeros((2, 8, 8, 3), np.float32), model)
    with pytest.raises(UserError, match="batch size"):
        track(torch.zeros(2, 3, 3, 8, 8), model)
    with pytest.raises(UserError, match=r"\(T, H, W, 3\)"):
        track(np.zeros((8, 8, 3), np.uint8), model)
    with pytest.raises(UserError, match="window"):
        track(np.zeros((4, 8, 8, 3), np.uint8), ConstantVelocityModel(online=True), window=8)


# ---------------------------------------------------------------- known answers (oracle model)
def test_grid_tracks_and_package_rule(video):
    model = ConstantVelocityModel(velocity=(2.0, 1.0), prob=0.7)  # conf*vis = 0.49 < 0.6
    tr = track(video, model, grid_size=3, grid_query_frame=4)
    h, w = video.shape[1:3]
    sx, sy = (w - 1) / (128 - 1), (h - 1) / (96 - 1)  # the oracle's model resolution
    t = np.arange(len(video))[:, None]
    expect_x = tr.queries[None, :, 1] + 2.0 * sx * (t - 4)
    expect_y = tr.queries[None, :, 2] + 1.0 * sy * (t - 4)
    np.testing.assert_allclose(tr.xy[..., 0], expect_x, atol=1e-3)
    np.testing.assert_allclose(tr.xy[..., 1], expect_y, atol=1e-3)
    # grid: width/64 margin in model space, mapped back to input pixels
    np.testing.assert_allclose(tr.queries[:3, 1], np.array([2, 64, 126]) * sx, atol=1e-4)
    assert (tr.queries[:, 0] == 4).all()
    np.testing.assert_allclose(tr.confidence[3], 0.49, atol=1e-6)
    assert tr.visible[4].all() and not tr.visible[3].any()  # only the query frame is forced
    assert (tr.confidence[4] == 1).all()
    official = track(video, ConstantVelocityModel(prob=0.95), grid_size=3, rule="official")
    assert official.visible.all()  # vis 0.95 > 0.9 although vis*conf = 0.9025


def test_input_types_agree(video, offline_model):
    q = np.array([[0, 10.0, 20.0], [5, 40.0, 30.0]], np.float32)
    a = track(video, offline_model, queries=q, iters=1)
    b = track(Clip(video), offline_model, queries=q, iters=1)
    c = track(torch.from_numpy(video).permute(0, 3, 1, 2)[None].float(), offline_model,
              queries=torch.from_numpy(q)[None], iters=1)
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_allclose(a.xy, c.xy, atol=1e-4)
    assert a.xy.shape == (20, 2, 2) and a.frame_size == (60, 80)
    np.testing.assert_allclose(a.xy[[0, 5], [0, 1]], q[:, 1:], atol=1e-4)  # query points forced


def test_dense_covers_every_pixel_once():
    video = np.zeros((3, 12, 170, 3), np.uint8)  # W // 80 = 2: 4 chunks of 85 x 6 points
    model = ConstantVelocityModel(velocity=(0.0, 0.0))
    tr = track(video, model, dense=True, grid_query_frame=1)
    assert len(model.lengths) == 4 and tr.num_points == 170 * 12
    pix = set(map(tuple, tr.queries[:, 1:].astype(int).tolist()))
    assert len(pix) == 170 * 12 and (tr.queries[:, 0] == 1).all()
    np.testing.assert_allclose(tr.xy[1], tr.queries[:, 1:], atol=1e-3)


# ---------------------------------------------------------------- long clips (windows)
def test_window_starts():
    assert window_starts(50, 60, 15) == [0]
    assert window_starts(100, 40, 10) == [0, 30, 60]
    assert window_starts(101, 40, 10) == [0, 30, 60, 61]


def test_windowed_offline_stitches_hand_overs_exactly():
    rng = np.random.default_rng(1)
    video = rng.integers(0, 255, (100, 48, 64, 3), dtype=np.uint8)
    model = ConstantVelocityModel(velocity=(0.25, 0.1))
    q = np.array([[0, 5.0, 5.0], [37, 30.0, 20.0], [95, 60.0, 40.0]], np.float32)
    full = track(video, ConstantVelocityModel(velocity=(0.25, 0.1)), queries=q)
    win = track(video, model, queries=q, window=24, overlap=6)
    assert max(model.lengths) == 24  # never more than a window of frames at once
    # hand-over re-anchors each track on its own estimate: same answer as one big window
    for i, t0 in enumerate([0, 18, 72]):  # first frame of the window holding each query
        np.testing.assert_allclose(win.xy[t0:, i], full.xy[t0:, i], atol=1e-3)
        assert (win.confidence[:t0, i] == 0).all()
    back = track(video, ConstantVelocityModel(velocity=(0.25, 0.1)), queries=q, window=24,
                 overlap=6, backward_tracking=True)
    full_back = track(video, ConstantVelocityModel(velocity=(0.25, 0.1)), queries=q,
                      backward_tracking=True)
    np.testing.assert_allclose(back.xy, full_back.xy, atol=1e-3)  # reversed pass fills the start
    assert (back.confidence > 0).all()


def test_window_larger_than_clip_is_the_plain_offline_run(video, offline_model):
    a = track(video, offline_model, grid_size=3, iters=1)
    b = track(video, offline_model, grid_size=3, iters=1, window=60)
    np.testing.assert_array_equal(a.xy, b.xy)


# ---------------------------------------------------------------- online session
def test_session_equals_track_for_any_chunking(video, online_model):
    q = np.array([[0, 10.0, 20.0], [9, 40.0, 30.0]], np.float32)
    ref = track(video, online_model, queries=q, iters=1)
    for chunk in (1, 7):
        s = OnlineSession(online_model, queries=q, iters=1)
        for a in range(0, len(video), chunk):
            s.push(video[a:a + chunk])
        out = s.finish()
        np.testing.assert_array_equal(out.xy, ref.xy)
        np.testing.assert_array_equal(out.visible, ref.visible)
    # the package rule: nothing is known before the query frame of the online model
    assert (ref.confidence[:9, 1] == 0).all() and ref.visible[9, 1] and ref.confidence[9, 1] == 1


def test_session_add_queries(video, online_model):
    q = np.array([[0, 10.0, 20.0]], np.float32)
    extra = np.array([[17, 50.0, 30.0]], np.float32)
    # before any model call adding equals declaring at creation
    s = OnlineSession(online_model, queries=q, iters=1)
    s.push(video[:5])
    s.add_queries(extra)
    s.push(video[5:])
    ref = track(video, online_model, queries=np.concatenate([q, extra]), iters=1)
    np.testing.assert_array_equal(s.finish().xy, ref.xy)
    # later: the model's streaming buffers grow; earlier frames of the new point are unknown
    s = OnlineSession(online_model, queries=q, iters=1)
    first = s.push(video[:16])
    assert first.num_frames == 8
    with pytest.raises(UserError, match="frame >= 16"):
        s.add_queries([[10, 5.0, 5.0]])
    s.add_queries(extra)
    s.push(video[16:])
    out = s.finish()
    assert out.xy.shape == (20, 2, 2)
    np.testing.assert_allclose(out.xy[17, 1], extra[0, 1:], atol=1e-4)
    assert (out.confidence[:17, 1] == 0).all() and out.visible[17, 1]
    np.testing.assert_array_equal(out.xy[:8, 0], first.xy[:, 0])
    s.reset()
    with pytest.raises(UserError, match="no frames"):
        s.finish()


def test_session_rejects_offline_model_and_size_change(video, offline_model, online_model):
    with pytest.raises(UserError, match="not an online model"):
        OnlineSession(offline_model)
    s = OnlineSession(online_model, grid_size=2, iters=1)
    s.push(video[:3])
    with pytest.raises(UserError, match="frame size changed"):
        s.push(video[:2, :30])
