"""Step 1 of DPO from AI feedback: K sampled answers per (video, question), written as candidates JSONL.

Prompts JSONL, one (video, question) item per line (the synthetic ``dpo_prompts.jsonl`` is one)::

    {"id": "vid7-q2", "video": "videos/vid7.mp4", "question": "What does the man do?",
     "caption": "<detailed caption: the judge's evidence>", "reference": "He opens a door." (optional)}

``caption`` may be absent (written as "": a judge then has only the question and the reference). Other keys
are copied to every candidate. Relative video paths are read from ``video_root`` and written unchanged.

Sampling goes through the shared inference pipeline: the video is decoded and encoded once per item, and
its K requests (the same prompt) are decoded together in chunks of ``batch_size`` rows. Each chunk's seed is
derived from (seed, item id, first candidate index), and the rows of a chunk have identical prompts (no
padding), so a rerun with the same settings writes the same answers, whatever else is in the file.

Resuming: candidates are appended per item as soon as its chunk is decoded; a rerun skips every
(id, candidate_index) already in the output and samples only the missing ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llava_video.errors import InputError
from llava_video.feedback.records import JsonlAppender, read_jsonl

__all__ = ["PromptItem", "read_prompts", "SamplingConfig", "SampleSummary", "chunk_seed", "sample_candidates"]


@dataclass(frozen=True)
class PromptItem:
    id: str
    video: str  # as written in the prompts file
    question: str
    caption: str = ""
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_prompts(path: str | Path) -> list[PromptItem]:
    """Every prompt of a prompts JSONL; a bad line or a repeated id raises InputError naming it."""
    items: list[PromptItem] = []
    seen: set[str] = set()
    for where, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for name in ("id", "video", "question"):
            if not isinstance(row.get(name), str) or not row[name]:
                raise InputError(f"{where}: field '{name}' must be a non-empty string")
        for name in ("caption", "reference"):
            if row.get(name) is not None and not isinstance(row[name], str):
                raise InputError(f"{where}: field '{name}' must be a string or null")
        if row["id"] in seen:
            raise InputError(f"{where}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        known = {"id", "video", "question", "caption", "reference"}
        items.append(
            PromptItem(
                id=row["id"],
                video=row["video"],
                question=row["question"],
                caption=row.get("caption") or "",
                reference=row.get("reference"),
                extra={k: v for k, v in row.items() if k not in known},
            )
        )
    if not items:
        raise InputError(f"{path}: no prompts")
    return items


@dataclass(frozen=True)
class SamplingConfig:
    """Defaults: the LLaVA-Hound recipe (temperature 1.0, top_p 0.95)."""

    num_samples: int = 4
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 256
    num_frames: int = 16
    batch_size: int = 8  # rows per decode call (candidates of one item)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.batch_size < 1 or self.num_frames < 1 or self.max_new_tokens < 1:
            raise InputError("num_samples, batch_size, num_frames and max_new_tokens must be >= 1")
        if not self.temperature > 0:
            raise InputError(f"temperature must be > 0 for sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")

    def as_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "max_new_tokens": self.max_new_tokens, "num_frames": self.num_frames}


def chunk_seed(*, seed: int, item_id: str, first_index: int) -> int:
    """A 63-bit seed for the chunk of ``item_id`` starting at candidate ``first_index``."""
    digest = hashlib.sha256(f"{seed}\0{item_id}\0{first_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class SampleSummary:
    items: int = 0
    items_done_before: int = 0
    candidates_written: int = 0

    def line(self, output: str | Path) -> str:
        return (f"sampled {self.candidates_written} candidates for {self.items - self.items_done_before} items "
                f"({self.items_done_before} of {self.items} already complete) -> {output}")


def sample_candidates(
    model: Any,
    prompts: list[PromptItem],
    *,
    output: str | Path,
    config: SamplingConfig,
    video_root: str | Path = ".",
    progress: bool = True,
    on_item: Callable[[PromptItem], None] | None = None,
) -> SampleSummary:
    """Append K candidates per prompt to ``output`` (candidates JSONL), skipping those already there."""
    from tqdm.auto import tqdm

    from llava_video.inference.pipeline import GenerationSettings, build_messages, generate_batch, load_visual, prepare_request

    summary = SampleSummary(items=len(prompts))
    root = Path(video_root)
    k = config.num_samples
    with JsonlAppender(output) as out:
        done = {(row.get("id"), row.get("candidate_index")) for row in out.existing()}
        todo = []
        for item in prompts:
            missing = [i for i in range(k) if (item.id, i) not in done]
            if missing:
                todo.append((item, missing))
            else:
                summary.items_done_before += 1
        for item, missing in tqdm(todo, desc="sample", disable=not progress, dynamic_ncols=True):
            path = Path(item.video)
            visual = load_visual(model, video=path if path.is_absolute() else root / path, num_frames=config.num_frames)
            request = prepare_request(model, visual, build_messages(item.question), max_new_tokens=config.max_new_tokens)
            # Chunks are fixed by (K, batch_size), not by what is missing, so a resumed item draws the same answers.
            for start in range(0, k, config.batch_size):
                indices = [i for i in range(start, min(start + config.batch_size, k)) if i in missing]
                if not indices:
                    continue
                rows = min(start + config.batch_size, k) - start
                seed = chunk_seed(seed=config.seed, item_id=item.id, first_index=start)
                settings = GenerationSettings(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                              top_p=config.top_p, top_k=config.top_k, seed=seed)
                results = generate_batch(model, [request] * rows, settings)
                for i in indices:
                    row = dict(item.extra)
                    row.update(id=item.id, video=item.video, question=item.question, reference=item.reference,
                               caption=item.caption, candidate_index=i, answer=results[i - start].answer,
                               sampling=config.as_json() | {"seed": seed, "num_samples": k, "batch_size": config.batch_size})
                    out.append(row)
                    summary.candidates_written += 1
            if on_item is not None:
                on_item(item)
    return summary
