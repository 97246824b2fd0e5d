"""Hyper-parameters of the CoTracker3 networks.

:meth:`CoTrackerConfig.offline` and :meth:`CoTrackerConfig.online` are the official
architectures (the released ``scaled_*.pth`` / ``baseline_*.pth`` checkpoints load into
them); :meth:`CoTrackerConfig.small` is a narrower variant for CPU training and tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CoTrackerConfig:
    """Architecture of a CoTracker3 model (both the offline and the online variant)."""

    window_len: int = 60
    """Frames the time embedding is built for: 60 for the offline model (interpolated to the clip
    length), 16 for the online model (its sliding window, moving by half of it)."""
    stride: int = 4
    """Downsampling factor from the input video to the feature maps."""
    corr_radius: int = 3
    """Half-size of the square sampling patches of the 4-D correlation (7x7 for 3)."""
    corr_levels: int = 4
    """Levels of the average-pooled correlation pyramid."""
    num_virtual_tracks: int = 64
    """Learned virtual tracks through which point tracks exchange information."""
    model_resolution: tuple[int, int] = (384, 512)
    """(H, W) the model works at; the predictors resize videos to it. It also scales the
    relative-motion encoding, so it must match the resolution the weights were trained at."""
    latent_dim: int = 128
    """Channels of the feature maps."""
    encoder_dims: tuple[int, int, int, int] = (64, 96, 128, 128)
    """Channels of the four residual stages of the feature CNN."""
    encoder_fuse_dim: int = 256
    """Channels of the 3x3 convolution that fuses the four stages."""
    corr_hidden_dim: int = 384
    """Hidden width of the MLP that embeds a (2r+1)^4 correlation volume."""
    corr_out_dim: int = 256
    """Output width of the correlation MLP (per pyramid level)."""
    hidden_size: int = 384
    """Token width of the update transformer."""
    num_heads: int = 8
    """Attention heads of the update transformer (head width = hidden_size / num_heads)."""
    time_depth: int = 3
    """Time-attention layers of the update transformer."""
    space_depth: int = 3
    """Space (virtual-track) attention layers; must divide time_depth."""
    mlp_ratio: float = 4.0
    """Width of the transformer MLPs relative to hidden_size."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with a checkpoint (training recipe, provenance); unused by the model."""

    @property
    def posenc_dim(self) -> int:
        """Width of the relative-motion encoding: 4 values + sin and cos at 10 frequencies."""
        return 4 + 2 * 4 * 10

    @property
    def input_dim(self) -> int:
        """Width of a transformer input token: vis, conf, correlation embedding, motion encoding."""
        return 2 + self.corr_levels * self.corr_out_dim + self.posenc_dim

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def __post_init__(self) -> None:
        self.model_resolution = tuple(int(v) for v in self.model_resolution)  # type: ignore[assignment]
        self.encoder_dims = tuple(int(v) for v in self.encoder_dims)  # type: ignore[assignment]
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.space_depth and self.time_depth % self.space_depth:
            raise ValueError(f"space_depth {self.space_depth} must divide time_depth {self.time_depth}")
        if len(self.encoder_dims) != 4:
            raise ValueError("encoder_dims must list the channels of 4 stages")
        h, w = self.model_resolution
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"model_resolution {self.model_resolution} must be divisible by stride {self.stride}"
            )

    # -- presets -------------------------------------------------------------------------

    @classmethod
    def offline(cls) -> CoTrackerConfig:
        """The official offline model (hub ``cotracker3_offline``, window 60)."""
        return cls(window_len=60)

    @classmethod
    def online(cls) -> CoTrackerConfig:
        """The official online model (hub ``cotracker3_online``, window 16)."""
        return cls(window_len=16)

    @classmethod
    def small(cls, online: bool = False) -> CoTrackerConfig:
        """A narrow variant (~2.6 M parameters, ~5 MB in fp16) for CPU training and tests."""
        return cls(
            window_len=16 if online else 60,
            num_virtual_tracks=32,
            latent_dim=64,
            encoder_dims=(32, 48, 64, 64),
            encoder_fuse_dim=128,
            corr_hidden_dim=128,
            corr_out_dim=64,
            hidden_size=128,
            num_heads=4,
            time_depth=2,
            space_depth=2,
        )

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["model_resolution"] = list(self.model_resolution)
        d["encoder_dims"] = list(self.encoder_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoTrackerConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown CoTrackerConfig fields: {unknown}")
        return cls(**d)
