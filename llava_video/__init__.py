"""llava-video: an open toolkit for LLaVA-NeXT-Video models."""

from llava_video.config import LlavaVideoConfig
from llava_video.errors import (
    BudgetError,
    CheckpointError,
    ConfigError,
    InputError,
    LlavaVideoError,
    VideoDecodeError,
)
from llava_video.model.llava_video import LlavaVideo, LlavaVideoOutput

__version__ = "0.1.0"

__all__ = [
    "LlavaVideo",
    "LlavaVideoConfig",
    "LlavaVideoOutput",
    "LlavaVideoError",
    "ConfigError",
    "CheckpointError",
    "InputError",
    "VideoDecodeError",
    "BudgetError",
    "__version__",
]
