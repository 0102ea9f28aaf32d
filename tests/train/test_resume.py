"""A run killed with SIGKILL (between steps, and in the middle of a checkpoint save) and resumed
produces the same per-step losses as an uninterrupted run; no half-written checkpoint is ever used."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llava_video.train.checkpointing import list_checkpoints
from llava_video.train.trainer import run_training

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI in a child process and freezes it at a chosen moment (our own functions wrapped in
# the child only), so the parent can SIGKILL it exactly there.
_DRIVER = r'''
import sys, time, pathlib
sys.path.insert(0, {repo!r})
from llava_video.cli import train as cli
from llava_video.train import checkpointing, trainer
mode, step, marker = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
def freeze():
    marker.write_text("frozen")
    time.sleep(600)
if mode == "save":
    original_save = checkpointing.save_torch
    def save_torch(obj, path):
        if path.name == "optimizer.pt" and path.parent.name == f".checkpoint-{{step:08d}}.tmp":
            path.write_bytes(b"half a file")
            freeze()
        return original_save(obj, path)
    checkpointing.save_torch = save_torch
elif mode == "step":
    original_log = trainer.Trainer._log_step
    def log_step(self, *args, **kwargs):
        original_log(self, *args, **kwargs)
        if self.state.step == step:
            freeze()
    trainer.Trainer._log_step = log_step
sys.exit(cli.main(sys.argv[4:]))
'''


def _losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["loss"]  # a re-run step (after a kill) overwrites the lost one
    return out


def _kill_at(tmp_path: Path, mode: str, step: int, args: list[str]) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER.format(repo=str(REPO)))
    marker = tmp_path / f"frozen_{mode}_{step}"
    proc = subprocess.Popen([sys.executable, str(driver), mode, str(step), str(marker), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "child never reached the kill point"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_gives_identical_losses(tiny_data, tmp_path, tiny_recipe):
    extra = ["schedule.max_steps=6", "checkpoint.save_every=1", "checkpoint.keep_last=2",
             "parts.language_model.train=true", "batching.batch_size=3"]
    reference = tmp_path / "reference"
    run_training(tiny_recipe("stage1", tiny_data, reference, *extra))
    expected = _losses(reference)
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]

    killed = tmp_path / "killed"
    root = tiny_data.parent
    args = ["--config", str(REPO / "configs/tiny/stage1.yaml"), f"data.train={tiny_data}",
            f"data.image_root={root / 'images'}", f"data.video_root={root / 'videos'}",
            f"checkpoint.output_dir={killed}", *extra]
    # 1) killed while writing checkpoint 3: only a staging folder holds the torn file.
    _kill_at(tmp_path, "save", 3, args)
    assert (killed / ".checkpoint-00000003.tmp" / "optimizer.pt").read_bytes() == b"half a file"
    assert [p.name for p in list_checkpoints(killed)] == ["checkpoint-00000001", "checkpoint-00000002"]
    # 2) resumed (from step 2), then killed between steps 4 and 5, before checkpoint 5 exists.
    _kill_at(tmp_path, "step", 5, args)
    assert not (killed / ".checkpoint-00000003.tmp").exists()
    assert [p.name for p in list_checkpoints(killed)] == ["checkpoint-00000003", "checkpoint-00000004"]
    # 3) resumed in this process (from step 4) to the end.
    summary = run_training(tiny_recipe("stage1", tiny_data, killed, *extra))
    assert summary.steps == 6
    got = _losses(killed)
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], abs=1e-6), (step, got[step], expected[step])
    assert not any(p.name.endswith(".tmp") for p in killed.iterdir())
