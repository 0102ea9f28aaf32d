"""Samples in memory: frames + ground truth + text, addressed by (seed, split, index), no files.

Every sample has its own random stream, ``SeedSequence([seed, split code, index, purpose])``, so any
sample can be made alone, in any order, by any worker, and the held-out split is a disjoint stream
(different scenes, not a slice of one list). The exporter writes exactly these samples to disk; a trainer
can use :class:`SyntheticDataset` instead to draw fresh samples on the fly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from llava_video.errors import ConfigError
from llava_video.synthetic.language import (
    IMAGE_CAPTION_PROMPTS,
    QA,
    VIDEO_CAPTION_PROMPTS,
    image_caption,
    image_questions,
    select_questions,
    video_caption,
    video_questions,
)
from llava_video.synthetic.world import (
    ComboRule,
    Scene,
    WorldConfig,
    render_clip,
    render_frame,
    sample_scene,
    sample_still_scene,
)

__all__ = [
    "Split",
    "Holdout",
    "DEFAULT_HELD_OUT_COMBOS",
    "IMAGE_ASPECTS",
    "Sample",
    "world_for_holdout",
    "sample_rng",
    "video_id",
    "image_id",
    "make_video_sample",
    "make_image_sample",
    "caption_conversation",
    "mc_turn",
    "qa_conversation",
    "SyntheticDataset",
]

Split = Literal["train", "eval"]
Holdout = Literal["seeds", "combos"]
Medium = Literal["video", "image"]
MCAnswer = Literal["letter", "text"]
_SPLIT_CODES = {"train": 0, "eval": 1}
_MEDIUM_CODES = {"video": 0, "image": 1}
_PURPOSE_CODES = {"scene": 0, "text": 1, "record": 2, "length": 3}
# One held-out colour per shape, all colours different: in "combos" mode the held-out clips show pairs
# that training never shows, while every colour and every shape is still seen in training.
DEFAULT_HELD_OUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "circle"),
    ("green", "square"),
    ("blue", "triangle"),
    ("yellow", "cross"),
)
# (width, height) in units of the frame side: square, wide and tall stills for AnyRes in mixed batches.
IMAGE_ASPECTS: tuple[tuple[float, float], ...] = ((1, 1), (2, 1), (1, 2), (1.5, 1), (1, 1.5), (3, 1))


@dataclass(frozen=True)
class Sample:
    """One clip (``frames`` (T, H, W, 3)) or still image (``frames`` (H, W, 3)) with its text."""

    id: str
    medium: Medium
    scene: Scene
    frames: np.ndarray
    caption: str
    qas: tuple[QA, ...]


def world_for_holdout(config: WorldConfig, holdout: Holdout) -> WorldConfig:
    """The world config with held-out combinations filled in for ``holdout="combos"``."""
    if holdout == "seeds":
        return replace(config, held_out_combos=())
    if holdout == "combos":
        combos = config.held_out_combos or tuple(
            (c, s) for c, s in DEFAULT_HELD_OUT_COMBOS if c in config.colours and s in config.shapes
        )
        if not combos:
            raise ConfigError("holdout: 'combos' needs held-out colour/shape pairs that exist in this world")
        return replace(config, held_out_combos=combos)
    raise ConfigError(f"holdout: must be 'seeds' or 'combos', got {holdout!r}")


def sample_rng(*, seed: int, split: Split, medium: Medium, index: int, purpose: str) -> np.random.Generator:
    """The random stream of one sample for one purpose (scene, text, record layout or clip length)."""
    if split not in _SPLIT_CODES:
        raise ConfigError(f"split: must be 'train' or 'eval', got {split!r}")
    return np.random.default_rng(
        np.random.SeedSequence([seed, _SPLIT_CODES[split], _MEDIUM_CODES[medium], index, _PURPOSE_CODES[purpose]])
    )


def _combo_rule(config: WorldConfig, split: Split) -> ComboRule:
    if not config.held_out_combos:
        return "any"
    return "exclude" if split == "train" else "require"


def video_id(*, split: Split, index: int) -> str:
    # Numeric ids, like NExT-QA's; held-out and training clips can never collide.
    return str((10_000_000 if split == "eval" else 20_000_000) + index)


def image_id(*, split: Split, index: int) -> str:
    return f"{split}_image_{index:06d}"


def make_video_sample(*, seed: int, split: Split, index: int, num_frames: int, config: WorldConfig) -> Sample:
    """Clip ``index`` of ``split``: the scene does not depend on ``num_frames``, only its sampling does."""
    scene = sample_scene(
        rng=sample_rng(seed=seed, split=split, medium="video", index=index, purpose="scene"),
        config=config,
        combo_rule=_combo_rule(config, split),
    )
    text_rng = sample_rng(seed=seed, split=split, medium="video", index=index, purpose="text")
    return Sample(
        id=video_id(split=split, index=index),
        medium="video",
        scene=scene,
        frames=render_clip(scene, num_frames=num_frames),
        caption=video_caption(scene),
        qas=tuple(video_questions(scene=scene, rng=text_rng, config=config)),
    )


def make_image_sample(*, seed: int, split: Split, index: int, config: WorldConfig) -> Sample:
    """Still image ``index`` of ``split``, with an aspect ratio from :data:`IMAGE_ASPECTS`."""
    rng = sample_rng(seed=seed, split=split, medium="image", index=index, purpose="scene")
    aspect_w, aspect_h = IMAGE_ASPECTS[int(rng.integers(0, len(IMAGE_ASPECTS)))]
    scene = sample_still_scene(
        rng=rng,
        config=config,
        width=int(config.size * aspect_w),
        height=int(config.size * aspect_h),
        combo_rule=_combo_rule(config, split),
    )
    text_rng = sample_rng(seed=seed, split=split, medium="image", index=index, purpose="text")
    return Sample(
        id=image_id(split=split, index=index),
        medium="image",
        scene=scene,
        frames=render_frame(scene, 0.0),
        caption=image_caption(scene),
        qas=tuple(image_questions(scene=scene, rng=text_rng, config=config)),
    )


def _turns(pairs: list[tuple[str, str]], *, medium: Medium) -> list[dict[str, str]]:
    """LLaVA conversation turns; the media placeholder leads the first human turn."""
    turns = []
    for i, (question, answer) in enumerate(pairs):
        prefix = f"<{medium}>\n" if i == 0 else ""
        turns.append({"from": "human", "value": prefix + question})
        turns.append({"from": "gpt", "value": answer})
    return turns


def caption_conversation(sample: Sample, *, rng: np.random.Generator) -> list[dict[str, str]]:
    """One turn: a caption prompt and the detailed ground-truth caption (stage 1 alignment)."""
    prompts = VIDEO_CAPTION_PROMPTS if sample.medium == "video" else IMAGE_CAPTION_PROMPTS
    return _turns([(prompts[int(rng.integers(0, len(prompts)))], sample.caption)], medium=sample.medium)


def mc_turn(qa: QA, *, answer: MCAnswer = "letter") -> tuple[str, str]:
    """A question as NExT-QA multiple choice, worded exactly as the evaluation prompts it, answered by
    the option's letter or by the option's text (which the evaluation's parser also accepts: a tiny model
    then answers MC and open questions with the same words, instead of also learning which letter sits
    beside the right text)."""
    from llava_video.evaluation.nextqa import MC_INSTRUCTION, OPTION_LETTERS

    options = "\n".join(f"{letter}. {text}" for letter, text in zip(OPTION_LETTERS, qa.options))
    reply = OPTION_LETTERS[qa.answer_index] if answer == "letter" else qa.options[qa.answer_index]
    return f"{qa.question}\n{options}\n{MC_INSTRUCTION}", reply


def qa_conversation(
    sample: Sample, *, rng: np.random.Generator, turns: int, caption_share: float = 0.0, mc_share: float = 0.0,
    mc_answer: MCAnswer = "letter", kind_weights: Mapping[str, float] | None = None, brief_caption_share: float = 0.0,
) -> list[dict[str, str]]:
    """Up to ``turns`` question/answer turns over different kinds; with probability ``caption_share`` the
    first turn asks for the detailed caption instead (so the SFT model can also describe). Each question
    turn is multiple choice with probability ``mc_share`` (no extra draws when it is 0, so datasets made
    without it are unchanged). ``kind_weights``: see :func:`select_questions`. A video caption turn answers
    with the caption without its events with probability ``brief_caption_share`` (one more draw, only when it
    is > 0): real instruction data answers the same "describe" prompt more or less fully."""
    chosen = select_questions(list(sample.qas), rng=rng, count=turns, kind_weights=kind_weights)
    pairs = [mc_turn(qa, answer=mc_answer) if mc_share > 0 and rng.random() < mc_share else (qa.question, qa.answer)
             for qa in chosen]
    if rng.random() < caption_share:
        prompts = VIDEO_CAPTION_PROMPTS if sample.medium == "video" else IMAGE_CAPTION_PROMPTS
        caption = sample.caption
        prompt = prompts[int(rng.integers(0, len(prompts)))]
        if sample.medium == "video" and brief_caption_share > 0 and rng.random() < brief_caption_share:
            caption = video_caption(sample.scene, with_events=False)
        pairs = [(prompt, caption)] + pairs[: max(turns - 1, 0)]
    return _turns(pairs, medium=sample.medium)


class SyntheticDataset:
    """Map-style dataset of fresh samples, generated on access (no files).

    Item ``i`` is a video when ``i % period < period * video_share`` (rounded), otherwise an image, so
    any contiguous batch mixes both. Each item is a dict: ``id``, ``medium``, ``frames`` (uint8 numpy,
    (T, H, W, 3) or (H, W, 3)), ``conversations`` (LLaVA turns) and ``caption``.
    ``task="caption"`` gives stage-1 records, ``task="qa"`` stage-2 records.
    """

    def __init__(
        self,
        *,
        seed: int,
        length: int,
        num_frames: int = 16,
        config: WorldConfig | None = None,
        split: Split = "train",
        task: Literal["caption", "qa"] = "qa",
        video_share: float = 0.75,
        turns: int = 3,
        caption_share: float = 0.1,
        holdout: Holdout = "seeds",
    ) -> None:
        if length < 1 or num_frames < 1 or turns < 1:
            raise ConfigError(f"SyntheticDataset: length, num_frames and turns must be >= 1, got {length}, {num_frames}, {turns}")
        if not 0.0 <= video_share <= 1.0:
            raise ConfigError(f"video_share: must be in [0, 1], got {video_share}")
        if task not in ("caption", "qa"):
            raise ConfigError(f"task: must be 'caption' or 'qa', got {task!r}")
        self.seed, self.length, self.num_frames, self.split, self.task = seed, length, num_frames, split, task
        self.config = world_for_holdout(config or WorldConfig(), holdout)
        self.turns, self.caption_share = turns, caption_share
        self._period = 20
        self._videos_per_period = round(self._period * video_share)

    def __len__(self) -> int:
        return self.length

    def _locate(self, index: int) -> tuple[Medium, int]:
        """(medium, index within that medium) of item ``index``."""
        block, offset = divmod(index, self._period)
        if offset < self._videos_per_period:
            return "video", block * self._videos_per_period + offset
        return "image", block * (self._period - self._videos_per_period) + offset - self._videos_per_period

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length}")
        medium, local = self._locate(index)
        if medium == "video":
            sample = make_video_sample(
                seed=self.seed, split=self.split, index=local, num_frames=self.num_frames, config=self.config
            )
        else:
            sample = make_image_sample(seed=self.seed, split=self.split, index=local, config=self.config)
        rng = sample_rng(seed=self.seed, split=self.split, medium=medium, index=local, purpose="record")
        if self.task == "caption":
            conversations = caption_conversation(sample, rng=rng)
        else:
            conversations = qa_conversation(sample, rng=rng, turns=self.turns, caption_share=self.caption_share)
        return {
            "id": sample.id,
            "medium": medium,
            "frames": sample.frames,
            "conversations": conversations,
            "caption": sample.caption,
        }
