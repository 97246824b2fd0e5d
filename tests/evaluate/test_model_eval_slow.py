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


@pytest.mark.slow
@pytest.mark.parametrize("online", [False, True])
def test_evaluate_cli_with_checkpoint(online, tmp_path, data_dir):
    import dataclasses
    import json

    from cotracker3_plugin.cli import main
    from cotracker3_plugin.evaluate.make_benchmark import BenchmarkConfig, make_benchmark, write_benchmark
    from cotracker3_plugin.model import CoTrackerConfig
    from cotracker3_plugin.weights import build_model, save_checkpoint

    cfg = BenchmarkConfig(num_videos=1, min_frames=18, max_frames=18, min_points=20, max_points=20,
                          sources=[str(data_dir / "fox" / "images" / "0001.jpg"),
                                   str(data_dir / "fox" / "images" / "0002.jpg")])
    bench = write_benchmark(make_benchmark(cfg), tmp_path / "bench", cfg)
    mcfg = dataclasses.replace(CoTrackerConfig.small(online=online), model_resolution=(64, 96))
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(mcfg, online), tmp_path / "tiny.safetensors")
    out = tmp_path / "r.json"
    for mode in ("first", "strided"):
        assert main(["evaluate", "--dataset", "benchmark", "--data", str(bench), "--model", str(ckpt),
                     "--device", "cpu", "--mode", mode, "--output", str(out)]) == 0
        res = json.loads(out.read_text())
        assert res["protocol"] == ("online" if online else "joint")
        assert res["model_class"] == ("CoTrackerThreeOnline" if online else "CoTrackerThreeOffline")
        assert res["num_videos"] == 1 and 0 <= res["mean"]["average_jaccard"] <= 1
