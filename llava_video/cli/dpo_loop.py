"""tools/dpo_loop.py: the four steps of DPO from AI feedback, chained: sample -> judge -> pairs -> train.

    python tools/dpo_loop.py --model runs/video_sft --prompts data/synthetic/dpo_prompts.jsonl \
        --work-dir runs/dpo_loop --train-config configs/dpo/llava_next_video_dpo.yaml \
        [--judge-args "--backend openai --judge-url http://127.0.0.1:8000/v1 --judge-model M"] [key=value ...]

Each step is the same command as when run alone (tools/sample_candidates.py, tools/judge.py,
tools/build_pairs.py, tools/train.py), writing ``candidates.jsonl``, ``judged.jsonl``, ``pairs.jsonl`` and
``train/`` under --work-dir; all four resume, so a rerun continues where a killed one stopped. The default
judge is the synthetic world's rule. Trailing key=value pairs override the training recipe.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from llava_video.cli.common import ArgumentParser

__all__ = ["build_parser", "main", "DEFAULT_JUDGE_ARGS"]

DEFAULT_JUDGE_ARGS = "--backend rule --rule llava_video.synthetic.rule_judge:judge_rule"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="dpo_loop.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the SFT policy checkpoint: sampled from, then trained")
    p.add_argument("--prompts", required=True, help="prompts JSONL (see docs/dpo.md)")
    p.add_argument("--work-dir", required=True, help="folder for candidates, judged, pairs and the training run")
    p.add_argument("--train-config", required=True, help="DPO recipe YAML (configs/dpo/, configs/tiny/dpo.yaml)")
    p.add_argument("--video-root", default=None, help="folder of relative video paths (default: the prompts file's folder)")
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--frames", type=int, default=16, help="frames per video, for sampling and training")
    p.add_argument("--batch-size", type=int, default=8, help="sampling batch (answers of one prompt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge-args", default=DEFAULT_JUDGE_ARGS, help="arguments for tools/judge.py, one string")
    p.add_argument("--min-margin", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the training recipe")
    return p


def main(argv: list[str] | None = None) -> int:
    from llava_video.cli import build_pairs, judge, sample_candidates, train

    args = build_parser().parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    video_root = args.video_root if args.video_root is not None else str(Path(args.prompts).parent)
    quiet = ["--no-progress"] if args.no_progress else []
    candidates, judged, pairs = work / "candidates.jsonl", work / "judged.jsonl", work / "pairs.jsonl"
    steps = [
        ("sample", sample_candidates.main, [
            "--model", args.model, "--prompts", args.prompts, "--output", str(candidates), "--video-root", video_root,
            "--num-samples", str(args.num_samples), "--max-new-tokens", str(args.max_new_tokens),
            "--frames", str(args.frames), "--batch-size", str(args.batch_size), "--seed", str(args.seed), *quiet,
        ]),
        ("judge", judge.main, ["--candidates", str(candidates), "--output", str(judged), *shlex.split(args.judge_args), *quiet]),
        ("pairs", build_pairs.main, ["--judged", str(judged), "--output", str(pairs), "--min-margin", str(args.min_margin)]),
        ("train", train.main, [
            "--config", args.train_config, "model.init=path", f"model.path={args.model}", f"data.train={pairs}",
            f"data.video_root={video_root}", f"data.num_frames={args.frames}", f"checkpoint.output_dir={work / 'train'}",
            *args.overrides,
        ]),
    ]
    for name, step, step_args in steps:
        print(f"== {name}: {' '.join(shlex.quote(a) for a in step_args)}", flush=True)
        code = step(step_args)
        if code != 0:
            print(f"dpo_loop: error: step '{name}' failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
