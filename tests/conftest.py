"""Shared test fixtures: paths into ../shared (parity fixtures and real data)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ../shared beside the repository (CI lays it there); override with COTRACKER3_SHARED.
SHARED = Path(os.environ.get("COTRACKER3_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set COTRACKER3_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference"


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    # CI has 2 cores; keep torch from oversubscribing them.
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass


# --------------------------------------------------------------------------- test videos
def pattern_frames(num: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) frames: a white 8x8 marker at the top-left corner, a frame-number grey
    level in the right half (value 20 + 8*i) so decoded frames can be told apart."""
    frames = np.full((num, height, width, 3), 60, dtype=np.uint8)
    frames[:, :8, :8] = 255
    for i in range(num):
        frames[i, :, width // 2:] = 20 + 8 * (i % 29)
    return frames


def frame_number(frame: np.ndarray) -> int:
    """Inverse of the grey level written by ``pattern_frames`` (read in the right half)."""
    h, w = frame.shape[:2]
    level = float(frame[h // 4: 3 * h // 4, w // 2 + w // 8: w - w // 8].mean())
    return int(round((level - 20) / 8))


def write_test_video(path: Path, frames: np.ndarray, *, fps: int = 10, codec: str = "libx264",
                     pix_fmt: str = "yuv420p", rotation: int = 0, gop: int | None = None,
                     in_format: str = "rgb24") -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for f in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format=in_format)):
                container.mux(p)
        for p in stream.encode():
            container.mux(p)
    return path


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """``make_video(name, frames=None, num=20, **writer_options)`` -> path of a new test video."""

    def make(name: str = "v.mp4", frames: np.ndarray | None = None, num: int = 20, **kw) -> Path:
        frames = pattern_frames(num) if frames is None else frames
        return write_test_video(tmp_path / name, frames, **kw)

    return make


@pytest.fixture(name="pattern_frames")
def _pattern_frames() -> Callable[..., np.ndarray]:
    return pattern_frames


@pytest.fixture
def frame_no() -> Callable[[np.ndarray], int]:
    return frame_number
