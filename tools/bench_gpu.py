#!/usr/bin/env python
"""GPU benchmark (one command, < 10 minutes on one H100/H200): numerics, training MFU, inference latency.

    python tools/bench_gpu.py                    # the full run on a GPU
    python tools/bench_gpu.py --smoke            # tiny sizes, any device (checks the script itself)

1. Packed-batch attention numerics: the fast path (flash-attn 2 varlen when installed, else the toolkit's
   packed kernel: torch's varlen_attn on CUDA when torch ships it, per-sample SDPA otherwise) against
   per-sample SDPA, bf16; max |logit diff|.
2. Training throughput and MFU of a ~1.5B LLaVA-NeXT-Video-shaped model (random init, CLIP-L/336 tower,
   32-frame videos mixed with AnyRes images): ours (packed rows, fast attention) vs transformers'
   LlavaNextVideoForConditionalGeneration on padded batches, same samples, same run. MFU counts the useful
   model FLOPs of a step (LM and projector forward+backward, causal attention within each sample, the frozen
   tower's forward up to the selected layer), never recomputation or padding, over the bf16 dense peak.
3. 32-frame inference of a 7B-shaped model: vision encode, prefill, decode tokens/s and peak memory,
   ours vs transformers' generate on the same weights and inputs.

Every figure is printed with the GPU model, torch version and the attention kernel that was used.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from llava_video import LlavaVideo  # noqa: E402
from llava_video.data.batching import Sample, collate  # noqa: E402
from llava_video.model.packed_attention import packed_kernel_name, register_packed_attention  # noqa: E402
from llava_video.optional import flash_attn_available  # noqa: E402
from llava_video.testing import tiny_config  # noqa: E402
from llava_video.testing.tiny import IMAGE_ID, VIDEO_ID  # noqa: E402

# bf16 dense peak (TFLOP/s) by device name, for MFU.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def model_config(*, vision_layers: int, vision_hidden: int, text_hidden: int, text_layers: int, image_size: int = 336,
                 patch_size: int = 14, vocab: int = 32064, max_positions: int = 8192):
    heads = max(1, text_hidden // 128)
    return tiny_config(
        image_size=image_size, patch_size=patch_size, vision_hidden=vision_hidden, text_hidden=text_hidden,
        text_layers=text_layers, vocab_size=vocab, max_position_embeddings=max_positions,
        vision={"num_hidden_layers": vision_layers, "num_attention_heads": max(1, vision_hidden // 64),
                "intermediate_size": 4 * vision_hidden},
        text={"num_attention_heads": heads, "num_key_value_heads": heads, "intermediate_size": int(2.6875 * text_hidden)},
    )


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _samples(cfg, *, n_videos: int, n_images: int, frames: int, answer: int, seed: int) -> list[Sample]:
    """Videos of ``frames`` frames and AnyRes images at varied aspect ratios, each with a short question and an answer."""
    g = torch.Generator().manual_seed(seed)
    S = cfg.image_size
    out = []
    # Interleave the two kinds so every batch mixes them (the paper's best setting).
    total = n_videos + n_images
    kinds = ["video" if (i + 1) * n_videos // total != i * n_videos // total else "image" for i in range(total)]
    for i, kind in enumerate(kinds):
        if kind == "video":
            ids = [1] + [VIDEO_ID] * cfg.video_token_count(frames)
            media = {"videos": [torch.randn(frames, 3, S, S, generator=g)], "modality": "video"}
        else:
            size = [(2 * S, S), (S, 2 * S), (2 * S, 2 * S), (S, 3 * S)][i % 4]
            from llava_video.model import anyres

            tiles = anyres.num_image_tiles(size, cfg.anyres.grid_pinpoints, S)
            ids = [1] + [IMAGE_ID] * cfg.image_token_count(size)
            media = {"images": [torch.randn(tiles, 3, S, S, generator=g)], "image_sizes": [size], "modality": "image"}
        text = torch.randint(10, 30000, (40 + answer,), generator=g).tolist()
        input_ids = torch.tensor(ids + text)
        labels = torch.full_like(input_ids, -100)
        labels[-answer:] = input_ids[-answer:]
        out.append(Sample(index=i, input_ids=input_ids, labels=labels, **media))
    return out


def fast_attention(device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
    """(attn_implementation, what it runs) of the training fast path."""
    if flash_attn_available():
        return "flash_attention_2", "flash-attn 2 varlen"
    return register_packed_attention(), f"packed kernel: {packed_kernel_name(device, dtype)}"


def step_flops(model: LlavaVideo, samples: list[Sample]) -> float:
    """Useful FLOPs of one forward+backward over ``samples`` (frozen tower: forward only; no recomputation)."""
    cfg = model.config
    lm = model.language_model
    d, n_layers = lm.config.hidden_size, lm.config.num_hidden_layers
    lm_params = sum(p.numel() for n, p in lm.named_parameters() if "embed_tokens" not in n)  # lookups are free
    proj_params = sum(p.numel() for p in model.multi_modal_projector.parameters())
    enc = model.vision_tower.vision_model
    vis_layers = max(model.vision_tower.selected_states)  # the tower stops at the selected layer
    vis_layer_params = sum(p.numel() for p in enc.encoder.layers[0].parameters())
    dv = enc.config.hidden_size
    patches = (cfg.image_size // enc.config.patch_size) ** 2
    flops = 0.0
    for s in samples:
        L = s.input_ids.numel()
        flops += 6 * lm_params * L + 6 * n_layers * d * L * L  # causal: half of the 4*L^2*d score/value work, x3 for backward
        frames = sum(v.shape[0] for v in s.videos) + sum(t.shape[0] for t in s.images)
        t = patches + 1  # CLIP's CLS token
        flops += frames * (2 * vis_layers * vis_layer_params * t + 4 * vis_layers * dv * t * t)
        flops += 6 * proj_params * frames * patches
    return flops


def check_numerics(args, device, report) -> None:
    sizes = dict(vision_layers=2, vision_hidden=256, text_hidden=1024, text_layers=4)
    if args.smoke:
        sizes = dict(vision_layers=1, vision_hidden=64, text_hidden=128, text_layers=2, image_size=56, patch_size=14)
    cfg = model_config(**sizes)
    fast, kernel = fast_attention(device, torch.bfloat16)
    torch.manual_seed(0)
    model = LlavaVideo(cfg, attn_implementation="sdpa").to(device, torch.bfloat16).eval()
    samples = _samples(cfg, n_videos=2, n_images=2, frames=4, answer=32, seed=1)
    packed = collate(samples, packing=True, pad_token_id=0, ignore_index=-100)
    with torch.no_grad():
        ref = [model(**collate([s], packing=False, pad_token_id=0, ignore_index=-100).model_inputs(device)).logits[0]
               for s in samples]
        model.language_model.set_attn_implementation(fast)
        out = model(**packed.model_inputs(device), use_cache=False).logits[0]
    ref = torch.cat(ref).float()
    diff = (out.float() - ref).abs().max().item()
    scale = ref.abs().max().item()
    # bf16 keeps 8 mantissa bits: logits of size ~scale agree to a few ulps after a few layers.
    tol = 0.05 * max(scale, 1.0)
    report.append(f"numerics: packed row through {kernel} vs each sample alone through sdpa, bf16: max |diff| {diff:.4f} (logit scale {scale:.2f}, "
                  f"tolerance {tol:.3f}) -> {'OK' if diff <= tol else 'FAIL'}")


def bench_training(args, device, report) -> None:
    from transformers import LlavaNextVideoForConditionalGeneration

    sizes = dict(vision_layers=24, vision_hidden=1024, text_hidden=2048, text_layers=22) if not args.smoke else \
        dict(vision_layers=2, vision_hidden=64, text_hidden=128, text_layers=2, image_size=56, patch_size=14)
    cfg = model_config(**sizes)
    frames = 32 if not args.smoke else 4
    samples = _samples(cfg, n_videos=args.train_videos, n_images=args.train_images, frames=frames, answer=64, seed=2)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    fast, kernel = fast_attention(device, dtype)
    torch.manual_seed(0)
    ours = LlavaVideo(cfg, attn_implementation=fast).to(device, dtype)
    ours.vision_tower.requires_grad_(False)
    n_params = sum(p.numel() for p in ours.parameters())
    n_trained = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        theirs = LlavaNextVideoForConditionalGeneration.from_pretrained(tmp, dtype=dtype).to(device)
    theirs.model.vision_tower.requires_grad_(False)
    if args.checkpointing:
        for m in (ours.language_model, theirs):
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def step(model, batch, is_ours: bool) -> None:
        inputs = batch.model_inputs(device)
        if is_ours:
            loss = model(**inputs, use_cache=False, return_logits=False).loss
        else:
            pv = inputs["pixel_values"]
            kwargs = {}
            if inputs["pixel_values_videos"]:
                kwargs["pixel_values_videos"] = torch.stack(inputs["pixel_values_videos"])
            if pv:
                width = max(t.shape[0] for t in pv)
                kwargs["pixel_values"] = torch.stack([torch.cat([t, t.new_zeros(width - t.shape[0], *t.shape[1:])]) for t in pv])
                kwargs["image_sizes"] = torch.tensor(inputs["image_sizes"], device=device)
            loss = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"],
                         use_cache=False, **kwargs).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    per_batch = args.batch_size
    batches = [samples[i: i + per_batch] for i in range(0, len(samples), per_batch)]
    useful = sum(step_flops(ours, b) for b in batches)
    results = {}
    # (name, model, packed rows, compiled blocks); ours runs eager first, then compiled in place.
    runs = [("transformers (padded)", theirs, False, False), ("ours (packed)", ours, True, False)]
    if args.compile and device.type == "cuda":
        runs.append(("ours (packed, compiled blocks)", ours, True, True))
    for name, model, packing, compiled in runs:
        if compiled:
            model.compile_blocks()  # the first steps below compile (not timed)
        collated = [collate(b, packing=packing, pad_token_id=0, ignore_index=-100) for b in batches]
        for b in collated[: 2 if compiled else 1]:  # warm-up (compiled: a second length too)
            step(model, b, packing)
        _sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.epochs):
            real = processed = 0
            t0 = time.perf_counter()
            for b in collated:
                step(model, b, packing)
                real += b.real_tokens
                processed += b.processed_tokens
            _sync()
            times.append(time.perf_counter() - t0)
        secs = statistics.median(times)
        mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        results[name] = (real / secs, real / processed, useful / secs, mem)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else ""
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in gpu), None)
    report.append(f"training setup: {n_params / 1e9:.2f}B params ({n_trained / 1e9:.2f}B trained, tower frozen), "
                  f"{len(samples)} samples in batches of {per_batch}, {useful / 1e12:.1f} TFLOP useful work per pass, "
                  f"median of {args.epochs} passes, gradient checkpointing {'on' if args.checkpointing else 'off'}, "
                  f"ours attention: {kernel}")
    for name, (tps, eff, fps, mem) in results.items():
        mfu = fps / (peak * 1e12) if peak else float("nan")
        report.append(f"training {name}: {tps:,.0f} real tokens/s, token efficiency {eff:.1%}, "
                      f"{fps / 1e12:.0f} TFLOP/s useful, MFU {mfu:.1%} of {peak} TFLOP/s, peak memory {mem:.1f} GiB")
    base = results["transformers (padded)"][0]
    for name, (tps, *_) in results.items():
        if name.startswith("ours"):
            report.append(f"training speed-up {name} / transformers (padded): {tps / base:.2f}x")
    del ours, theirs
    gc.collect()


def bench_inference(args, device, report) -> None:
    from transformers import LlavaNextVideoForConditionalGeneration
    from transformers.generation.streamers import BaseStreamer

    sizes = dict(vision_layers=24, vision_hidden=1024, text_hidden=4096, text_layers=32) if not args.smoke else \
        dict(vision_layers=2, vision_hidden=64, text_hidden=128, text_layers=2)
    cfg = model_config(**sizes)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    ours = LlavaVideo(cfg).to(device, dtype).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        theirs = LlavaNextVideoForConditionalGeneration.from_pretrained(tmp, dtype=dtype).to(device).eval()
    frames = 32
    ids = torch.tensor([[1] + list(range(10, 40)) + [VIDEO_ID] * cfg.video_token_count(frames) + list(range(40, 60))], device=device)
    video = torch.randn(1, frames, 3, cfg.image_size, cfg.image_size, device=device, dtype=dtype)
    n_new = args.new_tokens

    class Clock(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.first = 0, None

        def put(self, value) -> None:
            self.calls += 1
            if self.calls == 2:
                _sync()
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    def run(is_ours: bool):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            if is_ours:
                feats = ours.encode_videos(video)
                _sync()
                t_vis = time.perf_counter()
                first: list[float] = []

                def on_token(_tokens) -> None:  # returns None: a true value would stop generation
                    if not first:
                        _sync()
                        first.append(time.perf_counter())

                out = ours.generate(ids, inputs_embeds=ours.embed_inputs(ids, video_features=feats),
                                    max_new_tokens=n_new, eos_token_id=[], on_token=on_token)
                assert out.shape[1] == n_new, out.shape
                t_first = first[0]
            else:
                feats = theirs.model.get_video_features(video).pooler_output
                _sync()
                t_vis = time.perf_counter()
                clock = Clock()
                theirs.generate(input_ids=ids, pixel_values_videos=video, max_new_tokens=n_new, min_new_tokens=n_new,
                                do_sample=False, streamer=clock)
                t_first = clock.first
        _sync()
        t_end = time.perf_counter()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        return t_vis - t0, t_first - t_vis, (n_new - 1) / (t_end - t_first), peak

    run(True), run(False)
    rows: dict[str, list] = {"ours": [], "transformers": []}
    for _ in range(args.repeats):  # interleaved, so clock and cache drift hits both alike
        rows["ours"].append(run(True))
        rows["transformers"].append(run(False))
    for name, r in rows.items():
        med = [statistics.median(x[i] for x in r) for i in range(4)]
        label = "vision+prefill" if name == "transformers" else "prefill"
        report.append(f"inference {name}: vision encode {med[0] * 1e3:.1f} ms, {label} {med[1] * 1e3:.1f} ms, "
                      f"decode {med[2]:.1f} tok/s, peak memory {med[3]:.1f} GiB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the script on any device")
    p.add_argument("--skip", nargs="*", default=[], choices=["numerics", "training", "inference"])
    p.add_argument("--train-videos", type=int, default=12)
    p.add_argument("--train-images", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3, help="timed passes over the training batches (median)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both models")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the extra training run of ours with torch.compile'd blocks")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        print("bench_gpu.py: error: no CUDA device (use --smoke to check the script on CPU)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    report = [f"device {name}, torch {torch.__version__}, flash-attn {'installed' if flash_attn_available() else 'absent'}"]
    for part, fn in (("numerics", check_numerics), ("training", bench_training), ("inference", bench_inference)):
        if part not in args.skip:
            fn(args, device, report)
            print(report[-1], flush=True)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
