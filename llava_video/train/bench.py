"""Training throughput: our trainer (packed batches) vs transformers' Trainer with padded batches.

Both start from the same saved weights, read the same mixed image + video records through the same
preprocessing and tokenisation, train the same parts (projector + LLM) for one epoch at the same batch
size, on CPU. Throughput counts real (non-padding) tokens per second; token efficiency is real tokens
over the tokens the model actually processed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["run_train_benchmark", "bench_model_config"]


def bench_model_config() -> Any:
    """A small model whose compute dominates Python overhead on CPU (~2.6M parameters)."""
    from llava_video.testing.tiny import tiny_config

    return tiny_config(text_hidden=192, text_layers=4, vision_hidden=64, text={"num_attention_heads": 6, "num_key_value_heads": 2})


def _padded_hf_collate(items: Sequence[Any], *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """transformers-style padded batch: (b, max L) ids/labels/mask, images padded to the most tiles."""
    from llava_video.data.batching import Sample

    samples = [s for s in items if isinstance(s, Sample)]
    width = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_token_id, dtype=torch.long)  # (b, L)
    labels = torch.full((len(samples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, s in enumerate(samples):
        n = len(s.input_ids)
        ids[row, :n], labels[row, :n], mask[row, :n] = s.input_ids, s.labels, 1
    batch: dict[str, torch.Tensor] = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    images = [t for s in samples for t in s.images]
    if images:
        most = max(t.shape[0] for t in images)
        padded = torch.zeros(len(images), most, *images[0].shape[1:])  # (n_img, max tiles, 3, S, S)
        for i, t in enumerate(images):
            padded[i, : t.shape[0]] = t
        batch["pixel_values"] = padded
        batch["image_sizes"] = torch.tensor([sz for s in samples for sz in s.image_sizes])
    videos = [v for s in samples for v in s.videos]
    if videos:
        batch["pixel_values_videos"] = torch.stack(videos)  # (n_vid, frames, 3, S, S): equal frame counts
    return batch


def _run_hf_baseline(
    model_dir: Path, dataset: Any, *, batch_size: int, lr: float, out: Path, seed: int, num_workers: int
) -> dict[str, float]:
    from transformers import LlavaNextVideoForConditionalGeneration, Trainer, TrainerCallback, TrainingArguments

    model = LlavaNextVideoForConditionalGeneration.from_pretrained(str(model_dir), attn_implementation="sdpa")
    for name, p in model.named_parameters():
        p.requires_grad_("vision_tower" not in name)
    pad = int(dataset.tokenizer.pad_token_id)
    real: list[int] = []
    processed: list[int] = []
    step_end: list[float] = []

    def collate(items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return _padded_hf_collate(items, pad_token_id=pad)

    class CountingTrainer(Trainer):
        """Counts tokens in the main process (collation may run in DataLoader workers)."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            real.append(int(inputs["attention_mask"].sum()))
            processed.append(inputs["attention_mask"].numel())
            return super().compute_loss(model, inputs, *args, **kwargs)

    class StepClock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_end.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
        num_train_epochs=1,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=num_workers,
        remove_unused_columns=False,
        seed=seed,
        disable_tqdm=True,
    )
    trainer = CountingTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate, callbacks=[StepClock()])
    trainer.train()
    return _throughput(real, processed, step_end)


def _throughput(real: Sequence[int], processed: Sequence[int], step_end: Sequence[float]) -> dict[str, float]:
    """Steps 2..N (the first step pays one-off kernel warm-up), data loading included."""
    seconds = step_end[-1] - step_end[0]
    tokens, work = sum(real[1:]), sum(processed[1:])
    return {"steps_timed": len(step_end) - 1, "seconds": seconds, "real_tokens": tokens, "processed_tokens": work,
            "tokens_per_s": tokens / seconds, "token_efficiency": tokens / work,
            "token_efficiency_all_steps": sum(real) / sum(processed)}


def run_train_benchmark(
    out_dir: str | Path,
    *,
    num_videos: int = 24,
    num_images: int = 24,
    num_text: int = 8,
    frames: int = 32,
    batch_size: int = 4,
    lr: float = 1e-4,
    seed: int = 0,
    rounds: int = 2,
    threads: int = 1,
    num_workers: int = 1,
) -> dict[str, Any]:
    """Write data and weights under ``out_dir``, run both trainers, return their numbers."""
    from llava_video.model.llava_video import LlavaVideo
    from llava_video.testing.tiny import tiny_tokenizer
    from llava_video.testing.tiny_data import write_tiny_dataset
    from llava_video.train.config import TrainConfig
    from llava_video.inference.pipeline import image_processor_for
    from llava_video.train.trainer import Trainer

    out = Path(out_dir)
    data = write_tiny_dataset(out / "data", num_videos=num_videos, num_images=num_images, num_text=num_text, frames=frames, seed=seed)
    torch.manual_seed(seed)
    model = LlavaVideo(bench_model_config())
    model.tokenizer = tiny_tokenizer()
    model.image_processor = image_processor_for(model)
    model_dir = model.save_pretrained(out / "weights")
    n_params = sum(p.numel() for p in model.parameters())
    recipe = {
        "model": {"init": "path", "path": str(model_dir)},
        "data": {"train": str(data), "image_root": str(data.parent / "images"), "video_root": str(data.parent / "videos"),
                 "num_frames": frames, "max_length": 4096, "num_workers": num_workers},
        "parts": {"projector": {"train": True}, "language_model": {"train": True}},
        "batching": {"batch_size": batch_size, "packing": True, "modality": "mixed", "group_by_length": False},
        "optim": {"lr": lr, "scheduler": "constant", "warmup_ratio": 0.0},
        "schedule": {"epochs": 1},
        "checkpoint": {"output_dir": "", "save_every": 10**9, "keep_last": 1, "resume": "none"},
        "logging": {"progress": False, "tensorboard": False},
        "runtime": {"device": "cpu", "dtype": "float32", "attn": "auto", "seed": seed},
    }
    torch.set_num_threads(threads)
    # Alternate the two, best round each: a shared machine's load changes from minute to minute.
    hf_rounds, our_rounds = [], []
    for r in range(rounds):
        recipe["checkpoint"]["output_dir"] = str(out / f"ours_{r}")
        trainer = Trainer(TrainConfig.from_dict(recipe))
        trainer.setup()
        hf_rounds.append(_run_hf_baseline(model_dir, trainer.dataset, batch_size=batch_size, lr=lr, out=out / "hf", seed=seed,
                                           num_workers=num_workers))
        try:
            trainer.train()
        finally:
            trainer.cleanup()
        steps = [json.loads(line) for line in (out / f"ours_{r}" / "metrics.jsonl").read_text().splitlines()]
        our_rounds.append(
            _throughput([s["tokens"] for s in steps], [s["processed_tokens"] for s in steps], [s["elapsed_s"] for s in steps])
        )
    ours = max(our_rounds, key=lambda x: x["tokens_per_s"])
    hf = max(hf_rounds, key=lambda x: x["tokens_per_s"])
    result = {
        "model_parameters": n_params,
        "records": len(trainer.dataset),
        "frames_per_video": frames,
        "batch_size": batch_size,
        "torch_threads": threads,
        "dataloader_workers": num_workers,
        "rounds": rounds,
        "ours": ours,
        "hf_trainer_padded": hf,
        "ours_tokens_per_s_by_round": [x["tokens_per_s"] for x in our_rounds],
        "hf_tokens_per_s_by_round": [x["tokens_per_s"] for x in hf_rounds],
        "speedup": ours["tokens_per_s"] / hf["tokens_per_s"],
    }
    (out / "bench_train.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
