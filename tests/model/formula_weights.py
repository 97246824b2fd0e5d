"""Deterministic "formula weights" of the parity fixtures (../shared/reference/README.md).

Every parameter of the sorted state-dict key list gets values from a splitmix64 stream
keyed by its index; buffers keep their constructor values.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform_stream(key_index: int, n: int) -> np.ndarray:
    """u[i] in [-1, 1), float64, i = 0..n-1."""
    z = (np.uint64(key_index) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
    return (_splitmix64(z) >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2 - 1


def formula_tensor(key: str, key_index: int, shape: tuple[int, ...]) -> np.ndarray:
    n = math.prod(shape)
    u = uniform_stream(key_index, n)
    if key.endswith(".weight") and len(shape) >= 2:
        fan_in = n // shape[0]
        gain = 0.02 if key == "updateformer.vis_conf_head.weight" else 1.0
        w = gain * u * math.sqrt(3.0 / fan_in)
    elif key.endswith(".weight"):
        w = 1 + 0.1 * u
    elif key.endswith(".bias"):
        w = 0.1 * u
    else:
        w = u
    return w.reshape(shape)


def formula_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The formula values for every parameter of ``model`` (buffers left out)."""
    keys = sorted(model.state_dict().keys())
    params = dict(model.named_parameters())
    out = {}
    for k, key in enumerate(keys):
        if key in params:
            shape = tuple(params[key].shape)
            out[key] = torch.from_numpy(formula_tensor(key, k, shape).astype(np.float32))
    return out


def load_formula_weights(model: torch.nn.Module) -> torch.nn.Module:
    missing, unexpected = model.load_state_dict(formula_state_dict(model), strict=False)
    assert not unexpected and set(missing) <= {"time_emb"}, (missing, unexpected)
    return model


def checksums(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    """Per key: (float64 sum, float64 sum of |w|) of the float64 formula values cast to float32."""
    keys = sorted(model.state_dict().keys())
    params = dict(model.named_parameters())
    out = {}
    for k, key in enumerate(keys):
        if key in params:
            w = formula_tensor(key, k, tuple(params[key].shape)).astype(np.float32).astype(np.float64)
            out[key] = (float(w.sum()), float(np.abs(w).sum()))
    return out
