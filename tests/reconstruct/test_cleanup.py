"""Statistical outlier removal and voxel thinning."""

import numpy as np
import pytest

from cotracker3_plugin.reconstruct.cleanup import auto_voxel_size, statistical_outliers, voxel_thin


def test_statistical_outliers_drops_far_points():
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(500, 3))
    far = np.array([[30.0, 0, 0], [0, -40.0, 0], [0, 0, 50.0]])
    kept = statistical_outliers(np.concatenate([cloud, far]), nb_neighbors=10, std_ratio=2.0)
    assert not set(kept.tolist()) & {500, 501, 502}
    assert len(kept) >= 480


@pytest.mark.slow
def test_statistical_outliers_matches_open3d():
    import open3d as o3d

    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.normal(size=(3000, 3)) * [1, 2, 0.5], rng.uniform(-8, 8, (300, 3))])
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    _, ref = pcd.remove_statistical_outlier(nb_neighbors=10, std_ratio=1.0)
    np.testing.assert_array_equal(statistical_outliers(pts, 10, 1.0), np.sort(ref))


def test_voxel_thin_keeps_lowest_score_per_voxel():
    pts = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [1.5, 0.1, 0.1], [1.6, 0.2, 0.1], [3.0, 3.0, 3.0]])
    scores = np.array([2.0, 1.0, 0.5, 0.7, 9.0])
    np.testing.assert_array_equal(voxel_thin(pts, 1.0, scores), [1, 2, 4])
    np.testing.assert_array_equal(voxel_thin(pts, 0.0, scores), np.arange(5))


def test_auto_voxel_size_scales_with_extent():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (1000, 3))
    assert auto_voxel_size(10 * pts) == pytest.approx(10 * auto_voxel_size(pts))
    assert auto_voxel_size(pts) == pytest.approx(0.002 * 0.9 * np.sqrt(3), rel=0.05)
