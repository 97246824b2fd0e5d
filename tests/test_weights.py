"""Checkpoint loading and saving (cotracker3_plugin.weights); local files only, no network."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cotracker3_plugin import weights
from cotracker3_plugin.errors import CheckpointError
from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline
from cotracker3_plugin.weights import load_model, save_checkpoint


@pytest.fixture(scope="module")
def official_offline_state():
    torch.manual_seed(0)
    return CoTrackerThreeOffline(CoTrackerConfig.offline()).state_dict()


@pytest.fixture
def small_offline():
    torch.manual_seed(1)
    return CoTrackerThreeOffline(CoTrackerConfig.small()).eval()


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- our safetensors format ------------------------------------------------------------------


@pytest.mark.parametrize("online", [False, True])
def test_save_load_roundtrip_small(tmp_path, online):
    torch.manual_seed(2)
    cfg = CoTrackerConfig.small(online=online)
    model = (CoTrackerThreeOnline if online else CoTrackerThreeOffline)(cfg).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", note="test")
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.config == cfg and loaded.window_len == (16 if online else 60)
    assert not loaded.training
    assert _same_state(model, loaded)
    video = torch.rand(1, 4, 3, 32, 32) * 255
    queries = torch.tensor([[[0.0, 10.0, 12.0], [1.0, 20.0, 5.0]]])
    with torch.no_grad():
        a = model(video, queries, iters=1)
        b = loaded(video, queries, iters=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_half_checkpoint_size_and_exact_time_emb(tmp_path, small_offline):
    full = save_checkpoint(small_offline, tmp_path / "full.safetensors")
    half = save_checkpoint(small_offline, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert half.stat().st_size <= 10 * 2**20  # the bundled small model must stay under 10 MB
    import os
    import stat
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(half.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    loaded = load_model(half)
    assert torch.equal(loaded.time_emb, small_offline.time_emb)
    w = small_offline.corr_mlp.fc1.weight
    assert torch.equal(loaded.corr_mlp.fc1.weight, w.half().float())


def test_online_override_switches_kind(tmp_path, small_offline):
    path = save_checkpoint(small_offline, tmp_path / "m.safetensors")
    model = load_model(path, online=True)
    assert isinstance(model, CoTrackerThreeOnline) and model.window_len == 16
    assert model.time_emb.shape == (1, 16, small_offline.config.input_dim)
    assert torch.equal(model.corr_mlp.fc1.weight, small_offline.corr_mlp.fc1.weight)


# -- official .pth files ---------------------------------------------------------------------


def test_official_pth_offline_with_model_wrapper(tmp_path, official_offline_state):
    path = tmp_path / "scaled_offline.pth"
    torch.save({"model": official_offline_state}, path)
    model = load_model(path)
    assert isinstance(model, CoTrackerThreeOffline) and model.window_len == 60
    assert model.model_resolution == (384, 512)
    assert torch.equal(model.updateformer.virual_tracks, official_offline_state["updateformer.virual_tracks"])
    # Forcing the online model keeps every parameter and rebuilds the 16-frame time embedding.
    online = load_model(path, online=True)
    assert isinstance(online, CoTrackerThreeOnline) and online.time_emb.shape == (1, 16, 1110)
    assert torch.equal(online.fnet.conv1.weight, official_offline_state["fnet.conv1.weight"])


def test_official_pth_online_detected_by_time_emb(tmp_path, official_offline_state):
    state = dict(official_offline_state)
    state["time_emb"] = CoTrackerThreeOnline().time_emb
    path = tmp_path / "scaled_online.pth"
    # DDP-style prefix and a "state_dict" wrapper are both accepted.
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = load_model(path)
    assert isinstance(model, CoTrackerThreeOnline) and model.window_len == 16


class _Exploit:
    """Unpickling this would create a file: torch.load(weights_only=True) must refuse it."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"fnet.conv1.weight": torch.zeros(1)}, "x": _Exploit(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="pickled code is never executed"):
        load_model(path)
    assert not marker.exists()


# -- error paths -----------------------------------------------------------------------------


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a loadable PyTorch checkpoint"):
        load_model(text)
    tensor_list = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], tensor_list)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_model(tensor_list)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(bad_st)


def test_missing_and_extra_keys_are_listed(tmp_path, small_offline):
    state = {k: v.contiguous() for k, v in small_offline.state_dict().items()}
    removed = sorted(k for k in state if k.startswith("updateformer.time_blocks.0."))
    for k in removed:
        del state[k]
    state["head.extra.weight"] = torch.zeros(3)
    meta = {weights.META_CONFIG: json.dumps(small_offline.config.to_dict()), weights.META_KIND: "offline"}
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert f"missing keys: {len(removed)} (" in msg and "and 5 more" in msg
    assert "unexpected keys: 1 (head.extra.weight)" in msg


