"""Clear errors on bad input, and AnyRes geometry against transformers' own functions."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers.image_processing_utils import select_best_resolution as hf_select_best_resolution
from transformers.models.llava_next_video.modeling_llava_next_video import unpad_image

from llava_video import CheckpointError, InputError, LlavaVideo
from llava_video.model import anyres
from llava_video.testing import tiny_model
from llava_video.testing.tiny import IMAGE_ID, VIDEO_ID

PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def test_best_resolution_and_unpad_match_transformers():
    rng = random.Random(0)
    for _ in range(300):
        size = (rng.randint(10, 2000), rng.randint(10, 2000))
        assert anyres.select_best_resolution(size, PINPOINTS) == tuple(hf_select_best_resolution(size, PINPOINTS))
        rows, cols = anyres.tile_grid_shape(size, PINPOINTS, 336)
        grid = (rows * 24, cols * 24)
        assert anyres.unpadded_feature_size(size, grid) == tuple(unpad_image(torch.zeros(1, *grid), size).shape[1:])


def test_placeholder_count_mismatch_is_named():
    model = tiny_model()
    cfg = model.config
    video = torch.randn(1, 2, 3, 32, 32)
    ids = torch.tensor([[1] + [VIDEO_ID] * (cfg.video_token_count(2) - 1) + [2]])
    with pytest.raises(InputError, match=r"<video> placeholder tokens \(7\) do not match the visual features \(8"):
        model(ids, pixel_values_videos=video)
    with pytest.raises(InputError, match="no image input"):
        model(torch.tensor([[1, IMAGE_ID, 2]]))
    with pytest.raises(InputError, match="without image_sizes"):
        model(torch.tensor([[1, IMAGE_ID, 2]]), pixel_values=torch.randn(1, 5, 3, 32, 32))


def test_checkpoint_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_model().config.to_hf_dict()))
    with pytest.raises(CheckpointError, match="no weights found"):
        LlavaVideo.from_pretrained(tmp_path)


def test_missing_path_and_offline_hub_id(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        LlavaVideo.from_pretrained(tmp_path / "nope" / "deeper")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="llava-hf/LLaVA-NeXT-Video-7B-hf: not a local directory.*pass the local directory"):
        LlavaVideo.from_pretrained("llava-hf/LLaVA-NeXT-Video-7B-hf")


def test_weights_that_do_not_fit_the_config(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "llava_video_config.json").read_text())
    cfg["text"]["num_hidden_layers"] = 3
    (tmp_path / "llava_video_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"9 missing \(e.g. \[.language_model.model.layers.2"):
        LlavaVideo.from_pretrained(tmp_path)


def test_legacy_bin_weights_load_with_weights_only(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = LlavaVideo.from_pretrained(tmp_path)
    assert torch.equal(loaded.image_newline, model.image_newline)
