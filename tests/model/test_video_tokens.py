"""Video token counts, pooling modes and newline placement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llava_video.config import FramePoolingConfig
from llava_video.model.frame_pooling import FramePooler
from llava_video.testing import tiny_config, tiny_model


def test_32_frames_of_a_336_14_tower_give_4608_tokens():
    cfg = tiny_config(image_size=336, patch_size=14, vision_hidden=16, text_hidden=32, text_layers=1)
    assert cfg.patches_per_side == 24 and cfg.pooled_side == 12
    assert cfg.video_token_count(32) == 32 * 144 == 4608
    model = tiny_model(cfg, with_tokenizer=False)
    with torch.no_grad():
        feats = model.encode_videos(torch.randn(1, 32, 3, 336, 336))
    assert feats[0].shape == (4608, 32)


@pytest.mark.parametrize(
    "mode,stride,side,expected",
    [("average", 2, 24, 12), ("max", 2, 24, 12), ("bilinear", 2, 24, 12), ("average", 2, 27, 13), ("bilinear", 2, 27, 14), ("max", 3, 24, 8)],
)
def test_pooled_shapes(mode, stride, side, expected):
    cfg = FramePoolingConfig(mode=mode, stride=stride)
    assert cfg.pooled_side(side) == expected
    out = FramePooler(cfg)(torch.randn(3, side * side, 5))
    assert out.shape == (3, expected * expected, 5)


def test_pooling_values_match_direct_computation():
    x = torch.arange(16.0).view(1, 16, 1)  # one frame, 4x4 grid, 1 channel: value = row*4 + col
    avg = FramePooler(FramePoolingConfig(mode="average"))(x).flatten().tolist()
    mx = FramePooler(FramePoolingConfig(mode="max"))(x).flatten().tolist()
    assert avg == [2.5, 4.5, 10.5, 12.5]  # mean of {0,1,4,5}, {2,3,6,7}, ...
    assert mx == [5.0, 7.0, 13.0, 15.0]
    bil = FramePooler(FramePoolingConfig(mode="bilinear"))(x).flatten()
    # Halving with align_corners=False samples exactly between pixel pairs: equal to the 2x2 average here.
    assert torch.allclose(bil, torch.tensor(avg))


def test_pooling_after_projector_equals_direct_computation():
    cfg = tiny_config(pooling={"mode": "average", "position": "after_projector"}, projector={"type": "mlp2x_gelu"})
    model = tiny_model(cfg, with_tokenizer=False)
    video = torch.randn(1, 3, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        got = model.encode_videos(video)[0]
        feats = model.vision_tower(video[0])  # (f, 16, d)
        proj = model.multi_modal_projector(feats)  # (f, 16, D)
        side = cfg.patches_per_side
        grid = proj.view(3, side, side, -1).permute(0, 3, 1, 2)  # (f, D, 4, 4)
        want = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2).reshape(-1, proj.shape[-1])
        before = tiny_model(tiny_config(), with_tokenizer=False)
        before.load_state_dict(model.state_dict())
        other = before.encode_videos(video)[0]
    assert torch.allclose(got, want, atol=1e-6)
    # With a nonlinear projector the two orders differ: the option is not a no-op.
    assert not torch.allclose(got, other, atol=1e-4)


@pytest.mark.parametrize("newline,per_frame,extra", [("none", 4, 0), ("frame", 5, 0), ("row", 6, 0), ("video", 4, 1)])
def test_video_newline_placement(newline, per_frame, extra):
    cfg = tiny_config(video_newline=newline)
    model = tiny_model(cfg, with_tokenizer=False)
    frames = 3
    assert cfg.video_token_count(frames) == frames * per_frame + extra
    with torch.no_grad():
        tokens = model.encode_videos(torch.randn(1, frames, 3, cfg.image_size, cfg.image_size))[0]
    assert tokens.shape[0] == cfg.video_token_count(frames)
    nl = model.image_newline
    is_nl = torch.tensor([torch.equal(t, nl) for t in tokens])
    if newline == "frame":
        assert is_nl.nonzero().flatten().tolist() == [4, 9, 14]
    elif newline == "row":
        assert is_nl.nonzero().flatten().tolist() == [2, 5, 8, 11, 14, 17]
    elif newline == "video":
        assert is_nl.nonzero().flatten().tolist() == [12]
    else:
        assert not is_nl.any()


def test_linear_and_deep_projectors():
    for kind, depth in (("linear", 1), ("mlp3x_gelu", 3)):
        model = tiny_model(tiny_config(projector={"type": kind}), with_tokenizer=False)
        assert model.multi_modal_projector.depth == depth
        linears = [m for m in model.multi_modal_projector.modules() if isinstance(m, torch.nn.Linear)]
        assert len(linears) == depth


def test_anyres_max_downscales_large_maps():
    cfg = tiny_config(anyres={"max_tiles": 1})
    model = tiny_model(cfg, with_tokenizer=False)
    size = (64, 64)  # best fit 2x2 tiles -> an 8x8 map, 4 tiles' worth; max 1 tile -> 4x4
    tiles = torch.randn(1, 5, 3, 32, 32)
    with torch.no_grad():
        feats = model.encode_images(tiles, [size])[0]
    side = cfg.patches_per_side
    times = math.sqrt(64 / side**2)
    h = int(8 // times)
    assert cfg.image_token_count(size) == side * side + h * (h + 1) == feats.shape[0]


def test_vision_chunking_gives_identical_features():
    cfg = tiny_config(vision_chunk_size=2)
    chunked = tiny_model(cfg, with_tokenizer=False)
    whole = tiny_model(tiny_config(vision_chunk_size=64), with_tokenizer=False)
    whole.load_state_dict(chunked.state_dict())
    video = torch.randn(1, 5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(chunked.encode_videos(video)[0], whole.encode_videos(video)[0], atol=1e-6)


def test_siglip_tower_keeps_all_tokens():
    cfg = tiny_config(vision_model_type="siglip_vision_model")
    model = tiny_model(cfg, with_tokenizer=False)
    with torch.no_grad():
        feats = model.vision_tower(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 16, 32)
    assert model.encode_videos(torch.randn(1, 2, 3, 32, 32))[0].shape[0] == cfg.video_token_count(2)
