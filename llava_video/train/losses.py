"""Preference losses for DPO training, independent of any model.

Two pieces:

* :func:`sequence_logprobs` turns next-token logits and labels (``-100`` = not scored) into the log-probability of
  each sequence's answer, summed over its answer tokens, plus the number of answer tokens.
* :func:`dpo_loss` (and the module :class:`DPOLoss`) is the sigmoid DPO loss of Rafailov et al. on those sums,
  optionally with conservative label smoothing, plus the optional SFT term on the chosen answers used by the
  LLaVA-Hound / LLaVA-NeXT-Video-DPO recipe.

How the two terms combine (checked against LLaVA-NeXT's DPO trainer): the total is
``dpo_alpha * mean_pairs(dpo) + gamma * nll_chosen``, where ``nll_chosen`` is the chosen answers' negative
log-likelihood averaged over all chosen answer tokens of the batch (a token-mean cross-entropy, not a mean of
per-sequence means). The published LLaVA-NeXT-Video-DPO run used ``dpo_alpha=1.0, gamma=0.0``: plain DPO.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llava_video.errors import ConfigError, InputError

__all__ = [
    "IGNORE_INDEX",
    "SequenceLogProbs",
    "sequence_logprobs",
    "DPOLossConfig",
    "DPOLossOutput",
    "dpo_loss",
    "DPOLoss",
]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SequenceLogProbs:
    """Per-sequence answer log-probabilities: ``sums[i]`` = sum of log p(token) over sequence i's scored tokens."""

    sums: torch.Tensor  # (n,) float32, differentiable
    counts: torch.Tensor  # (n,) int64, number of scored tokens


def sequence_logprobs(
    *,
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    segment_ids: torch.Tensor | None = None,
    num_segments: int | None = None,
) -> SequenceLogProbs:
    """Summed log-probabilities of the labelled tokens of each sequence.

    ``labels`` is aligned with the *inputs* (as for transformers' causal LM loss): the logits at position t predict
    ``labels[:, t + 1]``; the shift happens here. Positions whose label is ``ignore_index`` do not count.

    Without ``segment_ids`` each row is one sequence and the result has ``b`` entries. With packing, several
    sequences share a row: ``segment_ids`` (b, t) gives each *label* position the index (0..num_segments-1) of the
    sequence it belongs to, and the result has ``num_segments`` entries. The first token of a packed sequence is
    always a prompt token (label ``ignore_index``), so the prediction that crosses a sequence boundary never counts.

    Log-softmax runs in float32 whatever the logits' dtype, because sums over hundreds of tokens in bf16 lose the
    small differences DPO learns from.
    """
    if logits.dim() != 3:
        raise InputError(f"logits must be (batch, time, vocab), got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise InputError(f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}")
    target = labels[:, 1:]  # (b, t-1): token predicted at each position
    scored = target != ignore_index  # (b, t-1)
    safe_target = target.masked_fill(~scored, 0)
    shifted = logits[:, :-1, :].float()  # (b, t-1, v)
    # log p(y) = logit_y - logsumexp(logits): avoids materialising a second (b, t, v) log-softmax tensor.
    picked = shifted.gather(dim=-1, index=safe_target.unsqueeze(-1)).squeeze(-1)  # (b, t-1)
    token_logps = (picked - torch.logsumexp(shifted, dim=-1)) * scored  # (b, t-1)
    if segment_ids is None:
        return SequenceLogProbs(sums=token_logps.sum(dim=1), counts=scored.sum(dim=1))
    if segment_ids.shape != labels.shape:
        raise InputError(f"segment_ids shape {tuple(segment_ids.shape)} does not match labels {tuple(labels.shape)}")
    if num_segments is None:
        num_segments = int(segment_ids.max().item()) + 1
    # Unscored positions may carry any segment id (padding often uses -1): send them to segment 0 with weight 0.
    seg = segment_ids[:, 1:].masked_fill(~scored, 0).reshape(-1)  # (b*(t-1),)
    sums = token_logps.new_zeros(num_segments).index_add(0, seg, token_logps.reshape(-1))
    counts = torch.zeros(num_segments, dtype=torch.long, device=labels.device).index_add(
        0, seg, scored.reshape(-1).long()
    )
    return SequenceLogProbs(sums=sums, counts=counts)


