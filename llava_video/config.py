"""Typed configuration of a LLaVA-NeXT-Video model, validated on construction.

The vision tower and the language model keep their own transformers configs (plain dicts here, so a
config file stays readable); everything the toolkit adds (feature selection, projector, AnyRes, frame
pooling, newlines, placeholder ids) is a typed field. A ``LlavaVideoConfig`` converts to and from the
llava-hf ``LlavaNextVideoConfig`` layout and is saved next to every checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llava_video.config_builder import build_config, check_literal
from llava_video.errors import ConfigError
from llava_video.model import anyres

__all__ = [
    "FeatureSelect",
    "PoolMode",
    "PoolPosition",
    "VideoNewline",
    "VisionFeatureConfig",
    "ProjectorConfig",
    "AnyResConfig",
    "FramePoolingConfig",
    "LlavaVideoConfig",
    "SUPPORTED_VISION_TYPES",
    "CONFIG_FILENAME",
]

CONFIG_FILENAME = "llava_video_config.json"

FeatureSelect = Literal["patch", "cls_patch"]
PoolMode = Literal["average", "max", "bilinear"]
PoolPosition = Literal["before_projector", "after_projector"]
VideoNewline = Literal["none", "frame", "row", "video"]

SUPPORTED_VISION_TYPES = ("clip_vision_model", "siglip_vision_model")
_PROJECTOR_RE = re.compile(r"^(linear|mlp(\d+)x_gelu)$")
DEFAULT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


@dataclass
class VisionFeatureConfig:
    """Which hidden state of the vision tower feeds the projector, and whether the CLS token stays."""

    layer: int | list[int] = -2
    select: FeatureSelect = "patch"

    def __post_init__(self) -> None:
        check_literal("feature.select", self.select, FeatureSelect)
        layers = self.layer if isinstance(self.layer, list) else [self.layer]
        if not layers or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers):
            raise ConfigError(f"feature.layer must be an int or a non-empty list of ints, got {self.layer!r}")

    @property
    def num_layers(self) -> int:
        return len(self.layer) if isinstance(self.layer, list) else 1


@dataclass
class ProjectorConfig:
    """``linear`` or ``mlpNx_gelu`` (N linear layers with GELU between them)."""

    type: str = "mlp2x_gelu"
    bias: bool = True

    def __post_init__(self) -> None:
        m = _PROJECTOR_RE.match(self.type)
        if m is None or (m.group(2) is not None and int(m.group(2)) < 1):
            raise ConfigError(f"projector.type={self.type!r} is not 'linear' or 'mlpNx_gelu' (N >= 1)")

    @property
    def depth(self) -> int:
        m = _PROJECTOR_RE.match(self.type)
        assert m is not None
        return 1 if m.group(2) is None else int(m.group(2))


@dataclass
class AnyResConfig:
    """Candidate resolutions (height, width) for AnyRes tiling; ``max_tiles`` is ``anyres_max_N``."""

    grid_pinpoints: list[list[int]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_PINPOINTS))
    max_tiles: int | None = None

    def __post_init__(self) -> None:
        self.grid_pinpoints = [list(map(int, p)) for p in self.grid_pinpoints]
        if not self.grid_pinpoints or any(len(p) != 2 or min(p) <= 0 for p in self.grid_pinpoints):
            raise ConfigError(f"anyres.grid_pinpoints must be a non-empty list of [height, width], got {self.grid_pinpoints}")
        if self.max_tiles is not None and self.max_tiles < 1:
            raise ConfigError(f"anyres.max_tiles must be >= 1 or null, got {self.max_tiles}")


@dataclass
class FramePoolingConfig:
    """Per-frame 2D pooling of video features; llava-hf checkpoints pool before the projector."""

    mode: PoolMode = "average"
    stride: int = 2
    position: PoolPosition = "before_projector"

    def __post_init__(self) -> None:
        check_literal("pooling.mode", self.mode, PoolMode)
        check_literal("pooling.position", self.position, PoolPosition)
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ConfigError(f"pooling.stride must be a positive int, got {self.stride!r}")

    def pooled_side(self, side: int) -> int:
        # avg/max pooling floor the side; bilinear resizes to ceil (as the LLaVA-NeXT code does).
        return math.ceil(side / self.stride) if self.mode == "bilinear" else side // self.stride


_SECTIONS = {
    "feature": VisionFeatureConfig,
    "projector": ProjectorConfig,
    "anyres": AnyResConfig,
    "pooling": FramePoolingConfig,
}


@dataclass
class LlavaVideoConfig:
    """The whole model. ``vision`` and ``text`` are transformers config dicts (with ``model_type``)."""

    vision: dict[str, Any]
    text: dict[str, Any]
    feature: VisionFeatureConfig = field(default_factory=VisionFeatureConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    anyres: AnyResConfig = field(default_factory=AnyResConfig)
    pooling: FramePoolingConfig = field(default_factory=FramePoolingConfig)
    video_newline: VideoNewline = "none"
    image_token_id: int = 32001
    video_token_id: int = 32000
    ignore_index: int = -100
    # Frames sent through the vision tower per call: bounds activation memory on long videos.
    vision_chunk_size: int = 64
    # Conversation template name (see llava_video.data.conversation); None: the tokenizer's stored
    # chat template when it has one, else vicuna_v1.
    conv_template: str | None = None

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, build_config(cls, value, prefix=name))
        check_literal("video_newline", self.video_newline, VideoNewline)
        for name in ("vision", "text"):
            sub = getattr(self, name)
            if not isinstance(sub, dict) or "model_type" not in sub:
                raise ConfigError(f"{name} must be a transformers config dict with a 'model_type'")
            setattr(self, name, normalize_rope_config(sub) if name == "text" else dict(sub))
        if self.vision["model_type"] not in SUPPORTED_VISION_TYPES:
            raise ConfigError(
                f"unsupported vision tower type {self.vision['model_type']!r}; supported: {', '.join(SUPPORTED_VISION_TYPES)}"
            )
        _check_causal_lm_type(self.text["model_type"])
        if self.image_token_id == self.video_token_id:
            raise ConfigError("image_token_id and video_token_id must differ")
        if self.vision_chunk_size < 1:
            raise ConfigError(f"vision_chunk_size must be >= 1, got {self.vision_chunk_size}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"vision image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    # ---- geometry ---------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.vision.get("image_size", 224))

    @property
    def patch_size(self) -> int:
        return int(self.vision.get("patch_size", 32))

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_tile(self) -> int:
        """Tokens of one tile (or one unpooled frame), CLS included when selected."""
        return self.patches_per_side**2 + (1 if self.feature.select == "cls_patch" else 0)

    @property
    def pooled_side(self) -> int:
        return self.pooling.pooled_side(self.patches_per_side)

    def video_token_count(self, num_frames: int) -> int:
        """Placeholder tokens a video of ``num_frames`` frames becomes."""
        side = self.pooled_side
        per_frame = {"none": side * side, "video": side * side, "frame": side * side + 1, "row": side * (side + 1)}
        return num_frames * per_frame[self.video_newline] + (1 if self.video_newline == "video" else 0)

    def image_token_count(self, image_size: tuple[int, int]) -> int:
        """Placeholder tokens an AnyRes image of ``(height, width)`` becomes."""
        return anyres.image_token_count(
            image_size,
            self.anyres.grid_pinpoints,
            tile_size=self.image_size,
            patches_per_side=self.patches_per_side,
            max_tiles=self.anyres.max_tiles,
            base_tokens=self.tokens_per_tile,
        )

    @property
    def max_position_embeddings(self) -> int:
        return int(self.text.get("max_position_embeddings", 4096))

    @property
    def rope_linear_factor(self) -> float:
        rope = self.text.get("rope_parameters") or {}
        return float(rope.get("factor", 1.0)) if rope.get("rope_type") == "linear" else 1.0

    # ---- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LlavaVideoConfig":
        return build_config(cls, data, prefix="")

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LlavaVideoConfig":
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def to_hf_dict(self) -> dict[str, Any]:
        """The llava-hf ``config.json`` (LlavaNextVideoConfig) for this model, where it can express it."""
        if self.feature.select == "patch":
            strategy = "default"
        else:
            strategy = "full"
        return {
            "architectures": ["LlavaNextVideoForConditionalGeneration"],
            "model_type": "llava_next_video",
            "vision_config": dict(self.vision),
            "text_config": dict(self.text),
            "image_token_index": self.image_token_id,
            "video_token_index": self.video_token_id,
            "projector_hidden_act": "gelu",
            "multimodal_projector_bias": self.projector.bias,
            "vision_feature_select_strategy": strategy,
            "vision_feature_layer": self.feature.layer,
            "image_grid_pinpoints": self.anyres.grid_pinpoints,
            "spatial_pool_mode": self.pooling.mode,
            "spatial_pool_stride": self.pooling.stride,
            "image_seq_length": self.patches_per_side**2,
            "video_seq_length": self.video_token_count(1),
            "tie_word_embeddings": bool(self.text.get("tie_word_embeddings", False)),
        }

    @property
    def hf_compatible(self) -> bool:
        """Whether transformers' LlavaNextVideoForConditionalGeneration computes exactly this model."""
        return (
            self.projector.type == "mlp2x_gelu"
            and self.pooling.mode in ("average", "max")
            and self.pooling.position == "before_projector"
            and self.video_newline == "none"
            and self.anyres.max_tiles is None
        )

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> "LlavaVideoConfig":
        """Read a llava-hf ``config.json`` (llava_next_video, or llava_next for image-only checkpoints)."""
        model_type = hf.get("model_type")
        if model_type not in ("llava_next_video", "llava_next", "llava"):
            raise ConfigError(f"config.json has model_type {model_type!r}, expected 'llava_next_video'")
        vision = dict(hf.get("vision_config") or {})
        vision.setdefault("model_type", "clip_vision_model")
        text = dict(hf.get("text_config") or {})
        text.setdefault("model_type", "llama")
        strategy = hf.get("vision_feature_select_strategy", "default")
        if strategy not in ("default", "full"):
            raise ConfigError(f"vision_feature_select_strategy={strategy!r} is not 'default' or 'full'")
        act = hf.get("projector_hidden_act", "gelu")
        if act != "gelu":
            raise ConfigError(f"projector_hidden_act={act!r} is not supported (only 'gelu')")
        mode = hf.get("spatial_pool_mode", "average")
        if mode == "conv":
            raise ConfigError("spatial_pool_mode='conv' is not supported (average, max or bilinear)")
        return cls(
            vision=vision,
            text=text,
            feature=VisionFeatureConfig(
                layer=hf.get("vision_feature_layer", -2), select="patch" if strategy == "default" else "cls_patch"
            ),
            projector=ProjectorConfig(type="mlp2x_gelu", bias=bool(hf.get("multimodal_projector_bias", True))),
            anyres=AnyResConfig(grid_pinpoints=hf.get("image_grid_pinpoints") or copy.deepcopy(DEFAULT_PINPOINTS)),
            pooling=FramePoolingConfig(mode=mode, stride=int(hf.get("spatial_pool_stride", 2))),
            image_token_id=int(hf.get("image_token_index", hf.get("image_token_id", 32001))),
            video_token_id=int(hf.get("video_token_index", hf.get("video_token_id", 32000))),
        )


