"""A training recipe: typed sections validated on construction, read from YAML with ``key=value`` overrides.

Stages differ by recipe only (which parts train, at which learning rate, on which data, with which
objective); there is one trainer. Every key is checked: a typo is an error that names the key.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from llava_video.config_builder import build_config, check_literal
from llava_video.errors import ConfigError

__all__ = [
    "ModelSection",
    "PartSection",
    "PartsSection",
    "DatasetEntry",
    "DataSection",
    "BatchingSection",
    "OptimSection",
    "ScheduleSection",
    "ObjectiveSection",
    "CheckpointSection",
    "LoggingSection",
    "DistributedSection",
    "RuntimeSection",
    "TrainConfig",
    "load_train_config",
    "dataset_entry_from_dict",
    "apply_overrides",
    "PART_NAMES",
]

PART_NAMES = ("vision_tower", "projector", "language_model")


@dataclass
class ModelSection:
    """Where the weights come from: ``init: tiny`` (a fresh random tiny model, for tests and demos) or
    ``init: path`` with ``path`` a llava-hf / original LLaVA-NeXT checkpoint directory."""

    init: Literal["tiny", "path"] = "path"
    path: str | None = None
    tiny: dict[str, Any] = field(default_factory=dict)  # overrides passed to tiny_config
    seed: int = 0  # initialisation seed of a tiny model
    conv_template: str | None = None  # None: the checkpoint's own template

    def __post_init__(self) -> None:
        check_literal("model.init", self.init, Literal["tiny", "path"])
        if self.init == "path" and not self.path:
            raise ConfigError("model.path is required when model.init is 'path'")


@dataclass
class PartSection:
    """One trainable part: whether it trains and its learning rate (None: optim.lr)."""

    train: bool = False
    lr: float | None = None

    def __post_init__(self) -> None:
        if self.lr is not None and self.lr < 0:
            raise ConfigError(f"learning rate must be >= 0, got {self.lr}")


@dataclass
class PartsSection:
    """``projector`` includes ``image_newline`` (both map vision into the LLM's space)."""

    vision_tower: PartSection = field(default_factory=PartSection)
    projector: PartSection = field(default_factory=lambda: PartSection(train=True))
    language_model: PartSection = field(default_factory=PartSection)

    def __post_init__(self) -> None:
        if not any(getattr(self, p).train for p in PART_NAMES):
            raise ConfigError("parts: nothing trains; set parts.<vision_tower|projector|language_model>.train: true")


@dataclass
class DatasetEntry:
    """One dataset of a mixture. ``sampling``: ``all``, ``first:N``, ``random:N`` or ``random:P%``."""

    path: str
    sampling: str = "all"
    image_root: str | None = None  # None: data.image_root
    video_root: str | None = None  # None: data.video_root
    name: str | None = None

    def __post_init__(self) -> None:
        from llava_video.data.records import parse_sampling

        parse_sampling(self.sampling)


@dataclass
class DataSection:
    """``train`` is a LLaVA JSON/JSONL file or a mixture YAML; ``datasets`` lists entries inline instead."""

    train: str | None = None
    datasets: list[DatasetEntry] = field(default_factory=list)
    image_root: str = "."
    video_root: str = "."
    num_frames: int = 16
    max_frames: int | None = None
    fps: float | None = None
    max_length: int = 4096
    on_bad_record: Literal["skip", "fail"] = "skip"
    num_workers: int = 0
    video_backend: str = "auto"
    # MiB of preprocessed media kept in memory (per loading process; 0: none): for small datasets read
    # for many epochs, so each clip is decoded once (useful with num_workers 0; see MediaLoader).
    media_cache_mb: int = 0
    # A folder of preprocessed media on disk, shared by processes and runs (None: none): the stages of a
    # recipe that read the same clips then decode each once in all (see MediaLoader).
    media_cache_dir: str | None = None

    def __post_init__(self) -> None:
        check_literal("data.on_bad_record", self.on_bad_record, Literal["skip", "fail"])
        if self.media_cache_mb < 0:
            raise ConfigError(f"data.media_cache_mb must be >= 0, got {self.media_cache_mb}")
        if (self.train is None) == (not self.datasets):
            raise ConfigError("data: give exactly one of data.train (a file) or data.datasets (a list)")
        if self.num_frames < 1 or self.max_length < 8 or self.num_workers < 0:
            raise ConfigError("data: num_frames must be >= 1, max_length >= 8, num_workers >= 0")


@dataclass
class BatchingSection:
    """``batch_size`` samples per micro-batch per process. ``packing`` concatenates them into one
    row (no padding); ``modality: separate`` keeps images and videos in different batches (ablation)."""

    batch_size: int = 4
    packing: bool = True
    modality: Literal["mixed", "separate"] = "mixed"
    group_by_length: bool = True
    # Micro-batches sorted together by length: larger groups, more similar lengths, less randomness.
    group_size: int = 8
    shuffle: bool = True

    def __post_init__(self) -> None:
        check_literal("batching.modality", self.modality, Literal["mixed", "separate"])
        if self.batch_size < 1 or self.group_size < 1:
            raise ConfigError("batching: batch_size and group_size must be >= 1")


@dataclass
class OptimSection:
    """``name``: ``adamw`` for every parameter, or ``muon``: Muon for the weight matrices of linear layers
    (LM head excluded), AdamW for the rest (embeddings, norms, biases, convolutions); see
    ``llava_video.train.muon``. Muon groups run at ``muon_lr_scale`` times their part's learning rate
    (same schedule). ``momentum`` is Muon's; ``betas`` and ``eps`` are AdamW's."""

    name: Literal["adamw", "muon"] = "adamw"
    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.95
    muon_lr_scale: float = 1.0
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.03
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        check_literal("optim.name", self.name, Literal["adamw", "muon"])
        check_literal("optim.scheduler", self.scheduler, Literal["cosine", "linear", "constant"])
        if self.lr < 0 or not 0 <= self.warmup_ratio < 1 or len(self.betas) != 2:
            raise ConfigError("optim: lr >= 0, 0 <= warmup_ratio < 1, betas a pair")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optim.momentum={self.momentum} must be in [0, 1)")
        if self.muon_lr_scale <= 0:
            raise ConfigError(f"optim.muon_lr_scale={self.muon_lr_scale} must be > 0")


@dataclass
class ScheduleSection:
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    gradient_accumulation: int = 1

    def __post_init__(self) -> None:
        if self.gradient_accumulation < 1 or self.epochs <= 0 or (self.max_steps is not None and self.max_steps < 1):
            raise ConfigError("schedule: gradient_accumulation >= 1, epochs > 0, max_steps >= 1 or null")


@dataclass
class ObjectiveSection:
    """The loss. ``sft`` now; further objectives (e.g. ``dpo``) register under their name."""

    name: str = "sft"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckpointSection:
    output_dir: str = "runs/train"
    save_every: int = 500  # optimizer steps; the final step is always saved
    keep_last: int = 2
    resume: str = "auto"  # auto | none | a checkpoint directory

    def __post_init__(self) -> None:
        if self.save_every < 1 or self.keep_last < 1:
            raise ConfigError("checkpoint: save_every and keep_last must be >= 1")


@dataclass
class LoggingSection:
    every: int = 1
    progress: bool = True
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "llava-video"
    peak_tflops: float | None = None  # per device, for the MFU estimate; None: a known GPU's bf16 peak


@dataclass
class DistributedSection:
    """``deepspeed``: a JSON config (see configs/deepspeed/); ``auto`` values are filled from the recipe."""

    deepspeed: str | None = None
    backend: Literal["auto", "nccl", "gloo"] = "auto"

    def __post_init__(self) -> None:
        check_literal("distributed.backend", self.backend, Literal["auto", "nccl", "gloo"])


@dataclass
class RuntimeSection:
    device: str = "auto"
    dtype: str = "auto"  # parameters stay fp32 on GPU; bf16 autocast when this resolves to bfloat16
    attn: str = "auto"
    seed: int = 42
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile each transformer block (GPU: fuses norms/rotary/SwiGLU; slow first steps)

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"runtime.device={self.device!r} is not one of auto, cpu, cuda[:N]")
        check_literal("runtime.dtype", self.dtype, Literal["auto", "float32", "bfloat16", "float16"])
        check_literal("runtime.attn", self.attn, Literal["auto", "sdpa", "eager", "flash_attention_2"])


