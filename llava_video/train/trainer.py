"""The trainer: one lifecycle (setup -> train -> save -> cleanup) for every stage and objective.

What trains, at which learning rate, on which data and with which loss all come from the recipe
(``TrainConfig``). Plain PyTorch (one or many processes, gradients averaged explicitly) or DeepSpeed
ZeRO when ``distributed.deepspeed`` names a config.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from llava_video.data.batching import Batch, MicroBatchSampler, plan_micro_batches
from llava_video.data.records import BadRecord, BadRecordReport
from llava_video.errors import ConfigError
from llava_video.model.packed_attention import register_packed_attention
from llava_video.runtime import resolve_attention, resolve_device, resolve_dtype
from llava_video.train import checkpointing as ckpt
from llava_video.train.config import PART_NAMES, TrainConfig
from llava_video.train.distributed import (
    DistEnv,
    all_reduce_sum,
    average_gradients,
    barrier,
    gather_lists,
    init_distributed,
    shutdown,
)
from llava_video.train.muon import MuonWithAdamW
from llava_video.train.objectives import Objective, build_objective

__all__ = ["Trainer", "TrainSummary", "run_training", "part_parameters", "build_model", "resolve_model_path"]

# Dense bf16 peak per GPU (TFLOP/s) for the MFU estimate; override with logging.peak_tflops.
_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


@dataclass
class TrainSummary:
    steps: int
    final_loss: float | None
    first_loss: float | None
    real_tokens: int
    processed_tokens: int
    seconds: float
    bad_records: int
    output_dir: str

    @property
    def token_efficiency(self) -> float:
        return self.real_tokens / self.processed_tokens if self.processed_tokens else 0.0

    def line(self) -> str:
        tps = self.real_tokens / self.seconds if self.seconds > 0 else 0.0
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.4f}"
        return (
            f"done: {self.steps} steps, final loss {loss}, {self.real_tokens} tokens in {self.seconds:.1f}s "
            f"({tps:.0f} tok/s), token efficiency {self.token_efficiency:.1%}, bad records {self.bad_records}, "
            f"output {self.output_dir}"
        )


def part_parameters(model: torch.nn.Module) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """The model's parameters by trainable part; the projector part includes ``image_newline``."""
    parts: dict[str, list[tuple[str, torch.nn.Parameter]]] = {p: [] for p in PART_NAMES}
    for name, param in model.named_parameters():
        if name.startswith("vision_tower."):
            parts["vision_tower"].append((name, param))
        elif name.startswith("language_model."):
            parts["language_model"].append((name, param))
        elif name.startswith("multi_modal_projector.") or name == "image_newline":
            parts["projector"].append((name, param))
        else:
            raise ConfigError(f"parameter {name} belongs to no trainable part")
    return parts


def resolve_model_path(path: str | Path) -> Path:
    """A model folder, a training checkpoint (its ``model/``) or a run folder (its latest checkpoint)."""
    path = Path(path)
    if (path / "model").is_dir():
        return path / "model"
    latest = ckpt.latest_checkpoint(path)
    return latest / "model" if latest is not None else path


def build_model(config: TrainConfig, *, device: torch.device, attn: str) -> Any:
    """The model (fp32 weights: the optimizer's master copy) with its tokenizer and image processor."""
    from llava_video.inference.pipeline import image_processor_for
    from llava_video.model.llava_video import LlavaVideo
    from llava_video.testing.tiny import tiny_config, tiny_tokenizer

    m = config.model
    if m.init == "tiny":
        torch.manual_seed(m.seed)
        try:
            tiny = tiny_config(**m.tiny)
        except TypeError as exc:
            raise ConfigError(f"model.tiny: {exc}") from None
        model = LlavaVideo(tiny, attn_implementation=attn)
        model.tokenizer = tiny_tokenizer(int(model.config.text.get("vocab_size", 512)))
        model.image_processor = image_processor_for(model)  # CLIP defaults at the tower's resolution
    else:
        model = LlavaVideo.from_pretrained(resolve_model_path(m.path or ""), device="cpu", dtype="float32", attn_implementation=attn)
        # The checkpoint's preprocessor_config.json when it has one, else CLIP defaults at its resolution.
        model.image_processor = image_processor_for(model)
    if m.conv_template is not None:
        model.config.conv_template = m.conv_template
    return model.to(device)


