"""The DPO objective: sigmoid DPO on video preference pairs, against a frozen reference or precomputed log-probs.

Per batch of ``n`` pairs (``data/preferences.py``: ``2n`` sequences, chosen first):

1. each pair's video is encoded once (vision tower + projector + pooling) and the features are placed in
   both its chosen and its rejected sequence (``embed_inputs(video_features=...)``): the visual prefix is
   shared, not encoded twice;
2. the frozen reference scores the answers without gradients (or the pairs carry precomputed reference
   log-probs); when the policy's vision tower and projector are frozen they equal the reference's, so the
   reference reuses the policy's features instead of encoding the videos again;
3. the policy scores the answers; ``dpo_loss`` (``train/losses.py``) combines the four sums.

Only answer positions go through the LM head (``answer_logprobs``), so no ``(2n, L, vocab)`` logits
tensor is built over the long visual prefix.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from llava_video.data.batching import BadSample
from llava_video.data.preferences import PairBatch, PairSample, PreferenceDataset, collate_pairs, read_pairs
from llava_video.errors import ConfigError
from llava_video.train.losses import DPOLossConfig, SequenceLogProbs, dpo_loss, sequence_logprobs

__all__ = [
    "DPOObjectiveConfig",
    "DPOObjective",
    "answer_logprobs",
    "pair_logprobs",
    "frozen_reference",
    "PreferenceEval",
    "evaluate_preferences",
]

ReferenceMode = Literal["model", "precomputed"]


@dataclass(frozen=True)
class DPOObjectiveConfig:
    """``objective.options`` of a DPO recipe. Defaults: the published LLaVA-NeXT-Video-DPO run."""

    beta: float = 0.1
    label_smoothing: float = 0.0
    dpo_alpha: float = 1.0
    gamma: float = 0.0
    # model: a frozen copy of the starting policy scores every batch; precomputed: pairs.jsonl carries
    # reference_chosen_logp / reference_rejected_logp (no second model in memory).
    reference: ReferenceMode = "model"
    # Weights of the frozen copy: auto = bfloat16 on a GPU that has it, else float32.
    reference_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    def __post_init__(self) -> None:
        if self.reference not in ("model", "precomputed"):
            raise ConfigError(f"objective.options.reference={self.reference!r} is not one of 'model', 'precomputed'")
        if self.reference_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"objective.options.reference_dtype={self.reference_dtype!r} is not a known dtype")
        self.loss_config()  # validates beta, label_smoothing, dpo_alpha, gamma

    def loss_config(self) -> DPOLossConfig:
        return DPOLossConfig(beta=self.beta, label_smoothing=self.label_smoothing, dpo_alpha=self.dpo_alpha, gamma=self.gamma)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "DPOObjectiveConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join('objective.options.' + k for k in unknown)}")
        values = dict(options)
        for name in ("beta", "label_smoothing", "dpo_alpha", "gamma"):
            if name in values:
                if isinstance(values[name], bool):
                    raise ConfigError(f"objective.options.{name}={values[name]!r} must be a number")
                try:
                    values[name] = float(values[name])  # YAML reads 1e-1 as a string
                except (TypeError, ValueError):
                    raise ConfigError(f"objective.options.{name}={values[name]!r} must be a number") from None
        return cls(**values)


def _unwrap(model: Any) -> Any:
    """The LlavaVideo inside a DeepSpeed engine (or the model itself)."""
    return getattr(model, "module", model)


def answer_logprobs(
    *,
    lm_head: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    segment_ids: torch.Tensor | None,
    num_sequences: int,
) -> SequenceLogProbs:
    """Summed answer log-probs per sequence from the last hidden states, running the LM head on answer
    positions only.

    The scored positions are gathered into one compact row and handed to ``sequence_logprobs``: compact
    position j holds the logits that predict scored target j, and its label sits at j + 1 (the function
    shifts by one); a zero row closes the compact sequence and is never read.
    """
    b, t, _ = hidden.shape  # (b, L, D)
    target = labels[:, 1:]  # (b, L-1)
    scored = target != ignore_index  # (b, L-1)
    if segment_ids is None:
        segments = torch.arange(b, device=labels.device)[:, None].expand(b, t - 1)  # (b, L-1): row = sequence
    else:
        segments = segment_ids[:, 1:]  # (b, L-1)
    picked = lm_head(hidden[:, :-1][scored])  # (n, V)
    compact_logits = torch.cat([picked, picked.new_zeros(1, picked.shape[-1])])[None]  # (1, n+1, V)
    ignore = labels.new_full((1,), ignore_index)
    compact_labels = torch.cat([ignore, target[scored]])[None]  # (1, n+1)
    compact_segments = torch.cat([ignore.new_zeros(1), segments[scored]])[None]  # (1, n+1)
    return sequence_logprobs(
        logits=compact_logits,
        labels=compact_labels,
        ignore_index=ignore_index,
        segment_ids=compact_segments,
        num_segments=num_sequences,
    )


def pair_logprobs(
    model: Any,
    batch: PairBatch,
    *,
    device: torch.device,
    video_features: Sequence[torch.Tensor] | None = None,
) -> tuple[SequenceLogProbs, list[torch.Tensor]]:
    """Answer log-probs of the batch's ``2n`` sequences (chosen first) and the ``n`` video features used.

    Each video is encoded once (unless ``video_features`` are given) and its features fill the ``<video>``
    placeholders of both the chosen and the rejected sequence of its pair.
    """
    core = _unwrap(model)
    if video_features is None:
        video_features = core.encode_videos([v.to(device) for v in batch.videos])  # n x (tokens, D)
    feats = [f.to(core.dtype) for f in video_features]
    input_ids = batch.input_ids.to(device)
    embeds = core.embed_inputs(input_ids, video_features=feats + feats)  # chosen rows, then rejected rows
    out = model(
        inputs_embeds=embeds,
        attention_mask=None if batch.attention_mask is None else batch.attention_mask.to(device),
        position_ids=None if batch.position_ids is None else batch.position_ids.to(device),
        use_cache=False,
        return_logits=False,
    )
    logps = answer_logprobs(
        lm_head=core.language_model.get_output_embeddings(),
        hidden=out.hidden_states,
        labels=batch.labels.to(device),
        ignore_index=core.config.ignore_index,
        segment_ids=None if batch.segment_ids is None else batch.segment_ids.to(device),
        num_sequences=2 * batch.num_pairs,
    )
    return logps, list(video_features)


def _reference_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def frozen_reference(model: torch.nn.Module, *, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``model`` as it is now, in eval mode, without gradients: DPO's reference policy."""
    reference = copy.deepcopy(_unwrap(model))
    reference.requires_grad_(False)
    return reference.to(device=device, dtype=dtype).eval()


