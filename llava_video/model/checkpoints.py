"""Checkpoint IO: the llava-hf layout (transformers 4.x and 5.x key names) and the original LLaVA-NeXT layout.

Our in-memory names are the llava-hf hub names (transformers <= 4.51), so saving is a plain state-dict
write and loading is one renaming table per layout. Weights are read from safetensors, or from legacy
``.bin`` files with ``torch.load(weights_only=True)``; nothing runs remote code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

from llava_video.atomic import atomic_path, write_text_atomic
from llava_video.config import CONFIG_FILENAME, LlavaVideoConfig
from llava_video.errors import CheckpointError, ConfigError
from llava_video.runtime import resolve_attention, resolve_device, resolve_dtype

__all__ = [
    "Layout",
    "detect_layout",
    "to_native_keys",
    "from_native_keys",
    "read_state_dict",
    "resolve_checkpoint_dir",
    "load_pretrained",
    "save_pretrained",
    "config_from_original",
]

Layout = Literal["llava_hf_4", "llava_hf_5", "original"]

# (pattern, replacement) applied in order; the first that matches a key renames it.
_RENAMES: dict[str, list[tuple[str, str]]] = {
    # transformers 5 writes the tower without its "vision_model." level.
    "llava_hf_4": [(r"^vision_tower\.(?!vision_model\.)", "vision_tower.vision_model.")],
    "llava_hf_5": [
        (r"^model\.vision_tower\.vision_model\.", "vision_tower.vision_model."),  # 4.52-4.57
        (r"^model\.vision_tower\.", "vision_tower.vision_model."),  # 5.6+
        (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
        (r"^model\.image_newline$", "image_newline"),
        (r"^model\.language_model\.", "language_model.model."),
        (r"^lm_head\.", "language_model.lm_head."),
    ],
    "original": [
        (r"^model\.vision_tower\.vision_tower\.vision_model\.", "vision_tower.vision_model."),
        (r"^model\.mm_projector\.(\d+)\.", "multi_modal_projector.@{1}."),
        (r"^model\.mm_projector\.(weight|bias)$", r"multi_modal_projector.linear_1.\1"),
        (r"^model\.image_newline$", "image_newline"),
        (r"^model\.", "language_model.model."),
        (r"^lm_head\.", "language_model.lm_head."),
    ],
}

# Weights a checkpoint may lack without changing the model's outputs.
_OPTIONAL_NATIVE = [
    r"^vision_tower\.vision_model\.post_layernorm\.",  # unused: features come from an inner layer
    r"^vision_tower\.vision_model\.head\.",  # SigLIP's pooling head, dropped by LLaVA
]

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m is None:
            continue
        if "@{1}" in repl:
            # Sequential index 0, 2, 4 ... of Linear layers (GELUs sit between) -> linear_1, linear_2 ...
            repl = repl.replace("@{1}", f"linear_{int(m.group(1)) // 2 + 1}")
            return repl + key[m.end() :]
        return re.sub(pattern, repl, key, count=1)
    return key


def detect_layout(keys: Iterable[str]) -> Layout:
    keys = list(keys)
    if any(k.startswith("model.mm_projector") or k.startswith("model.vision_tower.vision_tower.") for k in keys):
        return "original"
    if any(k.startswith("model.language_model.") or k.startswith("model.multi_modal_projector.") for k in keys):
        return "llava_hf_5"
    if any(k.startswith("language_model.") or k.startswith("multi_modal_projector.") for k in keys):
        return "llava_hf_4"
    raise CheckpointError("weights match no known layout (llava-hf 4.x/5.x or original LLaVA-NeXT)")


def to_native_keys(state: dict[str, torch.Tensor], layout: Layout | None = None) -> dict[str, torch.Tensor]:
    layout = layout or detect_layout(state)
    rules = _RENAMES[layout]
    return {_rename(k, rules): v for k, v in state.items()}


def from_native_keys(state: dict[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """Rename our keys to another layout (used to write test fixtures and conversions)."""
    if layout == "llava_hf_4":
        return dict(state)
    out = {}
    for k, v in state.items():
        if layout == "llava_hf_5":
            k = re.sub(r"^vision_tower\.vision_model\.", "model.vision_tower.", k)
            k = re.sub(r"^multi_modal_projector\.", "model.multi_modal_projector.", k)
            k = re.sub(r"^image_newline$", "model.image_newline", k)
            k = re.sub(r"^language_model\.model\.", "model.language_model.", k)
            k = re.sub(r"^language_model\.lm_head\.", "lm_head.", k)
        else:
            k = re.sub(r"^vision_tower\.vision_model\.", "model.vision_tower.vision_tower.vision_model.", k)
            m = re.match(r"^multi_modal_projector\.linear_(\d+)\.", k)
            if m:
                k = f"model.mm_projector.{(int(m.group(1)) - 1) * 2}." + k[m.end() :]
            k = re.sub(r"^image_newline$", "model.image_newline", k)
            k = re.sub(r"^language_model\.model\.", "model.", k)
            k = re.sub(r"^language_model\.lm_head\.", "lm_head.", k)
        out[k] = v
    return out


# ---- reading files ------------------------------------------------------------------------------
def _load_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    # Legacy pickles can run code when unpickled: only plain tensors are accepted.
    return torch.load(str(path), map_location="cpu", weights_only=True)


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory (single file or sharded with an index)."""
    for name in _WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if name.endswith(".index.json"):
            index = json.loads(path.read_text())
            shards = sorted(set(index.get("weight_map", {}).values()))
            if not shards:
                raise CheckpointError(f"{path}: index lists no weight shards")
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                shard_path = directory / shard
                if not shard_path.exists():
                    raise CheckpointError(f"{directory}: shard {shard} listed in {name} is missing")
                state.update(_load_weight_file(shard_path))
            return state
        return _load_weight_file(path)
    raise CheckpointError(
        f"{directory}: no weights found (expected one of {', '.join(_WEIGHT_FILES)})"
    )


