"""Device, dtype and attention-kernel choice, in one place.

``auto`` means: CUDA with bf16 (and flash-attention 2 when installed) when a GPU is present, else CPU
with float32 and PyTorch's SDPA. Every entry point resolves its flags through these functions.
"""

from __future__ import annotations

from typing import Literal

import torch

from llava_video.errors import ConfigError
from llava_video.optional import flash_attn_available

__all__ = ["DeviceArg", "DtypeArg", "AttnArg", "resolve_device", "resolve_dtype", "resolve_attention"]

DeviceArg = Literal["auto", "cpu", "cuda"]
DtypeArg = Literal["auto", "float32", "bfloat16", "float16"]
AttnArg = Literal["auto", "sdpa", "eager", "flash_attention_2"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} requested but CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device={device!r} is not one of auto, cpu, cuda[:N]")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        device = device or resolve_device("auto")
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def resolve_attention(attn: str = "auto", device: torch.device | None = None, dtype: torch.dtype | None = None) -> str:
    """The ``attn_implementation`` to build the language model with."""
    device = device or resolve_device("auto")
    if attn == "auto":
        if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16) and flash_attn_available():
            return "flash_attention_2"
        return "sdpa"
    if attn not in ("sdpa", "eager", "flash_attention_2"):
        raise ConfigError(f"attn={attn!r} is not one of auto, sdpa, eager, flash_attention_2")
    if attn == "flash_attention_2":
        if not flash_attn_available():
            raise ConfigError("attn='flash_attention_2' but flash-attn is not installed (pip install 'llava-video[flash]')")
        if device.type != "cuda":
            raise ConfigError("attn='flash_attention_2' needs a CUDA device")
    return attn
