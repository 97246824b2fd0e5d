"""Helpers for the predictor tests: formula weights, fixture cases, a replaying model.

Deterministic float64 values from splitmix64 of (sorted key index, element index), cast to
float32; buffers keep their constructor values.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def formula_tensor(key: str, k: int, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n, dtype=np.uint64)
    z = (np.uint64(k) << np.uint64(32)) + i
    u = (_splitmix64(z) >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2 - 1
    if key == "updateformer.vis_conf_head.weight":
        w = 0.02 * u * math.sqrt(3 / (n // shape[0]))
    elif key.endswith(".weight") and len(shape) >= 2:
        w = u * math.sqrt(3 / (n // shape[0]))
    elif key.endswith(".weight"):
        w = 1 + 0.1 * u
    elif key.endswith(".bias"):
        w = 0.1 * u
    else:
        w = u
    return w.astype(np.float32).reshape(shape)


def apply_formula_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Overwrite every parameter of ``model`` with the formula values (in place)."""
    sd = model.state_dict()
    keys = sorted(sd.keys())
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, key in enumerate(keys):
            if key not in params:
                continue  # buffers (time_emb) keep their constructor values
            p = params[key]
            p.copy_(torch.from_numpy(formula_tensor(key, k, tuple(p.shape))))
    return model



def offline_raw_coords(fixtures, name: str, j: int, input_hw=(216, 389)) -> np.ndarray:
    """The j-th offline model call's coords in model pixels.

    The official offline predictor post-processes the model's coords tensor *in place*
    (backward merge, query forcing, ``tracks *= scale`` on a view of the user points), and the
    fixture generator recorded that same tensor: in ``<name>_raw0_coords`` the user points hold
    the final tracks in input pixels (support points stay in model pixels). Undo the scaling;
    the forced / merged values are what the predictor writes there again anyway.
    """
    c = np.array(fixtures[f"{name}_raw{j}_coords"])
    if j == 0:
        n = fixtures[f"{name}_tracks"].shape[1]
        h, w = input_hw
        c[:, :n] /= np.array([(w - 1) / 511, (h - 1) / 383], np.float32)
    return c


class ReplayModel(torch.nn.Module):
    """Returns ``<name>_raw<j>_*`` for the j-th call; records what it was called with."""

    def __init__(self, fixtures, name: str, online: bool):
        super().__init__()
        self.raw = []
        j = 0
        while f"{name}_raw{j}_coords" in fixtures:
            c = fixtures[f"{name}_raw{j}_coords"] if online else offline_raw_coords(fixtures, name, j)
            self.raw.append(tuple(torch.from_numpy(np.asarray(a))[None] for a in (
                c, fixtures[f"{name}_raw{j}_vis"], fixtures[f"{name}_raw{j}_conf"])))
            j += 1
        self.online = online
        self.model_resolution = (384, 512)
        self.window_len = 16 if online else 60
        self.calls: list[dict] = []

    def init_video_online_processing(self) -> None:
        self.online_ind = 0

    def forward(self, video, queries, iters=4, is_train=False, is_online=False):
        assert not is_train and iters == 6 and is_online == self.online
        assert tuple(video.shape[-2:]) == self.model_resolution
        j = len(self.calls)
        self.calls.append({"video": video.clone(), "queries": queries.clone()})
        c, v, f = self.raw[j]
        assert c.shape[2] == queries.shape[1], (c.shape, queries.shape)
        if is_online:
            assert video.shape[1] <= 16 and c.shape[1] == self.online_ind + video.shape[1]
            self.online_ind += 8
        else:
            assert c.shape[1] == video.shape[1]
        return c.clone(), v.clone(), f.clone(), None


# name -> (online, kwargs of track(), number of frames or "pingpong")
CASES = {
    "pred_grid5": (False, {"grid_size": 5}, 24),
    "pred_queries_forward": (False, {"queries": "pred_queries"}, 24),
    "pred_queries_backward": (False, {"queries": "pred_queries", "backward_tracking": True}, 24),
    "pred_mask_grid8": (False, {"grid_size": 8, "segm_mask": "pred_mask"}, 24),
    "pred_grid5_qf5_backward": (False, {"grid_size": 5, "grid_query_frame": 5,
                                        "backward_tracking": True}, 24),
    "pred_grid4_T64": (False, {"grid_size": 4}, "pingpong"),
    "online_pred_grid5": (True, {"grid_size": 5}, 24),
    "online_pred_queries": (True, {"queries": "pred_queries"}, 24),
    "online_pred_grid5_T21": (True, {"grid_size": 5}, 21),
}


def case_inputs(fx, name: str):
    """(video (T,H,W,3) uint8, online, kwargs) for fixture ``name``."""
    online, kw, frames = CASES[name]
    video = fx["video_48_u8"]
    video = video[fx["video_64_pingpong_index"]] if frames == "pingpong" else video[:frames]
    kw = {k: (fx[v] if isinstance(v, str) else v) for k, v in kw.items()}
    return np.ascontiguousarray(video), online, kw


def compare(tracks, fx, name: str, tol: float = 1e-2) -> tuple[float, int]:
    """(max |xy - official| px, bool mismatches)."""
    ref_xy, ref_vis = fx[f"{name}_tracks"], fx[f"{name}_vis"]
    assert tracks.xy.shape == ref_xy.shape, (tracks.xy.shape, ref_xy.shape)
    return float(np.abs(tracks.xy - ref_xy).max()), int((tracks.visible != ref_vis).sum())


class ConstantVelocityModel(torch.nn.Module):
    """An oracle 'network': every point moves by ``velocity`` model pixels per frame.

    Offline calls return ``q + v (t - t_q)`` for every frame of the clip; streaming calls
    (``is_online=True``) return all frames seen so far, like the online model. vis = conf =
    ``prob``. Records the length of every clip it is given.
    """

    def __init__(self, velocity=(1.5, -0.5), prob: float = 0.9, online: bool = False,
                 resolution=(96, 128)):
        super().__init__()
        self.v = torch.tensor(velocity, dtype=torch.float32)
        self.prob = prob
        self.model_resolution = tuple(resolution)
        self.window_len = 16 if online else 60
        self.lengths: list[int] = []
        if online:
            self.init_video_online_processing = self._reset

    def _reset(self) -> None:
        self.online_ind = 0

    def forward(self, video, queries, iters=4, is_train=False, is_online=False):
        assert tuple(video.shape[-2:]) == self.model_resolution
        self.lengths.append(video.shape[1])
        t = video.shape[1] + (self.online_ind if is_online else 0)
        if is_online:
            self.online_ind += self.window_len // 2
        frames = torch.arange(t, dtype=torch.float32)[None, :, None, None]
        coords = queries[:, None, :, 1:] + self.v * (frames - queries[:, None, :, :1])
        p = torch.full(coords.shape[:3], self.prob)
        return coords, p, p.clone(), None
