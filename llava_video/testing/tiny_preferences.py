"""Generated video preference pairs for DPO tests: the rejected answer adds a hallucinated object.

Each clip is a coloured square crossing a dark canvas (left or right, at a random height). Asked what
happens, the chosen answer describes the clip ("The red square moves left."); the rejected one says the same
and then invents an object that is not there ("The red square moves left and a blue circle appears."), the
error an AI judge punishes most often in video answers. Training and held-out pairs use different clips and
different colour/direction/hallucination draws (different seeds), so a policy that learned to stop after
what it saw, rather than memorised pairs, gains on the held-out pairs too.

(A preference that only the pixels reveal, e.g. the right colour against a wrong one with a neutral
question, is beyond a tiny random model in one short epoch: it learns colour from video in hundreds of SFT
steps, not tens of DPO steps.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path


from llava_video.testing.tiny_data import COLOURS, moving_square_clip

__all__ = ["write_preference_pairs"]

_DIRECTIONS = ("left", "right")
_SHAPES = ("circle", "triangle", "square")


def write_preference_pairs(
    root: str | Path,
    *,
    name: str,
    num_pairs: int,
    frames: int = 4,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``videos/<name>_<i>.mp4`` and ``<name>.jsonl`` (pairs.jsonl schema, relative video paths)
    under ``root``; returns the JSONL path."""
    from llava_video.data.encode import write_video

    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = list(COLOURS)
    rows = []
    for i in range(num_pairs):
        colour, direction = names[i % len(names)], rng.choice(_DIRECTIONS)
        wrong = rng.choice([c for c in names if c != colour])
        rel = f"videos/{name}_{i}.mp4"
        clip = moving_square_clip(COLOURS[colour], direction=direction, row=rng.randrange(0, size - size // 4), frames=frames, size=size)
        write_video(root / rel, clip, fps=8.0, options={"crf": "0"})
        rows.append(
            {
                "id": f"{name}_{i}",
                "video": rel,
                "prompt": "What happens in the video?",
                "chosen": f"The {colour} square moves {direction}.",
                "rejected": f"The {colour} square moves {direction} and a {wrong} {rng.choice(_SHAPES)} appears.",
                "chosen_score": 5,
                "rejected_score": 2,
            }
        )
    path = root / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
