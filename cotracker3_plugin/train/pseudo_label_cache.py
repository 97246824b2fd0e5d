"""Pseudo-labels computed once and stored on disk, one ``.npz`` shard per real clip.

Labelling with slow teachers (several CoTracker3 checkpoints) dominates a fine-tuning step; a cache
lets the labels be made once, in parallel, and reused by many runs. A shard holds *how to cut* its
clip (video path relative to the data root, frame indices, zoom, crop) rather than the pixels, so a
cache of thousands of clips stays small; the reader decodes the video again.

Shard ``<video index>_<clip index>_<video stem>.npz``: ``video``, ``frame_indices`` (L,), ``scale``,
``crop`` (y0, x0, h, w), ``frame_size`` (H, W) actually used (multiples of 4), ``max_side``,
``queries`` (N, 3) (t, x, y), ``tracks`` (L, N, 2) pixels, ``visible`` (L, N) bool, ``ok`` (False:
SIFT found too few points; the clip trains with a zero valid mask), ``num_found``, ``teacher``.

Writing is resumable (existing shards are skipped; each shard is written atomically) and splits over
``torchrun`` processes by video: rank r labels videos r, r + W, r + 2W, ... . Every random choice of
a clip (cut, SIFT, teacher draw, the offline teacher's helper queries) is seeded by
(seed, video index, clip index), so the cache does not depend on the number of processes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.errors import UserError
from cotracker3_plugin.train.real_videos import (
    ClipPlan,
    RealSample,
    RealVideoConfig,
    apply_plan,
    decode_video,
    list_videos,
    plan_clip,
)
from cotracker3_plugin.train.sift_queries import sample_sift_queries
from cotracker3_plugin.train.teachers import Teacher

log = logging.getLogger(__name__)

MANIFEST = "cache.json"
SHARD_RE = re.compile(r"^\d{6}_\d{3}_.*\.npz$")
FORMAT_VERSION = 1


@dataclass
class PrecomputeReport:
    """What :func:`precompute_pseudo_labels` did on this rank."""

    written: int = 0
    existing: int = 0
    """Shards already present (a resumed run)."""
    sift_failed: int = 0
    """Clips written with ok = False (too few SIFT points)."""


def shard_name(video_index: int, clip_index: int, video: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", video.stem)[:60]
    return f"{video_index:06d}_{clip_index:03d}_{stem}.npz"


def _manifest(cfg: RealVideoConfig, teachers: Sequence[Teacher], num_queries: int, seed: int,
              clips_per_video: int) -> dict:
    return {"version": FORMAT_VERSION, "root": str(Path(cfg.root).resolve()), "seq_len": cfg.seq_len,
            "random_seq_len": cfg.random_seq_len, "random_frame_rate": cfg.random_frame_rate,
            "crop_size": list(cfg.crop_size), "max_side": cfg.max_side, "scale_range": list(cfg.scale_range),
            "reverse_prob": cfg.reverse_prob, "num_queries": num_queries, "seed": seed,
            "clips_per_video": clips_per_video, "teachers": [t.name for t in teachers]}


def _check_manifest(out_dir: Path, manifest: dict) -> None:
    path = out_dir / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        diff = sorted(k for k in manifest if k != "root" and old.get(k) != manifest[k])
        if diff:
            raise UserError(f"the pseudo-label cache {out_dir} was written with other settings ({', '.join(diff)} "
                            "differ). Use the same options to resume it, or another --cache-dir.")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))


def label_clip(frames: np.ndarray, teachers: Sequence[Teacher], rng: np.random.Generator, num_queries: int,
               device: torch.device | str = "cpu") -> dict:
    """SIFT queries and one uniformly drawn teacher's labels for a clip (L, H, W, 3) uint8."""
    sq = sample_sift_queries(frames, num_queries, rng=rng)
    k = int(rng.integers(len(teachers)))
    teacher = teachers[k]
    T = len(frames)
    if not sq.ok:  # the clip is masked out in training: no need to run the teacher
        return {"queries": sq.queries, "tracks": np.zeros((T, num_queries, 2), np.float32),
                "visible": np.zeros((T, num_queries), bool), "ok": False, "num_found": sq.num_found,
                "teacher": ""}
    gen = getattr(teacher, "rng", None)
    if isinstance(gen, torch.Generator):  # the offline teacher's helper queries
        gen.manual_seed(int(rng.integers(2**62)))
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None].to(device)
    labels = teacher(video, torch.from_numpy(sq.queries)[None].to(device))
    return {"queries": sq.queries, "tracks": labels.tracks[0].float().cpu().numpy(),
            "visible": labels.visible[0].bool().cpu().numpy(), "ok": True, "num_found": sq.num_found,
            "teacher": teacher.name}


