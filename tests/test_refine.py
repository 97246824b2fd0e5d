"""Lucas-Kanade sharpening of coarse tracks: sub-pixel on known motion, wrong positions left alone,
chained KLT first and the tracker after KLT loses a point."""

import numpy as np
import pytest


def _moving_texture(seed: int, T: int, gain_per_frame: float = 0.0, noise_px: float = 2.5, top: float = 255):
    """A smooth random texture moving by known sub-pixel shifts (exposure rising by ``gain_per_frame``),
    grid queries on frame 0 and coarse tracks = truth + ``noise_px`` Gaussian noise."""
    import cv2

    from cotracker3_plugin.tracks import Tracks

    rng = np.random.default_rng(seed)
    H, W = 120, 160
    base = cv2.GaussianBlur(rng.uniform(0, top, (H + 40, W + 40)).astype(np.float32), (0, 0), 2.0)
    shifts = np.array([[1.7 * t, -0.9 * t] for t in range(T)])
    frames = np.stack([
        np.repeat(((1 + gain_per_frame * t) * cv2.warpAffine(base, np.float32([[1, 0, -20 + dx], [0, 1, -20 + dy]]),
                                                              (W, H)))[..., None], 3, -1).clip(0, 255).astype(np.uint8)
        for t, (dx, dy) in enumerate(shifts)])
    gx, gy = np.meshgrid(np.linspace(25, W - 25, 8), np.linspace(25, H - 25, 6))
    q = np.stack([gx.ravel(), gy.ravel()], -1)
    truth = q[None] + shifts[:, None]
    coarse = truth + rng.normal(0, noise_px, truth.shape)
    coarse[0] = q
    vis = np.ones(truth.shape[:2], bool)
    return frames, truth, Tracks(coarse, vis, vis.astype(np.float32), np.c_[np.zeros(len(q)), q], (H, W))


def test_refine_observations_sharpens_coarse_tracks_and_drops_wrong_ones():
    from cotracker3_plugin.refine import refine_observations

    frames, truth, tr = _moving_texture(0, 6)
    coarse = tr.xy
    coarse[3, 0] += 40.0  # a wrong association: LK must not pull it back, and it is dropped
    xy, kept = refine_observations(tr, frames, tr.visible)
    assert not kept[3, 0] and kept.mean() > 0.9
    err_before = np.linalg.norm(coarse - truth, axis=-1)[1:][kept[1:]]
    err_after = np.linalg.norm(xy - truth, axis=-1)[1:][kept[1:]]
    assert np.median(err_before) > 2.0 and np.median(err_after) < 0.1, (np.median(err_before), np.median(err_after))


def test_refine_observations_chains_from_the_nearest_kept_frame_when_the_query_frame_differs():
    import cv2

    from cotracker3_plugin.refine import refine_observations
    from cotracker3_plugin.tracks import Tracks

    # The texture turns 4 degrees per frame about the image centre: 28 degrees from the query frame
    # at the end, too much for translation-only LK from the query patch, 4 degrees from the previous frame
    # (LK's translation model is biased by ~0.1 px per degree of in-patch rotation: errors grow with the angle).
    rng = np.random.default_rng(1)
    T, H, W = 8, 160, 160
    base = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), 2.5)
    c = (W / 2 - 0.5, H / 2 - 0.5)
    mats = [cv2.getRotationMatrix2D(c, 4.0 * t, 1.0) for t in range(T)]
    frames = np.stack([np.repeat(cv2.warpAffine(base, m, (W, H), borderMode=cv2.BORDER_REFLECT)[..., None], 3, -1)
                       .clip(0, 255).astype(np.uint8) for m in mats])
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    q = np.stack([c[0] + 45 * np.cos(ang), c[1] + 45 * np.sin(ang)], -1)
    truth = np.stack([q @ m[:, :2].T + m[:, 2] for m in mats])
    coarse = truth + rng.normal(0, 2.0, truth.shape)
    coarse[0] = q
    vis = np.ones(truth.shape[:2], bool)
    tr = Tracks(coarse, vis, vis.astype(np.float32), np.c_[np.zeros(len(q)), q], (H, W))
    xy, kept = refine_observations(tr, frames, vis)
    assert kept[-1].mean() > 0.8, kept.sum(1)  # from the query frame alone: 1 of 12
    before = np.linalg.norm(coarse - truth, axis=-1)[1:][kept[1:]]
    after = np.linalg.norm(xy - truth, axis=-1)[1:][kept[1:]]
    assert np.median(before) > 2.0 and np.median(after) < 1.0, (np.median(before), np.median(after))


