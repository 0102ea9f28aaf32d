"""Tiny LLaVA-NeXT-Video models and a tokenizer trained offline (no model hub needed).

The tokenizer is a byte-level BPE trained in-process on a small fixed corpus, so it is deterministic;
``<unk> <s> </s> <pad> <video> <image>`` are its first ids, so placeholder ids are small and stable.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Sequence

import torch

from llava_video.config import LlavaVideoConfig

__all__ = ["TINY_SPECIAL_TOKENS", "bpe_tokenizer_json", "fast_tokenizer", "tiny_config", "tiny_tokenizer", "tiny_model"]

TINY_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<video>", "<image>"]
VIDEO_ID, IMAGE_ID = 4, 5

_CORPUS = [
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: ASSISTANT: system user assistant <|im_start|> <|im_end|> [INST] [/INST]",
    "Please describe this video in detail. What happens first? What happens after?",
    "A red square moves left. A blue circle moves right. A green triangle stays still.",
    "Answer with the option's letter from the given choices directly. A. B. C. D. E.",
    "Answer a question using a short phrase or sentence. yes no one two three four five",
    "the a an is are was were of in on at to from with and or but then after before",
    "colour color shape motion up down left right square circle triangle red green blue yellow white",
]


def bpe_tokenizer_json(corpus: Sequence[str], *, vocab_size: int, whole: Sequence[str] = ()) -> str:
    """A byte-level BPE (``TINY_SPECIAL_TOKENS`` first) trained in-process on ``corpus``, as JSON.

    ``whole``: strings that always become one token each (ids after the learnt ones, within ``vocab_size``),
    e.g. a conversation template's markers, which the byte-level pre-tokenizer would otherwise cut at every
    bracket and space ("[/INST]" is 8 tokens without this).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(whole),
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    # normalized=False: matched on the raw text, spaces included, so decoding gives the string back exactly.
    tok.add_tokens([AddedToken(text, normalized=False) for text in whole])
    return tok.to_str()


def fast_tokenizer(tokenizer_json: str) -> Any:
    """A PreTrainedTokenizerFast over a ``bpe_tokenizer_json`` with ``<video>`` = 4 and ``<image>`` = 5,
    BOS ``<s>``, EOS ``</s>``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    assert tok.convert_tokens_to_ids("<video>") == VIDEO_ID and tok.convert_tokens_to_ids("<image>") == IMAGE_ID
    return tok


@lru_cache(maxsize=4)
def _tokenizer_json(vocab_size: int) -> str:
    return bpe_tokenizer_json(_CORPUS * 4, vocab_size=vocab_size)


def tiny_tokenizer(vocab_size: int = 512) -> Any:
    """The tiny models' tokenizer, trained on a small fixed corpus (deterministic)."""
    return fast_tokenizer(_tokenizer_json(vocab_size))


def tiny_config(
    *,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 32,
    text_hidden: int = 64,
    text_layers: int = 2,
    vocab_size: int = 512,
    max_position_embeddings: int = 4096,
    text_model_type: str = "llama",
    vision_model_type: str = "clip_vision_model",
    **overrides: Any,
) -> LlavaVideoConfig:
    """A model small enough for CPU tests (vision 2 layers, LM ``text_layers`` layers)."""
    vision = {
        "model_type": vision_model_type,
        "hidden_size": vision_hidden,
        "intermediate_size": vision_hidden * 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
    }
    if vision_model_type == "clip_vision_model":
        vision["projection_dim"] = vision_hidden
    text = {
        "model_type": text_model_type,
        "hidden_size": text_hidden,
        "intermediate_size": text_hidden * 2,
        "num_hidden_layers": text_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 3,
        "tie_word_embeddings": False,
    }
    tile = image_size
    fields: dict[str, Any] = {
        "vision": vision,
        "text": text,
        "anyres": {"grid_pinpoints": [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]},
        "image_token_id": IMAGE_ID,
        "video_token_id": VIDEO_ID,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(fields.get(key), dict):
            merged = copy.deepcopy(fields[key])
            merged.update(value)
            fields[key] = merged
        else:
            fields[key] = value
    return LlavaVideoConfig(**fields)


def tiny_model(config: LlavaVideoConfig | None = None, *, seed: int = 0, with_tokenizer: bool = True) -> Any:
    """A randomly initialised LlavaVideo (deterministic for a seed) with the tiny tokenizer attached."""
    from llava_video.model.llava_video import LlavaVideo

    torch.manual_seed(seed)
    model = LlavaVideo(config or tiny_config()).eval()
    if with_tokenizer:
        model.tokenizer = tiny_tokenizer(int(model.config.text.get("vocab_size", 512)))
    return model

