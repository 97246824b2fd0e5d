"""Loss parity with the official CoTracker3 loss functions (losses.json, losses_extra.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cotracker3_plugin.train.losses import LossConfig, cotracker_loss, huber, window_starts

KEYS = ["track_visible_huber", "track_visible_weighted", "track_occluded_l1", "track_occluded_weighted",
        "confidence_bce", "visibility_bce", "total"]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a)).float()[None]


def _iters(f, prefix: str) -> tuple[list, list, list]:
    c, v, k = f[f"{prefix}_coords_iters"], f[f"{prefix}_vis_iters"], f[f"{prefix}_conf_iters"]
    return [_t(x) for x in c], [_t(x) for x in v], [_t(x) for x in k]


def _close(got: dict, want: dict) -> None:
    for k in KEYS:
        assert float(got[k]) == pytest.approx(want[k], rel=1e-5, abs=0), k


def test_offline_loss_parity(reference_dir):
    f = np.load(reference_dir / "fixtures.npz")
    want = json.loads((reference_dir / "losses.json").read_text())
    c, v, k = _iters(f, "offline_train")
    traj, vis = _t(f["loss_traj_gt"]), _t(f["loss_vis_gt"])
    train_data = ([c], [v], [k], torch.ones_like(vis))
    got = cotracker_loss(train_data, traj, vis, torch.ones_like(vis), online=False)
    _close(got, want)


def test_online_loss_parity(reference_dir):
    f = np.load(reference_dir / "fixtures_extra.npz")
    want = json.loads((reference_dir / "losses_extra.json").read_text())["online"]
    w0, w1 = _iters(f, "online_train_w0"), _iters(f, "online_train_w1")
    traj, vis = _t(f["online_loss_traj_gt"]), _t(f["online_loss_vis_gt"])
    assert window_starts(traj.shape[1], online=True) == [0, 8]
    train_data = ([w0[0], w1[0]], [w0[1], w1[1]], [w0[2], w1[2]], _t(f["online_train_valid_mask"]))
    got = cotracker_loss(train_data, traj, vis, torch.ones_like(vis), online=True, window_len=16)
    _close(got, want)


def test_loss_gradients_and_disabled_terms(reference_dir):
    f = np.load(reference_dir / "fixtures.npz")
    c, v, k = _iters(f, "offline_train")
    c = [x.requires_grad_() for x in c]
    traj, vis = _t(f["loss_traj_gt"]), _t(f["loss_vis_gt"])
    cfg = LossConfig(visibility_weight=0, confidence_weight=0)
    got = cotracker_loss(([c], [v], [k], None), traj, vis, torch.ones_like(vis), online=False, cfg=cfg)
    assert set(got) == {"track_visible_huber", "track_visible_weighted", "track_occluded_l1",
                        "track_occluded_weighted", "total"}
    got["total"].backward()
    # the last iteration carries weight 1, the first 0.8**3 (then both divided by 4 iterations)
    g0, g3 = c[0].grad.abs().sum(), c[3].grad.abs().sum()
    assert g0 > 0 and g3 > g0


def test_huber_known_values():
    d = torch.tensor([0.0, 3.0, -6.0, 10.0])
    assert huber(d, 6.0).tolist() == [0.0, 4.5, 18.0, 42.0]
