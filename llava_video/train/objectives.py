"""Training objectives: what a batch's loss is. One trainer runs them all; a recipe picks one by name.

An objective builds its batches (``collate``) and computes a loss from the model and a batch. SFT
uses packed or padded conversations; a preference objective (DPO: chosen/rejected sequences sharing
one visual prefix, plus a frozen reference model made in ``setup``) plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from llava_video.data.batching import Batch, BadSample, Sample, collate
from llava_video.errors import ConfigError

__all__ = ["Objective", "SFTObjective", "build_objective", "OBJECTIVE_NAMES"]


class Objective(Protocol):
    name: str

    def setup(self, *, model: torch.nn.Module, device: torch.device) -> None:
        """Build anything beyond the trained model (e.g. a frozen reference copy)."""

    def collate(self, items: Sequence[Sample | BadSample]) -> Batch: ...

    def loss(self, model: Callable[..., Any], batch: Batch, *, device: torch.device) -> torch.Tensor: ...


class SFTObjective:
    """Mean next-token cross-entropy over the assistant tokens of a (packed or padded) batch."""

    name = "sft"

    def __init__(self, *, packing: bool, pad_token_id: int, ignore_index: int, **options: Any) -> None:
        if options:
            raise ConfigError(f"unknown config key(s): {', '.join('objective.options.' + k for k in sorted(options))}")
        self.packing = packing
        self.pad_token_id = pad_token_id
        self.ignore_index = ignore_index

    def setup(self, *, model: torch.nn.Module, device: torch.device) -> None:
        return None

    def collate(self, items: Sequence[Sample | BadSample]) -> Batch:
        return collate(items, packing=self.packing, pad_token_id=self.pad_token_id, ignore_index=self.ignore_index)

    def loss(self, model: Callable[..., Any], batch: Batch, *, device: torch.device) -> torch.Tensor:
        inputs = batch.model_inputs(device)
        # use_cache=False: with a cache transformers' masks would let packed samples see each other.
        return model(**inputs, use_cache=False, return_logits=False).loss


OBJECTIVE_NAMES = ("sft", "dpo")


def build_objective(name: str, *, packing: bool, pad_token_id: int, ignore_index: int, options: dict[str, Any]) -> Objective:
    if name == "sft":
        return SFTObjective(packing=packing, pad_token_id=pad_token_id, ignore_index=ignore_index, **options)
    if name == "dpo":
        from llava_video.train.dpo import DPOObjective  # imported lazily: SFT runs never need it

        return DPOObjective(packing=packing, pad_token_id=pad_token_id, ignore_index=ignore_index, **options)
    raise ConfigError(f"objective.name={name!r} is not one of {', '.join(OBJECTIVE_NAMES)}")
