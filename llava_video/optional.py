"""The one place that knows which optional dependencies are installed.

flash-attn, decord, deepspeed and wandb are extras: code asks here instead of importing them blindly,
so a missing extra becomes a clear message rather than an ImportError deep in a stack.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from types import ModuleType

__all__ = ["is_available", "require", "flash_attn_available", "decord_available"]

_INSTALL_HINTS = {
    "flash_attn": "pip install 'llava-video[flash]' (needs a CUDA toolchain)",
    "decord": "pip install 'llava-video[decord]'",
    "deepspeed": "pip install 'llava-video[deepspeed]'",
    "wandb": "pip install 'llava-video[wandb]'",
}


@cache
def is_available(module: str) -> bool:
    """Whether ``module`` can be imported (found and importable without error)."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception:  # a broken install counts as absent; the reason surfaces in require()
        return False
    return True


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says which feature needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = _INSTALL_HINTS.get(module, f"pip install {module}")
        raise ImportError(f"{feature} needs the optional package '{module}': {hint} ({exc})") from None


def flash_attn_available() -> bool:
    return is_available("flash_attn")


def decord_available() -> bool:
    return is_available("decord")
