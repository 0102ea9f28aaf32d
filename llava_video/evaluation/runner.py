"""The resumable NExT-QA evaluation loop.

- Every answer is appended to ``predictions.jsonl`` (one line, flushed and fsynced) as soon as it is
  produced; a rerun reads that file and skips the questions already answered, so a killed run loses
  at most the batch in flight and never writes a question twice.
- ``--limit N`` samples N questions with ``random.Random(seed)`` (file order kept); the sample's keys and
  seed are written to the metrics.
- Frames are decoded ahead of the model by worker processes (each video once, even when several
  questions share it); the model is any ``answer_batch(requests) -> texts`` callable.
- Metrics are always computed from the whole predictions file, so a resumed run reports exactly what
  an uninterrupted one does.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from tqdm import tqdm

from llava_video.atomic import write_json_atomic
from llava_video.errors import ConfigError, LlavaVideoError, VideoDecodeError
from llava_video.evaluation.nextqa import (
    NextQAQuestion,
    Task,
    aggregate,
    build_prompt,
    official_mc_predictions,
    official_oe_predictions,
    parse_mc_answer,
    video_path,
)

__all__ = [
    "QARequest",
    "AnswerBatchFn",
    "FrameLoader",
    "EvalConfig",
    "EvalResult",
    "RunMismatchError",
    "load_frames",
    "select_questions",
    "read_predictions",
    "run_evaluation",
    "compute_metrics",
    "format_table",
    "PREDICTIONS_FILE",
    "METRICS_FILE",
    "OFFICIAL_FILE",
]

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
OFFICIAL_FILE = "official_predictions.json"
OFFICIAL_OE_NESTED_FILE = "official_predictions_oe.json"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class QARequest:
    """What the model sees for one question: the decoded clip (a VideoClip), the video's path and the prompt."""

    key: str
    video_path: Path
    clip: Any
    prompt: str
    question: NextQAQuestion


AnswerBatchFn = Callable[[list[QARequest]], list[str]]
FrameLoader = Callable[[Path, int], Any]


class RunMismatchError(LlavaVideoError):
    """The output folder holds a run with other settings; resuming would mix two evaluations."""


def load_frames(path: Path, num_frames: int) -> Any:
    """The default frame loader: the same uniform sampling inference uses (``llava_video.data.video``)."""
    from llava_video.data.video import load_video

    return load_video(path, num_frames=num_frames)


@dataclass(frozen=True)
class EvalConfig:
    task: Task
    output_dir: Path
    video_root: Path
    num_frames: int = 32
    batch_size: int = 1
    num_workers: int = 2
    limit: int | None = None
    seed: int = 0
    missing_videos: Literal["skip", "error"] = "skip"
    video_map: Mapping[str, str] | None = None
    run_info: Mapping[str, Any] = field(default_factory=dict)  # model, annotation file... checked on resume
    # Settings of run_info that run folders written by older versions do not record, with the value those runs
    # had (e.g. {"mc_scoring": "generate"}): such a folder resumes when the value matches.
    run_info_defaults: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.task not in ("mc", "oe"):
            raise ConfigError(f"task must be 'mc' or 'oe', got {self.task!r}")
        for name in ("num_frames", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.missing_videos not in ("skip", "error"):
            raise ConfigError(f"missing_videos must be 'skip' or 'error', got {self.missing_videos!r}")


@dataclass
class EvalResult:
    metrics: dict
    output_dir: Path
    newly_answered: int


def select_questions(questions: Sequence[NextQAQuestion], *, limit: int | None, seed: int) -> list[NextQAQuestion]:
    """All questions, or a seeded random sample of ``limit`` of them in file order."""
    if limit is None or limit >= len(questions):
        return list(questions)
    chosen = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in chosen]


