"""The language model: any transformers causal LM, plus runtime RoPE linear scaling.

RoPE linear scaling divides every rotary frequency by a factor, so position ``p`` is rotated as
``p / factor`` was: a model trained on 4096 positions then spans 4096 x factor. Changing the factor
rebuilds the model's rotary-embedding module from a copy of its config; no transformers code is patched.
"""

from __future__ import annotations

import copy

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from llava_video.errors import ConfigError

__all__ = ["build_language_model", "text_config_from_dict", "set_rope_linear_factor", "rope_linear_factor"]


def text_config_from_dict(text: dict) -> PretrainedConfig:
    kwargs = {k: v for k, v in text.items() if k != "model_type"}
    return AutoConfig.for_model(text["model_type"], **kwargs)


def build_language_model(text: dict, *, attn_implementation: str = "sdpa") -> nn.Module:
    config = text_config_from_dict(text)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)


def _rotary_module(lm: nn.Module) -> tuple[nn.Module, str, nn.Module]:
    base = getattr(lm, "model", lm)
    rotary = getattr(base, "rotary_emb", None)
    if rotary is None:
        raise ConfigError(f"{type(lm).__name__} has no rotary embedding module; RoPE scaling is not supported for it")
    return base, "rotary_emb", rotary


def rope_linear_factor(lm: nn.Module) -> float:
    rope = getattr(lm.config, "rope_parameters", None) or {}
    return float(rope.get("factor", 1.0)) if rope.get("rope_type") == "linear" else 1.0


def set_rope_linear_factor(lm: nn.Module, factor: float) -> None:
    """Use linear RoPE scaling with ``factor`` (1.0 = none) from now on; also updates ``lm.config``."""
    if factor < 1.0:
        raise ConfigError(f"RoPE linear factor must be >= 1, got {factor}")
    if factor == rope_linear_factor(lm):
        return
    base, name, rotary = _rotary_module(lm)
    old = dict(getattr(lm.config, "rope_parameters", None) or {})
    if old.get("rope_type", "default") not in ("default", "linear"):
        raise ConfigError(f"cannot apply linear RoPE scaling on top of rope_type={old.get('rope_type')!r}")
    params = {"rope_type": "linear" if factor != 1.0 else "default", "rope_theta": old.get("rope_theta", 10000.0)}
    if factor != 1.0:
        params["factor"] = float(factor)
    config = copy.deepcopy(lm.config)
    config.rope_parameters = params
    device = next(rotary.buffers()).device
    setattr(base, name, type(rotary)(config).to(device))
    lm.config.rope_parameters = params
    # Attention layers read the config too (e.g. for scaling); they share lm.config, now updated.