def test_shape_mismatch_is_listed(tmp_path, small_offline):
    # A small model saved as a bare .pth is read as the official architecture: every shape is off.
    path = tmp_path / "small.pth"
    torch.save(small_offline.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatches: \d+ \(.*\) != ") as err:
        load_model(path)
    assert "does not match the CoTracker3 architecture" in str(err.value)


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="neither a known checkpoint name"):
        load_model("cotracker9000")
    with pytest.raises(CheckpointError, match="cotracker3_offline"):
        load_model(tmp_path / "nope.pth")


def test_invalid_config_metadata(tmp_path, small_offline):
    path = tmp_path / "m.safetensors"
    state = {k: v.contiguous() for k, v in small_offline.state_dict().items()}
    save_file(state, str(path), metadata={weights.META_CONFIG: json.dumps({"bogus": 1})})
    with pytest.raises(CheckpointError, match="invalid model configuration"):
        load_model(path)


def test_bundled_checkpoint(tmp_path, monkeypatch, small_offline):
    monkeypatch.setattr(weights, "BUNDLED_CHECKPOINT", tmp_path / "cotracker3_small.safetensors")
    with pytest.raises(CheckpointError, match="No bundled model is present"):
        load_model()
    save_checkpoint(small_offline, tmp_path / "cotracker3_small.safetensors", half=True)
    model = load_model()
    assert isinstance(model, CoTrackerThreeOffline) and model.weights_label == "bundled default"
    # the tracks say which weights made them (reconstruction refines the bundled model's tracks)
    from cotracker3_plugin.predict import track

    tracks = track(np.zeros((4, 32, 48, 3), np.uint8), model, grid_size=2)
    assert tracks.meta["model"] == "bundled default"
    assert load_model(tmp_path / "cotracker3_small.safetensors").weights_label.endswith("small.safetensors")


# -- downloads (simulated: tests never touch the network) -------------------------------------


def test_failed_download_names_url_and_local_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("COTRACKER3_CACHE", str(tmp_path / "cache"))

    def fail(url, dst, *args, **kwargs):
        Path(dst).write_bytes(b"partial")
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(CheckpointError) as err:
        load_model("cotracker3_online")
    msg = str(err.value)
    assert "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_online.pth" in msg
    assert "local path" in msg
    assert list((tmp_path / "cache").iterdir()) == []  # no partial file left behind


def test_download_goes_to_cache_once(tmp_path, monkeypatch, official_offline_state):
    monkeypatch.setenv("COTRACKER3_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake(url, dst, *args, **kwargs):
        calls.append(url)
        torch.save(official_offline_state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    model = load_model("cotracker3_offline")
    assert isinstance(model, CoTrackerThreeOffline)
    assert (tmp_path / "cache" / "scaled_offline.pth").is_file()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["scaled_offline.pth"]
    load_model("cotracker3_offline")
    assert calls == [weights.OFFICIAL_CHECKPOINTS["cotracker3_offline"].url]


def test_download_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("COTRACKER3_CACHE", str(tmp_path / "cache"))
    spec = weights.OfficialCheckpoint("https://example.invalid/x.pth", online=False, sha256="0" * 64)
    monkeypatch.setitem(weights.OFFICIAL_CHECKPOINTS, "test_ckpt", spec)
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda url, dst, *a, **k: Path(dst).write_bytes(b"x")
    )
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load_model("test_ckpt")
    assert list((tmp_path / "cache").iterdir()) == []


def test_registry_urls():
    urls = {k: v.url for k, v in weights.OFFICIAL_CHECKPOINTS.items()}
    assert urls["cotracker3_offline"].endswith("/facebook/cotracker3/resolve/main/scaled_offline.pth")
    assert urls["cotracker3_online"].endswith("/facebook/cotracker3/resolve/main/scaled_online.pth")
    assert weights.OFFICIAL_CHECKPOINTS["cotracker3_online"].online
    assert not weights.OFFICIAL_CHECKPOINTS["cotracker3_offline"].online


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("COTRACKER3_CACHE", str(tmp_path))
    assert weights.cache_dir() == tmp_path
    monkeypatch.delenv("COTRACKER3_CACHE")
    assert weights.cache_dir() == Path.home() / ".cache" / "cotracker3"


def test_training_checkpoint_loads_with_its_architecture(tmp_path):
    """A resumable `cotracker3 train` checkpoint (state dict + optimizer + meta) loads directly."""
    import dataclasses

    from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOnline
    from cotracker3_plugin.weights import load_model

    cfg = dataclasses.replace(CoTrackerConfig.small(online=True), model_resolution=(96, 128))
    model = CoTrackerThreeOnline(cfg)
    path = tmp_path / "step_00000010.pth"
    torch.save({"model": model.state_dict(), "optimizer": {}, "step": 10,
                "meta": {"model_config": cfg.to_dict(), "online": True}}, path)
    loaded = load_model(path)
    assert isinstance(loaded, CoTrackerThreeOnline) and tuple(loaded.model_resolution) == (96, 128)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