def _visual_part_frozen(model: Any) -> bool:
    """True when nothing outside the language model trains (so its visual features equal the reference's)."""
    return not any(p.requires_grad for n, p in _unwrap(model).named_parameters() if not n.startswith("language_model."))


class DPOObjective:
    """Sigmoid DPO (+ optional chosen SFT term) on ``pairs.jsonl``; see the module docstring."""

    name = "dpo"

    def __init__(self, *, packing: bool, pad_token_id: int, ignore_index: int, **options: Any) -> None:
        self.config = DPOObjectiveConfig.from_options(options)
        self.loss_config = self.config.loss_config()
        self.packing = packing
        self.pad_token_id = pad_token_id
        self.ignore_index = ignore_index
        self.reference: torch.nn.Module | None = None
        self._metrics: list[dict[str, float]] = []

    # ---- trainer hooks --------------------------------------------------------------------------
    def setup(self, *, model: torch.nn.Module, device: torch.device) -> None:
        """Copies the starting policy as the reference (before any resume loads trained weights)."""
        if self.config.reference == "model":
            self.reference = frozen_reference(model, device=device, dtype=_reference_dtype(self.config.reference_dtype, device))

    def build_dataset(self, *, config: Any, model: Any, report: Any = None) -> PreferenceDataset:
        """The preference pairs of ``data.train`` (a pairs JSONL), videos under ``data.video_root``."""
        from llava_video.data.conversation import template_for
        from llava_video.train.objectives import media_loader

        d = config.data
        if d.datasets or d.train is None:
            raise ConfigError("objective dpo reads one pairs JSONL: set data.train, not data.datasets")
        pairs = read_pairs(d.train, video_root=d.video_root)
        if self.config.reference == "precomputed":
            missing = [p for p in pairs if p.reference_chosen_logp is None or p.reference_rejected_logp is None]
            if missing:
                raise ConfigError(
                    f"objective.options.reference=precomputed but {missing[0].source}:{missing[0].line} (and "
                    f"{len(missing) - 1} more) lack reference_chosen_logp/reference_rejected_logp; "
                    "add them to the pairs file (docs/dpo.md) or use reference: model"
                )
        media = media_loader(d, model.image_processor)
        return PreferenceDataset(
            pairs,
            tokenizer=model.tokenizer,
            config=model.config,
            template=template_for(model.config, model.tokenizer),
            media=media,
            max_length=d.max_length,
        )

    def collate(self, items: Sequence[PairSample | BadSample]) -> PairBatch:
        return collate_pairs(items, packing=self.packing, pad_token_id=self.pad_token_id, ignore_index=self.ignore_index)

    def loss(self, model: Any, batch: PairBatch, *, device: torch.device) -> torch.Tensor:
        n = batch.num_pairs
        shared = _visual_part_frozen(model)
        features = None
        if shared:
            with torch.no_grad():
                features = _unwrap(model).encode_videos([v.to(device) for v in batch.videos])  # n x (tokens, D)
        reference = self._reference_logps(batch, device=device, video_features=features)
        policy, _ = pair_logprobs(model, batch, device=device, video_features=features)
        out = dpo_loss(
            policy_chosen_logps=policy.sums[:n],
            policy_rejected_logps=policy.sums[n:],
            reference_chosen_logps=reference[:n],
            reference_rejected_logps=reference[n:],
            chosen_token_counts=policy.counts[:n],
            config=self.loss_config,
        )
        metrics = out.metrics()
        metrics["logps/chosen"] = float(policy.sums[:n].detach().mean())
        metrics["logps/rejected"] = float(policy.sums[n:].detach().mean())
        self._metrics.append(metrics)
        return out.loss

    def pop_metrics(self) -> dict[str, float]:
        """Means of the metrics of the micro-batches since the last call (one optimizer step)."""
        collected, self._metrics = self._metrics, []
        if not collected:
            return {}
        return {k: sum(m[k] for m in collected) / len(collected) for k in collected[0]}

    # ---- helpers --------------------------------------------------------------------------------
    def _reference_logps(
        self, batch: PairBatch, *, device: torch.device, video_features: Sequence[torch.Tensor] | None
    ) -> torch.Tensor:
        """(2n,) reference answer log-probs, chosen then rejected."""
        if self.config.reference == "precomputed":
            if batch.reference_logps is None:
                raise ConfigError("objective.options.reference=precomputed but a batch has pairs without reference log-probs")
            return batch.reference_logps.to(device)
        if self.reference is None:
            raise ConfigError("the DPO objective was not set up (no reference model)")
        with torch.no_grad():
            logps, _ = pair_logprobs(self.reference, batch, device=device, video_features=video_features)
        return logps.sums.detach().float()


