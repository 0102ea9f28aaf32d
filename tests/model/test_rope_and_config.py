"""RoPE linear scaling against transformers, and config validation / round trips."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlavaNextVideoForConditionalGeneration

from llava_video import ConfigError, LlavaVideo, LlavaVideoConfig
from llava_video.config import normalize_rope_config
from llava_video.testing import tiny_config, tiny_model
from llava_video.testing.tiny import VIDEO_ID

LINEAR2 = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}


def _long_position_inputs(cfg, start):
    ids = torch.tensor([[1, 10] + [VIDEO_ID] * cfg.video_token_count(2) + [12, 13]])
    positions = torch.arange(start, start + ids.shape[1])[None]
    video = torch.randn(1, 2, 3, cfg.image_size, cfg.image_size)
    return ids, positions, video


def test_factor_2_matches_transformers_up_to_position_8191(tmp_path):
    cfg = tiny_config(text={"rope_parameters": LINEAR2, "max_position_embeddings": 4096})
    assert cfg.rope_linear_factor == 2.0
    ours = tiny_model(cfg, seed=4)
    assert ours.context_length == 8192
    ours.save_pretrained(tmp_path)
    theirs = LlavaNextVideoForConditionalGeneration.from_pretrained(tmp_path).eval()
    ids, positions, video = _long_position_inputs(cfg, 8192 - 12)
    assert positions.max() == 8191
    with torch.no_grad():
        a = ours(ids, pixel_values_videos=video, position_ids=positions).logits
        b = theirs(input_ids=ids, pixel_values_videos=video, position_ids=positions).logits
        unscaled = tiny_model(tiny_config(), seed=4)(ids, pixel_values_videos=video, position_ids=positions).logits
    assert (a - b).abs().max() <= 1e-5
    assert (a - unscaled).abs().max() > 1e-3  # the factor really changes the computation


def test_runtime_factor_equals_a_model_built_with_it():
    cfg = tiny_config()
    model = tiny_model(cfg, seed=5)
    built = tiny_model(tiny_config(text={"rope_parameters": LINEAR2}), seed=5)
    built.load_state_dict(model.state_dict())
    model.set_rope_factor(2.0)
    assert model.rope_factor == 2.0 and model.config.rope_linear_factor == 2.0
    ids, positions, video = _long_position_inputs(cfg, 5000)
    with torch.no_grad():
        assert torch.equal(model(ids, pixel_values_videos=video, position_ids=positions).logits,
                           built(ids, pixel_values_videos=video, position_ids=positions).logits)
    model.set_rope_factor(1.0)
    assert model.rope_factor == 1.0
    with pytest.raises(ConfigError):
        model.set_rope_factor(0.5)


@pytest.mark.parametrize(
    "text",
    [
        {"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2.0}},
        {"model_type": "llama", "rope_scaling": {"rope_type": "linear", "factor": 2.0}},
        {"model_type": "llama", "factor": 2.0, "type": "linear"},  # early LLaVA-NeXT-Video hub form
        {"model_type": "llama", "rope_parameters": {"rope_type": "linear", "factor": 2.0}},
    ],
)
def test_every_rope_spelling_normalises(text):
    out = normalize_rope_config(text)
    assert out["rope_parameters"]["rope_type"] == "linear" and out["rope_parameters"]["factor"] == 2.0
    assert "rope_scaling" not in out and "factor" not in out and "type" not in out


def test_hub_style_config_with_top_level_factor_loads_scaled(tmp_path):
    model = tiny_model(seed=6)
    model.save_pretrained(tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    hf["text_config"].pop("rope_parameters", None)
    hf["text_config"].update(factor=2.0, type="linear")
    (tmp_path / "config.json").write_text(json.dumps(hf))
    (tmp_path / "llava_video_config.json").unlink()
    loaded = LlavaVideo.from_pretrained(tmp_path)
    assert loaded.rope_factor == 2.0 and loaded.context_length == 2 * 4096


def test_config_round_trips(tmp_path):
    cfg = tiny_config(text={"rope_parameters": LINEAR2}, pooling={"mode": "max"})
    assert LlavaVideoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg.save(tmp_path)
    assert LlavaVideoConfig.load(tmp_path / "llava_video_config.json") == cfg
    assert cfg.hf_compatible
    back = LlavaVideoConfig.from_hf_dict(json.loads(json.dumps(cfg.to_hf_dict())))
    assert back.to_hf_dict() == cfg.to_hf_dict()
    # A checkpoint records its config next to the weights, and a reload sees the same config.
    model = tiny_model(cfg)
    model.save_pretrained(tmp_path / "ckpt")
    assert LlavaVideo.from_pretrained(tmp_path / "ckpt").config == cfg


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"projector": {"type": "mlpx_gelu"}}, "projector.type"),
        ({"pooling": {"mode": "median"}}, "pooling.mode"),
        ({"pooling": {"stride": 0}}, "pooling.stride"),
        ({"video_newline": "sometimes"}, "video_newline"),
        ({"feature": {"select": "cls"}}, "feature.select"),
        ({"vision_model_type": "dinov2"}, "unsupported vision tower type 'dinov2'"),
        ({"text_model_type": "bert_generation_nope"}, "unsupported language model type"),
        ({"anyres": {"grid_pinpoints": []}}, "grid_pinpoints"),
        ({"image_token_id": 4}, "must differ"),
    ],
)
def test_bad_config_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides)


def test_unknown_config_key_is_named():
    data = tiny_config().to_dict()
    data["pooling"]["strid"] = 2
    with pytest.raises(ConfigError, match="pooling.strid"):
        LlavaVideoConfig.from_dict(data)


@pytest.mark.parametrize("section,key,value,message", [
    ("pooling", "stride", "2", "pooling.stride='2' must be an integer"),
    ("projector", "bias", "yes", "projector.bias='yes' must be true or false"),
    ("anyres", "grid_pinpoints", [[336, "a"]], r"anyres.grid_pinpoints\[0\]\[1\]='a' must be an integer"),
])
def test_config_file_values_of_the_wrong_type_are_named(section, key, value, message):
    """config.json sections go through the same typed builder as the training recipes."""
    data = tiny_config().to_dict()
    data[section][key] = value
    with pytest.raises(ConfigError, match=message):
        LlavaVideoConfig.from_dict(data)