def test_refine_observations_ignores_exposure_changes():
    from cotracker3_plugin.refine import refine_observations

    # exposure rising 12 % per frame (a phone's auto-exposure)
    frames, truth, tr = _moving_texture(2, 8, gain_per_frame=0.12, noise_px=2.0, top=150)
    xy, kept = refine_observations(tr, frames, tr.visible)
    assert kept.mean() > 0.95, kept.sum(1)  # raw intensities: every observation after frame 0 was dropped
    assert np.median(np.linalg.norm(xy - truth, axis=-1)[1:]) < 0.1


def test_sharpen_tracks_moves_confirmed_observations_and_keeps_the_rest():
    from cotracker3_plugin.refine import sharpen_tracks

    frames, truth, tr = _moving_texture(3, 6)
    coarse = tr.xy.copy()
    coarse[4, 5] += 40.0  # LK cannot confirm it: the tracker's position stays
    tr.xy = coarse
    tr.visible[2, 7] = False  # an occluded observation is not touched
    tr.meta["model"] = "bundled default"
    out = sharpen_tracks(tr, frames, klt_handover=False)
    np.testing.assert_array_equal(out.xy[4, 5], coarse[4, 5])
    np.testing.assert_array_equal(out.xy[2, 7], coarse[2, 7])
    np.testing.assert_array_equal(out.visible, tr.visible)
    np.testing.assert_array_equal(out.confidence, tr.confidence)
    ok = tr.visible.copy()
    ok[0] = ok[4, 5] = False
    err = np.linalg.norm(out.xy - truth, axis=-1)[ok]
    assert np.median(np.linalg.norm(coarse - truth, axis=-1)[ok]) > 2.0 and np.median(err) < 0.1, np.median(err)
    assert out.meta["model"] == "bundled default" and out.meta["refined"].startswith("lk (")
    with pytest.raises(ValueError, match="do not match"):
        sharpen_tracks(tr, frames[:, :-1])


def test_sharpen_tracks_uses_klt_until_it_loses_a_point_then_the_tracker():
    from cotracker3_plugin.refine import sharpen_tracks

    frames, truth, tr = _moving_texture(4, 8)
    # From frame 4 on, a flat grey occluder covers the top-left corner: KLT fails there and is lost
    # for good; the tracker calls those points occluded. (A textured static occluder can hold KLT:
    # it then follows the occluder, and the hand-over trusts it; see the model card.)
    frames[4:, :60, :70] = 128
    under = np.all((truth[4:, :, 0] < 55) & (truth[4:, :, 1] < 45), axis=0)
    clear = np.all((truth[:, :, 0] > 95) | (truth[:, :, 1] > 85), axis=0)
    assert under.sum() == 4 and clear.sum() > 20
    tr.visible[4:, under] = False
    far = np.flatnonzero(clear)
    tr.xy[5, far[0]] += 40.0  # the tracker's mistake: where KLT holds the point, KLT's position wins
    tr.visible[2, far[1]] = False  # the tracker's false occlusion: visible while KLT holds the point
    coarse = tr.xy.copy()
    out = sharpen_tracks(tr, frames)
    np.testing.assert_array_equal(out.xy[4:, under], coarse[4:, under])
    assert not out.visible[4:, under].any() and out.visible[:4, under].all()
    err = np.linalg.norm(out.xy - truth, axis=-1)[:, clear]
    assert out.visible[:, clear].all() and err.max() < 0.2, err.max()
    np.testing.assert_array_equal(out.confidence, tr.confidence)
    assert out.meta["refined"].startswith("klt until lost (")


