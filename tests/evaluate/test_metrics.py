"""TAP-Vid metrics: parity with the official code's numbers on the reference fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cotracker3_plugin.evaluate.metrics import METRIC_NAMES, compute_tapvid_metrics, evaluation_mask


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_parity_with_official(reference_dir, mode):
    f = np.load(reference_dir / "fixtures.npz")
    expected = json.loads((reference_dir / "tapvid_metrics.json").read_text())[mode]
    got = compute_tapvid_metrics(
        f["tapvid_query_points"][None],
        f["tapvid_gt_occluded"][None],
        f["tapvid_gt_tracks"][None],
        f["tapvid_pred_occluded"][None],
        f["tapvid_pred_tracks"][None],
        mode,
    )
    assert set(expected) == set(METRIC_NAMES)
    for k, v in expected.items():
        assert got[k][0] == pytest.approx(v, rel=1e-5, abs=0), k


def test_known_answer_and_masks():
    # One track, 4 frames, query at t=1: "first" scores frames 2,3; "strided" frames 0,2,3.
    assert evaluation_mask(np.array([[1.0]]), 4, "first").tolist() == [[[False, False, True, True]]]
    assert evaluation_mask(np.array([[1.0]]), 4, "strided").tolist() == [[[True, False, True, True]]]
    gt = np.zeros((1, 1, 4, 2))
    pred = gt.copy()
    pred[0, 0, 2] = [1.0, 0.0]  # exactly 1 px off: not within δ=1 (strict <)
    occ = np.zeros((1, 1, 4), bool)
    m = compute_tapvid_metrics(np.array([[[1.0, 0, 0]]]), occ, gt, occ, pred, "first")
    assert m["pts_within_1"][0] == 0.5 and m["pts_within_2"][0] == 1.0
    assert m["jaccard_1"][0] == pytest.approx(1 / 3)  # TP 1 / (2 GT + 1 FP)
    assert m["occlusion_accuracy"][0] == 1.0
    assert m["average_pts_within_thresh"][0] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        evaluation_mask(np.zeros((1, 1)), 3, "all")
