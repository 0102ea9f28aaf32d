"""The toolkit's exception types. CLIs turn these into one-line messages and exit code 2."""

from __future__ import annotations

__all__ = [
    "LlavaVideoError",
    "ConfigError",
    "CheckpointError",
    "VideoDecodeError",
    "InputError",
    "BudgetError",
]


class LlavaVideoError(Exception):
    """Base class: a problem with the user's input, files or configuration (not a bug)."""


class ConfigError(LlavaVideoError, ValueError):
    """A configuration value is invalid, unknown or inconsistent."""


class CheckpointError(LlavaVideoError):
    """A checkpoint cannot be found, read or matched to the model."""


class VideoDecodeError(LlavaVideoError):
    """A video (or image) file cannot be decoded; the message names the file and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class InputError(LlavaVideoError, ValueError):
    """Model inputs do not fit together (placeholder counts, shapes, missing tensors)."""


class BudgetError(LlavaVideoError):
    """A request does not fit the model's context, even with the largest allowed RoPE scaling."""