def test_provenance_meta_counts_each_observation_once():
    from cotracker3_plugin.refine import provenance, provenance_meta

    klt = np.zeros((4, 5), bool)
    lk = np.zeros((4, 5), bool)
    visible = np.zeros((4, 5), bool)
    klt[:2] = True  # 10 observations held by KLT (all visible)
    lk[1:3, :3] = True  # 6 LK-sharpened, 3 of them under KLT: 3 count as LK
    visible[:3] = True  # 15 visible: 10 KLT + 3 LK + 2 network
    meta = provenance_meta(klt, lk, visible)
    assert meta == {"provenance_klt": "0.500000", "provenance_klt_visible": f"{10 / 15:.6f}",
                    "provenance_lk": "0.150000", "provenance_lk_visible": "0.200000",
                    "provenance_network": "0.350000", "provenance_network_visible": f"{2 / 15:.6f}"}
    shares = {k: float(v) for k, v in meta.items()}
    for suffix in ("", "_visible"):
        assert abs(sum(shares[f"provenance_{s}{suffix}"] for s in ("klt", "lk", "network")) - 1) < 1e-5
    none = provenance_meta(klt, lk, np.zeros_like(visible))
    assert none["provenance_klt_visible"] == none["provenance_network_visible"] == "0.000000"

    from cotracker3_plugin.tracks import Tracks

    raw = Tracks(np.zeros((4, 5, 2)), visible, np.ones((4, 5)), np.zeros((5, 3)), (8, 8))
    assert provenance(raw) == {"klt": 0.0, "klt_visible": 0.0, "lk": 0.0, "lk_visible": 0.0, "network": 1.0,
                               "network_visible": 1.0}


def test_sharpen_tracks_records_where_each_position_came_from(tmp_path):
    from cotracker3_plugin.evaluate.klt import klt_track
    from cotracker3_plugin.refine import provenance, refine_observations, sharpen_tracks
    from cotracker3_plugin.tracks import Tracks

    frames, truth, tr = _moving_texture(4, 8)
    frames[4:, :60, :70] = 128  # KLT loses the points under this occluder; the tracker calls them occluded
    under = np.all((truth[4:, :, 0] < 55) & (truth[4:, :, 1] < 45), axis=0)
    tr.visible[4:, under] = False
    tr.xy[6, 20] += 40.0  # a wrong tracker position LK cannot confirm
    for handover in (False, True):
        out = sharpen_tracks(tr, frames, klt_handover=handover)
        _, kept = refine_observations(tr, frames, tr.visible, window=15, levels=3, max_shift=20.0)
        held = klt_track(frames, tr.queries, sticky_loss=True)[1] if handover else np.zeros_like(kept)
        p = provenance(out)
        size, seen = held.size, out.visible.sum()
        assert p["klt"] == pytest.approx(held.sum() / size, abs=1e-6)
        assert p["lk"] == pytest.approx((kept & ~held).sum() / size, abs=1e-6)
        assert p["network"] == pytest.approx((~kept & ~held).sum() / size, abs=1e-6)
        assert p["network_visible"] == pytest.approx((~kept & ~held & out.visible).sum() / seen, abs=1e-6)
        for suffix in ("", "_visible"):
            assert sum(p[s + suffix] for s in ("klt", "lk", "network")) == pytest.approx(1.0, abs=1e-5)
        assert p["network"] > 0 and (p["klt"] > 0.5) == handover  # the occluded points stay the network's
        out.save(tmp_path / "t.npz")  # the shares travel with the tracks
        assert provenance(Tracks.load(tmp_path / "t.npz")) == p
