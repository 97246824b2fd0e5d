"""Feature CNN of CoTracker3: a stride-4 residual encoder with instance norms.

Four residual stages (strides 2, 1, 2, 2, 2 overall: H/2, H/4, H/8, H/16) are resized to
H/4 x W/4 (bilinear, corner-aligned), concatenated and fused. Instance norms carry no
parameters, so the state dict holds only convolutions (keys match the official ``fnet``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    """``nn.InstanceNorm2d()`` (no affine, no running stats, eps 1e-5), layout-preserving.

    ``F.instance_norm`` folds the batch into channels, which copies a channels-last tensor back
    to NCHW (whose convolutions are ~30 % slower on CPU). A group norm with one channel per group
    is the same normalisation, keeps channels-last, and is one kernel call for the whole batch:
    the per-image batch norms used before were one call (and one thread-pool round trip) per
    image, which cost up to a quarter of the tracking time with 2 threads on a busy CPU.
    """
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return F.instance_norm(x, eps=1e-5)
    return F.group_norm(x, x.shape[1], eps=1e-5)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm + ReLU, and a strided 1x1 shortcut when downsampling."""

    def __init__(self, in_dim: int, out_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)
        # Index 0 so the key is `downsample.0.*` as in the official nn.Sequential(conv, norm).
        self.downsample = (
            nn.ModuleList([nn.Conv2d(in_dim, out_dim, kernel_size=1, stride=stride)]) if stride != 1 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(_instance_norm(self.conv1(x)), inplace=True)
        y = F.relu(_instance_norm(self.conv2(y)), inplace=True)
        if self.downsample is not None:
            x = _instance_norm(self.downsample[0](x))
        return F.relu(x + y, inplace=True)


class BasicEncoder(nn.Module):
    """Frames (B, 3, H, W) in [-1, 1] -> features (B, out_dim, H/4, W/4) (not normalised)."""

    def __init__(
        self,
        out_dim: int = 128,
        dims: tuple[int, int, int, int] = (64, 96, 128, 128),
        fuse_dim: int = 256,
        stride: int = 4,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(3, dims[0], kernel_size=7, stride=2, padding=3)
        layers = []
        in_dim = dims[0]
        for i, dim in enumerate(dims):
            s = 1 if i == 0 else 2
            layers.append(nn.Sequential(ResidualBlock(in_dim, dim, s), ResidualBlock(dim, dim, 1)))
            in_dim = dim
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.conv2 = nn.Conv2d(sum(dims), fuse_dim, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(fuse_dim, out_dim, kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        x = F.relu(_instance_norm(self.conv1(x)), inplace=True)
        a = self.layer1(x)
        b = self.layer2(a)
        c = self.layer3(b)
        d = self.layer4(c)
        feats = [F.interpolate(f, size, mode="bilinear", align_corners=True) for f in (a, b, c, d)]
        x = F.relu(_instance_norm(self.conv2(torch.cat(feats, dim=1))), inplace=True)
        return self.conv3(x)
