"""The token-budget planner: RoPE factor choice, --frames auto, and refusals with numbers."""

from __future__ import annotations

import pytest

from llava_video.errors import BudgetError
from llava_video.inference.budget import max_frames_that_fit, plan_budget
from llava_video.testing import tiny_config


@pytest.fixture(scope="module")
def cfg7b_geometry():
    # LLaVA-NeXT-Video-7B proportions: CLIP-L/14 at 336 (24x24 -> 12x12 = 144 tokens/frame), 4096 positions.
    return tiny_config(image_size=336, patch_size=14, vision_hidden=16, text_hidden=32, max_position_embeddings=4096)


def test_32_frames_pick_factor_2(cfg7b_geometry):
    b = plan_budget(cfg7b_geometry, num_frames=32, text_tokens=60, max_new_tokens=256)
    assert b.video_tokens == 4608 and b.needed == 4608 + 60 + 256
    assert b.rope_factor == 2.0 and b.context_length == 8192


def test_16_frames_need_no_scaling(cfg7b_geometry):
    b = plan_budget(cfg7b_geometry, num_frames=16, text_tokens=60, max_new_tokens=256)
    assert b.rope_factor == 1.0 and b.context_length == 4096


def test_auto_picks_the_most_frames_that_fit_unscaled(cfg7b_geometry):
    # (4096 - 60 - 256) // 144 = 26 frames
    assert max_frames_that_fit(cfg7b_geometry, text_tokens=60, max_new_tokens=256) == 26
    b = plan_budget(cfg7b_geometry, num_frames=None, text_tokens=60, max_new_tokens=256)
    assert b.num_frames == 26 and b.rope_factor == 1.0
    assert plan_budget(cfg7b_geometry, num_frames=None, text_tokens=60, max_new_tokens=256, available_frames=10).num_frames == 10


def test_stored_factor_is_the_floor(cfg7b_geometry):
    scaled = tiny_config(
        image_size=336, patch_size=14, vision_hidden=16, text_hidden=32,
        text={"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
    )
    b = plan_budget(scaled, num_frames=8, text_tokens=60, max_new_tokens=256)
    assert b.rope_factor == 2.0  # never below what the checkpoint was trained with
    assert max_frames_that_fit(scaled, text_tokens=60, max_new_tokens=256) == 54  # (8192-316)//144


def test_impossible_request_names_the_numbers(cfg7b_geometry):
    with pytest.raises(BudgetError, match=r"200 frames need 29116 tokens .* capped at 4x \(16384 tokens\)"):
        plan_budget(cfg7b_geometry, num_frames=200, text_tokens=60, max_new_tokens=256)
    with pytest.raises(BudgetError, match="not even one frame fits"):
        plan_budget(cfg7b_geometry, num_frames=None, text_tokens=4000, max_new_tokens=256)


def test_any_llm_family_gets_scaled():
    for family in ("mistral", "qwen2"):
        cfg = tiny_config(image_size=336, patch_size=14, vision_hidden=16, text_hidden=32, text_model_type=family)
        assert plan_budget(cfg, num_frames=32, text_tokens=60, max_new_tokens=256).rope_factor == 2.0