@dataclass(frozen=True)
class DPOLossConfig:
    """Hyper-parameters of the preference loss (defaults: the published LLaVA-NeXT-Video-DPO run)."""

    beta: float = 0.1
    label_smoothing: float = 0.0
    dpo_alpha: float = 1.0
    gamma: float = 0.0

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing must lie in [0, 0.5), got {self.label_smoothing}")
        if self.dpo_alpha < 0 or self.gamma < 0:
            raise ConfigError(f"dpo_alpha and gamma must be >= 0, got {self.dpo_alpha} and {self.gamma}")
        if self.dpo_alpha == 0 and self.gamma == 0:
            raise ConfigError("dpo_alpha and gamma are both 0: the loss would be identically zero")


@dataclass(frozen=True)
class DPOLossOutput:
    """The scalar loss to backpropagate, its parts, per-pair rewards and scalar metrics for logging."""

    loss: torch.Tensor  # () differentiable
    dpo_loss: torch.Tensor  # () mean sigmoid DPO term before dpo_alpha
    sft_loss: torch.Tensor  # () chosen token-mean NLL before gamma (0 when not computed)
    chosen_rewards: torch.Tensor  # (n,) detached, beta * (log pi - log ref) of chosen
    rejected_rewards: torch.Tensor  # (n,) detached

    def metrics(self) -> dict[str, float]:
        """Scalars named as trl logs them, so dashboards read the same for both trainers."""
        margins = self.chosen_rewards - self.rejected_rewards
        return {
            "loss": float(self.loss.detach()),
            "losses/dpo": float(self.dpo_loss.detach()),
            "losses/sft": float(self.sft_loss.detach()),
            "rewards/chosen": float(self.chosen_rewards.mean()),
            "rewards/rejected": float(self.rejected_rewards.mean()),
            "rewards/margins": float(margins.mean()),
            "rewards/accuracies": float((margins > 0).float().mean()),
        }


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or any(len(s) != 1 for s in shapes.values()):
        raise InputError(f"log-prob inputs must be 1-D tensors of one length, got {shapes}")


def dpo_loss(
    *,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    chosen_token_counts: torch.Tensor | None = None,
    config: DPOLossConfig = DPOLossConfig(),
) -> DPOLossOutput:
    """Sigmoid DPO on summed answer log-probs, plus the optional chosen-SFT term.

    Per pair, with h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)) and eps = label_smoothing:
    ``l = -(1 - eps) * logsigmoid(beta * h) - eps * logsigmoid(-beta * h)``. The DPO term is the mean of l over
    pairs. The SFT term (only when ``gamma > 0``, which then needs ``chosen_token_counts``) is
    ``-sum(policy_chosen_logps) / sum(chosen_token_counts)``. Reference log-probs are treated as constants.
    """
    _check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
    )
    ref_chosen = reference_chosen_logps.detach()
    ref_rejected = reference_rejected_logps.detach()
    chosen_logratios = policy_chosen_logps - ref_chosen
    rejected_logratios = policy_rejected_logps - ref_rejected
    logits = config.beta * (chosen_logratios - rejected_logratios)  # (n,)
    eps = config.label_smoothing
    per_pair = -(1.0 - eps) * F.logsigmoid(logits)
    if eps > 0:
        per_pair = per_pair - eps * F.logsigmoid(-logits)
    dpo_term = per_pair.mean()

    if config.gamma > 0:
        if chosen_token_counts is None:
            raise InputError("gamma > 0 needs chosen_token_counts to normalise the SFT term")
        total_tokens = chosen_token_counts.sum().clamp(min=1).to(policy_chosen_logps.dtype)
        sft_term = -policy_chosen_logps.sum() / total_tokens
    else:
        sft_term = policy_chosen_logps.new_zeros(())

    loss = config.dpo_alpha * dpo_term + config.gamma * sft_term
    return DPOLossOutput(
        loss=loss,
        dpo_loss=dpo_term,
        sft_loss=sft_term,
        chosen_rewards=(config.beta * chosen_logratios).detach(),
        rejected_rewards=(config.beta * rejected_logratios).detach(),
    )


class DPOLoss(nn.Module):
    """:func:`dpo_loss` with its configuration bound, for trainers that hold their loss as a module."""

    def __init__(self, config: DPOLossConfig = DPOLossConfig()) -> None:
        super().__init__()
        self.config = config

    def forward(
        self,
        *,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
        chosen_token_counts: torch.Tensor | None = None,
    ) -> DPOLossOutput:
        return dpo_loss(
            policy_chosen_logps=policy_chosen_logps,
            policy_rejected_logps=policy_rejected_logps,
            reference_chosen_logps=reference_chosen_logps,
            reference_rejected_logps=reference_rejected_logps,
            chosen_token_counts=chosen_token_counts,
            config=self.config,
        )
