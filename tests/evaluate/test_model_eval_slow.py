"""The official evaluation protocol with the real (small, untrained) CoTracker3 networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cotracker3_plugin.evaluate.runner import ModelTracker, evaluate_tapvid
from cotracker3_plugin.evaluate.tapvid import TapVidSample


@pytest.mark.slow
@pytest.mark.parametrize("online", [False, True])
def test_small_model_runs_both_modes(online):
    from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline

    torch.manual_seed(0)
    cls = CoTrackerThreeOnline if online else CoTrackerThreeOffline
    model = cls(CoTrackerConfig.small(online=online)).eval()
    rng = np.random.default_rng(0)
    T, N = 20, 8
    video = rng.integers(0, 255, (T, 256, 256, 3), dtype=np.uint8)
    pts = rng.uniform(20, 235, (N, T, 2))
    occ = np.zeros((N, T), bool)
    q = np.stack([np.zeros(N), pts[:, 0, 1], pts[:, 0, 0]], 1)
    sample = TapVidSample("rand", video, q, pts, occ)
    fwd = ModelTracker(model, resolution=(96, 128))
    assert fwd.protocol == ("online" if online else "joint")
    xy, prob = fwd.predict(video, sample.queries_txy)
    assert xy.shape == (T, N, 2) and prob.shape == (T, N)
    assert np.isfinite(xy).all() and ((prob >= 0) & (prob <= 1)).all()
    bwd = ModelTracker(model, protocol="joint", resolution=(96, 128))
    for mode in ("first", "strided"):
        res = evaluate_tapvid([sample], fwd, mode, backward_tracker=bwd)
        assert 0 <= res["mean"]["average_jaccard"] <= 1