def normalize_rope_config(text: dict[str, Any]) -> dict[str, Any]:
    """Bring every published spelling of RoPE scaling to transformers 5's ``rope_parameters``.

    Seen in the wild: ``rope_parameters`` (transformers 5), ``rope_scaling: {type|rope_type, factor}``
    (transformers 4), and early LLaVA-NeXT-Video hub configs with ``factor``/``type`` at the top level
    of ``text_config``.
    """
    text = copy.deepcopy(text)
    theta = text.get("rope_theta")
    legacy = text.pop("rope_scaling", None)
    top_factor, top_type = text.pop("factor", None), text.pop("type", None)
    if legacy is None and top_factor is not None:
        legacy = {"type": top_type or "linear", "factor": top_factor}
    params = dict(text.get("rope_parameters") or {})
    if legacy:
        rope_type = legacy.get("rope_type", legacy.get("type", "default"))
        params.update({k: v for k, v in legacy.items() if k not in ("type",)})
        params["rope_type"] = rope_type
    if params:
        params.setdefault("rope_type", "default")
        if theta is not None:
            params.setdefault("rope_theta", theta)
        text["rope_parameters"] = params
    return text


def _check_causal_lm_type(model_type: str) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"unsupported language model type {model_type!r}: not a transformers causal LM "
            "(tested: llama, mistral, qwen2)"
        )
