import json

import pytest
import torch

from llava_video.data.batching import BadSample, MicroBatchSampler, Sample, collate, plan_micro_batches
from llava_video.data.conversation import encode_conversation, get_template
from llava_video.model import anyres
from llava_video.model.llava_video import LlavaVideo
from llava_video.model.packed_attention import (
    PACKED_SDPA,
    _packed_sdpa,
    packed_kernel_name,
    packed_row_kwargs,
    register_packed_attention,
    segment_bounds,
)
from llava_video.testing.tiny import tiny_config, tiny_tokenizer


def _sample(index, config, tok, *, video_frames=(), image_sizes=(), question="describe", answer="A red square moves left."):
    markers = "<video>\n" * len(video_frames) + "<image>\n" * len(image_sizes)
    enc = encode_conversation(
        [{"role": "user", "content": markers + question}, {"role": "assistant", "content": answer}],
        tokenizer=tok, template=get_template("vicuna_v1"), config=config,
        video_frames=list(video_frames), image_sizes=list(image_sizes),
    )
    labels = [config.ignore_index] + enc.labels[1:]
    S = config.image_size
    images = [torch.randn(anyres.num_image_tiles(sz, config.anyres.grid_pinpoints, S), 3, S, S) for sz in image_sizes]
    videos = [torch.randn(f, 3, S, S) for f in video_frames]
    modality = "video" if videos else "image" if images else "text"
    return Sample(index, torch.tensor(enc.input_ids), torch.tensor(labels), images, list(image_sizes), videos, modality)


def _loss_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch.model_inputs(torch.device("cpu")), use_cache=False, return_logits=False)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["sdpa", "eager", PACKED_SDPA])
def test_packed_batch_equals_unpacked_samples(attn):
    """sdpa/eager: transformers' block-diagonal mask; PACKED_SDPA: attention per sample (the CPU varlen)."""
    config = tiny_config()
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    if attn == PACKED_SDPA:
        register_packed_attention()
    model = LlavaVideo(config, attn_implementation=attn).train()
    samples = [
        _sample(0, config, tok, video_frames=[3], answer="A blue circle moves right. Then it stays still."),
        _sample(1, config, tok, image_sizes=[(32, 64)], question="What colour?", answer="red"),
        _sample(2, config, tok, question="Is a square a shape?", answer="yes"),
        _sample(3, config, tok, video_frames=[2], image_sizes=[(64, 32)], answer="A green triangle."),
    ]
    packed = collate(samples, packing=True, pad_token_id=3, ignore_index=-100)
    assert packed.input_ids.shape[0] == 1 and packed.attention_mask is None
    assert packed.real_tokens == packed.processed_tokens == sum(len(s.input_ids) for s in samples)
    starts = (packed.position_ids[0] == 0).nonzero().flatten().tolist()
    assert starts == [0] + list(torch.tensor([len(s.input_ids) for s in samples]).cumsum(0)[:-1].tolist())
    loss_p, grads_p = _loss_and_grads(model, packed)

    # Reference: each sample alone, combined with the token-weighted mean the packed loss uses.
    n_tok = [int((s.labels[1:] != -100).sum()) for s in samples]
    total = sum(n_tok)
    loss_ref = torch.zeros(())
    grads_ref = {}
    for s, n in zip(samples, n_tok):
        loss_i, grads_i = _loss_and_grads(model, collate([s], packing=False, pad_token_id=3, ignore_index=-100))
        loss_ref += loss_i * n / total
        for k, g in grads_i.items():
            grads_ref[k] = grads_ref.get(k, 0) + g * n / total
    assert torch.allclose(loss_p, loss_ref, atol=1e-5, rtol=0), (loss_p, loss_ref)
    assert grads_p.keys() == grads_ref.keys()
    worst = max((grads_p[k] - grads_ref[k]).abs().max().item() for k in grads_p)
    assert worst <= 1e-5, worst

    # A padded batch of the same samples computes the same loss, at a token efficiency below 1.
    padded = collate(samples, packing=False, pad_token_id=3, ignore_index=-100)
    loss_pad, _ = _loss_and_grads(model, padded)
    assert torch.allclose(loss_pad, loss_p, atol=1e-5, rtol=0)
    assert padded.processed_tokens == len(samples) * max(len(s.input_ids) for s in samples) > padded.real_tokens


