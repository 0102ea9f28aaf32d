"""The vision tower: a transformers CLIP or SigLIP vision encoder plus LLaVA's feature selection.

LLaVA takes the hidden state of one (or several, concatenated) encoder layers, by default the
second-to-last, and drops the CLS token ("patch") or keeps it ("cls_patch"). Frames go through the
encoder in chunks so a long video never needs activations for all frames at once.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from llava_video.config import VisionFeatureConfig
from llava_video.errors import ConfigError

__all__ = ["VisionTower", "build_vision_encoder"]

_ENCODERS = {
    "clip_vision_model": (CLIPVisionConfig, CLIPVisionModel),
    "siglip_vision_model": (SiglipVisionConfig, SiglipVisionModel),
}


def build_vision_encoder(vision: dict) -> nn.Module:
    """A randomly initialised CLIP/SigLIP vision encoder from a transformers config dict."""
    kwargs = {k: v for k, v in vision.items() if k != "model_type"}
    try:
        config_cls, model_cls = _ENCODERS[vision["model_type"]]
    except KeyError:
        raise ConfigError(f"unsupported vision tower type {vision.get('model_type')!r}") from None
    return model_cls(config_cls(**kwargs))


class VisionTower(nn.Module):
    """Encodes (n, 3, S, S) pixel tiles/frames into selected features (n, tokens, d * num_layers)."""

    def __init__(self, vision: dict, feature: VisionFeatureConfig, *, chunk_size: int = 64) -> None:
        super().__init__()
        # Named like transformers 4.x checkpoints so our state dict is the llava-hf layout as is.
        self.vision_model = build_vision_encoder(vision)
        self.feature = feature
        self.chunk_size = chunk_size
        # SigLIP has no CLS token: "patch" then keeps every token.
        self.has_cls = vision["model_type"] == "clip_vision_model"

    @property
    def hidden_size(self) -> int:
        return self.vision_model.config.hidden_size * self.feature.num_layers

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _hidden_states(self, pixel_values: torch.Tensor, upto: int) -> list[torch.Tensor]:
        """Hidden states 0..upto (0 = the encoder's input), as ``output_hidden_states`` numbers them.

        Layers past the deepest selected one are never run: LLaVA reads layer -2, so the last layer
        of the tower would be computed for nothing.
        """
        vm = self.vision_model
        hidden = vm.embeddings(pixel_values)  # (n, tokens, d)
        if self.has_cls:
            hidden = vm.pre_layrnorm(hidden)  # CLIP normalises before the encoder; SigLIP does not
        states = [hidden]
        for layer in vm.encoder.layers[:upto]:
            hidden = layer(hidden, None)
            states.append(hidden)
        return states

    @property
    def selected_states(self) -> list[int]:
        """Indices (0 = embeddings) of the hidden states the features come from; the deepest is also how
        many encoder layers run."""
        layers = self.feature.layer if isinstance(self.feature.layer, list) else [self.feature.layer]
        total = len(self.vision_model.encoder.layers) + 1  # hidden states including the embeddings
        return [i if i >= 0 else total + i for i in layers]

    def _encode_chunk(self, pixel_values: torch.Tensor) -> torch.Tensor:
        wanted = self.selected_states
        states = self._hidden_states(pixel_values, max(wanted))
        feats = torch.cat([states[i] for i in wanted], dim=-1)  # (n, 1+p, d*L) for CLIP
        if self.has_cls and self.feature.select == "patch":
            feats = feats[:, 1:]  # (n, p, d*L)
        return feats

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(self.dtype)
        if pixel_values.shape[0] <= self.chunk_size:
            return self._encode_chunk(pixel_values)
        chunks = pixel_values.split(self.chunk_size, dim=0)
        return torch.cat([self._encode_chunk(c) for c in chunks], dim=0)  # (n, p, d*L)
