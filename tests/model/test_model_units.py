"""Unit tests of the CoTracker3 building blocks, the fast mode and the small configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline
from cotracker3_plugin.model.correlation import (
    correlation_volume,
    correlation_volume_fast,
    fast_feature_map,
    patch_offsets,
    sample_frame_patches,
)
from cotracker3_plugin.model.cotracker3 import motion_encoding
from cotracker3_plugin.model.transformer import Attention

from .formula_weights import load_formula_weights


def test_patch_offsets_first_axis_is_x():
    off = patch_offsets(3)
    assert off.shape == (7, 7, 2)
    assert off[0, 6].tolist() == [-3.0, 3.0]  # [a, b] -> (dx, dy) = (a - 3, b - 3)
    assert off[6, 0].tolist() == [3.0, -3.0]


def test_sampling_known_values_and_border():
    # A map whose value at (x, y) is x + 100 y makes bilinear samples exact and easy to predict.
    h, w = 6, 9
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    fmap = (xs + 100 * ys)[None, None].repeat(1, 2, 1, 1)  # (1, C=2, H, W)
    centers = torch.tensor([[[4.25, 2.5], [-10.0, 50.0]]])
    exact = sample_frame_patches(fmap, centers, 1).view(1, 2, 2, 3, 3)[0, 0]  # (N, a, b)
    # Point 0: a = x offset, b = y offset.
    expected0 = torch.tensor([[(4.25 + dx) + 100 * (2.5 + dy) for dy in (-1, 0, 1)] for dx in (-1, 0, 1)])
    torch.testing.assert_close(exact[0], expected0, rtol=0, atol=1e-3)
    # Point 1 lies outside: border padding gives the corner pixel (x = 0, y = H - 1).
    torch.testing.assert_close(exact[1], torch.full((3, 3), 100.0 * (h - 1)))


def test_fast_correlation_matches_exact():
    torch.manual_seed(0)
    b, s, n, c = 2, 3, 40, 16
    fmap = torch.randn(b * s, c, 12, 20)
    centers = torch.rand(b * s, n, 2) * torch.tensor([30.0, 20.0]) - 5  # many outside the map
    centers[:, :6] = torch.tensor([[-60.0, 5.0], [90.0, 5.0], [8.0, -40.0], [8.0, 70.0], [-9.5, -8.2], [28.7, 19.9]])
    qry = torch.randn(b, 49, n, c)
    exact = correlation_volume(sample_frame_patches(fmap, centers, 3), qry)
    fast = correlation_volume_fast(fast_feature_map(fmap, 3), centers, qry, 3)
    torch.testing.assert_close(fast, exact, rtol=0, atol=1e-4)


def test_correlation_gradients_match_the_einsum_and_no_grad_values():
    # The training path (one batched matmul) must give the no-grad values and the gradients of
    # the official einsum, for both correlation kernels.
    torch.manual_seed(0)
    b, s, n, c = 2, 3, 7, 8
    fmap = torch.randn(b * s, c, 12, 20, requires_grad=True)
    centers = torch.rand(b * s, n, 2) * torch.tensor([18.0, 10.0])
    qry = torch.randn(b, 49, n, c, requires_grad=True)
    w = torch.randn(b * s * n, 2401)

    def einsum(tgt, q):
        return torch.einsum("btnhwc,bnijc->btnhwij", tgt.view(b, s, c, n, 7, 7).permute(0, 1, 3, 4, 5, 2),
                            q.view(b, 7, 7, n, c).permute(0, 3, 1, 2, 4)).reshape(b * s * n, 2401)

    def grads(fn):
        fmap.grad = qry.grad = None
        out = fn()
        (out * w).sum().backward()
        return out.detach(), fmap.grad.clone(), qry.grad.clone()

    ref = grads(lambda: einsum(sample_frame_patches(fmap, centers, 3), qry))
    exact = grads(lambda: correlation_volume(sample_frame_patches(fmap, centers, 3), qry))
    fast = grads(lambda: correlation_volume_fast(fast_feature_map(fmap, 3), centers, qry, 3))
    for got in (exact, fast):
        for a, r in zip(got, ref):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(correlation_volume(sample_frame_patches(fmap, centers, 3), qry), exact[0],
                                   rtol=0, atol=1e-5)


def test_correlation_volume_matches_einsum():
    torch.manual_seed(0)
    b, s, n, c = 2, 3, 5, 8
    tgt = torch.randn(b * s, c, n, 49)
    qry = torch.randn(b, 49, n, c)
    ref = torch.einsum(
        "btnhwc,bnijc->btnhwij",
        tgt.view(b, s, c, n, 7, 7).permute(0, 1, 3, 4, 5, 2),
        qry.view(b, 7, 7, n, c).permute(0, 3, 1, 2, 4),
    ).reshape(b * s * n, 2401)
    torch.testing.assert_close(correlation_volume(tgt, qry), ref, rtol=0, atol=1e-5)


def test_fused_attention_matches_reference():
    torch.manual_seed(0)
    attn = Attention(64, 4)
    x, ctx = torch.randn(3, 10, 64), torch.randn(3, 7, 64)
    ref = attn(x, ctx)
    attn.fused = True
    torch.testing.assert_close(attn(x, ctx), ref, rtol=0, atol=1e-5)


def test_motion_encoding_layout():
    coords = torch.tensor([[[[1.0, 2.0]], [[3.0, 6.0]], [[4.0, 6.0]]]])  # (B=1, S=3, N=1, 2)
    enc = motion_encoding(coords, torch.tensor([2.0, 4.0]))
    assert enc.shape == (1, 3, 1, 84)
    # frame 1: forward = P1 - P2 = (-1, 0), backward = P1 - P0 = (2, 4); divided by (2, 4).
    torch.testing.assert_close(enc[0, 1, 0, :4], torch.tensor([-0.5, 0.0, 1.0, 1.0]))
    assert enc[0, 0, 0, 2:4].abs().sum() == 0 and enc[0, 2, 0, 0:2].abs().sum() == 0
    u = enc[0, 1, 0, :4]
    # frequency-major: index 4 + 4k + m holds sin(u_m 2^k), cosines follow the 40 sines.
    torch.testing.assert_close(enc[0, 1, 0, 4 + 4 * 3 + 2], torch.sin(u[2] * 8))
    torch.testing.assert_close(enc[0, 1, 0, 44 + 4 * 1 + 0], torch.cos(u[0] * 2), atol=1e-6, rtol=0)


def test_config_roundtrip_and_presets():
    for cfg in (CoTrackerConfig.offline(), CoTrackerConfig.online(), CoTrackerConfig.small(online=True)):
        assert CoTrackerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert CoTrackerConfig.offline().window_len == 60 and CoTrackerConfig.online().window_len == 16
    assert CoTrackerConfig.offline().input_dim == 1110
    with pytest.raises(ValueError, match="unknown"):
        CoTrackerConfig.from_dict({"nope": 1})


def test_small_config_size():
    model = CoTrackerThreeOffline(CoTrackerConfig.small())
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 3_000_000
    assert 2 * n <= 10 * 2**20  # fp16 weights <= 10 MB
    assert (
        model.window_len == 60 and CoTrackerThreeOnline(CoTrackerConfig.small(online=True)).window_len == 16
    )


@pytest.fixture(scope="module")
def small_models():
    torch.manual_seed(0)
    off = CoTrackerThreeOffline(CoTrackerConfig.small()).eval()
    on = CoTrackerThreeOnline(CoTrackerConfig.small(online=True)).eval()
    on.load_state_dict({**off.state_dict(), "time_emb": on.time_emb})
    return off, on


def _clip(t: int, h: int = 32, w: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    video = torch.rand(1, t, 3, h, w) * 255
    queries = torch.tensor([[[0.0, 10.0, 12.0], [2.0, 30.0, 5.0], [t - 1.0, 40.0, 20.0]]])
    return video, queries


def test_offline_train_outputs_and_gradients(small_models):
    model, _ = small_models
    video, queries = _clip(5)
    coords, vis, conf, train = model(video, queries, iters=2, is_train=True)
    assert coords.shape == (1, 5, 3, 2) and vis.shape == conf.shape == (1, 5, 3)
    c_it, v_it, f_it, valid = train
    assert len(c_it) == 1 and len(c_it[0]) == 2 and torch.equal(c_it[0][-1], coords)
    assert bool(((vis > 0) & (vis < 1)).all())
    # Coordinates are detached between iterations, the vis logits are not.
    v_it[0][-1].sum().backward()
    assert model.updateformer.vis_conf_head.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_fmaps_chunking_is_exact_enough(small_models):
    model, _ = small_models
    video, queries = _clip(5)
    with torch.no_grad():
        a = model(video, queries, iters=1)
        b = model(video, queries, iters=1, fmaps_chunk_size=2)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-4)


def test_online_short_video_is_zero_and_windows(small_models):
    _, model = small_models
    video, queries = _clip(8)
    with torch.no_grad():
        coords, vis, _, _ = model(video, queries[:, :2], iters=1)
    assert coords.abs().sum() == 0 and torch.allclose(vis, torch.full_like(vis, 0.5))
    video, queries = _clip(21)
    with torch.no_grad():
        coords, vis, conf, train = model(video, queries, iters=1, is_train=True)
    assert coords.shape == (1, 21, 3, 2)
    assert [len(w[0][0]) for w in [train[0]]] == [1]
    assert [w[0].shape[1] for w in train[0]] == [16, 13]  # windows at 0 and 8, trimmed to T
    assert torch.equal(train[3][0, :, 2], torch.arange(21) >= 20)


def test_online_streaming_matches_whole_video(small_models):
    _, model = small_models
    video, queries = _clip(21)
    with torch.no_grad():
        whole = model(video, queries, iters=2)[0]
        model.init_video_online_processing()
        for start in (0, 8):
            out = model(video[:, start : start + 16], queries, iters=2, is_online=True)[0]
    assert out.shape == (1, 21, 3, 2)
    torch.testing.assert_close(out, whole, rtol=0, atol=1e-3)


def test_rejects_bad_shapes(small_models):
    model, online = small_models
    with pytest.raises(ValueError, match="divisible"):
        model(torch.zeros(1, 2, 3, 30, 32), torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        model(torch.zeros(1, 2, 3, 32, 32), torch.zeros(1, 1, 2))
    online.init_video_online_processing()
    with pytest.raises(ValueError, match="at most 16"):
        online(torch.zeros(1, 17, 3, 32, 32), torch.zeros(1, 1, 3), is_online=True)


# -- fast mode against the official fixtures ---------------------------------------------------


def test_fast_mode_parity(reference_dir):
    fx = np.load(reference_dir / "fixtures.npz")
    model = load_formula_weights(CoTrackerThreeOffline()).eval().set_fast(True)
    video = torch.from_numpy(fx["video_small_u8"]).float()[None, :16]
    queries = torch.from_numpy(fx["queries_small"])[None]
    with torch.no_grad():
        coords, vis, conf, _ = model(video, queries, iters=4)
    # Same tolerances as the exact mode; measured: ~1e-4 px and ~1e-7 on probabilities.
    assert np.abs(coords[0].numpy() - fx["offline_eval_coords"]).max() < 1e-3
    assert np.abs(vis[0].numpy() - fx["offline_eval_vis"]).max() < 1e-4
    assert np.abs(conf[0].numpy() - fx["offline_eval_conf"]).max() < 1e-4
    model.set_fast(False)
    assert not any(m.fused for m in model.modules() if isinstance(m, Attention))


def test_time_embedding_interpolation():
    model = CoTrackerThreeOffline(CoTrackerConfig.small())
    emb = model.time_embedding(16, torch.float32)
    ref = F.interpolate(model.time_emb.permute(0, 2, 1), size=16, mode="linear").permute(0, 2, 1)
    assert torch.equal(emb, ref)
    assert model.time_embedding(60, torch.float32) is model.time_emb
