#!/usr/bin/env python
"""Demo stage-2 training with and without the in-memory media cache (``data.media_cache_mb``), one process.

    python tools/bench_media_cache.py --out runs/bench_media_cache

Writes a small demo dataset (the demo recipe's world and mixes, fewer clips, so that the timed steps read
each clip several times as the real recipe does), a random demo model, then runs ``configs/demo/stage2.yaml``
for ``--steps`` steps with ``data.media_cache_mb=0`` (the baseline: every read decodes) and with the cache,
alternating for ``--rounds`` rounds. Reports the median seconds per step of each side and their ratio;
both sides must end at the same loss (the cache returns the same pixels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench_media_cache", help="folder for the data, model and runs")
    p.add_argument("--clips", type=int, default=400, help="training clips (the demo has 6,000)")
    p.add_argument("--steps", type=int, default=120, help="timed steps per run (batch 32)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache-mb", type=int, default=2048)
    args = p.parse_args(argv)
    if min(args.clips, args.steps, args.rounds, args.cache_mb) < 1:
        print("bench_media_cache.py: error: every count must be >= 1", file=sys.stderr)
        return 2

    from llava_video.cli.train import main as train_main
    from llava_video.demo.initial import write_initial_model
    from llava_video.demo.recipe import load_demo_recipe
    from llava_video.synthetic.export import ExportConfig, export_dataset

    out = Path(args.out)
    recipe = load_demo_recipe(ROOT / "configs" / "demo")
    d = recipe.data
    data = out / "data"
    if not (data / "manifest.json").is_file():
        export_dataset(output=data, config=ExportConfig(
            seed=0, num_train=args.clips, num_images=args.clips // 6, num_eval=1, num_dpo=0, num_dpo_eval=0,
            frames=recipe.frames, turns=d.turns, caption_share=d.caption_share, mc_share=d.mc_share,
            mc_answer=d.mc_answer, long_frames=d.long_frames, long_share=d.long_share, world=recipe.world()))
    init = out / "init"
    if not (init / "model.safetensors").is_file():
        write_initial_model(model_config=ROOT / "configs" / "demo" / "model.yaml", data_dir=data, output=init, seed=0)

    def run(cache_mb: int, round_: int) -> tuple[float, float]:
        run_dir = out / f"run_cache{cache_mb}_{round_}"
        code = train_main([
            "--config", str(ROOT / "configs" / "demo" / "stage2.yaml"), f"model.path={init}",
            f"data.train={data / 'stage2.json'}", f"data.image_root={data}", f"data.video_root={data}",
            f"data.num_frames={recipe.sft_frames}", f"data.media_cache_mb={cache_mb}",
            f"schedule.max_steps={args.steps}", f"checkpoint.output_dir={run_dir}", "checkpoint.save_every=100000",
            "logging.progress=false", "runtime.seed=0",
        ])
        if code != 0:
            raise SystemExit(code)
        # The trainer's clock: from the first batch to the last step (data loading included, start-up not).
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        return float(last["elapsed_s"]) / args.steps, float(last["loss"])

    results: dict[str, list[tuple[float, float]]] = {"no_cache": [], "cache": []}
    for round_ in range(args.rounds):
        results["no_cache"].append(run(0, round_))
        results["cache"].append(run(args.cache_mb, round_))
    median = {side: statistics.median(s for s, _ in runs) for side, runs in results.items()}
    losses = {side: sorted({round(loss, 6) for _, loss in runs}) for side, runs in results.items()}
    summary = {"clips": args.clips, "steps": args.steps, "rounds": args.rounds, "seconds_per_step": median,
               "final_losses": losses, "speedup": median["no_cache"] / median["cache"]}
    (out / "bench_media_cache.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"s/step (median of {args.rounds}, {args.steps} steps): no cache {median['no_cache']:.3f}, "
          f"cache {median['cache']:.3f} -> {summary['speedup']:.2f}x; final losses {losses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
