#!/usr/bin/env python
"""Inference benchmark on CPU: our generate vs transformers' generate, same weights, same inputs, one run.

The model keeps LLaVA-NeXT-Video-7B's proportions at a size a CPU runs in seconds (see --help and
docs/benchmarks.md): a CLIP-style tower at 336 px / patch 14 (24x24 patches pooled to 12x12 = 144 tokens
per frame), a Llama LM with a 32064-token vocabulary. Both sides get the same ``input_ids`` and
``pixel_values_videos``; time to first token (vision encode + prefill) and decode tokens/s are
measured with greedy decoding of a fixed number of tokens (EOS disabled), median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import LlavaNextVideoForConditionalGeneration  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from llava_video import LlavaVideo  # noqa: E402
from llava_video.testing import tiny_config  # noqa: E402
from llava_video.testing.tiny import VIDEO_ID  # noqa: E402


class _FirstTokenClock(BaseStreamer):
    """transformers calls put() with the prompt first, then with each new token."""

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def bench_config(args: argparse.Namespace):
    return tiny_config(
        image_size=336,
        patch_size=14,
        vision_hidden=args.vision_hidden,
        text_hidden=args.text_hidden,
        text_layers=args.text_layers,
        vocab_size=32064,
        vision={"num_hidden_layers": args.vision_layers, "num_attention_heads": max(1, args.vision_hidden // 64),
                "intermediate_size": 4 * args.vision_hidden},
        text={"num_attention_heads": max(1, args.text_hidden // 64), "num_key_value_heads": max(1, args.text_hidden // 64),
              "intermediate_size": int(2.6875 * args.text_hidden)},
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--vision-hidden", type=int, default=256)
    p.add_argument("--vision-layers", type=int, default=6)
    p.add_argument("--text-hidden", type=int, default=512)
    p.add_argument("--text-layers", type=int, default=6)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = bench_config(args)
    ours = LlavaVideo(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        theirs = LlavaNextVideoForConditionalGeneration.from_pretrained(tmp).eval()
    n_params = sum(p.numel() for p in ours.parameters())
    ids = torch.tensor([[1] + list(range(10, 40)) + [VIDEO_ID] * cfg.video_token_count(args.frames) + list(range(40, 60))])
    video = torch.randn(1, args.frames, 3, 336, 336)
    print(f"model: {n_params / 1e6:.1f}M parameters; prompt {ids.shape[1]} tokens ({args.frames} frames x 144); "
          f"{args.new_tokens} new tokens; torch {torch.__version__}, {torch.get_num_threads()} threads")

    def run_ours() -> tuple[float, float, list[int]]:
        first: list[float] = []
        t0 = time.perf_counter()
        out = ours.generate(ids, pixel_values_videos=video, max_new_tokens=args.new_tokens, eos_token_id=[],
                            on_token=lambda _t: first.append(time.perf_counter()) if not first else None)
        t1 = time.perf_counter()
        return first[0] - t0, (args.new_tokens - 1) / (t1 - first[0]), out[0].tolist()

    def run_theirs() -> tuple[float, float, list[int]]:
        clock = _FirstTokenClock()
        t0 = time.perf_counter()
        out = theirs.generate(input_ids=ids, pixel_values_videos=video, max_new_tokens=args.new_tokens,
                              min_new_tokens=args.new_tokens, do_sample=False, streamer=clock)
        t1 = time.perf_counter()
        return clock.first - t0, (args.new_tokens - 1) / (t1 - clock.first), out[0, ids.shape[1]:].tolist()

    with torch.no_grad():
        run_ours(), run_theirs()  # warm-up
        rows = {"ours": [], "transformers": []}
        for _ in range(args.repeats):
            # Alternate so drift in machine load hits both sides alike.
            rows["ours"].append(run_ours())
            rows["transformers"].append(run_theirs())
    assert rows["ours"][0][2] == rows["transformers"][0][2], "greedy outputs differ"
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in rows.items()}
    print(f"{'':14s}{'TTFT (s)':>10s}{'decode tok/s':>14s}")
    for k, (ttft, tps) in med.items():
        print(f"{k:14s}{ttft:10.3f}{tps:14.1f}")
    print(f"ratio ours/transformers: TTFT {med['ours'][0] / med['transformers'][0]:.3f}x (lower is better), "
          f"decode tok/s {med['ours'][1] / med['transformers'][1]:.3f}x (higher is better); identical greedy ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