@dataclass(frozen=True)
class PreferenceEval:
    """Per-pair answer log-probs of a policy and its reference over a set of pairs."""

    policy_chosen: torch.Tensor  # (N,)
    policy_rejected: torch.Tensor
    reference_chosen: torch.Tensor
    reference_rejected: torch.Tensor
    beta: float
    bad: int = 0  # pairs that could not be loaded

    def metrics(self) -> dict[str, float]:
        """Reward accuracy/margins as DPO logs them, plus the reference-free log-prob margin."""
        chosen = self.beta * (self.policy_chosen - self.reference_chosen)
        rejected = self.beta * (self.policy_rejected - self.reference_rejected)
        margins = chosen - rejected
        logp_margin = self.policy_chosen - self.policy_rejected
        return {
            "pairs": float(len(margins)),
            "rewards/chosen": float(chosen.mean()),
            "rewards/rejected": float(rejected.mean()),
            "rewards/margins": float(margins.mean()),
            "rewards/accuracies": float((margins > 0).float().mean()),
            "rewards/ties": float((margins == 0).float().mean()),
            "logps/margin": float(logp_margin.mean()),
            "logps/accuracy": float((logp_margin > 0).float().mean()),
        }


@torch.no_grad()
def evaluate_preferences(
    policy: Any,
    reference: Any,
    dataset: PreferenceDataset,
    *,
    device: torch.device,
    beta: float = 0.1,
    batch_size: int = 8,
) -> PreferenceEval:
    """Score every pair of ``dataset`` with ``policy`` and ``reference`` (eval mode, no gradients)."""
    was_training = policy.training
    policy.eval()
    sums: dict[str, list[torch.Tensor]] = {"pc": [], "pr": [], "rc": [], "rr": []}
    bad = 0
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = collate_pairs(items, packing=False, pad_token_id=0, ignore_index=policy.config.ignore_index)
            bad += len(batch.bad)
            if batch.num_pairs == 0:
                continue
            n = batch.num_pairs
            pol, _ = pair_logprobs(policy, batch, device=device)
            ref, _ = pair_logprobs(reference, batch, device=device)
            sums["pc"].append(pol.sums[:n].cpu())
            sums["pr"].append(pol.sums[n:].cpu())
            sums["rc"].append(ref.sums[:n].cpu())
            sums["rr"].append(ref.sums[n:].cpu())
    finally:
        policy.train(was_training)
    cat = {k: torch.cat(v) if v else torch.zeros(0) for k, v in sums.items()}
    return PreferenceEval(cat["pc"], cat["pr"], cat["rc"], cat["rr"], beta=beta, bad=bad)
