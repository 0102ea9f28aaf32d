"""Several processes (gloo) match one process with gradient accumulation; ZeRO-2 runs on CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from llava_video.train.checkpointing import latest_checkpoint
from llava_video.train.trainer import run_training

REPO = Path(__file__).resolve().parents[2]
EXTRA = ["schedule.max_steps=3", "checkpoint.save_every=3", "parts.language_model.train=true", "batching.batch_size=2"]


def _args(tiny_data: Path, out: Path, *extra: str) -> list[str]:
    root = tiny_data.parent
    return ["--config", str(REPO / "configs/tiny/stage1.yaml"), f"data.train={tiny_data}",
            f"data.image_root={root / 'images'}", f"data.video_root={root / 'videos'}",
            f"checkpoint.output_dir={out}", *EXTRA, *extra]


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # DeepSpeed builds a CPU op once (~40 s); keep it where the next run finds it.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_accumulation(tiny_data, tmp_path, tiny_recipe):
    single = tmp_path / "single"
    run_training(tiny_recipe("stage1", tiny_data, single, *EXTRA, "schedule.gradient_accumulation=2"))
    double = tmp_path / "double"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29613",
           str(REPO / "tools/train.py"), *_args(tiny_data, double, "schedule.gradient_accumulation=1")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Same samples and updates; only float summation order differs (all-reduce vs accumulation).
    assert _losses(double) == pytest.approx(_losses(single), abs=1e-5)
    a = load_file(str(latest_checkpoint(single) / "model" / "model.safetensors"))
    b = load_file(str(latest_checkpoint(double) / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst


@pytest.mark.slow
def test_zero2_on_cpu_trains_saves_and_resumes(tiny_data, tmp_path):
    pytest.importorskip("deepspeed")
    out = tmp_path / "zero2"
    ds = ["distributed.deepspeed=" + str(REPO / "configs/deepspeed/zero2.json")]
    cmd = [sys.executable, str(REPO / "tools/train.py"), *_args(tiny_data, out, *ds)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done: 3 steps" in done.stdout
    ckpt = latest_checkpoint(out)
    assert (ckpt / "model" / "model.safetensors").is_file() and (ckpt / "deepspeed").is_dir()
    more = subprocess.run([*cmd, "schedule.max_steps=4", "checkpoint.save_every=1"], env=_env(), capture_output=True, text=True, timeout=400)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed from" in more.stdout and "done: 4 steps" in more.stdout
    assert len(_losses(out)) == 4
