"""Training checkpoints that survive being killed at any moment.

A checkpoint is written into a hidden temporary folder and renamed into place only once complete
(``os.replace`` of a directory is atomic), so ``checkpoint-NNNNNNNN`` folders are always whole and a
kill during a save leaves at most a ``.tmp`` folder, which the next run removes. Each holds the model
in the llava-hf layout (``model/``), optimizer and scheduler state, every process's RNG state and the
data position, so a resumed run continues exactly where the last checkpoint was taken.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llava_video.atomic import atomic_path, write_text_atomic
from llava_video.errors import CheckpointError

__all__ = [
    "TrainState",
    "checkpoint_name",
    "list_checkpoints",
    "latest_checkpoint",
    "remove_partial_checkpoints",
    "staging_dir",
    "commit_checkpoint",
    "prune_checkpoints",
    "capture_rng",
    "restore_rng",
    "save_torch",
    "load_torch",
    "write_json",
    "read_train_state",
]

_NAME_RE = re.compile(r"^checkpoint-(\d{8})$")
STATE_FILE = "trainer_state.json"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch the next micro-batch comes from
    consumed: int = 0  # global micro-batches of that epoch already trained on
    real_tokens: int = 0
    processed_tokens: int = 0
    bad_records: int = 0


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME_RE.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def remove_partial_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete staging folders left by a run killed while saving; returns what was removed."""
    root = Path(output_dir)
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".checkpoint-") and p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def staging_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f".{checkpoint_name(step)}.tmp"


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def commit_checkpoint(staging: Path, state: TrainState) -> Path:
    """Write the state file last, flush everything, then rename the folder into place."""
    write_json(staging / STATE_FILE, asdict(state))
    _fsync_tree(staging)
    final = staging.parent / checkpoint_name(state.step)
    if final.exists():  # the same step saved again (e.g. the final save of a resumed run)
        old = staging.parent / f".{final.name}.old.tmp"
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    return final


def prune_checkpoints(output_dir: str | Path, keep_last: int) -> list[Path]:
    found = list_checkpoints(output_dir)
    stale = found[: max(0, len(found) - keep_last)]
    for p in stale:
        # Rename first so a kill mid-delete leaves a .tmp folder, never a torn checkpoint.
        doomed = p.parent / f".{p.name}.del.tmp"
        os.replace(p, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return stale


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors and plain values (loadable weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [py_version, list(py_state), py_gauss],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))


def save_torch(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_train_state(checkpoint: Path) -> TrainState:
    try:
        data = json.loads((checkpoint / STATE_FILE).read_text())
        return TrainState(**data)
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{checkpoint}: unreadable trainer state ({exc})") from None
