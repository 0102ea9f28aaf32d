"""The multimodal projector: vision features -> language-model embeddings.

``linear`` is LLaVA-1's single layer; ``mlpNx_gelu`` stacks N linear layers with GELU between them
(``mlp2x_gelu`` is LLaVA-1.5 and every LLaVA-NeXT-Video checkpoint). Layers are named ``linear_1`` ...
``linear_N`` so the 2-layer case matches llava-hf checkpoints key for key.
"""

from __future__ import annotations

import torch
from torch import nn

from llava_video.config import ProjectorConfig

__all__ = ["Projector"]


class Projector(nn.Module):
    def __init__(self, config: ProjectorConfig, *, in_features: int, out_features: int) -> None:
        super().__init__()
        self.depth = config.depth
        for i in range(self.depth):
            layer = nn.Linear(in_features if i == 0 else out_features, out_features, bias=config.bias)
            self.add_module(f"linear_{i + 1}", layer)
        self.act = nn.GELU()  # exact (erf) GELU, as transformers' "gelu"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for i in range(self.depth):
            if i:
                x = self.act(x)
            x = getattr(self, f"linear_{i + 1}")(x)
        return x
