"""TAP-Vid readers (all official layouts), query protocols and the evaluation runner."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
import torch

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.evaluate.runner import ModelTracker, evaluate_tapvid, support_grid
from cotracker3_plugin.evaluate.tapvid import iter_tapvid, make_sample


def _entry(T=10, H=64, W=80, N=4, jpeg=False, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (T, 6, 8, 3), dtype=np.uint8)  # smooth: JPEG keeps it close
    video = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_CUBIC) for f in small])
    points = rng.uniform(0, 1, (N, T, 2))
    occluded = np.zeros((N, T), bool)
    occluded[0, :3] = True  # first visible at t=3
    occluded[1, :] = True  # never visible: dropped in "first" mode
    occluded[2, 5] = True  # occluded at a stride frame
    if jpeg:
        video = [cv2.imencode(".jpg", f[..., ::-1])[1].tobytes() for f in video]
    return {"video": video, "points": points, "occluded": occluded}


def test_first_and_strided_queries():
    e = _entry()
    s = make_sample("v", e, "first")
    assert s.video.shape == (10, 256, 256, 3) and s.video.dtype == np.uint8
    assert s.query_points.shape == (3, 3)  # track 1 dropped
    np.testing.assert_array_equal(s.query_points[:, 0], [3, 0, 0])
    # (t, y, x) order and the ×(256−1) scaling
    np.testing.assert_allclose(s.query_points[0, 1:], e["points"][0, 3, ::-1] * 255)
    np.testing.assert_allclose(s.queries_txy[0], [3, *(e["points"][0, 3] * 255)])
    np.testing.assert_allclose(s.target_points[1], e["points"][2] * 255)
    st = make_sample("v", e, "strided")
    # frame 0: tracks 2, 3 (track 0 occluded); frame 5: tracks 0, 3 (track 2 occluded)
    np.testing.assert_array_equal(st.query_points[:, 0], [0, 0, 5, 5])
    np.testing.assert_allclose(st.target_points[2], e["points"][0] * 255)
    with pytest.raises(UserError):
        make_sample("v", e, "middle")


def test_pickle_layouts(tmp_path):
    davis = {"bear": _entry(jpeg=True), "cows": _entry(seed=1)}
    (tmp_path / "davis.pkl").write_bytes(pickle.dumps(davis))
    (tmp_path / "stacking.pkl").write_bytes(pickle.dumps([_entry(seed=2), _entry(seed=3)]))
    kin = tmp_path / "kinetics"
    kin.mkdir()
    for i in range(2):
        (kin / f"{i:04d}_of_0010.pkl").write_bytes(pickle.dumps([_entry(seed=10 + i)] * 2))
    robo = tmp_path / "robotap"
    robo.mkdir()
    (robo / "robotap_split0.pkl").write_bytes(pickle.dumps({"a": _entry(seed=4)}))

    d = list(iter_tapvid(tmp_path / "davis.pkl"))
    assert [s.name for s in d] == ["bear", "cows"]
    # JPEG bytes decode (lossy) close to the array
    ref = make_sample("x", _entry(), "first").video.astype(int)
    assert np.abs(d[0].video.astype(int) - ref).mean() < 3
    assert [s.name for s in iter_tapvid(tmp_path / "stacking.pkl")] == ["0", "1"]
    assert [s.name for s in iter_tapvid(kin)] == ["0", "1", "2", "3"]
    assert [s.name for s in iter_tapvid(robo, "strided")] == ["a"]
    assert len(list(iter_tapvid(kin, max_videos=3))) == 3
    with pytest.raises(UserError):
        list(iter_tapvid(tmp_path / "missing.pkl"))
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UserError):
        list(iter_tapvid(tmp_path / "bad.pkl"))


class _StaticModel(torch.nn.Module):
    """Predicts every point standing still at its query position; records its calls."""

    model_resolution = (384, 512)
    window_len = 16

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def _out(self, T, queries):
        B, N, _ = queries.shape
        coords = queries[:, None, :, 1:].expand(B, T, N, 2).clone()
        ones = torch.ones(B, T, N)
        return coords, ones * 0.9, ones * 0.9, None

    def forward(self, video, queries, iters=4, is_train=False):
        self.calls.append((tuple(video.shape), queries.shape[1], iters))
        return self._out(video.shape[1], queries)


class _StaticOnline(_StaticModel):
    def init_video_online_processing(self):
        self.calls.append("init")
        self.seen = 0

    def forward(self, video, queries, iters=4, is_train=False, is_online=False):
        self.calls.append((tuple(video.shape), queries.shape[1], is_online))
        self.seen = self.seen + 8 if self.seen else video.shape[1]
        return self._out(min(self.seen, 21) if is_online else video.shape[1], queries)


def test_support_grid_matches_official_formula():
    g = support_grid(5, (384, 512))
    assert g.shape == (25, 2)
    np.testing.assert_allclose(g[:5, 0], np.linspace(8, 504, 5))
    np.testing.assert_allclose(g[::5, 1], np.linspace(8, 376, 5))


def test_runner_protocols_on_static_scene():
    T, N = 21, 6
    rng = np.random.default_rng(0)
    video = np.repeat(rng.integers(0, 255, (1, 256, 256, 3), dtype=np.uint8), T, 0)
    pts = np.repeat(rng.uniform(0, 255, (N, 1, 2)), T, 1)
    occ = np.zeros((N, T), bool)
    occ[0, 10:] = True
    from cotracker3_plugin.evaluate.tapvid import TapVidSample, sample_queries_first

    q, p, o = sample_queries_first(occ, pts)
    sample = TapVidSample("static", video, q, p, o)

    offline = _StaticModel()
    res = evaluate_tapvid([sample], ModelTracker(offline), "first")
    # joint protocol: one model call at 384×512, N + 25 support points, 6 iterations
    assert offline.calls == [((1, T, 3, 384, 512), N + 25, 6)]
    m = res["mean"]
    assert m["average_pts_within_thresh"] == pytest.approx(1.0)
    # track 0 predicted visible (0.81 > 0.6) while occluded from t=10: 11 false positives
    evaluated = (T - 1) * N
    assert m["occlusion_accuracy"] == pytest.approx(1 - 11 / evaluated)
    assert m["average_jaccard"] == pytest.approx((evaluated - 11) / evaluated)
    assert res["num_videos"] == 1 and res["per_video"]["static"]["num_queries"] == N

    online = _StaticOnline()
    res = evaluate_tapvid([sample], ModelTracker(online), "first")
    # chunks [0,16), [8,24) for T = 21, no support grid, streaming mode
    assert online.calls == ["init", ((1, 16, 3, 384, 512), N, True), ((1, 13, 3, 384, 512), N, True)]
    assert res["mean"]["average_pts_within_thresh"] == pytest.approx(1.0)


def test_strided_backward_rule():
    T = 6
    video = np.zeros((T, 256, 256, 3), np.uint8)
    from cotracker3_plugin.evaluate.tapvid import TapVidSample

    sample = TapVidSample("z", video, np.array([[2.0, 50.0, 40.0]]), np.full((1, T, 2), [40.0, 50.0]),
                          np.zeros((1, T), bool))

    def forward(frames, queries):  # writes zeros before the query frame, as a causal tracker would
        xy = np.zeros((T, 1, 2))
        xy[2:] = queries[0, 1:]
        return xy, np.arange(T)[:, None] >= 2

    def backward(frames, queries):
        assert queries[0, 0] == T - 1 - 2  # time-reversed query
        return np.full((T, 1, 2), queries[0, 1:]), np.ones((T, 1), bool)

    res = evaluate_tapvid([sample], forward, "strided", backward_tracker=backward)["mean"]
    assert res["average_pts_within_thresh"] == 1.0 and res["occlusion_accuracy"] == 1.0
    res = evaluate_tapvid([sample], forward, "strided")["mean"]
    assert res["pts_within_16"] == pytest.approx(3 / 5)
