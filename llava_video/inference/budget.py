"""Token budgets: do frames x tokens + images + prompt + answer fit the context, and at what RoPE factor?

The context of a RoPE model is ``max_position_embeddings x linear factor``. A request that needs more
than the checkpoint's own context gets the smallest integer factor that makes it fit, for any LLM
family, up to ``max_rope_factor``; past that it is refused with the numbers. Integer steps keep the
choices to those the published models were run with (factor 2 for 32 frames on a 4096-token LLM).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from llava_video.config import LlavaVideoConfig
from llava_video.errors import BudgetError

__all__ = ["TokenBudget", "plan_budget", "max_frames_that_fit"]

DEFAULT_MAX_ROPE_FACTOR = 4.0
DEFAULT_AUTO_FRAME_CAP = 64


@dataclass(frozen=True)
class TokenBudget:
    num_frames: int
    video_tokens: int
    image_tokens: int
    text_tokens: int
    max_new_tokens: int
    needed: int
    base_positions: int
    stored_rope_factor: float
    rope_factor: float

    @property
    def context_length(self) -> int:
        return int(self.base_positions * self.rope_factor)

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "context_length": self.context_length}


def max_frames_that_fit(
    config: LlavaVideoConfig,
    *,
    text_tokens: int,
    max_new_tokens: int,
    image_tokens: int = 0,
    rope_factor: float | None = None,
    cap: int = DEFAULT_AUTO_FRAME_CAP,
) -> int:
    """Most frames (<= cap) whose tokens fit the context at ``rope_factor`` (default: the stored one)."""
    factor = config.rope_linear_factor if rope_factor is None else rope_factor
    room = int(config.max_position_embeddings * factor) - text_tokens - max_new_tokens - image_tokens
    frames = 0
    while frames < cap and config.video_token_count(frames + 1) <= room:
        frames += 1
    return frames


def plan_budget(
    config: LlavaVideoConfig,
    *,
    num_frames: int | None,
    text_tokens: int,
    max_new_tokens: int,
    image_sizes: Sequence[tuple[int, int]] = (),
    max_rope_factor: float = DEFAULT_MAX_ROPE_FACTOR,
    auto_frame_cap: int = DEFAULT_AUTO_FRAME_CAP,
    available_frames: int | None = None,
) -> TokenBudget:
    """Plan one request. ``num_frames=None`` means ``auto``: the most frames that fit the stored context
    (no extra RoPE scaling), capped by ``auto_frame_cap`` and by ``available_frames`` when known."""
    image_tokens = sum(config.image_token_count(tuple(s)) for s in image_sizes)
    stored = config.rope_linear_factor
    base = config.max_position_embeddings
    if num_frames is None:
        cap = auto_frame_cap if available_frames is None else min(auto_frame_cap, available_frames)
        num_frames = max_frames_that_fit(
            config, text_tokens=text_tokens, max_new_tokens=max_new_tokens, image_tokens=image_tokens, cap=cap
        )
        if num_frames < 1:
            raise BudgetError(
                f"not even one frame fits: prompt {text_tokens} + images {image_tokens} + answer {max_new_tokens} "
                f"tokens leave no room in a {int(base * stored)}-token context"
            )
    if num_frames < 0:
        raise BudgetError(f"frame count must be >= 0, got {num_frames}")
    video_tokens = config.video_token_count(num_frames) if num_frames else 0
    needed = video_tokens + image_tokens + text_tokens + max_new_tokens
    factor = max(stored, float(math.ceil(needed / base)))
    if factor > max_rope_factor:
        raise BudgetError(
            f"{num_frames} frames need {needed} tokens ({video_tokens} video + {image_tokens} image + {text_tokens} prompt "
            f"+ {max_new_tokens} answer); the model has {base} positions and RoPE scaling is capped at "
            f"{max_rope_factor:g}x ({int(base * max_rope_factor)} tokens): use fewer frames or a higher --max-rope-factor"
        )
    return TokenBudget(
        num_frames=num_frames,
        video_tokens=video_tokens,
        image_tokens=image_tokens,
        text_tokens=text_tokens,
        max_new_tokens=max_new_tokens,
        needed=needed,
        base_positions=base,
        stored_rope_factor=stored,
        rope_factor=factor,
    )