def test_packing_without_restarting_positions_would_leak():
    """The check above can fail: attending across samples changes the loss."""
    config = tiny_config()
    tok = tiny_tokenizer()
    model = LlavaVideo(config).train()
    samples = [_sample(0, config, tok, answer="yes"), _sample(1, config, tok, answer="no no")]
    packed = collate(samples, packing=True, pad_token_id=3, ignore_index=-100)
    inputs = packed.model_inputs(torch.device("cpu"))
    good = model(**inputs, use_cache=False, return_logits=False).loss
    inputs["position_ids"] = torch.arange(packed.input_ids.shape[1])[None]
    leaky = model(**inputs, use_cache=False, return_logits=False).loss
    assert not torch.allclose(good, leaky, atol=1e-5)


def test_collate_carries_bad_samples():
    config = tiny_config()
    tok = tiny_tokenizer()
    s = _sample(0, config, tok)
    batch = collate([s, BadSample(1, "media failed to load: x")], packing=True, pad_token_id=3, ignore_index=-100)
    assert batch.num_samples == 1 and [b.index for b in batch.bad] == [1]
    empty = collate([BadSample(2, "over-long")], packing=True, pad_token_id=3, ignore_index=-100)
    assert empty.num_samples == 0 and len(empty.bad) == 1


def test_plans_mixed_separate_grouped_and_deterministic():
    mods = ["image", "video"] * 20
    lengths = [600 if m == "image" else 4608 for m in mods]
    kw = dict(lengths=lengths, modalities=mods, batch_size=4, seed=3, epoch=0)
    mixed = plan_micro_batches(**kw, group_by_length=False)
    assert sorted(i for b in mixed for i in b) == list(range(40))
    assert any(len({mods[i] for i in b}) == 2 for b in mixed)
    sep = plan_micro_batches(**kw, modality="separate")
    assert all(len({mods[i] for i in b}) == 1 for b in sep)
    assert sorted(i for b in sep for i in b) == list(range(40))
    assert mixed == plan_micro_batches(**kw, group_by_length=False)
    assert mixed != plan_micro_batches(**{**kw, "epoch": 1}, group_by_length=False)
    grouped = plan_micro_batches(**kw, group_by_length=True, group_size=10)
    spread = lambda plan: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan)  # noqa: E731
    assert spread(grouped) < spread(mixed)


def test_sampler_world_and_accumulation_see_the_same_micro_batches():
    plan = [[i] for i in range(10)]
    one = list(MicroBatchSampler(plan, rank=0, world=1, accum=2))
    r0 = list(MicroBatchSampler(plan, rank=0, world=2, accum=1))
    r1 = list(MicroBatchSampler(plan, rank=1, world=2, accum=1))
    assert one == [[i] for i in range(10)]
    assert [a + b for a, b in zip(r0, r1)] == [one[i] + one[i + 1] for i in range(0, 10, 2)]
    resumed = list(MicroBatchSampler(plan, rank=0, world=1, accum=2, start=4))
    assert resumed == one[4:] and len(MicroBatchSampler(plan, rank=0, world=1, accum=2, start=4)) == 6
    assert len(list(MicroBatchSampler(plan, rank=0, world=1, accum=3))) == 9  # trailing partial step dropped


def test_segment_bounds():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert segment_bounds(pos) == [(0, 3), (3, 5), (5, 9)]


def test_packed_row_kwargs_are_the_sample_boundaries():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    kw = packed_row_kwargs(pos)
    assert kw["cu_seq_lens_q"].tolist() == kw["cu_seq_lens_k"].tolist() == [0, 3, 5, 9]
    assert kw["cu_seq_lens_q"].dtype == torch.int32
    assert kw["max_length_q"] == kw["max_length_k"] == 4
    assert packed_kernel_name("cpu", torch.float32) == "per-sample sdpa"  # torch's varlen kernel is CUDA-only


