"""Generate the synthetic moving-shapes dataset (or the example clip) from a seed.

    python tools/make_synthetic.py --output data/synthetic --seed 0 --num-train 4000 --num-eval 200
    python tools/make_synthetic.py --example examples --seed 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from llava_video.cli.common import ArgumentParser, report_errors
from llava_video.errors import InputError
from llava_video.synthetic.export import ExportConfig, export_dataset, write_example
from llava_video.synthetic.world import WorldConfig

__all__ = ["build_parser", "main"]


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _rgb(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise argparse.ArgumentTypeError(f"expected R,G,B with values in [0, 255], got {text!r}")
    return values


def _weights(text: str) -> tuple[tuple[str, float], ...]:
    """'identity=3,count=0.5' -> (('identity', 3.0), ('count', 0.5)); kinds and ranges are checked by ExportConfig."""
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        kind, _, value = part.partition("=")
        try:
            pairs.append((kind.strip(), float(value)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected KIND=WEIGHT,..., got {text!r}") from None
    return tuple(pairs)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="make_synthetic.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", type=Path, help="dataset directory to write")
    target.add_argument("--example", type=Path, help="write only clip.mp4 + clip.json (held-out clip 0) here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=1000, help="training clips")
    parser.add_argument("--num-eval", type=int, default=200, help="held-out clips (NExT-QA CSVs)")
    parser.add_argument("--num-images", type=int, default=500, help="still images for mixed batches")
    parser.add_argument("--num-dpo", type=int, default=300, help="DPO prompts on training clips")
    parser.add_argument("--num-dpo-eval", type=int, default=100, help="DPO prompts on held-out clips")
    parser.add_argument("--num-dpo-clips", type=int, default=0,
                        help="clips of their own for the DPO prompts, never in an SFT record (0: the prompts reuse the SFT clips)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default 16; 32 for --example)")
    parser.add_argument("--long-frames", type=int, default=0,
                        help="frames of the --long-share of training clips (same scenes and duration, denser sampling)")
    parser.add_argument("--long-share", type=float, default=0.0, help="share of training clips rendered with --long-frames")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (stills are multiples of it)")
    parser.add_argument("--min-objects", type=int, default=1)
    parser.add_argument("--max-objects", type=int, default=3)
    parser.add_argument("--shapes", type=_names, default=None,
                        help="comma-separated shapes of this world (default: all of square,circle,triangle,cross)")
    parser.add_argument("--background", type=_rgb, default=None,
                        help="background colour R,G,B (default 16,16,16; the demo uses a mid grey near CLIP's mean)")
    parser.add_argument("--turns", type=int, default=3, help="question turns per stage-2 record")
    parser.add_argument("--questions-per-clip", type=int, default=5, help="held-out questions per clip")
    parser.add_argument("--caption-share", type=float, default=0.1, help="stage-2 video records that start with a caption turn")
    parser.add_argument("--brief-caption-share", type=float, default=0.0,
                        help="stage-2 video caption turns answered without the clip's events (same prompts)")
    parser.add_argument("--mc-share", type=float, default=0.0,
                        help="stage-2 question turns written as multiple choice in the NExT-QA eval prompt format")
    parser.add_argument("--mc-answer", choices=("letter", "text"), default="letter",
                        help="answer of those multiple-choice turns: the option's letter or its text")
    parser.add_argument("--kind-weights", type=_weights, default=(),
                        help="KIND=WEIGHT,... : stage-2 question kinds drawn more (> 1) or less (< 1) often than the others")
    parser.add_argument("--train-count-weights", type=_floats, default=(),
                        help="W,W,... : weights of the object counts --min-objects..--max-objects in the training split "
                             "only (SFT and DPO clips, stills); held-out clips keep the uniform draw")
    parser.add_argument("--dpo-caption-share", type=float, default=0.2,
                        help="DPO prompts that ask for a description (judged against the whole caption) instead of a question")
    parser.add_argument("--dpo-mc-share", type=float, default=0.0,
                        help="DPO training prompts' questions written as multiple choice in the NExT-QA eval prompt "
                             "format (the held-out DPO prompts stay open)")
    parser.add_argument("--holdout", choices=("seeds", "combos"), default="seeds",
                        help="held-out split: new scenes (seeds) or also unseen colour/shape pairs (combos)")
    parser.add_argument("--crf", type=int, default=0, help="x264 quality, 0 = lossless")
    parser.add_argument("--num-workers", type=int, default=2,
                        help="processes that render and encode clips (0: this process); the files do not depend on it")
    return parser


def _run(args: argparse.Namespace) -> int:
    world_options = {"shapes": args.shapes, "background": args.background}
    world = WorldConfig(size=args.size, min_objects=args.min_objects, max_objects=args.max_objects,
                        **{k: v for k, v in world_options.items() if v is not None})
    if args.num_workers < 0:
        raise InputError(f"--num-workers must be >= 0, got {args.num_workers}")
    if args.example is not None:
        clip, meta = write_example(output_dir=args.example, seed=args.seed, frames=args.frames or 32, world=world, crf=args.crf)
        print(f"wrote {clip} and {meta}")
        return 0
    config = ExportConfig(
        seed=args.seed, num_train=args.num_train, num_eval=args.num_eval, num_images=args.num_images,
        num_dpo=args.num_dpo, num_dpo_eval=args.num_dpo_eval, num_dpo_clips=args.num_dpo_clips,
        frames=args.frames or 16, turns=args.turns,
        long_frames=args.long_frames, long_share=args.long_share,
        questions_per_eval_clip=args.questions_per_clip, caption_share=args.caption_share,
        brief_caption_share=args.brief_caption_share, mc_share=args.mc_share,
        mc_answer=args.mc_answer, kind_weights=args.kind_weights, train_count_weights=args.train_count_weights,
        dpo_caption_share=args.dpo_caption_share, dpo_mc_share=args.dpo_mc_share,
        holdout=args.holdout, crf=args.crf, world=world,
    )
    counts = export_dataset(output=args.output, config=config, num_workers=args.num_workers)["counts"]
    print(f"wrote {args.output}: {counts['train_clips']} train clips, {counts['held_out_clips']} held-out clips "
          f"({counts['held_out_questions']} questions), {counts['images']} stills"
          + (f", {counts['dpo_clips']} clips for DPO prompts" if counts["dpo_clips"] else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return report_errors("make_synthetic.py", lambda: _run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
