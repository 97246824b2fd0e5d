"""CoTracker3 (Karaev et al., 2024): offline and online point trackers.

Data flow of one forward pass (B videos, T frames, N query points)::

    video (B,T,3,H,W) in [0,255] ──fnet──▶ L2-normalised features (B,T,C,H/4,W/4)
        ──avg-pool──▶ pyramid of ``corr_levels`` levels
    queries (B,N,3) = (t, x, y) ──▶ 7x7 query patches on frame t of every level (once)
    repeat ``iters`` times, starting from the query position on every frame:
        7x7 patches around the current estimate on every frame, all pairwise dot products
        with the query patch (2401 numbers per level) ──corr_mlp──▶ correlation embedding
        tokens = [vis logit, conf logit, correlation embedding, motion encoding] + time embedding
        ──updateformer──▶ (dx, dy, dvis, dconf)  added to the estimates

The offline model treats the whole clip as one window; the online model slides a window of
``window_len`` frames by half a window, carrying estimates over, either over a whole video
(``is_online=False``) or chunk by chunk (``is_online=True``, after
:meth:`CoTrackerThreeOnline.init_video_online_processing`).

Coordinates are pixels of the model-resolution video, x right, y down. Outputs and
parameter names match the official implementation (facebookresearch/co-tracker) so its
checkpoints load unchanged and give the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cotracker3_plugin.model.config import CoTrackerConfig
from cotracker3_plugin.model.correlation import (
    correlation_volume,
    correlation_volume_fast,
    fast_feature_map,
    query_operand,
    sample_frame_patches,
    sample_video_patches,
)
from cotracker3_plugin.model.encoder import BasicEncoder
from cotracker3_plugin.model.transformer import Mlp, UpdateFormer

#: Frames per feature-CNN call. The official code uses 200; 16 computes the same features with
#: a fraction of the memory (a 60-frame 384x512 window: 2.3 instead of 5.7 GiB peak) and,
#: its activations staying in cache, about 20 % faster on CPU.
FMAPS_CHUNK = 16
#: (frame, track) pairs whose correlation volumes are computed at once at inference (~50 MB of
#: volumes; the result is the same as for the whole clip at once).
INFERENCE_CORRELATION_ROWS = 4096

TrainData = tuple[list[list[torch.Tensor]], list[list[torch.Tensor]], list[list[torch.Tensor]], torch.Tensor]
ModelOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, "TrainData | None"]


def sincos_time_embedding(dim: int, length: int) -> torch.Tensor:
    """(1, length, dim) embedding [sin(p w_k) ..., cos(p w_k) ...], w_k = 10000^(-2k/dim), in float64."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    pos = torch.arange(length, dtype=torch.float64)
    angles = pos[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[None].float()


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast computes in on ``device`` right now, or None outside autocast."""
    if not torch.is_autocast_enabled(device.type):
        return None
    return torch.get_autocast_dtype(device.type)


def motion_encoding(coords: torch.Tensor, scale: torch.Tensor, num_freqs: int = 10) -> torch.Tensor:
    """Fourier encoding of the displacement to the next and previous frame.

    coords (B, S, N, 2) in feature units; returns (B, S, N, 4 + 8 * num_freqs) =
    [u, sin(u 2^k), cos(u 2^k)] with u = [P_t - P_t+1, P_t - P_t-1] / scale (zero at the ends),
    frequency-major (index 4k + m).
    """
    diff = coords[:, 1:] - coords[:, :-1]
    forward = F.pad(-diff, (0, 0, 0, 0, 0, 1)) / scale
    backward = F.pad(diff, (0, 0, 0, 0, 1, 0)) / scale
    u = torch.cat([forward, backward], dim=-1)
    freqs = torch.tensor([2**i for i in range(num_freqs)], dtype=u.dtype, device=u.device)
    ub = (u[..., None, :] * freqs[:, None]).reshape(*u.shape[:-1], -1)
    # cos(x) = sin(x + pi/2): one sin call, as in the official code.
    return torch.cat([u, torch.sin(torch.cat([ub, ub + 0.5 * torch.pi], dim=-1))], dim=-1)


class CoTrackerThreeBase(nn.Module):
    """Shared networks and per-window refinement; subclasses define ``forward``."""

    def __init__(self, config: CoTrackerConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.default_config()
        cfg = self.config
        self.fnet = BasicEncoder(cfg.latent_dim, cfg.encoder_dims, cfg.encoder_fuse_dim, cfg.stride)
        k = 2 * cfg.corr_radius + 1
        self.corr_mlp = Mlp(k**4, cfg.corr_hidden_dim, cfg.corr_out_dim, approximate="none")
        self.updateformer = UpdateFormer(
            input_dim=cfg.input_dim,
            hidden_size=cfg.hidden_size,
            num_heads=cfg.num_heads,
            time_depth=cfg.time_depth,
            space_depth=cfg.space_depth,
            mlp_ratio=cfg.mlp_ratio,
            num_virtual_tracks=cfg.num_virtual_tracks,
        )
        self.register_buffer("time_emb", sincos_time_embedding(cfg.input_dim, cfg.window_len))
        self.fast = False

    @staticmethod
    def default_config() -> CoTrackerConfig:
        return CoTrackerConfig.offline()

    # -- attributes the predictors and trainers use ------------------------------------------

    @property
    def window_len(self) -> int:
        return self.config.window_len

    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def model_resolution(self) -> tuple[int, int]:
        return self.config.model_resolution

    def set_model_resolution(self, size: tuple[int, int]) -> CoTrackerThreeBase:
        """Run (and train) at another input size. The weights do not depend on it: the motion
        encoding divides displacements by this size, so motion stays relative to the frame."""
        self.config = dataclasses.replace(self.config, model_resolution=tuple(size))
        return self

    @property
    def corr_levels(self) -> int:
        return self.config.corr_levels

    @property
    def corr_radius(self) -> int:
        return self.config.corr_radius

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def set_fast(self, fast: bool = True) -> CoTrackerThreeBase:
        """Faster kernels: fused attention (``F.scaled_dot_product_attention``) and a gather-based
        correlation on channels-last features (:func:`correlation_volume_fast`). The same
        function with different float rounding: on the parity fixtures the tracks stay within
        the 1e-3 px tolerance (``tests/model/test_model_units.py::test_fast_mode_parity``).
        """
        self.fast = fast
        self.updateformer.set_fused_attention(fast)
        return self

    # -- building blocks ---------------------------------------------------------------------

    def encode(self, video: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Normalised video (B, T, 3, H, W) in [-1, 1] -> L2-normalised features (B, T, C, H/s, W/s)."""
        b, t, c, h, w = video.shape
        # Channels-last convolutions are faster on CPU (oneDNN's native layout); the instance
        # norms keep the layout (see encoder._instance_norm), so it is converted once here.
        frames = video.reshape(b * t, c, h, w).contiguous(memory_format=torch.channels_last)
        if chunk_size is not None and t > chunk_size:
            fmaps = torch.cat(
                [self.fnet(frames[i : i + b * chunk_size]) for i in range(0, b * t, b * chunk_size)]
            )
        else:
            fmaps = self.fnet(frames)
        # Normalise along channels in channels-last layout, as the official code does, so the
        # reduction order (and therefore the rounding) is the same. Under autocast the CNN's
        # output is bf16/fp16: normalise (and correlate) in the video's float32 all the same.
        fmaps = fmaps.to(video.dtype).permute(0, 2, 3, 1)
        norm = torch.sqrt(torch.clamp_min(torch.sum(torch.square(fmaps), dim=-1, keepdim=True), 1e-12))
        fmaps = (fmaps / norm).permute(0, 3, 1, 2)
        return fmaps.reshape(b, t, self.latent_dim, h // self.stride, w // self.stride)

    def pyramid(self, fmaps: torch.Tensor) -> list[torch.Tensor]:
        """Level 0 and ``corr_levels - 1`` 2x2 average-pooled levels (not re-normalised)."""
        levels = [fmaps]
        b, t = fmaps.shape[:2]
        for _ in range(self.corr_levels - 1):
            pooled = F.avg_pool2d(fmaps.reshape(b * t, *fmaps.shape[2:]), 2, stride=2)
            fmaps = pooled.reshape(b, t, *pooled.shape[1:])
            levels.append(fmaps)
        return levels

    def query_patches(
        self, pyramid: Sequence[torch.Tensor], frames: torch.Tensor, coords: torch.Tensor
    ) -> list[torch.Tensor]:
        """Per level, the (B, (2r+1)^2, N, C) patch around each query (coords in feature units)."""
        return [
            sample_video_patches(level, frames, coords / 2**i, self.corr_radius)
            for i, level in enumerate(pyramid)
        ]

    def time_embedding(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """``time_emb`` resampled (linear, align_corners=False) to ``length`` frames."""
        if length == self.time_emb.shape[1]:
            return self.time_emb
        emb = F.interpolate(self.time_emb.float().permute(0, 2, 1), size=length, mode="linear")
        return emb.permute(0, 2, 1).to(dtype)

    def correlation_embedding(
        self, pyramid: Sequence[torch.Tensor], coords: torch.Tensor, patches: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """(B, S, N, levels * corr_out_dim) embedding of the 4-D correlation at ``coords`` (feature units).

        ``pyramid`` levels are (B, S, C, H, W), in fast mode the layout :func:`fast_feature_map` makes once per
        window; ``patches`` are the query patches as :func:`query_operand` lays them out.
        Without autograd it runs on chunks of frames: each (frame, track) pair holds a k^4 volume
        (2401 floats), so a whole clip's volumes would dominate inference memory.
        """
        b, s, n, _ = coords.shape
        chunk = s if torch.is_grad_enabled() else max(1, INFERENCE_CORRELATION_ROWS // max(b * n, 1))
        if chunk < s:
            return torch.cat([
                self.correlation_embedding([lvl[:, t:t + chunk] for lvl in pyramid], coords[:, t:t + chunk], patches)
                for t in range(0, s, chunk)
            ], dim=1)
        flat = coords.reshape(b * s, n, 2)
        embs = []
        for i, (level, qp) in enumerate(zip(pyramid, patches)):
            level = level.reshape(b * s, *level.shape[2:])
            if self.fast:
                vol = correlation_volume_fast(level, flat / 2**i, None, self.corr_radius, operand=qp)
            else:
                vol = correlation_volume(sample_frame_patches(level, flat / 2**i, self.corr_radius), None, operand=qp)
            embs.append(self.corr_mlp(vol))
        return torch.cat(embs, dim=-1).view(b, s, n, -1)

    def refine(
        self,
        pyramid: Sequence[torch.Tensor],
        patches: Sequence[torch.Tensor],
        coords: torch.Tensor,
        vis: torch.Tensor,
        conf: torch.Tensor,
        iters: int,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Iteratively update one window.

        coords (B, S, N, 2) in feature units, vis / conf (B, S, N) logits. Returns per-iteration
        coords in pixels and vis / conf logits. Only the coordinates are detached between
        iterations (as in the official training).
        """
        b, s, n, _ = coords.shape
        time_emb = self.time_embedding(s, pyramid[0].dtype)
        h, w = self.model_resolution
        scale = torch.tensor([w / self.stride, h / self.stride], device=coords.device)
        if self.fast:
            # Gather-friendly copies once per window (not once per iteration and chunk of frames).
            # Under autocast they are stored in its dtype: half the memory traffic of the gathers,
            # and the correlation products run on the bf16 units (corr_mlp would round its input
            # to bf16 anyway).
            dtype = _autocast_dtype(coords.device) or pyramid[0].dtype
            pyramid = [fast_feature_map(lvl, self.corr_radius, dtype) for lvl in pyramid]
            patches = [query_operand(qp, dtype) for qp in patches]
        else:
            # The query patches' matmul layout once per window; the same numbers, one copy instead of one per
            # iteration and chunk of frames.
            patches = [query_operand(qp, lvl.dtype) for qp, lvl in zip(patches, pyramid)]
        coord_preds, vis_preds, conf_preds = [], [], []
        for _ in range(iters):
            coords = coords.detach()
            corr = self.correlation_embedding(pyramid, coords, patches)
            tokens = torch.cat(
                [vis[..., None], conf[..., None], corr, motion_encoding(coords, scale)], dim=-1
            )
            tokens = tokens.permute(0, 2, 1, 3).reshape(b * n, s, -1) + time_emb
            delta = self.updateformer(tokens.view(b, n, s, -1))
            coords = coords + delta[..., :2].permute(0, 2, 1, 3)
            vis = vis + delta[..., 2].permute(0, 2, 1)
            conf = conf + delta[..., 3].permute(0, 2, 1)
            coord_preds.append(coords * float(self.stride))
            vis_preds.append(vis)
            conf_preds.append(conf)
        return coord_preds, vis_preds, conf_preds

    @staticmethod
    def _check_inputs(video: torch.Tensor, queries: torch.Tensor, stride: int) -> None:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        if queries.ndim != 3 or queries.shape[-1] != 3 or queries.shape[0] != video.shape[0]:
            raise ValueError(
                f"queries must be (B, N, 3) with the video's batch size, got {tuple(queries.shape)}"
            )
        if video.shape[-2] % stride or video.shape[-1] % stride:
            raise ValueError(f"video H and W must be divisible by {stride}, got {tuple(video.shape[-2:])}")


class CoTrackerThreeOffline(CoTrackerThreeBase):
    """Offline CoTracker3: the whole clip is one window, tracking forwards and backwards in time."""

    def forward(
        self,
        video: torch.Tensor,
        queries: torch.Tensor,
        iters: int = 4,
        is_train: bool = False,
        fmaps_chunk_size: int = FMAPS_CHUNK,
    ) -> ModelOutput:
        """Track ``queries`` through ``video``.

        Args:
            video: (B, T, 3, H, W) float RGB in [0, 255] at model resolution (H, W divisible by stride).
            queries: (B, N, 3) = (t, x, y); t a frame index, x, y in pixels of ``video``.
            iters: refinement iterations (4 in training, 6 in the official predictors).
            is_train: also return per-iteration predictions for the losses.
            fmaps_chunk_size: run the feature CNN on at most this many frames at a time.
                Same features for any value; see ``FMAPS_CHUNK``.

        Returns:
            coords (B, T, N, 2) pixels, vis (B, T, N) and conf (B, T, N) probabilities, and
            ``train_data`` (None unless ``is_train``) = ([coords per iteration], [vis per iteration],
            [conf per iteration]) each wrapped in a one-window list, and a valid mask of ones (B, T, N).
        """
        self._check_inputs(video, queries, self.stride)
        b, t = video.shape[:2]
        n = queries.shape[1]
        video = 2 * (video / 255.0) - 1.0
        frames = queries[:, :, 0].long()
        qcoords = queries[..., 1:3] / self.stride

        pyramid = self.pyramid(self.encode(video, fmaps_chunk_size))
        patches = self.query_patches(pyramid, frames, qcoords)

        coords = qcoords.reshape(b, 1, n, 2).expand(b, t, n, 2).float()
        vis = torch.zeros((b, t, n), device=video.device)
        conf = torch.zeros((b, t, n), device=video.device)
        coord_preds, vis_logits, conf_logits = self.refine(pyramid, patches, coords, vis, conf, iters)

        vis_probs = [torch.sigmoid(v) for v in vis_logits]
        conf_probs = [torch.sigmoid(c) for c in conf_logits]
        train_data = None
        if is_train:
            train_data = ([coord_preds], [vis_probs], [conf_probs], torch.ones_like(vis_probs[-1]))
        return coord_preds[-1], vis_probs[-1], conf_probs[-1], train_data


class CoTrackerThreeOnline(CoTrackerThreeBase):
    """Online CoTracker3: a window of ``window_len`` frames sliding by half a window."""

    def __init__(self, config: CoTrackerConfig | None = None) -> None:
        super().__init__(config)
        self.init_video_online_processing()

    @staticmethod
    def default_config() -> CoTrackerConfig:
        return CoTrackerConfig.online()

    def init_video_online_processing(self) -> None:
        """Reset the streaming state; call before the first chunk of a new video."""
        self.online_ind = 0
        self.online_track_support: list[torch.Tensor | None] = [None] * self.corr_levels
        self.online_coords_predicted: torch.Tensor | None = None
        self.online_vis_predicted: torch.Tensor | None = None
        self.online_conf_predicted: torch.Tensor | None = None
        #: The last chunk's frames from ``online_ind + step`` on, their features and the autocast
        #: dtype they were computed in: the next chunk starts with these frames.
        self.online_features: tuple[torch.Tensor, torch.Tensor, torch.dtype | None] | None = None

    def forward(
        self,
        video: torch.Tensor,
        queries: torch.Tensor,
        iters: int = 4,
        is_train: bool = False,
        fmaps_chunk_size: int = FMAPS_CHUNK,
        is_online: bool = False,
    ) -> ModelOutput:
        """Track ``queries`` through ``video`` with sliding windows.

        Args:
            video: (B, T, 3, H, W) float RGB in [0, 255] at model resolution. With ``is_online``
                a chunk of at most ``window_len`` frames starting at global frame ``online_ind``
                (0, step, 2*step, ... with step = window_len // 2).
            queries: (B, N, 3) = (t, x, y) in pixels; the same full set on every streamed call.
            iters: refinement iterations per window.
            is_train: also return per-window, per-iteration predictions (not with ``is_online``).
            fmaps_chunk_size: run the feature CNN on at most this many frames at a time (inference).
            is_online: streaming mode: process one chunk and return all frames seen so far.

        Returns:
            coords (B, T', N, 2) pixels, vis and conf (B, T', N) probabilities, where T' = T, or
            the frames seen so far in streaming mode; ``train_data`` (None unless ``is_train``) =
            (coords, vis, conf) as lists over windows of lists over iterations, trimmed to the
            frames each window wrote, and valid_mask (B, T, N) = query frame <= t.
        """
        self._check_inputs(video, queries, self.stride)
        b, t, c, h, w = video.shape
        n = queries.shape[1]
        s = self.window_len
        step = s // 2
        device = video.device
        if is_online:
            if t > s:
                raise ValueError(f"online mode: a chunk holds at most {s} frames, got {t}")
            if is_train:
                raise ValueError("training is not supported in online (streaming) mode")

        video = 2 * (video / 255.0) - 1.0
        chunk = None if is_train else fmaps_chunk_size
        pad = s - t if is_online else (s - t % s) % s
        if is_online:
            fmaps = self._streamed_features(video, chunk)
            if pad > 0:  # the last frame repeated: its features repeated, not re-encoded
                fmaps = torch.cat([fmaps, fmaps[:, -1:].expand(b, pad, *fmaps.shape[2:])], dim=1)
        else:
            if pad > 0:  # repeat the last frame
                video = torch.cat([video, video[:, -1:].expand(b, pad, c, h, w)], dim=1)
            fmaps = self.encode(video, chunk)
        frames = queries[:, :, 0].long()
        qcoords = queries[..., 1:3] / self.stride

        coords_out = torch.zeros((b, t, n, 2), device=device)
        vis_out = torch.zeros((b, t, n), device=device)
        conf_out = torch.zeros((b, t, n), device=device)
        if is_online and self.online_coords_predicted is not None:
            extra = min(step, t - step)
            coords_out = F.pad(self.online_coords_predicted, (0, 0, 0, 0, 0, extra))
            vis_out = F.pad(self.online_vis_predicted, (0, 0, 0, extra))
            conf_out = F.pad(self.online_conf_predicted, (0, 0, 0, extra))

        pyramid = self.pyramid(fmaps)
        if is_online:
            patches = self._streamed_query_patches(pyramid, frames, qcoords)
        else:
            patches = self.query_patches(pyramid, frames, qcoords)

        coords_init = qcoords.reshape(b, 1, n, 2).expand(b, s, n, 2).float()
        vis_init = torch.zeros((b, s, n), device=device)
        conf_init = torch.zeros((b, s, n), device=device)

        if is_online:
            starts: Sequence[int] = [self.online_ind]
        else:
            num_windows = (t - s + step - 1) // step + 1
            starts = range(0, step * num_windows, step)

        all_coords, all_vis, all_conf = [], [], []
        for ind in starts:
            if ind > 0:
                # Tracks queried before the overlap's end inherit the previous window's estimates
                # on the overlap, and its last overlap frame on the new half.
                overlap = s - step
                copy = (frames < ind + overlap)[:, None, :]
                prev_c = coords_out[:, ind : ind + overlap] / self.stride
                prev_c = torch.cat([prev_c, prev_c[:, -1:].expand(-1, step, -1, -1)], dim=1)
                prev_v = vis_out[:, ind : ind + overlap]
                prev_v = torch.cat([prev_v, prev_v[:, -1:].expand(-1, step, -1)], dim=1)
                prev_f = conf_out[:, ind : ind + overlap]
                prev_f = torch.cat([prev_f, prev_f[:, -1:].expand(-1, step, -1)], dim=1)
                coords_init = torch.where(copy[..., None], prev_c, coords_init)
                vis_init = torch.where(copy, prev_v, vis_init)
                conf_init = torch.where(copy, prev_f, conf_init)

            # Tracks whose query lies beyond this window get an all-zero query patch.
            active = (frames < ind + s).reshape(b, 1, n, 1)
            window_patches = [active * p for p in patches]
            window_pyramid = pyramid if is_online else [lvl[:, ind : ind + s] for lvl in pyramid]
            coord_preds, vis_logits, conf_logits = self.refine(
                window_pyramid, window_patches, coords_init, vis_init, conf_init, iters
            )
            keep = t if is_online else min(t - ind, s)
            coords_out[:, ind : ind + s] = coord_preds[-1][:, :keep]
            vis_out[:, ind : ind + s] = vis_logits[-1][:, :keep]
            conf_out[:, ind : ind + s] = conf_logits[-1][:, :keep]
            if is_train:
                all_coords.append([p[:, :keep] for p in coord_preds])
                all_vis.append([torch.sigmoid(v[:, :keep]) for v in vis_logits])
                all_conf.append([torch.sigmoid(f[:, :keep]) for f in conf_logits])

        if is_online:
            self.online_ind += step
            self.online_coords_predicted = coords_out
            self.online_vis_predicted = vis_out
            self.online_conf_predicted = conf_out

        train_data = None
        if is_train:
            valid = frames[:, None] <= torch.arange(t, device=device)[None, :, None]
            train_data = (all_coords, all_vis, all_conf, valid)
        return coords_out, torch.sigmoid(vis_out), torch.sigmoid(conf_out), train_data

    def _streamed_features(self, video: torch.Tensor, chunk: int | None) -> torch.Tensor:
        """Features of a streamed chunk (normalised video, unpadded), encoding each frame once.

        Consecutive chunks overlap by half a window (the official demo sends those frames again),
        and a frame's features do not depend on the other frames, so the overlap's features are
        taken from the previous call. They are reused only if the frames are equal to the ones
        they were computed from, under the same autocast dtype, so any caller stays correct.
        Halves the feature CNN's work when streaming.
        """
        step = self.window_len // 2
        dtype = _autocast_dtype(video.device)
        reuse = 0
        if self.online_features is not None:
            old_frames, old_fmaps, old_dtype = self.online_features
            k = min(old_frames.shape[1], video.shape[1])
            if (old_dtype == dtype and old_frames.shape[2:] == video.shape[2:]
                    and torch.equal(old_frames[:, :k], video[:, :k])):
                reuse = k
        parts = [old_fmaps[:, :reuse]] if reuse else []
        if reuse < video.shape[1]:
            parts.append(self.encode(video[:, reuse:], chunk))
        fmaps = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        # copies, so the chunk's other half can be freed
        self.online_features = (video[:, step:].clone(), fmaps[:, step:].clone(), dtype)
        return fmaps

    def _streamed_query_patches(
        self, pyramid: Sequence[torch.Tensor], frames: torch.Tensor, qcoords: torch.Tensor
    ) -> list[torch.Tensor]:
        """Accumulate each query's patch once, from the first chunk whose new half holds its frame."""
        step = self.window_len // 2
        left = 0 if self.online_ind == 0 else self.online_ind + step
        right = self.online_ind + self.window_len
        take = ((frames >= left) & (frames < right))[:, None, :, None]
        new = self.query_patches(pyramid, frames - self.online_ind, qcoords)
        out = []
        for i, patch in enumerate(new):
            acc = self.online_track_support[i]
            if acc is None:
                acc = torch.zeros_like(patch)
            acc = acc + patch * take
            self.online_track_support[i] = acc
            out.append(acc)
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "CoTrackerThreeBase",
    "CoTrackerThreeOffline",
    "CoTrackerThreeOnline",
    "count_parameters",
    "motion_encoding",
    "sincos_time_embedding",
]
