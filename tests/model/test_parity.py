"""Parity with transformers' LlavaNextVideoForConditionalGeneration on tiny random configs (fp32, CPU)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlavaNextVideoForConditionalGeneration

from llava_video import LlavaVideo
from llava_video.model import anyres
from llava_video.model.checkpoints import from_native_keys
from llava_video.testing import tiny_config, tiny_model
from llava_video.testing.tiny import IMAGE_ID, VIDEO_ID

TOL = 1e-5


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Our tiny model saved in the llava-hf layout, and transformers' model loaded from that directory."""
    ours = tiny_model(seed=1)
    path = tmp_path_factory.mktemp("ckpt")
    ours.save_pretrained(path)
    theirs, info = LlavaNextVideoForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    theirs.eval()
    return ours, theirs, info, path


def _image_tiles(cfg, size, max_tiles=None):
    n = anyres.num_image_tiles(size, cfg.anyres.grid_pinpoints, cfg.image_size)
    return torch.randn(max_tiles or n, 3, cfg.image_size, cfg.image_size), n


def test_transformers_loads_our_checkpoint_with_no_missing_keys(pair):
    _, _, info, path = pair
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    keys = load_file(str(path / "model.safetensors")).keys()
    # transformers 4.x names, which every version loads
    assert any(k.startswith("vision_tower.vision_model.") for k in keys)
    assert "multi_modal_projector.linear_1.weight" in keys and "language_model.lm_head.weight" in keys


