"""The real-image benchmark: exact ground truth, occluder masks, determinism, TAP-Vid layout."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cotracker3_plugin.errors import OutputExistsError, UserError
from cotracker3_plugin.evaluate.make_benchmark import (
    BenchmarkConfig,
    apply_homography,
    make_benchmark,
    occlusion_from_masks,
    write_benchmark,
)
from cotracker3_plugin.evaluate.tapvid import iter_tapvid


@pytest.fixture(scope="module")
def small(data_dir):
    srcs = [data_dir / "fox" / "images" / "0001.jpg",
            data_dir / "poses" / "strecha" / "fountain-P11" / "images" / "0000.jpg",
            data_dir / "videos" / "cat.mp4"]
    cfg = BenchmarkConfig(seed=3, num_videos=2, min_frames=12, max_frames=16, size=128,
                          min_points=30, max_points=40, sources=[str(s) for s in srcs])
    return cfg, make_benchmark(cfg)


def test_ground_truth_reprojects_exactly(small):
    _, videos = small
    assert len(videos) == 2
    for v in videos.values():
        T, S = v.video.shape[:2]
        assert 12 <= T <= 16 and v.video.shape == (T, 128, 128, 3) and v.video.dtype == np.uint8
        assert v.points.shape == (len(v.canvas_points), T, 2) and 1 <= len(v.points) <= 40
        for t in range(T):
            np.testing.assert_allclose(apply_homography(v.homographies[t], v.canvas_points), v.points[:, t],
                                       atol=1e-9)
        # camera-like: smooth, bounded motion between frames
        step = np.linalg.norm(np.diff(v.points, axis=1), axis=-1)
        assert step.max() < 25 and np.abs(np.diff(step, axis=1)).max() < 10
        # the frames really are the canvas seen through H_t (where no occluder is pasted)
        for t in (0, T - 1):
            clean = cv2.warpPerspective(v.canvas, v.homographies[t], (S, S), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
            expected = np.clip(clean * v.gains[t], 0, 255)
            diff = np.abs(v.video[t].astype(np.float32) - expected).max(axis=-1)
            assert diff[~v.occluder_masks[t]].max() <= 1.0
            if v.occluder_masks[t].any():  # pasted real-image content differs from the background
                assert diff[v.occluder_masks[t]].mean() > 5


def test_occlusion_follows_masks_and_frame(small):
    _, videos = small
    any_mask_occ = any_outside = False
    for v in videos.values():
        T, S = v.video.shape[:2]
        np.testing.assert_array_equal(v.occluded, occlusion_from_masks(v.points, v.occluder_masks))
        x, y = v.points[..., 0], v.points[..., 1]
        inside = (x >= 0) & (x <= S - 1) & (y >= 0) & (y <= S - 1)
        assert v.occluded[~inside].all()
        xi, yi = np.round(x[inside]).astype(int), np.round(y[inside]).astype(int)
        tt = np.broadcast_to(np.arange(T), x.shape)[inside]
        covered = v.occluder_masks[tt, yi, xi]
        np.testing.assert_array_equal(v.occluded[inside], covered)
        assert (~v.occluded).any(axis=1).all()  # every kept track is visible somewhere
        any_mask_occ |= bool(covered.any())
        any_outside |= bool((~inside).any())
    assert any_mask_occ and any_outside


def test_known_masks():
    masks = np.zeros((2, 8, 8), bool)
    masks[1, 2:4, 5:7] = True
    pts = np.array([[[5.4, 2.6], [5.4, 2.6]], [[-0.1, 3.0], [7.0, 7.0]]])
    np.testing.assert_array_equal(occlusion_from_masks(pts, masks), [[False, True], [True, False]])


def test_deterministic_and_written_as_tapvid(small, tmp_path):
    cfg, videos = small
    again = make_benchmark(cfg)
    for k, v in videos.items():
        np.testing.assert_array_equal(v.video, again[k].video)
        np.testing.assert_array_equal(v.points, again[k].points)
    other = make_benchmark(BenchmarkConfig(**{**cfg.__dict__, "seed": 4}))
    assert any(list(other.values())[0].video.shape != v.video.shape or
               not np.array_equal(list(other.values())[0].video, v.video) for v in videos.values())

    out = write_benchmark(videos, tmp_path / "bench", cfg)
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.npz", "benchmark.pkl", "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["seed"] == 3 and set(meta["videos"]) == set(videos)
    samples = list(iter_tapvid(out / "benchmark.pkl", "first"))
    assert [s.name for s in samples] == list(videos)
    for s in samples:
        v = videos[s.name]
        assert s.video.shape[1:3] == (256, 256)  # evaluation resizes 128 → 256
        # every kept track is visible somewhere, so "first" mode keeps all of them, in order
        np.testing.assert_allclose(s.target_points, v.points * 255 / 127, atol=1e-3)
        np.testing.assert_array_equal(s.occluded, v.occluded)
    npz = np.load(out / "benchmark.npz")
    np.testing.assert_allclose(npz[f"{s.name}/points_px"], v.points)
    with pytest.raises(OutputExistsError):
        write_benchmark(videos, out, cfg)


def test_bad_config(tmp_path):
    with pytest.raises(UserError):
        make_benchmark(BenchmarkConfig(min_frames=10, max_frames=5))
    with pytest.raises(UserError):
        make_benchmark(BenchmarkConfig(sources=[str(tmp_path / "nope.jpg")]))
