"""Per-frame 2D pooling of video features (24x24 -> 12x12 patches at stride 2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llava_video.config import FramePoolingConfig

__all__ = ["FramePooler"]


class FramePooler(nn.Module):
    """Pools each frame's square patch grid: (n, side*side, d) -> (n, pooled*pooled, d)."""

    def __init__(self, config: FramePoolingConfig) -> None:
        super().__init__()
        self.mode = config.mode
        self.stride = config.stride

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, p, d = features.shape
        side = math.isqrt(p)
        if side * side != p:
            raise ValueError(f"frame pooling needs a square patch grid, got {p} tokens per frame")
        if self.stride == 1:
            return features
        grid = features.transpose(1, 2).reshape(n, d, side, side)  # (n, d, side, side)
        if self.mode == "average":
            pooled = F.avg_pool2d(grid, kernel_size=self.stride, stride=self.stride)
        elif self.mode == "max":
            pooled = F.max_pool2d(grid, kernel_size=self.stride, stride=self.stride)
        else:  # bilinear: resize to ceil(side / stride), as later LLaVA-Video code does
            out = math.ceil(side / self.stride)
            pooled = F.interpolate(grid.float(), size=(out, out), mode="bilinear", align_corners=False).to(grid.dtype)
        return pooled.flatten(2).transpose(1, 2).contiguous()  # (n, pooled*pooled, d)