def test_video_only_logits(pair):
    ours, theirs, *_ = pair
    cfg = ours.config
    frames = 3
    ids = torch.tensor([[1, 10, 11] + [VIDEO_ID] * cfg.video_token_count(frames) + [12, 13]])
    video = torch.randn(1, frames, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        a = ours(ids, pixel_values_videos=video).logits
        b = theirs(input_ids=ids, pixel_values_videos=video).logits
    assert (a - b).abs().max() <= TOL


@pytest.mark.parametrize("size", [(40, 90), (90, 40), (64, 64), (30, 100), (100, 33), (17, 23)])
def test_image_only_logits_across_aspect_ratios(pair, size):
    ours, theirs, *_ = pair
    cfg = ours.config
    tiles, _ = _image_tiles(cfg, size)
    ids = torch.tensor([[1, 10] + [IMAGE_ID] * cfg.image_token_count(size) + [12]])
    sizes = torch.tensor([size])
    with torch.no_grad():
        a = ours(ids, pixel_values=tiles[None], image_sizes=sizes).logits
        b = theirs(input_ids=ids, pixel_values=tiles[None], image_sizes=sizes).logits
    assert (a - b).abs().max() <= TOL


def test_image_and_video_batch_with_padding(pair):
    """Batch of 2: one row with an image and a video, one with a video only; left padding; padded tiles."""
    ours, theirs, *_ = pair
    cfg = ours.config
    size = (50, 100)
    tiles, n_tiles = _image_tiles(cfg, size, max_tiles=6)
    assert n_tiles < 6  # the padded tile slots must be ignored
    frames = 2
    row0 = [1, 10] + [IMAGE_ID] * cfg.image_token_count(size) + [11] + [VIDEO_ID] * cfg.video_token_count(frames) + [12]
    row1 = [1, 20] + [VIDEO_ID] * cfg.video_token_count(frames) + [21, 22]
    pad = len(row0) - len(row1)
    ids = torch.tensor([row0, [3] * pad + row1])
    mask = torch.tensor([[1] * len(row0), [0] * pad + [1] * len(row1)])
    videos = torch.randn(2, frames, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, pixel_values=tiles[None], image_sizes=torch.tensor([size]), pixel_values_videos=videos).logits
        b = theirs(input_ids=ids, attention_mask=mask, pixel_values=tiles[None], image_sizes=torch.tensor([size]), pixel_values_videos=videos).logits
    real = mask.bool()
    assert (a[real] - b[real]).abs().max() <= TOL


def test_greedy_generation_identical_ids(pair):
    ours, theirs, *_ = pair
    cfg = ours.config
    frames = 2
    ids = torch.tensor(
        [[1, 10] + [VIDEO_ID] * cfg.video_token_count(frames) + [12, 13], [3, 3, 1] + [VIDEO_ID] * cfg.video_token_count(frames) + [14]]
    )
    mask = (ids != 3).long()
    video = torch.randn(2, frames, 3, cfg.image_size, cfg.image_size)
    mine = ours.generate(ids, mask, pixel_values_videos=video, max_new_tokens=16, eos_token_id=[])
    ref = theirs.generate(
        input_ids=ids, attention_mask=mask, pixel_values_videos=video, max_new_tokens=16, min_new_tokens=16, do_sample=False
    )[:, ids.shape[1] :]
    assert mine.shape == (2, 16)
    assert torch.equal(mine, ref)


def test_loss_matches_transformers(pair):
    ours, theirs, *_ = pair
    cfg = ours.config
    ids = torch.tensor([[1, 10] + [VIDEO_ID] * cfg.video_token_count(2) + [12, 13, 14, 2]])
    labels = ids.clone()
    labels[:, : ids.shape[1] - 4] = -100
    video = torch.randn(1, 2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        a = ours(ids, pixel_values_videos=video, labels=labels).loss
        b = theirs(input_ids=ids, pixel_values_videos=video, labels=labels).loss
        c = ours(ids, pixel_values_videos=video, labels=labels, return_logits=False).loss
    assert abs(a.item() - b.item()) <= TOL and abs(a.item() - c.item()) <= TOL


def test_we_load_a_checkpoint_transformers_saved(pair, tmp_path):
    ours, theirs, *_ = pair
    theirs.save_pretrained(tmp_path)
    loaded = LlavaVideo.from_pretrained(tmp_path)
    cfg = ours.config
    ids = torch.tensor([[1, 10] + [VIDEO_ID] * cfg.video_token_count(2) + [12]])
    video = torch.randn(1, 2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        assert torch.equal(loaded(ids, pixel_values_videos=video).logits, ours(ids, pixel_values_videos=video).logits)


@pytest.mark.parametrize("layout", ["llava_hf_5", "original"])
def test_renamed_layouts_load_to_identical_logits(pair, tmp_path, layout):
    ours, *_ = pair
    cfg = ours.config
    state = from_native_keys({k: v.clone() for k, v in ours.state_dict().items()}, layout)
    save_file(state, str(tmp_path / "model.safetensors"))
    if layout == "original":
        # An original LLaVA-NeXT config: LLM keys at the top level plus mm_* keys.
        raw = {k: v for k, v in cfg.text.items() if k != "model_type"}
        raw.update(
            architectures=["LlavaLlamaForCausalLM"],
            model_type="llava_llama",
            mm_projector_type="mlp2x_gelu",
            mm_vision_select_layer=-2,
            mm_vision_select_feature="patch",
            mm_vision_tower="tiny-clip",
            image_aspect_ratio="anyres",
            image_grid_pinpoints=cfg.anyres.grid_pinpoints,
            mm_spatial_pool_mode="average",
            mm_spatial_pool_stride=2,
            mm_newline_position="no_token",
            image_token_index=IMAGE_ID,
            video_token_index=VIDEO_ID,
        )
        (tmp_path / "config.json").write_text(json.dumps(raw))
        loaded = LlavaVideo.from_pretrained(tmp_path, vision_config=cfg.vision)
    else:
        (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
        loaded = LlavaVideo.from_pretrained(tmp_path)
    ids = torch.tensor([[1, 10] + [VIDEO_ID] * cfg.video_token_count(2) + [IMAGE_ID] * cfg.image_token_count((40, 70)) + [12]])
    video = torch.randn(1, 2, 3, cfg.image_size, cfg.image_size)
    tiles, _ = _image_tiles(cfg, (40, 70))
    with torch.no_grad():
        a = loaded(ids, pixel_values_videos=video, pixel_values=tiles[None], image_sizes=[(40, 70)]).logits
        b = ours(ids, pixel_values_videos=video, pixel_values=tiles[None], image_sizes=[(40, 70)]).logits
    assert torch.equal(a, b)


def test_sharded_checkpoint_round_trip(tmp_path):
    model = tiny_model(seed=3)
    model.save_pretrained(tmp_path, max_shard_bytes=100_000)
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    loaded = LlavaVideo.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert loaded.tokenizer is not None and loaded.tokenizer.convert_tokens_to_ids("<video>") == VIDEO_ID


@pytest.mark.parametrize("text_model_type", ["mistral", "qwen2"])
def test_other_llm_families_match_transformers(tmp_path, text_model_type):
    ours = tiny_model(tiny_config(text_model_type=text_model_type), seed=2)
    ours.save_pretrained(tmp_path)
    theirs = LlavaNextVideoForConditionalGeneration.from_pretrained(tmp_path).eval()
    cfg = ours.config
    ids = torch.tensor([[1, 10] + [VIDEO_ID] * cfg.video_token_count(2) + [12, 13]])
    video = torch.randn(1, 2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        a = ours(ids, pixel_values_videos=video).logits
        b = theirs(input_ids=ids, pixel_values_videos=video).logits
    assert (a - b).abs().max() <= TOL