@dataclass
class TrainConfig:
    model: ModelSection
    data: DataSection
    parts: PartsSection = field(default_factory=PartsSection)
    batching: BatchingSection = field(default_factory=BatchingSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)

    def __post_init__(self) -> None:
        if self.optim.name == "muon" and self.distributed.deepspeed is not None:
            # ZeRO hands the optimizer flattened 1-D shards; Muon needs each weight matrix whole.
            raise ConfigError("optim.name=muon does not work with distributed.deepspeed (ZeRO flattens the weight matrices); use adamw")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Relative paths in a recipe are relative to the working directory (run from the repo root)."""
        return build_config(cls, data, prefix="")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dataset_entry_from_dict(data: dict[str, Any], *, where: str) -> DatasetEntry:
    """A mixture file's entry, with unknown keys named (``where`` says which file)."""
    try:
        return build_config(DatasetEntry, data, prefix="datasets[]")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``a.b.c=value`` strings (value parsed as YAML) applied to a nested mapping (new keys allowed,
    validation names them later)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        value = yaml.safe_load(raw) if raw != "" else None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a recipe YAML. ``inherit: other.yaml`` (relative to the file) merges a base recipe first."""
    path = Path(path)
    data = _read_yaml_with_inherit(path, seen=())
    data = apply_overrides(data, list(overrides or []))
    return TrainConfig.from_dict(data)


def _read_yaml_with_inherit(path: Path, *, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: inherit cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    base = _read_yaml_with_inherit(path.parent / parent, seen=seen + (path.resolve(),))
    return _deep_merge(base, data)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
