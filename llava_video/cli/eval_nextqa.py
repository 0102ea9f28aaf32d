"""Zero-shot NExT-QA evaluation (multiple choice or open-ended), resumable.

    python tools/eval_nextqa.py --model M --annotations val.csv --video-root DIR \
        [--video-map map_vid_vidorID.json] --task mc|oe --frames 32 [--limit N] [--batch-size B] --output DIR
        [--mc-scoring generate|likelihood]

Usage and input errors exit with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from llava_video.cli.common import ArgumentParser, report_errors
from llava_video.errors import LlavaVideoError
from llava_video.evaluation.nextqa import read_extra_references, read_questions, read_video_map
from llava_video.evaluation.runner import (
    AnswerBatchFn,
    EvalConfig,
    FrameLoader,
    QARequest,
    format_table,
    load_frames,
    run_evaluation,
)

__all__ = ["build_parser", "bind_model", "main"]

ModelBinder = Callable[[argparse.Namespace], AnswerBatchFn]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="eval_nextqa.py", description="Zero-shot NExT-QA evaluation.")
    parser.add_argument("--model", required=True, help="checkpoint folder (LLaVA-NeXT-Video)")
    parser.add_argument("--annotations", required=True, type=Path, help="official NExT-QA CSV (val.csv / test.csv)")
    parser.add_argument("--video-root", required=True, type=Path, help="folder with the videos")
    parser.add_argument("--video-map", type=Path, default=None,
                        help="map_vid_vidorID.json (videos at ROOT/folder/id.mp4); without it ROOT/<video>.mp4")
    parser.add_argument("--extra-references", type=Path, default=None,
                        help="open-ended test split's add_reference_answer_test.json (second reference)")
    parser.add_argument("--task", required=True, choices=("mc", "oe"))
    parser.add_argument("--frames", type=int, default=32, help="frames sampled uniformly per video (default 32)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate a seeded random sample of N questions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=2, help="frame-decoding processes (0: decode inline)")
    parser.add_argument("--missing-videos", choices=("skip", "error"), default="skip",
                        help="skip (list and count) questions whose video is missing or undecodable, or stop")
    parser.add_argument("--mc-scoring", choices=("generate", "likelihood"), default="generate",
                        help="mc: parse a greedy answer (default, as lmms-eval) or pick the option whose text is "
                             "the most likely answer (every answer parses)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="generation budget (default: 16 for mc, 64 for oe)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--output", required=True, type=Path, help="output folder (reused to resume)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


# ==========================================================================================================
# MODEL BINDING: the single place where the evaluation meets the real model. It walks the inference
# pipeline every other command uses (preprocess -> conversation template -> budget -> batched greedy
# generation); each QARequest carries ``clip`` (a VideoClip) and ``prompt`` (question + options +
# instruction, no chat template, no <video> marker).
# ==========================================================================================================
def bind_model(args: argparse.Namespace) -> AnswerBatchFn:
    from llava_video import LlavaVideo
    from llava_video.cli.infer_video import resolve_model_path
    from llava_video.inference import pipeline as pl

    model = LlavaVideo.from_pretrained(resolve_model_path(str(args.model)), device=args.device, dtype=args.dtype)
    settings = pl.GenerationSettings(max_new_tokens=args.max_new_tokens or (16 if args.task == "mc" else 64))

    def prepare(r: QARequest) -> pl.PreparedRequest:
        return pl.prepare_request(
            model, pl.load_visual(model, video=r.clip), pl.build_messages(r.prompt), max_new_tokens=settings.max_new_tokens
        )

    def answer_batch(requests: list[QARequest]) -> list[str]:
        if args.task == "mc" and args.mc_scoring == "likelihood":
            # The answer is the option text itself, so the usual parser maps it back to its index.
            answers = []
            for r in requests:
                scores = pl.score_answers(model, prepare(r), r.question.options)
                answers.append(r.question.options[max(range(len(scores)), key=scores.__getitem__)])
            return answers
        return [result.answer for result in pl.generate_batch(model, [prepare(r) for r in requests], settings)]

    return answer_batch
# ==========================================================================================================


def _check_args(args: argparse.Namespace) -> None:
    if args.frames < 1:
        raise LlavaVideoError(f"--frames must be >= 1, got {args.frames}")
    if args.batch_size < 1:
        raise LlavaVideoError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise LlavaVideoError(f"--num-workers must be >= 0, got {args.num_workers}")
    if args.limit is not None and args.limit < 1:
        raise LlavaVideoError(f"--limit must be >= 1, got {args.limit}")
    if not args.video_root.is_dir():
        raise LlavaVideoError(f"--video-root {args.video_root}: not a folder")
    if args.mc_scoring != "generate" and args.task != "mc":
        raise LlavaVideoError("--mc-scoring only applies to --task mc")
    if args.extra_references is not None and args.task != "oe":
        raise LlavaVideoError("--extra-references only applies to --task oe")


def _oe_scorer():
    from llava_video.evaluation.wups import OpenEndedScorer

    return OpenEndedScorer.create()


def run(argv: Sequence[str] | None = None, *, model_binder: ModelBinder = bind_model,
        frame_loader: FrameLoader = load_frames, scorer_factory=_oe_scorer) -> dict:
    """Parse ``argv``, evaluate, print the table; returns the metrics. Raises LlavaVideoError on bad input."""
    args = build_parser().parse_args(argv)
    _check_args(args)
    extra = read_extra_references(args.extra_references) if args.extra_references else None
    questions = read_questions(args.annotations, task=args.task, extra_references=extra)
    video_map = read_video_map(args.video_map) if args.video_map else None
    config = EvalConfig(
        task=args.task, output_dir=args.output, video_root=args.video_root, num_frames=args.frames,
        batch_size=args.batch_size, num_workers=args.num_workers, limit=args.limit, seed=args.seed,
        missing_videos=args.missing_videos, video_map=video_map, progress=not args.no_progress,
        run_info={"model": str(args.model), "annotations": str(Path(args.annotations).resolve()),
                  **({"mc_scoring": args.mc_scoring} if args.task == "mc" else {})},
        # Folders written before --mc-scoring existed hold generated answers.
        run_info_defaults={"mc_scoring": "generate"} if args.task == "mc" else {})
    # Build the scorer before the model: a missing WordNet must fail in seconds, not after generation.
    scorer = scorer_factory() if args.task == "oe" else None
    answer_batch = model_binder(args)
    result = run_evaluation(questions=questions, config=config, answer_batch=answer_batch,
                            frame_loader=frame_loader, scorer_factory=lambda: scorer)
    print(format_table(result.metrics))
    print(f"predictions, metrics and official-format file in {result.output_dir}")
    return result.metrics


def main(argv: Sequence[str] | None = None) -> int:
    def work() -> int:
        run(argv)
        return 0

    return report_errors("eval_nextqa.py", work, on_interrupt="rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
