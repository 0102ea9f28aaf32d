#!/usr/bin/env python
"""Training throughput on CPU: our packed trainer vs transformers' Trainer with padded batches.

    python tools/bench_train.py --out runs/bench_train
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_train", help="folder for data, weights and bench_train.json")
    p.add_argument("--num-videos", type=int, default=24)
    p.add_argument("--num-images", type=int, default=24)
    p.add_argument("--num-text", type=int, default=8)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side is reported")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers, the same for both trainers")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    args = p.parse_args(argv)
    if min(args.num_videos, args.num_images, args.num_text, args.frames, args.batch_size, args.rounds, args.threads) < 1 or args.num_workers < 0:
        print("error: every count must be >= 1", file=sys.stderr)
        return 2
    from llava_video.train.bench import run_train_benchmark

    result = run_train_benchmark(args.out, num_videos=args.num_videos, num_images=args.num_images,
                                 num_text=args.num_text, frames=args.frames, batch_size=args.batch_size,
                                 rounds=args.rounds, threads=args.threads,
                                 num_workers=args.num_workers)
    print(json.dumps(result, indent=2))
    ours, hf = result["ours"], result["hf_trainer_padded"]
    print(f"ours {ours['tokens_per_s']:.0f} tok/s (efficiency {ours['token_efficiency']:.1%}) vs "
          f"HF Trainer padded {hf['tokens_per_s']:.0f} tok/s (efficiency {hf['token_efficiency']:.1%}): "
          f"{result['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
