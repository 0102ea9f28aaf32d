"""Training objectives: what a batch's loss is. One trainer runs them all; a recipe picks one by name.

An objective builds its batches (``collate``) and computes a loss from the model and a batch. SFT
uses packed or padded conversations; a preference objective (DPO: chosen/rejected sequences sharing
one visual prefix, plus a frozen reference model made in ``setup``) plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from llava_video.data.batching import Batch, BadSample, ConversationDataset, MediaLoader, Sample, collate
from llava_video.data.conversation import template_for
from llava_video.data.records import BadRecordReport, load_records, read_mixture
from llava_video.errors import ConfigError
from llava_video.train.config import DatasetEntry, dataset_entry_from_dict

__all__ = ["Objective", "SFTObjective", "build_objective", "media_loader", "OBJECTIVE_NAMES"]


class Objective(Protocol):
    name: str

    def setup(self, *, model: torch.nn.Module, device: torch.device) -> None:
        """Build anything beyond the trained model (e.g. a frozen reference copy)."""

    def build_dataset(self, *, config: Any, model: Any, report: BadRecordReport) -> Any:
        """The dataset of this objective's samples, read as ``config.data`` says, bad records into ``report``.
        It must expose ``records``, ``lengths`` and ``modalities`` for batching and reports."""

    def collate(self, items: Sequence[Any]) -> Any: ...

    def loss(self, model: Callable[..., Any], batch: Any, *, device: torch.device) -> torch.Tensor: ...


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

    def build_dataset(self, *, config: Any, model: Any, report: BadRecordReport) -> ConversationDataset:
        """LLaVA records from ``data.train`` (a JSON/JSONL file or a mixture YAML) or ``data.datasets``."""
        d = config.data
        records = load_records(
            dataset_entries(d), image_root=d.image_root, video_root=d.video_root, seed=config.runtime.seed, report=report
        )
        return ConversationDataset(
            records, tokenizer=model.tokenizer, config=model.config, template=template_for(model.config, model.tokenizer),
            media=media_loader(d, model.image_processor), max_length=d.max_length,
        )

    def collate(self, items: Sequence[Sample | BadSample]) -> Batch:
        return collate(items, packing=self.packing, pad_token_id=self.pad_token_id, ignore_index=self.ignore_index)

    def loss(self, model: Callable[..., Any], batch: Batch, *, device: torch.device) -> torch.Tensor:
        inputs = batch.model_inputs(device)
        # use_cache=False: with a cache transformers' masks would let packed samples see each other.
        return model(**inputs, use_cache=False, return_logits=False).loss


def media_loader(data: Any, processor: Any) -> MediaLoader:
    """The media loader a recipe's ``data`` section describes (frames, sampling, backend, cache)."""
    return MediaLoader(
        processor=processor, num_frames=data.num_frames, fps=data.fps, max_frames=data.max_frames,
        backend=data.video_backend, cache_mb=data.media_cache_mb, cache_dir=data.media_cache_dir,
    )


def dataset_entries(data: Any) -> list[DatasetEntry]:
    """The datasets a recipe names: ``data.datasets``, a mixture YAML, or one records file."""
    if data.datasets:
        return list(data.datasets)
    path = Path(data.train or "")
    if path.suffix in (".yaml", ".yml"):
        return [dataset_entry_from_dict(e, where=str(path)) for e in read_mixture(path)]
    return [DatasetEntry(path=str(path))]


OBJECTIVE_NAMES = ("sft", "dpo")


def build_objective(name: str, *, packing: bool, pad_token_id: int, ignore_index: int, options: dict[str, Any]) -> Objective:
    if name == "sft":
        return SFTObjective(packing=packing, pad_token_id=pad_token_id, ignore_index=ignore_index, **options)
    if name == "dpo":
        from llava_video.train.dpo import DPOObjective  # imported lazily: SFT runs never need it

        return DPOObjective(packing=packing, pad_token_id=pad_token_id, ignore_index=ignore_index, **options)
    raise ConfigError(f"objective.name={name!r} is not one of {', '.join(OBJECTIVE_NAMES)}")