def read_predictions(path: Path) -> dict[str, dict]:
    """Answered questions by key. A torn last line (a kill mid-write) is cut off the file."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    records: dict[str, dict] = {}
    good_end = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            break
        records.setdefault(record["key"], record)
        good_end += len(raw)
    if good_end != len(data):
        with path.open("r+b") as handle:  # drop the torn tail so later appends start on a fresh line
            handle.truncate(good_end)
    return records


def _append_line(handle, record: Mapping) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _check_run_file(config: EvalConfig) -> None:
    """Record the run's settings; refuse to resume into a folder written with different ones."""
    settings = {"task": config.task, "num_frames": config.num_frames, **dict(config.run_info)}
    run_file = config.output_dir / RUN_FILE
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        recorded = {**dict(config.run_info_defaults), **previous}
        changed = {k: (recorded.get(k), v) for k, v in settings.items() if recorded.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise RunMismatchError(f"{config.output_dir} holds a run with other settings ({detail}); "
                                   "use another --output folder")
    else:
        write_json_atomic(run_file, settings)


def _make_record(question: NextQAQuestion, output: str, *, task: Task) -> dict:
    record = {"key": question.key, "video": question.video, "qid": question.qid, "type": question.qtype,
              "question": question.question, "answer": question.answer, "output": output}
    if task == "mc":
        parsed = parse_mc_answer(output, question.options)
        record.update(answer=question.answer_index, prediction=-1 if parsed is None else parsed,
                      parsed=parsed is not None)
    else:
        record.update(prediction=output.strip(), references=list(question.references))
    return record


class _FramePrefetcher:
    """Decodes each needed video once, ahead of use, in worker processes (or inline with 0 workers)."""

    def __init__(self, *, loader: FrameLoader, num_frames: int, num_workers: int, ahead: int) -> None:
        self._loader = loader
        self._num_frames = num_frames
        self._ahead = ahead
        self._pool = (cf.ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("spawn"))
                      if num_workers > 0 else None)
        self._pending: dict[Path, cf.Future] = {}
        self._uses: Counter[Path] = Counter()
        self._order: list[Path] = []
        self._cursor = 0

    def plan(self, paths: Sequence[Path]) -> None:
        self._order = list(paths)
        self._uses = Counter(paths)
        self._cursor = 0

    def _submit_until(self, position: int) -> None:
        while self._cursor < min(position, len(self._order)):
            path = self._order[self._cursor]
            self._cursor += 1
            if path in self._pending:
                continue
            if self._pool is None:
                future: cf.Future = cf.Future()
                try:
                    future.set_result(self._loader(path, self._num_frames))
                except Exception as exc:  # kept on the future; raised where the clip is used
                    future.set_exception(exc)
            else:
                future = self._pool.submit(self._loader, path, self._num_frames)
            self._pending[path] = future

    def get(self, index: int) -> Any:
        """The clip for planned position ``index`` (raises the loader's error); queues decoding ahead."""
        path = self._order[index]
        if self._pool is not None:
            self._submit_until(index + 1 + self._ahead)
        else:
            self._submit_until(index + 1)
        try:
            return self._pending[path].result()
        finally:
            self._uses[path] -= 1
            if self._uses[path] == 0:
                self._pending.pop(path, None)  # last question of this video: free the frames

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending.values():
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)


