"""Fixtures of the CLI tests: tiny random-weight checkpoints and one torch thread.

The models are the small config at a 96x128 model resolution (instead of 384x512) so that a
CPU run takes seconds; the checkpoints go through ``weights.save_checkpoint`` and come back
through ``--model PATH`` like a user's own checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline
from cotracker3_plugin.weights import save_checkpoint


def _tiny(online: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = dataclasses.replace(CoTrackerConfig.small(online=online), model_resolution=(96, 128))
    return (CoTrackerThreeOnline if online else CoTrackerThreeOffline)(cfg).eval()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These runs take about a second of CPU; on a shared machine one thread avoids
    # OpenMP spin-waiting that can stretch them to a minute.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny_offline.safetensors"
    save_checkpoint(_tiny(False), path)
    return path


@pytest.fixture(scope="module")
def tiny_online_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny_online.safetensors"
    save_checkpoint(_tiny(True), path)
    return path
