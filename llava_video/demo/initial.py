"""The demo's starting point: a randomly initialised model whose tokenizer is trained on the synthetic
world's own text, written as an ordinary checkpoint so that stage 1 starts from it with ``init: path``.

A byte-level BPE over this world's ~120 words, with room for every word to become one token, and the
conversation template's markers as single tokens: sequences are as short as the text allows (an SFT step's
cost grows with its tokens), answers are a token a word and the embedding table stays small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from llava_video.errors import ConfigError

__all__ = ["demo_corpus", "demo_tokenizer", "template_markers", "write_initial_model"]


def demo_corpus(data_dir: str | Path) -> list[str]:
    """The training text the demo model will see: the conversations of stages 1 and 2, the DPO prompts and
    references (training clips), the conversation template's fixed strings and the evaluation instructions.
    Nothing from held-out clips: their prompts would make the tokenizer (and so every weight) depend on how
    many held-out prompts the data stage wrote."""
    from llava_video.data.conversation import get_template
    from llava_video.evaluation.nextqa import MC_INSTRUCTION, OE_INSTRUCTION

    data_dir = Path(data_dir)
    texts: list[str] = []
    for name in ("stage1.json", "stage2.json"):
        path = data_dir / name
        if not path.is_file():
            raise ConfigError(f"{path}: missing (run tools/make_synthetic.py first)")
        for record in json.loads(path.read_text()):
            texts.extend(turn["value"] for turn in record["conversations"])
    prompts = data_dir / "dpo_prompts.jsonl"
    if prompts.is_file():
        for line in prompts.read_text().splitlines():
            row = json.loads(line)
            texts.extend((row["question"], row["reference"], row["caption"]))
    template = get_template("vicuna_v1")
    texts += [template.system, "USER: ASSISTANT:", "[INST] [/INST]", MC_INSTRUCTION, OE_INSTRUCTION,
              "Please describe this video in detail."]
    return texts


def template_markers(template: str) -> list[str]:
    """The fixed strings the named conversation template writes around every user turn ("[INST] " and
    " [/INST]" for mistral, which cost 14 byte-level tokens a turn as ordinary text)."""
    from llava_video.data.conversation import get_template

    spec = get_template(template)
    before, _, after = spec.user_format.partition("{content}")
    # Whitespace alone is no marker: as a token of its own it would take the space off every word after it.
    return [marker for marker in (before, after, spec.assistant_prefix) if marker.strip()]


def demo_tokenizer(corpus: list[str], *, vocab_size: int, template: str | None = None) -> Any:
    """A PreTrainedTokenizerFast (``<video>`` = 4, ``<image>`` = 5) trained on ``corpus``; with ``template``,
    that conversation template's markers are one token each."""
    from llava_video.testing.tiny import bpe_tokenizer_json, fast_tokenizer

    whole = template_markers(template) if template else []
    return fast_tokenizer(bpe_tokenizer_json(corpus, vocab_size=vocab_size, whole=whole))


def write_initial_model(*, model_config: str | Path, data_dir: str | Path, output: str | Path, seed: int,
                        template: str | None = None) -> Path:
    """Build the model described by ``model_config`` (``tiny_config`` keyword arguments in YAML) with a
    tokenizer trained on ``data_dir``'s text (``template``: the conversation template the model will be trained
    with, whose markers become single tokens), and save it to ``output`` (llava-hf layout)."""
    from llava_video.data.preprocess import ImageProcessorConfig
    from llava_video.model.llava_video import LlavaVideo
    from llava_video.testing.tiny import tiny_config

    spec = yaml.safe_load(Path(model_config).read_text()) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{model_config}: must be a mapping of tiny_config arguments")
    vocab_size = int(spec.get("vocab_size", 512))
    tokenizer = demo_tokenizer(demo_corpus(data_dir), vocab_size=vocab_size, template=template)
    if len(tokenizer) > vocab_size:
        raise ConfigError(f"tokenizer has {len(tokenizer)} entries, more than vocab_size={vocab_size}")
    torch.manual_seed(seed)
    model = LlavaVideo(tiny_config(**spec))
    model.tokenizer = tokenizer
    size = model.config.image_size
    model.image_processor = ImageProcessorConfig(crop_size=size, shortest_edge=size, grid_pinpoints=model.config.anyres.grid_pinpoints)
    return model.save_pretrained(output)