def run_evaluation(*, questions: Sequence[NextQAQuestion], config: EvalConfig, answer_batch: AnswerBatchFn,
                   frame_loader: FrameLoader = load_frames, scorer_factory: Callable[[], Any] | None = None,
                   all_question_count: int | None = None) -> EvalResult:
    """Answer every selected question not yet in the predictions file, then score the whole file.

    ``scorer_factory`` builds the OE scorer (WUPS); it is created before any answer is produced, so a
    missing WordNet fails fast instead of after hours of generation.
    """
    config.output_dir.mkdir(parents=True, exist_ok=True)
    selected = select_questions(questions, limit=config.limit, seed=config.seed)
    scorer = None
    if config.task == "oe":
        if scorer_factory is None:
            raise ValueError("the open-ended task needs a scorer_factory")
        scorer = scorer_factory()
    _check_run_file(config)
    predictions_path = config.output_dir / PREDICTIONS_FILE
    done = read_predictions(predictions_path)

    paths = {q.key: video_path(q.video, video_root=config.video_root, video_map=config.video_map) for q in selected}
    missing = sorted({q.video for q in selected if not paths[q.key].is_file()})
    if missing and config.missing_videos == "error":
        raise VideoDecodeError(paths[next(q.key for q in selected if q.video == missing[0])],
                               f"video missing ({len(missing)} of the selected videos are missing; "
                               "--missing-videos skip answers the others)")
    missing_set = set(missing)
    todo = [q for q in selected if q.key not in done and q.video not in missing_set]
    failed: dict[str, str] = {}
    newly = 0
    prefetcher = _FramePrefetcher(loader=frame_loader, num_frames=config.num_frames, num_workers=config.num_workers,
                                  ahead=2 * config.batch_size + config.num_workers)
    prefetcher.plan([paths[q.key] for q in todo])
    bar = tqdm(total=len(todo), unit="q", desc=f"NExT-QA {config.task}", disable=not config.progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        with predictions_path.open("a", encoding="utf-8") as out:
            for start in range(0, len(todo), config.batch_size):
                batch: list[QARequest] = []
                for index in range(start, min(start + config.batch_size, len(todo))):
                    question = todo[index]
                    try:
                        clip = prefetcher.get(index)
                    except (VideoDecodeError, OSError, ValueError) as exc:
                        if config.missing_videos == "error":
                            raise VideoDecodeError(paths[question.key], str(exc)) from exc
                        failed[question.video] = str(exc)
                        bar.update(1)
                        continue
                    batch.append(QARequest(key=question.key, video_path=paths[question.key], clip=clip,
                                           prompt=build_prompt(question, task=config.task), question=question))
                if not batch:
                    continue
                outputs = answer_batch(batch)
                if len(outputs) != len(batch):
                    raise LlavaVideoError(f"the model returned {len(outputs)} answers for {len(batch)} questions")
                for request, output in zip(batch, outputs):
                    _append_line(out, _make_record(request.question, str(output), task=config.task))
                    newly += 1
                bar.update(len(batch))
                bar.set_postfix(skipped=len(failed), refresh=False)
    finally:
        bar.close()
        prefetcher.close()

    records = read_predictions(predictions_path)
    metrics = compute_metrics(selected=selected, records=records, task=config.task, scorer=scorer)
    metrics["skipped"] = {"missing_videos": missing, "failed_videos": failed,
                          "questions": sum(1 for q in selected if q.key not in records)}
    metrics["selection"] = {
        "total_questions": all_question_count if all_question_count is not None else len(questions),
        "limit": config.limit, "seed": config.seed, "selected": len(selected),
        "keys_sha256": hashlib.sha256("\n".join(q.key for q in selected).encode()).hexdigest(),
        "keys": [q.key for q in selected] if config.limit is not None else None,
    }
    metrics["settings"] = {"num_frames": config.num_frames, "batch_size": config.batch_size, **dict(config.run_info)}
    answered = [records[q.key] for q in selected if q.key in records]
    write_json_atomic(config.output_dir / METRICS_FILE, metrics)
    if config.task == "mc":
        write_json_atomic(config.output_dir / OFFICIAL_FILE, official_mc_predictions(answered))
    else:
        flat = {r["key"]: {"answer": r["answer"], "prediction": r["prediction"]} for r in answered}
        write_json_atomic(config.output_dir / OFFICIAL_FILE, flat)
        write_json_atomic(config.output_dir / OFFICIAL_OE_NESTED_FILE, official_oe_predictions(answered))
    return EvalResult(metrics=metrics, output_dir=config.output_dir, newly_answered=newly)


def compute_metrics(*, selected: Sequence[NextQAQuestion], records: Mapping[str, dict], task: Task,
                    scorer=None) -> dict:
    """Scores of the answered questions among ``selected`` (per type, per group, overall)."""
    answered = [(q, records[q.key]) for q in selected if q.key in records]
    if task == "mc":
        per_question = [(q.qtype, (float(r["prediction"] == q.answer_index),)) for q, r in answered]
        metrics = {"task": "mc", "answered": len(answered),
                   **aggregate(per_question, task="mc", metric_names=("accuracy",)),
                   "unparsed": [r["key"] for _, r in answered if not r["parsed"]]}
        return metrics
    per_question = [(q.qtype, scorer.score(prediction=r["prediction"], references=q.references, qtype=q.qtype))
                    for q, r in answered]
    route = scorer.lemmatiser.route
    return {"task": "oe", "answered": len(answered),
            **aggregate(per_question, task="oe", metric_names=("wups0", "wups9")),
            "scorer": {"lemmatiser": route.describe(), "lemmatiser_exact": route.exact, "wordnet": "3.0",
                       "wup_similarity": "nltk 3.3 rule (official)"}}


def format_table(metrics: Mapping) -> str:
    """A per-type / per-group table for stdout."""
    names = ("accuracy",) if metrics["task"] == "mc" else ("wups0", "wups9")
    rows = [("type", "count", *names)]
    for label, entry in [*metrics["per_type"].items(), *metrics["per_group"].items(),
                         ("overall", metrics["overall"])]:
        if entry is not None:
            rows.append((label, str(entry["count"]), *(f"{entry[n]:.2f}" for n in names)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    if metrics["task"] == "mc" and metrics.get("unparsed"):
        lines.append(f"unparsed answers (counted wrong): {len(metrics['unparsed'])}")
    skipped = metrics.get("skipped", {})
    if skipped.get("questions"):
        lines.append(f"skipped questions (not scored): {skipped['questions']} "
                     f"({len(skipped['missing_videos'])} missing videos, {len(skipped['failed_videos'])} undecodable)")
    return "\n".join(lines)