def precompute_pseudo_labels(
    cfg: RealVideoConfig,
    teachers: Sequence[Teacher],
    out_dir: str | Path,
    *,
    clips_per_video: int = 1,
    num_queries: int = 384,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> PrecomputeReport:
    """Label ``clips_per_video`` clips of every video under ``cfg.root`` into ``out_dir`` shards.

    ``rank``/``world_size`` default to torchrun's ``RANK``/``WORLD_SIZE``; rank r takes videos
    r, r + W, ... . Existing shards are kept (resume).
    """
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.root)
    videos = list_videos(root)
    _check_manifest(out_dir, _manifest(cfg, teachers, num_queries, seed, clips_per_video))
    report = PrecomputeReport()
    for vi in range(rank, len(videos), world_size):
        path = videos[vi]
        frames = None
        for ci in range(clips_per_video):
            shard = out_dir / shard_name(vi, ci, path)
            if shard.is_file():
                report.existing += 1
                continue
            if frames is None:
                frames = decode_video(path, cfg.max_side)
            rng = np.random.default_rng([seed, vi, ci])
            plan = plan_clip(len(frames), frames.shape[1:3], cfg, rng)
            clip = apply_plan(frames, plan)
            h, w = (clip.shape[1] // 4) * 4, (clip.shape[2] // 4) * 4
            clip = np.ascontiguousarray(clip[:, :h, :w])
            with torch.no_grad():
                labels = label_clip(clip, teachers, rng, num_queries, device)
            report.sift_failed += not labels["ok"]
            with atomic_path(shard) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(
                    f, video=str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
                    frame_indices=plan.frame_indices, scale=np.float64(plan.scale),
                    crop=np.asarray(plan.crop, np.int64), frame_size=np.asarray([h, w], np.int64),
                    max_side=np.int64(-1 if cfg.max_side is None else cfg.max_side), **labels)
            report.written += 1
            if progress is not None:
                progress(f"{shard.name}: {labels['teacher'] or 'skipped (too few SIFT points)'}")
    log.info("rank %d: %d shards written, %d already there, %d SIFT failures", rank, report.written,
             report.existing, report.sift_failed)
    return report


def list_shards(cache_dir: str | Path) -> list[Path]:
    cache_dir = Path(cache_dir)
    return sorted(p for p in cache_dir.iterdir() if SHARD_RE.match(p.name)) if cache_dir.is_dir() else []


class CachedPseudoLabels:
    """Sample source over a pseudo-label cache (for :class:`~cotracker3_plugin.train.finetune.RealBatchStream`).

    Args:
        cache_dir: the folder written by :func:`precompute_pseudo_labels`.
        cfg: clip settings; only ``root`` is used (where the videos are now; defaults to the
            root recorded in the cache when that folder has no such video).
    """

    def __init__(self, cache_dir: str | Path, cfg: RealVideoConfig | None = None) -> None:
        self.dir = Path(cache_dir)
        self.shards = list_shards(self.dir)
        if not self.shards:
            raise UserError(f"no pseudo-label shards in {self.dir}. Write them with "
                            "`cotracker3 finetune --precompute --cache-dir DIR ...`.")
        manifest_path = self.dir / MANIFEST
        self.manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        self.roots = [Path(cfg.root)] if cfg is not None else []
        if "root" in self.manifest:
            self.roots.append(Path(self.manifest["root"]))

    @property
    def teacher_names(self) -> list[str]:
        return list(self.manifest.get("teachers", []))

    def __len__(self) -> int:
        return len(self.shards)

    def _video_path(self, rel: str) -> Path:
        for root in self.roots:
            if (root / rel).exists():
                return root / rel
        if Path(rel).exists():
            return Path(rel)
        raise UserError(f"the video {rel} of the pseudo-label cache {self.dir} is not under "
                        f"{', '.join(map(str, self.roots))}. Pass --data.root the folder the cache was made from.")

    def sample(self, index: int, rng: np.random.Generator | None = None) -> RealSample:
        shard = self.shards[index]
        with np.load(shard, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        max_side = int(d["max_side"])
        frames = decode_video(self._video_path(str(d["video"])), None if max_side < 0 else max_side)
        plan = ClipPlan(d["frame_indices"].astype(np.int64), float(d["scale"]),
                        tuple(int(v) for v in d["crop"]))  # type: ignore[arg-type]
        h, w = (int(v) for v in d["frame_size"])
        clip = apply_plan(frames, plan)[:, :h, :w]
        video = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()
        return RealSample(video, shard.stem, queries=torch.from_numpy(d["queries"]).float(),
                          trajectory=torch.from_numpy(d["tracks"]).float(),
                          visibility=torch.from_numpy(d["visible"]).bool(), ok=bool(d["ok"]),
                          teacher=str(d["teacher"]))
