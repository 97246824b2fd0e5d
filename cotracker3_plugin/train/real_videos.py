"""Real, unlabelled videos for pseudo-label fine-tuning.

Follows the official real-video sampler (ARCHITECTURE.md §5.1): a random clip of length L
(random in [seq_len/2, seq_len) when ``random_seq_len``), a random frame stride when
``random_frame_rate`` (r ~ U{1..m-1}, m = min(4, len // L)), videos shorter than L extended by
their time-reversed copy (ping-pong), a random crop; no photometric augmentation. Extra real
footage can be made from the same videos (``reverse_prob``: play backwards; ``scale_range``:
random zoom before the crop), which is how this package stretches the few real videos it ships with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from cotracker3_plugin.errors import UserError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclass
class RealVideoConfig:
    """Where the real videos are and how clips are cut from them."""

    root: Path = Path("videos")
    """A folder of videos (any mix of sizes/lengths/fps) and/or sub-folders of JPEG/PNG frames."""
    seq_len: int = 80
    """Clip length L (official: 80 for the offline student, 64 for online)."""
    random_seq_len: bool = True
    """Draw L uniformly from [seq_len // 2, seq_len) (official offline recipe)."""
    random_frame_rate: bool = True
    """Random frame stride as in the official sampler."""
    crop_size: tuple[int, int] = (384, 512)
    """(height, width) of the random crop; a dimension smaller than the crop is kept as is."""
    max_side: int | None = None
    """Downscale decoded frames so the longer side is at most this (None: keep)."""
    scale_range: tuple[float, float] = (1.0, 1.0)
    """Random zoom applied to the whole clip before cropping (1, 1: none)."""
    reverse_prob: float = 0.0
    """Probability of playing the clip backwards (extra real footage from the same videos)."""


@dataclass
class RealSample:
    """One real clip, with pseudo-labels when they come from the cache.

    It lives here, with the clip sampler, because both the fine-tuning loop
    (:mod:`~cotracker3_plugin.train.finetune`) and the pseudo-label cache
    (:mod:`~cotracker3_plugin.train.pseudo_label_cache`) make and consume it; either importing it
    from the other made the two modules import each other.
    """

    video: torch.Tensor
    """(T, 3, H, W) float32 in [0, 255]."""
    name: str = ""
    queries: torch.Tensor | None = None
    """(N, 3) (t, x, y) when labelled."""
    trajectory: torch.Tensor | None = None
    """(T, N, 2) pseudo tracks when labelled."""
    visibility: torch.Tensor | None = None
    """(T, N) bool pseudo-visibility when labelled."""
    ok: bool = True
    """False when SIFT found too few points (the clip's loss is masked out)."""
    teacher: str = ""


def list_videos(root: Path) -> list[Path]:
    """Video files and image folders under ``root`` (sorted, recursive)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Real-video folder {root} does not exist. Pass --data.root a folder of videos.")
    items = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    items += sorted(p for p in root.rglob("*") if p.is_dir()
                    and any(q.suffix.lower() in (".jpg", ".jpeg", ".png") for q in p.iterdir()))
    if not items:
        raise UserError(f"No videos or image folders found under {root}.")
    return items


@lru_cache(maxsize=16)
def decode_video(path: Path, max_side: int | None) -> np.ndarray:
    """All frames (T, H, W, 3) uint8 of a video file or image folder (cached: a few videos are reused)."""
    from cotracker3_plugin.io import load_clip

    return load_clip(path, max_side=max_side).frames


@dataclass
class ClipPlan:
    """Which frames of a decoded video make a clip, and how they are zoomed and cropped.

    Enough to cut the same clip again from the same decoded video (pseudo-label cache shards
    store it instead of the pixels).
    """

    frame_indices: np.ndarray
    """(L,) int64 indices into the decoded video (ping-pong, stride and reversal applied)."""
    scale: float
    """Zoom applied to every frame before cropping (1.0: none)."""
    crop: tuple[int, int, int, int]
    """(y0, x0, h, w) of the crop in the zoomed frame."""


def plan_clip(num_frames: int, frame_hw: tuple[int, int], cfg: RealVideoConfig,
              rng: np.random.Generator) -> ClipPlan:
    """Draw a clip of a video with ``num_frames`` frames of size ``frame_hw`` (official sampler)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    length = int(rng.integers(cfg.seq_len // 2, cfg.seq_len)) if cfg.random_seq_len else cfg.seq_len
    idx = np.arange(num_frames)
    while len(idx) < length:  # ping-pong: append the time-reversed video
        back = idx[::-1][1:]
        idx = np.concatenate([idx, back if len(back) else idx])
    stride = 1
    if cfg.random_frame_rate:
        m = min(4, len(idx) // length)
        stride = int(rng.integers(1, m)) if m > 1 else 1
    start = int(rng.integers(0, len(idx) - (length - 1) * stride))
    idx = idx[start:start + (length - 1) * stride + 1:stride]
    if rng.random() < cfg.reverse_prob:
        idx = idx[::-1]
    lo, hi = cfg.scale_range
    scale = 1.0
    h, w = frame_hw
    if hi > lo or lo != 1.0:
        scale = float(rng.uniform(lo, hi))
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    ch, cw = cfg.crop_size
    y0 = int(rng.integers(0, h - ch + 1)) if h > ch else 0
    x0 = int(rng.integers(0, w - cw + 1)) if w > cw else 0
    return ClipPlan(np.ascontiguousarray(idx, dtype=np.int64), scale, (y0, x0, min(ch, h), min(cw, w)))


def apply_plan(frames: np.ndarray, plan: ClipPlan) -> np.ndarray:
    """Cut the clip a :class:`ClipPlan` describes: (L, h, w, 3) uint8."""
    clip = frames[plan.frame_indices]
    s = plan.scale
    if s != 1.0:
        h, w = clip.shape[1:3]
        size = (max(1, round(w * s)), max(1, round(h * s)))
        clip = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                         for f in clip])
    y0, x0, ch, cw = plan.crop
    return np.ascontiguousarray(clip[:, y0:y0 + ch, x0:x0 + cw])


def cut_clip(frames: np.ndarray, cfg: RealVideoConfig, rng: np.random.Generator) -> np.ndarray:
    """One random clip (L, h, w, 3) uint8 from a decoded video, as the official sampler cuts it."""
    return apply_plan(frames, plan_clip(len(frames), frames.shape[1:3], cfg, rng))


class RealVideoDataset(torch.utils.data.Dataset):
    """Random clips of real videos; item = {"video": (L,3,h,w) float 0..255, "name": str, "seed": int}.

    Deterministic per (seed, index): the same item is the same clip, so a resumed or
    sharded run sees the same data.
    """

    def __init__(self, cfg: RealVideoConfig, *, length: int | None = None, seed: int = 0) -> None:
        self.cfg = cfg
        self.videos = list_videos(cfg.root)
        self.length = length or len(self.videos)
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        path = self.videos[index % len(self.videos)]
        clip = cut_clip(decode_video(path, self.cfg.max_side), self.cfg, rng)
        # Model input sizes must be divisible by 4: crop the remainder.
        h, w = (clip.shape[1] // 4) * 4, (clip.shape[2] // 4) * 4
        video = torch.from_numpy(clip[:, :h, :w]).permute(0, 3, 1, 2).float()
        return {"video": video, "name": path.name, "seed": index}
