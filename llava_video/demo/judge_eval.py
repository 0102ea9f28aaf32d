"""The judge's mean score of a model's greedy answers to held-out DPO prompts (before vs after DPO).

Answers come from the shared inference pipeline (the path every command uses); scores from the synthetic
world's rule judge with the prompt's own caption and reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from llava_video.atomic import write_text_atomic
from llava_video.errors import InputError

__all__ = ["greedy_judge_scores", "paired_score_difference"]


def greedy_judge_scores(*, model_dir: str | Path, prompts: str | Path, frames: int, max_new_tokens: int = 48,
                        batch_size: int = 16, output: str | Path | None = None) -> dict[str, Any]:
    """Greedy answers to every prompt of ``prompts`` (JSONL with id, video, question, reference, caption,
    kind), scored 1..5; returns the mean, the count and the mean per kind. ``batch_size`` prompts are decoded
    together (left-padded; the answers are those of one prompt at a time, tested). ``output``: one JSON line
    per answer, written at the end (atomically)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    from llava_video import LlavaVideo
    from llava_video.inference import pipeline as pl
    from llava_video.synthetic.rule_judge import score_answer

    prompts = Path(prompts)
    rows = [json.loads(line) for line in prompts.read_text().splitlines() if line.strip()]
    model = LlavaVideo.from_pretrained(str(model_dir), device="cpu", dtype="float32")
    settings = pl.GenerationSettings(max_new_tokens=max_new_tokens)
    scored = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        requests = [
            pl.prepare_request(model, pl.load_visual(model, video=prompts.parent / row["video"], num_frames=frames),
                               pl.build_messages(row["question"]), max_new_tokens=max_new_tokens)
            for row in chunk
        ]
        for row, result in zip(chunk, pl.generate_batch(model, requests, settings)):
            score = score_answer(caption=row["caption"], question=row["question"], reference=row["reference"],
                                 answer=result.answer)
            scored.append({"id": row["id"], "kind": row.get("kind", ""), "answer": result.answer, "score": score})
    by_kind: dict[str, list[int]] = {}
    for item in scored:
        by_kind.setdefault(item["kind"], []).append(item["score"])
    if output is not None:
        write_text_atomic(output, "".join(json.dumps(item) + "\n" for item in scored))
    return {
        "count": len(scored),
        "mean_score": sum(s["score"] for s in scored) / max(1, len(scored)),
        "mean_score_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
    }


def paired_score_difference(before: list[dict[str, Any]], after: list[dict[str, Any]], *, resamples: int = 10_000,
                            seed: int = 0) -> dict[str, Any]:
    """Mean of ``after - before`` scores over the prompts both answered (matched by id), with a 95% paired
    bootstrap interval (prompts resampled with replacement, ``resamples`` times, fixed seed) and how many
    prompts went up and down. The interval is what says whether a change of a few hundredths is more than
    the luck of which prompts were drawn."""
    old = {row["id"]: row["score"] for row in before}
    pairs = [(old[row["id"]], row["score"]) for row in after if row["id"] in old]
    if not pairs:
        raise ValueError("no prompt answered by both models")
    diff = np.array([b - a for a, b in pairs], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"count": int(diff.size), "mean_difference": float(diff.mean()), "ci95": [float(low), float(high)],
            "up": int((diff > 0).sum()), "down": int((diff < 0).sum())}