def test_packed_kernel_reads_the_boundaries_it_is_given():
    """The model computes the boundaries once per forward and the kernel uses them (no per-layer sync);
    boundaries that merge two samples change the output, so the check can fail."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 9, 8) for _ in range(3))  # (b, h, L, d)
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    found, _ = _packed_sdpa(None, q, k, v, None, position_ids=pos)
    given, _ = _packed_sdpa(None, q, k, v, None, position_ids=pos, **packed_row_kwargs(pos))
    assert torch.equal(found, given) and found.shape == (1, 9, 4, 8)
    merged = packed_row_kwargs(torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]]))
    wrong, _ = _packed_sdpa(None, q, k, v, None, position_ids=pos, **merged)
    assert not torch.allclose(wrong, found)


@pytest.mark.slow
def test_compiled_blocks_give_the_same_logits():
    """LlavaVideo.compile_blocks (runtime.compile) on a packed row, CPU inductor (~40 s)."""
    torch.manual_seed(0)
    model = LlavaVideo(tiny_config(), attn_implementation=register_packed_attention()).eval()
    ids = torch.randint(10, 100, (1, 40))
    pos = torch.cat([torch.arange(15), torch.arange(25)])[None]
    with torch.no_grad():
        ref = model(input_ids=ids, position_ids=pos).logits
        model.compile_blocks()
        out = model(input_ids=ids, position_ids=pos).logits
    assert all(hasattr(layer, "_compiled_call_impl") and layer._compiled_call_impl is not None
               for layer in model.language_model.get_decoder().layers)
    assert (out - ref).abs().max().item() <= 1e-5


def _clip(path, frames, size=16):
    import numpy as np

    from llava_video.data.encode import write_video

    rgb = np.random.default_rng(frames).integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
    return str(write_video(path, rgb, fps=8))


def _media(**kwargs):
    from llava_video.data.batching import MediaLoader
    from llava_video.data.preprocess import ImageProcessorConfig

    return MediaLoader(processor=ImageProcessorConfig(crop_size=16, shortest_edge=16, grid_pinpoints=[[16, 16]]), **kwargs)


def test_media_cache_returns_the_same_pixels_and_respects_its_size(tmp_path, monkeypatch):
    short, long = _clip(tmp_path / "a.mp4", 4), _clip(tmp_path / "b.mp4", 8)
    media = _media(num_frames=8, cache_mb=1)
    first = media.video(short)
    assert first.shape == (4, 3, 16, 16)
    # A second read must not decode: the decoder is gone, the cached tensor comes back.
    monkeypatch.setattr(type(media), "_load_video", lambda self, path: pytest.fail(f"decoded {path} again"))
    assert torch.equal(media.video(short), first)
    # Full (no room left): further media are loaded each time and not kept.
    media.cache_mb = 0
    monkeypatch.undo()
    assert media.video(long).shape == (8, 3, 16, 16)
    assert list(media._cache) == [("video", short)]


def test_disk_media_cache_is_shared_by_loaders_and_keyed_by_file_and_settings(tmp_path, monkeypatch):
    """A second loader (another process, the next stage) reads the first one's files instead of decoding;
    another frame count, an edited clip or another processor is a different entry; images keep their size."""
    import os

    from PIL import Image

    clip, cache = _clip(tmp_path / "a.mp4", 8), tmp_path / "cache"
    first = _media(num_frames=4, cache_dir=str(cache)).video(clip)
    assert len(list(cache.glob("*.safetensors"))) == 1
    monkeypatch.setattr(type(_media()), "_load_video", lambda self, path: pytest.fail(f"decoded {path} again"))
    assert torch.equal(_media(num_frames=4, cache_dir=str(cache), cache_mb=1).video(clip), first)
    monkeypatch.undo()
    assert _media(num_frames=8, cache_dir=str(cache)).video(clip).shape[0] == 8
    assert len(list(cache.glob("*.safetensors"))) == 2
    _clip(tmp_path / "a.mp4", 6)  # the same path, new content
    os.utime(clip, ns=(1, 1))
    assert _media(num_frames=8, cache_dir=str(cache)).video(clip).shape[0] == 6
    image = tmp_path / "i.png"
    Image.new("RGB", (32, 16), (10, 200, 30)).save(image)
    tiles, size = _media(cache_dir=str(cache)).image(str(image))
    again, size_again = _media(cache_dir=str(cache)).image(str(image))
    assert torch.equal(tiles, again) and size == size_again == (16, 32)
    assert not list(cache.glob("*.partial"))
    # A missing medium still fails with the loader's own error, and leaves nothing behind.
    with pytest.raises(Exception, match="missing.mp4"):
        _media(cache_dir=str(cache)).video(str(tmp_path / "missing.mp4"))


def test_disk_media_cache_survives_damaged_entries_and_unwritable_folders(tmp_path):
    """The disk cache only saves time: a damaged entry is decoded again and replaced, and a folder that cannot
    be written gives one warning and the decoded pixels, never a failed (bad) record."""
    clip, cache = _clip(tmp_path / "a.mp4", 4), tmp_path / "cache"
    fresh = _media(num_frames=4).video(clip)
    _media(num_frames=4, cache_dir=str(cache)).video(clip)
    (entry,) = cache.glob("*.safetensors")
    entry.write_bytes(b"not a safetensors file")
    assert torch.equal(_media(num_frames=4, cache_dir=str(cache)).video(clip), fresh)
    assert torch.equal(_media(num_frames=4, cache_dir=str(cache)).video(clip), fresh)  # replaced: reads back
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    media = _media(num_frames=4, cache_dir=str(blocked / "cache"))
    with pytest.warns(UserWarning, match="cannot write"):
        assert torch.equal(media.video(clip), fresh)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(media.video(clip), fresh)  # warned once only


def test_video_length_estimates_read_the_clip_header(tmp_path):
    """Length grouping sees a 4-frame clip as 4 frames, not the 8 asked for, so short and long clips of one
    dataset are batched apart; fps sampling and unreadable files keep the requested count."""
    short, long = _clip(tmp_path / "a.mp4", 4), _clip(tmp_path / "b.mp4", 12)
    broken = tmp_path / "c.mp4"
    broken.write_bytes(b"not a video")
    media = _media(num_frames=8)
    assert [media.estimated_frames(p) for p in (short, long, str(broken))] == [4, 8, 8]
    assert media.video(short).shape[0] == 4
    assert _media(num_frames=8, max_frames=6).estimated_frames(long) == 6
    assert _media(num_frames=8, fps=2.0).estimated_frames(short) == 8


def test_frame_counts_are_kept_beside_the_disk_cache(tmp_path, monkeypatch):
    """With ``cache_dir`` the declared frame counts are read once and stored: a later loader (the next training
    stage) gets them without opening a container, and a file rewritten since is read again."""
    import llava_video.data.video as video_module

    short, long = _clip(tmp_path / "a.mp4", 4), _clip(tmp_path / "b.mp4", 12)
    cache = tmp_path / "cache"
    first = _media(num_frames=8, cache_dir=str(cache))
    first.read_frame_counts([short, long, short])
    assert [first.estimated_frames(p) for p in (short, long)] == [4, 8]
    assert (cache / "frame_counts.json").is_file()

    def no_header(path):
        raise AssertionError(f"opened {path}")

    monkeypatch.setattr(video_module, "header_frame_count", no_header)
    second = _media(num_frames=8, cache_dir=str(cache))
    second.read_frame_counts([short, long])
    assert [second.estimated_frames(p) for p in (short, long)] == [4, 8]

    monkeypatch.undo()
    _clip(tmp_path / "a.mp4", 6)  # the same path, another file: its stored count is stale
    third = _media(num_frames=8, cache_dir=str(cache))
    third.read_frame_counts([short])
    assert third.estimated_frames(short) == 6
    (cache / "frame_counts.json").write_text("not json")  # a damaged index is read around, then replaced
    fourth = _media(num_frames=8, cache_dir=str(cache))
    fourth.read_frame_counts([long])
    assert fourth.estimated_frames(long) == 8
    assert json.loads((cache / "frame_counts.json").read_text())