def resolve_checkpoint_dir(path_or_id: str | Path) -> Path:
    """A local directory as is; otherwise a hub id downloaded (or taken from the cache) by huggingface_hub."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    if path.exists():
        raise CheckpointError(f"{text}: is a file, expected a checkpoint directory")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        raise CheckpointError(f"{text}: no such checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as exc:  # offline, unknown repo, auth: all end in the same advice
        raise CheckpointError(
            f"{text}: not a local directory and could not be fetched from the model hub "
            f"({type(exc).__name__}); download it elsewhere and pass the local directory"
        ) from None


# ---- the original LLaVA-NeXT config -------------------------------------------------------------
_ORIGINAL_LM_TYPES = {
    "LlavaLlamaForCausalLM": "llama",
    "LlavaMistralForCausalLM": "mistral",
    "LlavaQwenForCausalLM": "qwen2",
}
_ORIGINAL_NEWLINE = {"no_token": "none", "frame": "frame", "grid": "row", "one_token": "video"}


def _vision_config_from_weights(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """CLIP vision config inferred from tensor shapes (the original layout names a hub tower instead)."""
    prefix = "vision_tower.vision_model."
    patch = state[prefix + "embeddings.patch_embedding.weight"]  # (d, 3, p, p)
    positions = state[prefix + "embeddings.position_embedding.weight"].shape[0]  # 1 + (S/p)^2
    layers = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k))}
    hidden, patch_size = patch.shape[0], patch.shape[-1]
    side = int(round((positions - 1) ** 0.5))
    return {
        "model_type": "clip_vision_model",
        "hidden_size": hidden,
        "intermediate_size": state[prefix + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        "num_hidden_layers": max(layers) + 1,
        "num_attention_heads": max(1, hidden // 64),
        "patch_size": patch_size,
        "image_size": side * patch_size,
        "projection_dim": hidden,
    }


def config_from_original(
    raw: dict[str, Any], state: dict[str, torch.Tensor], *, vision_config: dict[str, Any] | None = None
) -> LlavaVideoConfig:
    """Our config from an original LLaVA-NeXT ``config.json`` (LLM keys at the top, ``mm_*`` keys)."""
    archs = raw.get("architectures") or []
    lm_type = next((_ORIGINAL_LM_TYPES[a] for a in archs if a in _ORIGINAL_LM_TYPES), None)
    if lm_type is None:
        raise ConfigError(
            f"original LLaVA-NeXT config names architectures {archs}; supported: {', '.join(_ORIGINAL_LM_TYPES)}"
        )
    text = {k: v for k, v in raw.items() if not k.startswith(("mm_", "image_", "video_")) and k not in ("architectures", "model_type", "vision_config")}
    text["model_type"] = lm_type
    vision = vision_config or raw.get("vision_config") or _vision_config_from_weights(state)
    aspect = str(raw.get("image_aspect_ratio", "anyres"))
    max_tiles = int(m.group(1)) if (m := re.fullmatch(r"anyres_max_(\d+)", aspect)) else None
    position = raw.get("mm_pooling_position", "before")
    vocab = state["language_model.model.embed_tokens.weight"].shape[0]
    return LlavaVideoConfig(
        vision=vision,
        text=text,
        feature={"layer": raw.get("mm_vision_select_layer", -2), "select": raw.get("mm_vision_select_feature", "patch")},
        projector={"type": raw.get("mm_projector_type", "mlp2x_gelu")},
        anyres={"grid_pinpoints": raw.get("image_grid_pinpoints") or [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]], "max_tiles": max_tiles},
        pooling={
            "mode": raw.get("mm_spatial_pool_mode", "average"),
            "stride": int(raw.get("mm_spatial_pool_stride", 2)),
            "position": "after_projector" if position == "after" else "before_projector",
        },
        video_newline=_ORIGINAL_NEWLINE.get(raw.get("mm_newline_position", "no_token"), "none"),
        # The original code marks visual positions with -200, not vocabulary tokens: our placeholders
        # get fresh ids past the vocabulary unless the config names them (embed_inputs never looks
        # placeholder ids up in the embedding table, so they need no rows).
        image_token_id=int(raw.get("image_token_index", vocab + 1)),
        video_token_id=int(raw.get("video_token_index", vocab)),
    )


# ---- load / save --------------------------------------------------------------------------------
def _read_config(directory: Path, state: dict[str, torch.Tensor] | None, **overrides: Any) -> LlavaVideoConfig:
    ours = directory / CONFIG_FILENAME
    if ours.exists():
        return LlavaVideoConfig.load(ours)
    hf_path = directory / "config.json"
    if not hf_path.exists():
        raise CheckpointError(f"{directory}: no config.json or {CONFIG_FILENAME}")
    raw = json.loads(hf_path.read_text())
    if any(k.startswith("mm_") for k in raw):
        assert state is not None
        return config_from_original(raw, to_native_keys(state), vision_config=overrides.get("vision_config"))
    return LlavaVideoConfig.from_hf_dict(raw)


def _is_optional(key: str) -> bool:
    return any(re.match(p, key) for p in _OPTIONAL_NATIVE)


def load_pretrained(
    cls: Callable[..., Any],
    path_or_id: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    attn_implementation: str = "auto",
    vision_config: dict[str, Any] | None = None,
    load_tokenizer: bool = True,
) -> Any:
    directory = resolve_checkpoint_dir(path_or_id)
    state = read_state_dict(directory)
    config = _read_config(directory, state, vision_config=vision_config)
    state = to_native_keys(state)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    attn = resolve_attention(attn_implementation, dev, dt)
    model = cls(config, attn_implementation=attn)
    expected = model.state_dict()
    tied = bool(model.language_model.config.tie_word_embeddings)
    if tied:
        state.pop("language_model.lm_head.weight", None)
    missing = [k for k in expected if k not in state and not _is_optional(k) and not (tied and k == "language_model.lm_head.weight")]
    unexpected = [k for k in state if k not in expected and not _is_optional(k)]
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: weights do not match the config: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    for k, v in state.items():
        if k in expected and expected[k].shape != v.shape:
            raise CheckpointError(f"{directory}: {k} has shape {tuple(v.shape)}, the config implies {tuple(expected[k].shape)}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    if tied:
        model.language_model.tie_weights()
    model.to(device=dev, dtype=dt)
    model.eval()
    if load_tokenizer:
        model.tokenizer = _load_tokenizer(directory)
    pre = directory / "preprocessor_config.json"
    model.image_processor = json.loads(pre.read_text()) if pre.exists() else None
    model.checkpoint_dir = directory
    return model


def _load_tokenizer(directory: Path) -> Any:
    if not any((directory / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)


def save_pretrained(
    model: Any,
    directory: str | Path,
    *,
    layout: Layout = "llava_hf_4",
    max_shard_bytes: int = 5 * 1024**3,
) -> Path:
    """Write weights (safetensors, sharded past ``max_shard_bytes``), configs, tokenizer and processor files.

    Every file is written under a temporary name and renamed, so a crash never leaves a torn file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if model.language_model.config.tie_word_embeddings:
        state.pop("language_model.lm_head.weight", None)
    state = from_native_keys(state, layout)
    _write_weights(state, directory, max_shard_bytes)
    config: LlavaVideoConfig = model.config
    config_json = json.dumps(config.to_hf_dict(), indent=2) + "\n"
    if layout == "original":
        raise ConfigError("writing the original LLaVA-NeXT config is not supported; use from_native_keys for weights")
    write_text_atomic(directory / "config.json", config_json)
    write_text_atomic(directory / CONFIG_FILENAME, json.dumps(config.to_dict(), indent=2) + "\n")
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(directory))
    if model.image_processor is not None:
        proc = model.image_processor
        proc_dict = proc if isinstance(proc, dict) else proc.to_hf_dict()
        write_text_atomic(directory / "preprocessor_config.json", json.dumps(proc_dict, indent=2) + "\n")
    return directory


def _write_weights(state: dict[str, torch.Tensor], directory: Path, max_shard_bytes: int) -> None:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(state):
        nbytes = state[k].numel() * state[k].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = state[k]
        size += nbytes
    for stale in directory.glob("model*.safetensors*"):
        stale.unlink()
    if len(shards) == 1:
        _atomic_save(shards[0], directory / "model.safetensors")
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save(shard, directory / name)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(v.numel() * v.element_size() for v in state.values())
    write_text_atomic(
        directory / "model.safetensors.index.json",
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n",
    )


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
