"""Writing a synthetic dataset directory: clips, stills, LLaVA records, NExT-QA CSVs, DPO prompts.

Layout of ``output``::

    manifest.json            seed, parameters, counts, file list
    videos/<id>.mp4          training and held-out clips, flat (NExT-QA's lmms-eval layout)
    images/<id>.png          still images with varied aspect ratios
    stage1.json              caption records (training clips + stills), LLaVA format
    stage2.json              QA records, images and videos mixed, multi-turn
    stage2_open.json         (only with mc_share > 0) the same kind of records with open questions only:
                             a first SFT phase before the multiple-choice turns join (docs/demo.md says why)
    eval.json                held-out QA records in LLaVA format (one question per record)
    nextqa_mc.csv            held-out 5-way multiple choice, NExT-QA columns
    nextqa_oe.csv            held-out open-ended, NExT-QA columns
    dpo_prompts.jsonl        prompts on training clips for candidate sampling + judging
    dpo_eval_prompts.jsonl   prompts on held-out clips (does DPO raise the judge's score?)
    ground_truth.jsonl       every clip's scene and caption

Text files are byte-identical for the same arguments; clips decode to identical frames.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from llava_video.atomic import write_bytes_atomic
from llava_video.data.encode import write_video
from llava_video.errors import ConfigError
from llava_video.synthetic.language import KIND_TO_NEXTQA, VIDEO_CAPTION_PROMPTS, select_questions
from llava_video.synthetic.samples import (
    Holdout,
    MCAnswer,
    Sample,
    Split,
    caption_conversation,
    mc_turn,
    make_image_sample,
    make_video_sample,
    qa_conversation,
    sample_rng,
    world_for_holdout,
)
from llava_video.synthetic.world import WorldConfig, check_count_weights

__all__ = [
    "ExportConfig",
    "check_kind_weights",
    "MC_COLUMNS",
    "OE_COLUMNS",
    "export_dataset",
    "write_clip",
    "clip_frames",
    "write_example",
]

MC_COLUMNS = ("video", "frame_count", "width", "height", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")
OE_COLUMNS = ("video", "frame_count", "width", "height", "question", "answer", "qid", "type")
FORMAT_VERSION = 1
# Clips per task sent to a worker process: ~0.1 s of work each, enough to hide the cost of a round trip.
_CLIPS_PER_TASK = 32


@dataclass(frozen=True)
class ExportConfig:
    """Everything that decides the dataset's content; it is written into the manifest."""

    seed: int = 0
    num_train: int = 1000
    num_eval: int = 200
    num_images: int = 500
    num_dpo: int = 300
    num_dpo_eval: int = 100
    # Clips of their own for the DPO prompts (training-split scenes after the SFT clips, never in an SFT record):
    # the answers sampled on them show the model's errors on clips it has not fitted. 0: DPO prompts reuse the
    # SFT clips.
    num_dpo_clips: int = 0
    frames: int = 16
    # A share of the training clips rendered with more frames (same scenes, same duration), so that training
    # sees the frame counts inference asks for; held-out clips keep ``frames``. 0 / 0.0: none.
    long_frames: int = 0
    long_share: float = 0.0
    clip_seconds: float = 2.0
    turns: int = 3
    questions_per_eval_clip: int = 5
    caption_share: float = 0.1
    # A share of the stage-2 video caption turns answered without the clip's events (the same prompts), as real
    # instruction data answers "describe" more or less fully; the judge's reference stays the whole caption.
    brief_caption_share: float = 0.0
    mc_share: float = 0.0  # stage-2 question turns written as NExT-QA multiple choice
    mc_answer: MCAnswer = "letter"  # how those turns are answered: the option's letter or its text
    # Stage-2 question kinds drawn more (weight > 1) or less often; kinds not named weigh 1. ((kind, weight), ...)
    kind_weights: tuple[tuple[str, float], ...] = ()
    dpo_caption_share: float = 0.2
    # A share of the DPO *training* prompts' questions written in the evaluation's multiple-choice format (the
    # held-out DPO prompts stay open, so the judge comparison measures what it always did). Sampled answers to
    # them include the model's own phrases that are no option, which the judge scores low.
    dpo_mc_share: float = 0.0
    # Object-count weights (one per count, min_objects..max_objects) for the training split only: SFT clips, DPO
    # clips and stills. Held-out clips keep the world's own draw, so the evaluation measures the world as it is.
    train_count_weights: tuple[float, ...] = ()
    holdout: Holdout = "seeds"
    crf: int = 0
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        for name in ("num_train", "num_eval", "num_images", "num_dpo", "num_dpo_eval", "num_dpo_clips"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.num_dpo > 0 and self.num_train == 0 and self.num_dpo_clips == 0:
            raise ConfigError("num_dpo: DPO prompts use training clips, so num_train or num_dpo_clips must be > 0")
        if self.num_dpo_eval > 0 and self.num_eval == 0:
            raise ConfigError("num_dpo_eval: held-out DPO prompts use held-out clips, so num_eval must be > 0")
        if not 2 <= self.frames <= 256:
            raise ConfigError(f"frames: must be in [2, 256], got {self.frames}")
        if not 0.0 <= self.long_share <= 1.0:
            raise ConfigError(f"long_share: must be in [0, 1], got {self.long_share}")
        if self.long_share > 0 and not self.frames < self.long_frames <= 256:
            raise ConfigError(f"long_frames: must be in ({self.frames}, 256] when long_share > 0, got {self.long_frames}")
        if self.clip_seconds <= 0:
            raise ConfigError(f"clip_seconds: must be > 0, got {self.clip_seconds}")
        if self.turns < 1 or self.questions_per_eval_clip < 1:
            raise ConfigError("turns and questions_per_eval_clip: must be >= 1")
        for name in ("caption_share", "brief_caption_share", "dpo_caption_share", "dpo_mc_share", "mc_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        check_kind_weights(self.kind_weights)
        if self.train_count_weights:
            check_count_weights(self.train_count_weights, min_objects=self.world.min_objects,
                                max_objects=self.world.max_objects, name="train_count_weights")
        if self.mc_answer not in ("letter", "text"):
            raise ConfigError(f"mc_answer: must be 'letter' or 'text', got {self.mc_answer!r}")
        if self.holdout not in ("seeds", "combos"):
            raise ConfigError(f"holdout: must be 'seeds' or 'combos', got {self.holdout!r}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf: must be in [0, 51], got {self.crf}")

    def train_world(self, world: WorldConfig) -> WorldConfig:
        """``world`` as the training split draws it (``train_count_weights`` applied)."""
        return replace(world, count_weights=self.train_count_weights) if self.train_count_weights else world


def check_kind_weights(pairs: Iterable[tuple[str, float]], *, name: str = "kind_weights") -> None:
    """Each kind a question kind of the world, each weight > 0."""
    for kind, weight in pairs:
        if kind not in KIND_TO_NEXTQA:
            raise ConfigError(f"{name}: unknown question kind {kind!r} (one of {', '.join(KIND_TO_NEXTQA)})")
        if not weight > 0:
            raise ConfigError(f"{name}: the weight of {kind!r} must be > 0, got {weight}")


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _csv_bytes(columns: tuple[str, ...], rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_clip(path: Path, frames: np.ndarray, *, fps: float, crf: int) -> Path:
    """x264 in 4:4:4 (no chroma subsampling: flat colours keep their hue at object edges)."""
    return write_video(path, frames, fps=fps, pix_fmt="yuv444p", options={"crf": str(crf), "threads": "1"})


def _write_png(path: Path, frame: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def _record(sample: Sample, conversations: list[dict[str, str]]) -> dict:
    media = {"video": f"videos/{sample.id}.mp4"} if sample.medium == "video" else {"image": f"images/{sample.id}.png"}
    return {"id": sample.id, **media, "conversations": conversations}


def _interleave(videos: list[dict], images: list[dict], *, rng: np.random.Generator) -> list[dict]:
    """Videos and stills shuffled together, so that consecutive batches mix both media."""
    records = videos + images
    return [records[int(i)] for i in rng.permutation(len(records))]


def _dpo_prompt(sample: Sample, *, rng: np.random.Generator, caption_share: float, mc_share: float = 0.0) -> dict:
    if rng.random() < caption_share:
        question = VIDEO_CAPTION_PROMPTS[int(rng.integers(0, len(VIDEO_CAPTION_PROMPTS)))]
        reference, kind, qtype = sample.caption, "caption", "caption"
    else:
        qa = select_questions(list(sample.qas), rng=rng, count=1)[0]
        question, reference, kind, qtype = qa.question, qa.answer, qa.kind, qa.nextqa_type
        # No extra draw when mc_share is 0, so prompts made without it are unchanged.
        if mc_share > 0 and rng.random() < mc_share:
            question, reference = mc_turn(qa, answer="text")
    return {
        "id": f"{sample.id}_dpo",
        "video": f"videos/{sample.id}.mp4",
        "question": question,
        "reference": reference,
        "caption": sample.caption,
        "kind": kind,
        "type": qtype,
        "ground_truth": sample.scene.to_dict(),
    }


def _held_out_rows(sample: Sample, *, index: int, config: ExportConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """(MC rows, OE rows, LLaVA eval records) for held-out clip ``index``."""
    rng = sample_rng(seed=config.seed, split="eval", medium="video", index=index, purpose="record")
    chosen = select_questions(list(sample.qas), rng=rng, count=config.questions_per_eval_clip)
    mc, oe, records = [], [], []
    for qid, qa in enumerate(chosen):
        base = {
            "video": sample.id,
            "frame_count": config.frames,
            "width": sample.scene.width,
            "height": sample.scene.height,
            "question": qa.question,
        }
        mc.append({**base, "answer": qa.answer_index, "qid": qid, "type": qa.nextqa_type,
                   **{f"a{i}": option for i, option in enumerate(qa.options)}})
        oe.append({**base, "answer": qa.answer, "qid": qid, "type": qa.nextqa_type})
        records.append({
            **_record(sample, [{"from": "human", "value": f"<video>\n{qa.question}"}, {"from": "gpt", "value": qa.answer}]),
            "id": f"{sample.id}_{qid}",
            "kind": qa.kind,
            "type": qa.nextqa_type,
            "options": list(qa.options),
            "answer_index": qa.answer_index,
        })
    return mc, oe, records


def clip_frames(config: ExportConfig, *, split: Split, index: int) -> int:
    """Frames of one clip: ``frames``, or ``long_frames`` for the drawn ``long_share`` of the SFT clips (a
    stream of its own, so the scenes and every other draw are those of a dataset without long clips)."""
    if split != "train" or config.long_share == 0 or index >= config.num_train:
        return config.frames
    rng = sample_rng(seed=config.seed, split=split, medium="video", index=index, purpose="length")
    return config.long_frames if rng.random() < config.long_share else config.frames


def _render_clip(index: int, *, config: ExportConfig, world: WorldConfig, split: Split, output: Path) -> Sample:
    """Render and encode one clip; returns its sample without the frames (only text and ground truth are kept
    for the JSON files). Every draw comes from the clip's own seeded stream, so the result does not depend on
    which process renders it or in what order."""
    frames = clip_frames(config, split=split, index=index)
    sample = make_video_sample(seed=config.seed, split=split, index=index, num_frames=frames, config=world)
    # The same duration whatever the frame count: a long clip is the same scene sampled more densely.
    write_clip(output / "videos" / f"{sample.id}.mp4", sample.frames, fps=frames / config.clip_seconds, crf=config.crf)
    return Sample(sample.id, sample.medium, sample.scene, np.empty(0, np.uint8), sample.caption, sample.qas)


def _video_samples(*, config: ExportConfig, world: WorldConfig, split: Split, count: int, output: Path,
                   start: int = 0, num_workers: int = 0) -> list[Sample]:
    render = partial(_render_clip, config=config, world=world, split=split, output=output)
    indices = range(start, start + count)
    progress = partial(tqdm, total=count, desc=f"{split} clips", unit="clip", disable=count < 50)
    if num_workers == 0 or count < 2:
        return list(progress(map(render, indices)))
    # Rendering and x264 are single-threaded per clip: whole clips go to worker processes, results in order.
    chunk = max(1, min(_CLIPS_PER_TASK, count // (4 * num_workers)))
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        return list(progress(pool.map(render, indices, chunksize=chunk)))


def export_dataset(*, output: str | Path, config: ExportConfig, num_workers: int = 0) -> dict:
    """Write the dataset described by ``config`` under ``output``; returns the manifest. ``num_workers``
    processes render and encode the clips (0: this process); the files are the same bytes either way."""
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    output = Path(output)
    (output / "videos").mkdir(parents=True, exist_ok=True)
    (output / "images").mkdir(parents=True, exist_ok=True)
    world = world_for_holdout(config.world, config.holdout)
    train_world = config.train_world(world)

    train = _video_samples(config=config, world=train_world, split="train", count=config.num_train, output=output,
                           num_workers=num_workers)
    held_out = _video_samples(config=config, world=world, split="eval", count=config.num_eval, output=output,
                              num_workers=num_workers)
    # Indices after the SFT clips: the same distribution, scenes no SFT record shows.
    dpo_clips = _video_samples(config=config, world=train_world, split="train", count=config.num_dpo_clips, output=output,
                               start=config.num_train, num_workers=num_workers)
    images = []
    for index in tqdm(range(config.num_images), desc="stills", unit="image", disable=config.num_images < 50):
        image = make_image_sample(seed=config.seed, split="train", index=index, config=train_world)
        _write_png(output / "images" / f"{image.id}.png", image.frames)
        images.append(image)

    def record_rng(sample: Sample, index: int) -> np.random.Generator:
        return sample_rng(seed=config.seed, split="train", medium=sample.medium, index=index, purpose="record")

    layout_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 99]))
    stage1 = _interleave(
        [_record(s, caption_conversation(s, rng=record_rng(s, i))) for i, s in enumerate(train)],
        [_record(s, caption_conversation(s, rng=record_rng(s, i))) for i, s in enumerate(images)],
        rng=layout_rng,
    )
    def qa_records(stream: int, mc_share: float) -> list[dict]:
        """Stage-2 QA records, one random stream per sample tagged ``stream``: a separate stream per file,
        so each picks its own questions, not another file's draws. Stills get no caption turn."""
        rngs = [np.random.default_rng(np.random.SeedSequence([config.seed, stream, i])) for i in range(len(train) + len(images))]
        kind_weights = dict(config.kind_weights)

        def record(sample: Sample, rng: np.random.Generator, caption_share: float) -> dict:
            return _record(sample, qa_conversation(sample, rng=rng, turns=config.turns, caption_share=caption_share,
                                                   mc_share=mc_share, mc_answer=config.mc_answer,
                                                   kind_weights=kind_weights,
                                                   brief_caption_share=config.brief_caption_share))

        return _interleave([record(s, rngs[i], config.caption_share) for i, s in enumerate(train)],
                           [record(s, rngs[len(train) + i], 0.0) for i, s in enumerate(images)], rng=layout_rng)

    stage2 = qa_records(2, config.mc_share)
    # With multiple-choice turns, also the open-question phase that precedes them (docs/demo.md).
    open_only = qa_records(5, 0.0) if config.mc_share > 0 else []
    mc_rows, oe_rows, eval_records = [], [], []
    for index, sample in enumerate(held_out):
        mc, oe, records = _held_out_rows(sample, index=index, config=config)
        mc_rows += mc
        oe_rows += oe
        eval_records += records
    dpo_pool = dpo_clips or train
    dpo = [
        _dpo_prompt(dpo_pool[i % len(dpo_pool)], rng=np.random.default_rng(np.random.SeedSequence([config.seed, 3, i])),
                    caption_share=config.dpo_caption_share, mc_share=config.dpo_mc_share)
        for i in range(config.num_dpo)
    ]
    dpo_eval = [
        _dpo_prompt(held_out[i % len(held_out)], rng=np.random.default_rng(np.random.SeedSequence([config.seed, 4, i])),
                    caption_share=config.dpo_caption_share)
        for i in range(config.num_dpo_eval)
    ]
    # Prompts that repeat a clip get distinct ids.
    for rows in (dpo, dpo_eval):
        for i, row in enumerate(rows):
            row["id"] = f"{row['id']}_{i}"
    ground_truth = [
        {"id": s.id, "split": split, "frames": clip_frames(config, split=split, index=start + i), "caption": s.caption,
         "scene": s.scene.to_dict(), **role}
        for split, group, start, role in (("train", train, 0, {}), ("eval", held_out, 0, {}),
                                          ("train", dpo_clips, config.num_train, {"role": "dpo"}))
        for i, s in enumerate(group)
    ]

    files = {
        "stage1.json": _json_bytes(stage1),
        "stage2.json": _json_bytes(stage2),
        "eval.json": _json_bytes(eval_records),
        "nextqa_mc.csv": _csv_bytes(MC_COLUMNS, mc_rows),
        "nextqa_oe.csv": _csv_bytes(OE_COLUMNS, oe_rows),
        "dpo_prompts.jsonl": _jsonl_bytes(dpo),
        "dpo_eval_prompts.jsonl": _jsonl_bytes(dpo_eval),
        "ground_truth.jsonl": _jsonl_bytes(ground_truth),
    }
    if open_only:
        files["stage2_open.json"] = _json_bytes(open_only)
    for name, data in files.items():
        write_bytes_atomic(output / name, data)
    type_counts: dict[str, int] = {}
    for row in mc_rows:
        type_counts[row["type"]] = type_counts.get(row["type"], 0) + 1
    manifest = {
        "format_version": FORMAT_VERSION,
        "seed": config.seed,
        "parameters": _config_dict(config, world),
        "counts": {
            "train_clips": len(train),
            "held_out_clips": len(held_out),
            "dpo_clips": len(dpo_clips),
            "images": len(images),
            "stage1_records": len(stage1),
            "stage2_records": len(stage2),
            "held_out_questions": len(mc_rows),
            "held_out_questions_by_type": dict(sorted(type_counts.items())),
            "dpo_prompts": len(dpo),
            "dpo_eval_prompts": len(dpo_eval),
        },
        "files": sorted(files) + ["videos/", "images/"],
    }
    write_bytes_atomic(output / "manifest.json", _json_bytes(manifest))
    return manifest


def _config_dict(config: ExportConfig, world: WorldConfig) -> dict:
    data = asdict(config)
    data["world"] = {k: (list(map(list, v)) if k == "held_out_combos" else (list(v) if isinstance(v, tuple) else v))
                     for k, v in asdict(world).items()}
    return data


def write_example(*, output_dir: str | Path, seed: int, frames: int = 32, world: WorldConfig | None = None,
                  clip_seconds: float = 2.0, crf: int = 0) -> tuple[Path, Path]:
    """Write ``clip.mp4`` and ``clip.json`` (ground truth, caption, questions) for held-out clip 0 of ``seed``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    world = world or WorldConfig()
    sample = make_video_sample(seed=seed, split="eval", index=0, num_frames=frames, config=world)
    clip = write_clip(output_dir / "clip.mp4", sample.frames, fps=frames / clip_seconds, crf=crf)
    truth = {
        "seed": seed,
        "split": "eval",
        "index": 0,
        "frames": frames,
        "fps": frames / clip_seconds,
        "caption": sample.caption,
        "scene": sample.scene.to_dict(),
        "questions": [
            {"question": qa.question, "answer": qa.answer, "kind": qa.kind, "type": qa.nextqa_type, "options": list(qa.options),
             "answer_index": qa.answer_index}
            for qa in sample.qas
        ],
    }
    meta = output_dir / "clip.json"
    write_bytes_atomic(meta, _json_bytes(truth))
    return clip, meta
