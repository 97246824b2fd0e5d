"""KLT baseline and BADJA scoring."""

from __future__ import annotations

import numpy as np
import pytest

from cotracker3_plugin.evaluate.badja import load_badja, score_badja
from cotracker3_plugin.evaluate.klt import KLTTracker, klt_track


def _textured_shift_video(T=8, H=96, W=128, shift=(1.5, -0.75)):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (H // 4 + 8, W // 4 + 8), dtype=np.uint8)
    import cv2

    tex = cv2.resize(big, ((W // 4 + 8) * 4, (H // 4 + 8) * 4), interpolation=cv2.INTER_CUBIC)
    frames = []
    for t in range(T):
        M = np.float32([[1, 0, 10 + shift[0] * t], [0, 1, 10 + shift[1] * t]])
        # frame(x) = tex(x - offset): content moves by +shift per frame
        frames.append(cv2.warpAffine(tex, M, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    frames = np.stack(frames)
    return np.repeat(frames[..., None], 3, axis=-1)


def test_klt_recovers_known_translation():
    shift = np.array([1.5, -0.75])
    frames = _textured_shift_video(shift=-shift)  # inverse map: content moves by +shift
    queries = np.array([[0, 40.0, 50.0], [3, 60.0, 40.0], [7, 80.0, 30.0]])
    xy, vis = klt_track(frames, queries)
    assert xy.shape == (8, 3, 2) and vis.shape == (8, 3)
    t = np.arange(8)[:, None, None]
    expected = queries[None, :, 1:] + (t - queries[None, :, :1]) * shift
    assert np.abs(xy - expected).max() < 0.1  # forward and backward in time
    assert vis.all()
    # at the query frame: exactly the query
    assert np.allclose(xy[3, 1], [60.0, 40.0]) and np.allclose(xy[7, 2], [80.0, 30.0])


def test_score_badja_known_answers(data_dir):
    seq = load_badja("dog", data_dir / "tracks" / "badja")
    assert seq.frames.shape == (60, 480, 854, 3)
    gt_xy = np.nan_to_num(seq.points).transpose(1, 0, 2)
    perfect = score_badja(seq, gt_xy, np.ones(gt_xy.shape[:2], bool))
    assert perfect["average_pts_within_thresh"] == 1.0 and perfect["median_error_px"] == 0.0
    assert perfect["visible_recall"] == 1.0 and perfect["num_scored"] == 191 - 20
    # 3 px in x at 854 wide is 3 * 255/853 = 0.897 px at 256: within 1, 2, 4 ...
    shifted = score_badja(seq, gt_xy + np.array([3.0, 0.0]))
    assert shifted["pts_within_1"] == 1.0 and shifted["median_error_px"] == pytest.approx(3.0)
    shifted = score_badja(seq, gt_xy + np.array([4.0, 0.0]))  # 1.196 px at 256
    assert shifted["pts_within_1"] == 0.0 and shifted["average_pts_within_thresh"] == pytest.approx(0.8)


def test_klt_on_badja_dog_matches_reference(data_dir):
    # data/README.md: KLT δ_avg dog 17.9, median 37.5 px (ours: 18.0 / 37.5).
    seq = load_badja("dog", data_dir / "tracks" / "badja")
    xy, vis = KLTTracker()(seq.frames, seq.queries)
    r = score_badja(seq, xy, vis)
    assert r["average_pts_within_thresh"] == pytest.approx(0.179, abs=0.01)
    assert r["median_error_px"] == pytest.approx(37.5, abs=1.5)
