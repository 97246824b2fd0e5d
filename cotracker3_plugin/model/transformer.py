"""Update transformer of CoTracker3: time attention per track, space attention through
learned virtual tracks. Parameter names follow the official ``EfficientUpdateFormer``
(including its misspelt ``virual_tracks``) so official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    # The blocks' own norms have no affine parameters and eps 1e-6.
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (tanh-approximate GELU in the transformer, exact in the corr MLP)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, approximate: str = "none") -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class Attention(nn.Module):
    """Multi-head attention with a fused key/value projection (no masks: CoTracker3 uses none)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)
        #: Use F.scaled_dot_product_attention (faster, not bit-identical to the official code).
        self.fused = False

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        context = x if context is None else context
        q = self.to_q(x).reshape(b, n, h, c // h).transpose(1, 2)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        m = context.shape[1]
        k = k.reshape(b, m, h, c // h).transpose(1, 2)
        v = v.reshape(b, m, h, c // h).transpose(1, 2)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            # Same operation order as the official code, so results match it bit for bit on CPU.
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            out = attn @ v
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class AttnBlock(nn.Module):
    """Pre-norm self-attention block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim, approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(_layer_norm(x))
        return x + self.mlp(_layer_norm(x))


class CrossAttnBlock(nn.Module):
    """Pre-norm cross-attention block; the context gets its own affine LayerNorm (eps 1e-5)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_context = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim, approximate="tanh")

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(_layer_norm(x), self.norm_context(context))
        return x + self.mlp(_layer_norm(x))


class UpdateFormer(nn.Module):
    """Tokens (B, N, T, input_dim) -> updates (B, N, T, 4) = (dx, dy, dvis, dconf).

    dx, dy are in feature-grid units (pixels / stride); dvis, dconf are logit increments.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int,
        num_heads: int,
        time_depth: int,
        space_depth: int,
        mlp_ratio: float,
        num_virtual_tracks: int,
    ) -> None:
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.flow_head = nn.Linear(hidden_size, 2)
        self.vis_conf_head = nn.Linear(hidden_size, 2)
        self.virual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))
        self.time_blocks = nn.ModuleList(
            [AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(time_depth)]
        )
        self.space_virtual_blocks = nn.ModuleList(
            [AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(space_depth)]
        )
        self.space_point2virtual_blocks = nn.ModuleList(
            [CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(space_depth)]
        )
        self.space_virtual2point_blocks = nn.ModuleList(
            [CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(space_depth)]
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # Official training initialisation (only matters when training from scratch).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.flow_head.weight, std=0.001)
        nn.init.trunc_normal_(self.vis_conf_head.weight, std=0.001)

    def set_fused_attention(self, fused: bool) -> None:
        for m in self.modules():
            if isinstance(m, Attention):
                m.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.input_transform(x)
        b, n_points, t, c = tokens.shape
        virtual = self.virual_tracks.expand(b, -1, t, -1)
        tokens = torch.cat([tokens, virtual], dim=1)  # virtual tracks come after the points
        n = tokens.shape[1]
        every = len(self.time_blocks) // max(len(self.space_virtual_blocks), 1)
        j = 0
        for i, time_block in enumerate(self.time_blocks):
            tokens = time_block(tokens.reshape(b * n, t, c)).view(b, n, t, c)
            if j < len(self.space_virtual_blocks) and i % every == 0:
                space = tokens.permute(0, 2, 1, 3).reshape(b * t, n, c)
                points, virtual = space[:, :n_points], space[:, n_points:]
                virtual = self.space_virtual2point_blocks[j](virtual, points)
                virtual = self.space_virtual_blocks[j](virtual)
                points = self.space_point2virtual_blocks[j](points, virtual)
                tokens = torch.cat([points, virtual], dim=1).view(b, t, n, c).permute(0, 2, 1, 3)
                j += 1
        tokens = tokens[:, :n_points]
        return torch.cat([self.flow_head(tokens), self.vis_conf_head(tokens)], dim=-1)
