"""Training samples, query selection and the deterministic, resumable batch stream.

A *sample source* (the synthetic generator, the Kubric reader, later real videos) maps a sample
index and a seeded ``numpy.random.Generator`` to a :class:`TrackingSample` (or ``None`` when the
sample cannot be used, e.g. too few trackable points). :class:`BatchStream` turns a source into an
endless sequence of batches for one rank: which index and which seed every batch uses depends only
on (seed, rank, position), so the stream's whole state is one integer and a resumed run sees
exactly the batches the interrupted run would have seen.

Conventions: pixels, x right, y down; queries ``(t, x, y)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class TrackingSample:
    """One training clip with ground-truth tracks (the layout the official Kubric loader gives)."""

    video: torch.Tensor
    """(T, 3, H, W) float32 RGB in [0, 255]."""
    trajectory: torch.Tensor
    """(T, N, 2) float32 pixel positions (x, y)."""
    visibility: torch.Tensor
    """(T, N) bool, True where the point is visible."""
    valid: torch.Tensor
    """(T, N) float32, 1 where the position is trustworthy (all ones for synthetic data)."""
    name: str = ""
    """Where the sample came from (sequence name or seed), for logs."""


@dataclass
class TrackingBatch:
    """A stack of samples: video (B,T,3,H,W), trajectory (B,T,N,2), visibility (B,T,N), valid (B,T,N)."""

    video: torch.Tensor
    trajectory: torch.Tensor
    visibility: torch.Tensor
    valid: torch.Tensor
    names: list[str]

    def to(self, device: torch.device | str) -> TrackingBatch:
        return TrackingBatch(self.video.to(device), self.trajectory.to(device), self.visibility.to(device),
                             self.valid.to(device), self.names)


def collate(samples: list[TrackingSample]) -> TrackingBatch:
    """Stack samples; clips of different length are cut to the shortest, track counts likewise."""
    t = min(s.video.shape[0] for s in samples)
    n = min(s.trajectory.shape[1] for s in samples)
    return TrackingBatch(
        video=torch.stack([s.video[:t] for s in samples]),
        trajectory=torch.stack([s.trajectory[:t, :n] for s in samples]),
        visibility=torch.stack([s.visibility[:t, :n] for s in samples]),
        valid=torch.stack([s.valid[:t, :n] for s in samples]),
        names=[s.name for s in samples],
    )


class SampleSource(Protocol):
    """Anything that makes training samples from an index and a seeded generator."""

    def __len__(self) -> int:
        """Number of distinct samples per epoch (a large number for procedural sources)."""
        ...

    def sample(self, index: int, rng: np.random.Generator) -> TrackingSample | None:
        """The sample at ``index`` with random choices from ``rng``; None if unusable."""
        ...


class MixedSource:
    """Draws every sample from one of several sources with fixed probabilities (e.g. layered and
    3-D synthetic clips). The choice uses the sample's own seeded generator, so a position of the
    batch stream always gives the same source and sample (resume and DDP stay exact)."""

    def __init__(self, sources: list[SampleSource], weights: list[float]) -> None:
        if len(sources) != len(weights) or not sources or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("MixedSource needs one non-negative weight per source and a positive total")
        self.sources = sources
        self.p = np.asarray(weights, float) / float(sum(weights))

    def __len__(self) -> int:
        return max(len(s) for s in self.sources)

    def sample(self, index: int, rng: np.random.Generator) -> TrackingSample | None:
        k = int(rng.choice(len(self.sources), p=self.p))
        src = self.sources[k]
        return src.sample(index % len(src), rng)


class BatchStream:
    """Endless, resumable batches of one rank's share of a sample source.

    Global sample positions are dealt round-robin over ranks (rank r takes r, r + W, r + 2W, ...).
    Position p belongs to epoch p // len(source); within an epoch the indices are a permutation
    seeded by (seed, epoch) when ``shuffle``. The sample at position p is drawn with a generator
    seeded by (seed, p), so every rank sees different data and any position can be replayed.
    Unusable samples are skipped (the next position is tried), so every rank still yields one
    batch per step and DDP ranks stay in step.
    """

    def __init__(self, source: SampleSource, batch_size: int = 1, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, max_skips: int = 100) -> None:
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.max_skips = max_skips
        self.local_position = 0
        """Samples this rank has consumed (used or skipped): the stream's whole state."""
        self.skipped = 0
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def _index(self, position: int) -> int:
        n = len(self.source)
        epoch, k = divmod(position, n)
        if not self.shuffle:
            return k
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(n)
            self._perm_epoch = epoch
        assert self._perm is not None
        return int(self._perm[k])

    def _next_sample(self) -> TrackingSample:
        for _ in range(self.max_skips):
            position = self.local_position * self.world_size + self.rank
            self.local_position += 1
            rng = np.random.default_rng([self.seed, position])
            s = self.source.sample(self._index(position), rng)
            if s is not None:
                return s
            self.skipped += 1
        raise RuntimeError(f"{self.max_skips} consecutive samples were unusable; check the data source")

    def next_batch(self) -> TrackingBatch:
        return collate([self._next_sample() for _ in range(self.batch_size)])

    def state_dict(self) -> dict[str, int]:
        return {"local_position": self.local_position, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.local_position = int(state["local_position"])
        self.skipped = int(state.get("skipped", 0))


def sample_queries(trajectory: torch.Tensor, visibility: torch.Tensor, method: str = "random",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Query points from ground truth, as the official training step picks them (ARCHITECTURE §4.2).

    ``"random"`` (offline runs): each track is queried at a frame drawn uniformly among its visible
    frames. ``"first"`` (online runs): at its first visible frame, except the first N // 4 tracks,
    which get a random visible frame (visible but queried later). Tracks never visible get frame 0.

    Args:
        trajectory: (B, T, N, 2) pixels; visibility: (B, T, N) bool.
    Returns:
        (B, N, 3) float ``(t, x, y)`` on the trajectory's device.
    """
    if method not in ("random", "first"):
        raise ValueError(f"unknown query sampling method {method!r}; use 'random' or 'first'")
    vis = visibility.bool().cpu()
    B, T, N = vis.shape
    # A uniform draw among the visible frames: argmax of (random key where visible, -1 elsewhere).
    keys = torch.rand((B, T, N), generator=generator)
    rand_t = torch.where(vis, keys, torch.full_like(keys, -1.0)).argmax(dim=1)
    if method == "random":
        t = rand_t
    else:
        first_t = vis.float().argmax(dim=1)  # first maximum = first visible frame
        t = first_t.clone()
        t[:, : N // 4] = rand_t[:, : N // 4]
    t = t.to(trajectory.device)
    xy = torch.gather(trajectory, 1, t[:, None, :, None].expand(B, 1, N, 2))[:, 0]
    return torch.cat([t[..., None].to(trajectory.dtype), xy], dim=-1)


def guard_queries(queries: torch.Tensor, trajectory: torch.Tensor, valid: torch.Tensor,
                  limit: float = 1500.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The official guard: NaN or far-away queries become ones and the whole batch invalid."""
    if torch.isnan(queries).any() or torch.isnan(trajectory).any() or queries.abs().max() > limit:
        log.warning("bad ground truth in a batch (NaN or |query| > %s); its track loss is switched off", limit)
        return torch.ones_like(queries), torch.zeros_like(valid)
    return queries, valid