class Trainer:
    """``setup()`` builds everything (and resumes), ``train()`` runs to the end, ``cleanup()`` releases."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.state = ckpt.TrainState()
        self.report = BadRecordReport(policy=config.data.on_bad_record)
        self.output_dir = Path(config.checkpoint.output_dir)
        self._log_file: Any = None
        self._tb: Any = None
        self._wandb: Any = None
        self.engine: Any = None
        self.losses: list[float] = []
        self.step_metrics: dict[str, float] = {}  # the objective's metrics of the last step

    # ---- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.runtime.device)
        self.env: DistEnv = init_distributed(
            device=self.device, backend=cfg.distributed.backend, deepspeed=cfg.distributed.deepspeed is not None
        )
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.env.local_rank)
            torch.cuda.set_device(self.device)
        self.compute_dtype = resolve_dtype(cfg.runtime.dtype, self.device)
        torch.manual_seed(cfg.runtime.seed + self.env.rank)  # a resumed run restores its saved RNG state instead
        attn = resolve_attention(cfg.runtime.attn, self.device, self.compute_dtype)
        self.model = build_model(cfg, device=self.device, attn=attn)
        if cfg.batching.packing and cfg.runtime.attn == "auto" and attn == "sdpa":
            # No flash-attn: attend within each packed sample (torch's varlen kernel on CUDA) instead of over the whole row.
            self.model.language_model.set_attn_implementation(register_packed_attention())
        self.trainable = self._freeze_parts()
        if cfg.runtime.gradient_checkpointing:
            kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
            self.model.language_model.gradient_checkpointing_enable(**kwargs)
            if cfg.parts.vision_tower.train:
                self.model.vision_tower.vision_model.gradient_checkpointing_enable(**kwargs)
        if cfg.runtime.compile:
            self.model.compile_blocks()
        self.model.train()
        self.objective: Objective = build_objective(
            cfg.objective.name,
            packing=cfg.batching.packing,
            pad_token_id=self._pad_id(),
            ignore_index=self.model.config.ignore_index,
            options=dict(cfg.objective.options),
        )
        self.objective.setup(model=self.model, device=self.device)
        # Each objective reads its own data (SFT: LLaVA records and mixtures; DPO: a pairs file).
        self.dataset = self.objective.build_dataset(config=cfg, model=self.model, report=self.report)
        self.steps_per_epoch = len(self._plan(0)) // (self.env.world * cfg.schedule.gradient_accumulation)
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"{len(self.dataset)} records make less than one optimizer step "
                f"(batch_size {cfg.batching.batch_size} x accumulation {cfg.schedule.gradient_accumulation} x {self.env.world} processes)"
            )
        self.total_steps = cfg.schedule.max_steps or math.ceil(cfg.schedule.epochs * self.steps_per_epoch)
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        if cfg.distributed.deepspeed is not None:
            self._setup_deepspeed()
        if self.env.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_partial_checkpoints(self.output_dir)
            ckpt.write_json(self.output_dir / "train_config.json", cfg.to_dict())
        barrier(self.env)
        self._resume()
        self._open_logs()

    def _pad_id(self) -> int:
        tok = self.model.tokenizer
        for tid in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)):
            if tid is not None:
                return int(tid)
        return 0

    def _freeze_parts(self) -> list[torch.nn.Parameter]:
        trainable = []
        for part, params in part_parameters(self.model).items():
            on = getattr(self.config.parts, part).train
            for _, p in params:
                p.requires_grad_(on)
                if on:
                    trainable.append(p)
        return trainable

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """One group per (part, kind) so each part has its own learning rate; no decay on biases/norms.

        With ``optim.name: muon`` a part's linear weight matrices form a Muon group of their own.
        """
        o = self.config.optim
        # Muon is for hidden matrices: the LM head (and embeddings, convolutions) stay with AdamW.
        head = self.model.language_model.get_output_embeddings()
        muon_ids = (
            {id(m.weight) for m in self.model.modules() if isinstance(m, torch.nn.Linear) and m is not head}
            if o.name == "muon" else set()
        )
        groups = []
        for part, params in part_parameters(self.model).items():
            sec = getattr(self.config.parts, part)
            if not sec.train:
                continue
            lr = o.lr if sec.lr is None else sec.lr
            matrices = [p for _, p in params if id(p) in muon_ids]
            decay = [p for _, p in params if p.ndim >= 2 and id(p) not in muon_ids]
            no_decay = [p for _, p in params if p.ndim < 2]
            if matrices:
                groups.append({"params": matrices, "lr": lr * o.muon_lr_scale, "weight_decay": o.weight_decay,
                               "name": part + "_muon", "muon": True})
            for suffix, plist, wd in (("", decay, o.weight_decay), ("_no_decay", no_decay, 0.0)):
                if plist:
                    groups.append({"params": plist, "lr": lr, "weight_decay": wd, "name": part + suffix})
        if o.name == "muon":
            return MuonWithAdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, momentum=o.momentum)
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)

    def _lr_factor(self, step: int) -> float:
        o = self.config.optim
        warmup = int(round(o.warmup_ratio * self.total_steps))
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if o.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        if o.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def _plan(self, epoch: int) -> list[list[int]]:
        b = self.config.batching
        return plan_micro_batches(
            lengths=self.dataset.lengths if b.group_by_length else [0] * len(self.dataset),
            modalities=self.dataset.modalities,
            batch_size=b.batch_size,
            seed=self.config.runtime.seed,
            epoch=epoch,
            shuffle=b.shuffle,
            group_by_length=b.group_by_length,
            group_size=b.group_size,
            modality=b.modality,
        )

    def _setup_deepspeed(self) -> None:
        import deepspeed

        cfg = self.config
        path = Path(cfg.distributed.deepspeed or "")
        try:
            ds_config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"distributed.deepspeed: cannot read {path} ({exc})") from None
        accum = cfg.schedule.gradient_accumulation
        fill = {
            "train_micro_batch_size_per_gpu": cfg.batching.batch_size,
            "gradient_accumulation_steps": accum,
            "train_batch_size": cfg.batching.batch_size * accum * self.env.world,
            "gradient_clipping": cfg.optim.max_grad_norm or 0.0,
        }
        for key, value in fill.items():
            if ds_config.get(key, "auto") == "auto":
                ds_config[key] = value
        bf16 = ds_config.setdefault("bf16", {})
        if bf16.get("enabled", "auto") == "auto":
            bf16["enabled"] = self.compute_dtype == torch.bfloat16
        ds_config.setdefault("zero_allow_untested_optimizer", True)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=ds_config
        )

    # ---- resume ----------------------------------------------------------------------------------
    def _resume(self) -> None:
        mode = self.config.checkpoint.resume
        if mode == "none":
            return
        source = ckpt.latest_checkpoint(self.output_dir) if mode == "auto" else Path(mode)
        if source is None:
            return
        state = ckpt.read_train_state(source)
        if self.engine is not None:
            self.engine.load_checkpoint(str(source / "deepspeed"), tag="state")
        else:
            from llava_video.model.checkpoints import read_state_dict, to_native_keys

            weights = to_native_keys(read_state_dict(source / "model"))
            missing, _ = self.model.load_state_dict(weights, strict=False)
            if [k for k in missing if not k.endswith("lm_head.weight")]:
                raise ckpt.CheckpointError(f"{source}: model weights incomplete ({missing[:3]})")
            self.optimizer.load_state_dict(ckpt.load_torch(source / "optimizer.pt"))
            self.scheduler.load_state_dict(ckpt.load_torch(source / "scheduler.pt"))
        rng = source / f"rng_rank{self.env.rank}.pt"
        if rng.is_file():
            ckpt.restore_rng(ckpt.load_torch(rng))
        bad = source / "bad_records.jsonl"
        if bad.is_file():
            self.report.items = [BadRecord(**json.loads(line)) for line in bad.read_text().splitlines() if line.strip()]
        self.state = state
        if self.env.is_main:
            print(f"resumed from {source} at step {state.step}", flush=True)

    # ---- train -----------------------------------------------------------------------------------
    def train(self) -> TrainSummary:
        cfg = self.config
        accum = cfg.schedule.gradient_accumulation
        start_time = self._start_time = time.perf_counter()
        start_tokens, start_processed = self.state.real_tokens, self.state.processed_tokens
        progress = self._progress()
        first_loss: float | None = None
        last_loss: float | None = None
        while self.state.step < self.total_steps:
            sampler = MicroBatchSampler(
                self._plan(self.state.epoch), rank=self.env.rank, world=self.env.world, accum=accum, start=self.state.consumed
            )
            loader = DataLoader(
                self.dataset,
                batch_sampler=sampler,
                collate_fn=self.objective.collate,
                num_workers=cfg.data.num_workers,
                pin_memory=self.device.type == "cuda",
            )
            batches = iter(loader)
            while self.state.step < self.total_steps:
                micro = [b for b in (next(batches, None) for _ in range(accum)) if b is not None]
                if len(micro) < accum:
                    break
                t0 = time.perf_counter()
                loss, real, processed = self._step(micro)
                dt = time.perf_counter() - t0
                self.state.step += 1
                self.state.consumed += self.env.world * accum
                self.state.real_tokens += int(real)
                self.state.processed_tokens += int(processed)
                first_loss = loss if first_loss is None else first_loss
                last_loss = loss
                self.losses.append(loss)
                self._log_step(loss, real, processed, dt, progress)
                if self.state.step % cfg.checkpoint.save_every == 0 or self.state.step == self.total_steps:
                    self.save()
            if self.state.step < self.total_steps:  # this epoch's micro-batches are used up
                self.state.epoch += 1
                self.state.consumed = 0
        if progress is not None:
            progress.close()
        summary = TrainSummary(
            steps=self.state.step,
            final_loss=last_loss,
            first_loss=first_loss,
            real_tokens=self.state.real_tokens - start_tokens,
            processed_tokens=self.state.processed_tokens - start_processed,
            seconds=time.perf_counter() - start_time,
            bad_records=len(self.report),
            output_dir=str(self.output_dir),
        )
        if self.env.is_main:
            if self.report.items:
                print(self.report.summary(), flush=True)
            print(summary.line(), flush=True)
        return summary

    def _autocast(self) -> Any:
        if self.device.type == "cuda" and self.compute_dtype != torch.float32 and self.engine is None:
            return torch.autocast("cuda", dtype=self.compute_dtype)
        return nullcontext()

    def _step(self, micro: list[Batch]) -> tuple[float, float, float]:
        """One optimizer step over ``micro`` (this process's accumulation micro-batches)."""
        accum = len(micro)
        model = self.engine if self.engine is not None else self.model
        loss_sum, real, processed, counted = 0.0, 0, 0, 0
        # Records that failed to load on any process, reported identically everywhere.
        for index, reason in gather_lists([(b.index, b.reason) for batch in micro for b in batch.bad], self.env):
            self.report.add_record(self.dataset.records[index], reason)
        for batch in micro:
            real += batch.real_tokens
            processed += batch.processed_tokens
            if batch.num_samples == 0:
                if self.engine is not None:
                    raise ConfigError("a whole micro-batch was bad records; DeepSpeed cannot skip a micro-step")
                continue
            with self._autocast():
                loss = self.objective.loss(model, batch, device=self.device)
            loss_sum += float(loss.detach())
            counted += 1
            if self.engine is not None:
                self.engine.backward(loss)
                self.engine.step()
            else:
                (loss / accum).backward()
        if self.engine is None:
            # A part no sample of this step used still gets a (zero) gradient, so the optimizer's state
            # (Adam's step count) never depends on how samples were split across processes.
            for p in self.trainable:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            average_gradients(self.trainable, self.env)
            if self.config.optim.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.config.optim.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        loss_total, counted_total, real_total, processed_total = all_reduce_sum(
            [loss_sum, counted, real, processed], self.env, self.device
        )
        self.step_metrics = self._objective_metrics()
        # Mean over the micro-batches that had samples (NaN: the whole step was bad records).
        return (loss_total / counted_total if counted_total else float("nan")), real_total, processed_total

    def _objective_metrics(self) -> dict[str, float]:
        """The objective's own metrics of this step (e.g. DPO rewards), averaged over processes."""
        pop = getattr(self.objective, "pop_metrics", None)
        metrics = pop() if pop is not None else {}
        if not metrics:
            return {}
        names = sorted(metrics)
        totals = all_reduce_sum([metrics[k] for k in names], self.env, self.device)
        return {k: v / self.env.world for k, v in zip(names, totals)}

    # ---- logging ---------------------------------------------------------------------------------
    def _progress(self) -> Any:
        if not (self.env.is_main and self.config.logging.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.state.step, desc="train", dynamic_ncols=True)

    def _open_logs(self) -> None:
        if not self.env.is_main:
            return
        self._log_file = open(self.output_dir / "metrics.jsonl", "a", buffering=1)
        if self.config.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.output_dir / "tensorboard"))
        if self.config.logging.wandb:
            from llava_video.optional import require

            wandb = require("wandb", "logging.wandb")
            self._wandb = wandb.init(project=self.config.logging.wandb_project, config=self.config.to_dict(), resume="allow")

    def _mfu(self, tokens_per_s: float) -> float | None:
        if self.device.type != "cuda":
            return None
        peak = self.config.logging.peak_tflops
        if peak is None:
            name = torch.cuda.get_device_name(self.device)
            peak = next((v for k, v in _PEAK_TFLOPS.items() if k in name), None)
        if peak is None:
            return None
        n_total = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.trainable)
        # Forward 2N, activation gradients ~2N, weight gradients 2N of the trained part (attention ignored).
        flops_per_token = 4 * n_total + 2 * n_train
        return tokens_per_s / max(1, self.env.world) * flops_per_token / (peak * 1e12)

    def _log_step(self, loss: float, real: float, processed: float, seconds: float, progress: Any) -> None:
        if not self.env.is_main:
            return
        tps = real / seconds if seconds > 0 else 0.0
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
        record = {
            "step": self.state.step,
            "loss": loss,
            "lr": lrs,
            "tokens": int(real),
            "processed_tokens": int(processed),
            "token_efficiency": real / processed if processed else 0.0,
            "tokens_per_s": tps,
            "elapsed_s": time.perf_counter() - self._start_time,  # wall time since train() began
            "bad_records": len(self.report),
        }
        mfu = self._mfu(tps)
        if mfu is not None:
            record["mfu"] = mfu
        extra = {k: v for k, v in self.step_metrics.items() if k != "loss"}
        record.update(extra)
        if self.state.step % self.config.logging.every == 0 or self.state.step == self.total_steps:
            self._log_file.write(json.dumps(record) + "\n")
            if self._tb is not None:
                self._tb.add_scalar("train/loss", loss, self.state.step)
                self._tb.add_scalar("train/tokens_per_s", tps, self.state.step)
                self._tb.add_scalar("train/token_efficiency", record["token_efficiency"], self.state.step)
                for name, lr in lrs.items():
                    self._tb.add_scalar(f"lr/{name}", lr, self.state.step)
                if mfu is not None:
                    self._tb.add_scalar("train/mfu", mfu, self.state.step)
                for name, value in extra.items():
                    self._tb.add_scalar(f"train/{name}", value, self.state.step)
            if self._wandb is not None:
                self._wandb.log({k: v for k, v in record.items() if k != "lr"} | {f"lr/{k}": v for k, v in lrs.items()}, step=self.state.step)
        if progress is not None:
            first_lr = next(iter(lrs.values()), 0.0)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{first_lr:.2e}", tok_s=f"{tps:.0f}", refresh=False)
            progress.update(1)

    # ---- save ------------------------------------------------------------------------------------
    def save(self) -> Path | None:
        """A complete checkpoint of the current step (all processes call this)."""
        staging = ckpt.staging_dir(self.output_dir, self.state.step)
        if self.env.is_main:
            if staging.exists():
                import shutil

                shutil.rmtree(staging)
            staging.mkdir(parents=True)
        barrier(self.env)
        self.state.bad_records = len(self.report)
        if self.engine is not None:
            self.engine.save_checkpoint(str(staging / "deepspeed"), tag="state")
            self._save_model_deepspeed(staging / "model")
        elif self.env.is_main:
            self.model.save_pretrained(staging / "model")
            ckpt.save_torch(self.optimizer.state_dict(), staging / "optimizer.pt")
            ckpt.save_torch(self.scheduler.state_dict(), staging / "scheduler.pt")
        ckpt.save_torch(ckpt.capture_rng(), staging / f"rng_rank{self.env.rank}.pt")
        barrier(self.env)
        final = None
        if self.env.is_main:
            self.report.write_jsonl(staging / "bad_records.jsonl")
            final = ckpt.commit_checkpoint(staging, self.state)
            ckpt.prune_checkpoints(self.output_dir, self.config.checkpoint.keep_last)
        barrier(self.env)
        return final

    def _save_model_deepspeed(self, directory: Path) -> None:
        import deepspeed

        params = list(self.model.parameters())
        # ZeRO-3 shards parameters: gather them (a no-op for ZeRO-2) so rank 0 writes whole tensors.
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if self.env.is_main:
                self.model.save_pretrained(directory)

    # ---- cleanup ---------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for closer in (self._log_file, self._tb):
            if closer is not None:
                closer.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._log_file = self._tb = self._wandb = None
        shutdown(self.env)


def run_training(config: TrainConfig) -> TrainSummary:
    trainer = Trainer(config)
    try:
        trainer.setup()
        return trainer.train()
    finally:
        if hasattr(trainer, "env"):
            trainer.cleanup()


def summary_dict(summary: TrainSummary) -> dict[str, Any]:
    return asdict(summary) | {"token_efficiency": summary.token_efficiency}
