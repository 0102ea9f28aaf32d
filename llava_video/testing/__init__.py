"""Tiny models and tokenizers built offline, for tests, benchmarks and examples."""

from llava_video.testing.tiny import TINY_SPECIAL_TOKENS, tiny_config, tiny_tokenizer, tiny_model

__all__ = ["TINY_SPECIAL_TOKENS", "tiny_config", "tiny_tokenizer", "tiny_model"]
