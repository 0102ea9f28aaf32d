"""Muon for the network's weight matrices, AdamW for everything else, as one optimizer.

Muon (Jordan et al. 2024) replaces each 2-D weight's momentum-smoothed gradient by its nearest
semi-orthogonal matrix (a few Newton-Schulz iterations), so every direction of the update moves at the
same rate. It is meant for the hidden matrices only: embeddings, the LM head, norms, biases and
convolution kernels keep AdamW. One optimizer object (groups flagged ``muon``) keeps the trainer's single
scheduler, checkpoint and resume path unchanged.

The update of a matrix is scaled by ``0.2 * sqrt(max(rows, cols))`` (Liu et al. 2025, "Muon is scalable
for LLM training"): its RMS then matches a typical AdamW update, so the learning rate and weight decay
tuned for AdamW carry over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["MuonWithAdamW", "orthogonalize"]

# Quintic Newton-Schulz coefficients tuned to push singular values towards 1 in few steps (Jordan et al.).
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, *, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately ``U @ V.T`` for ``matrix = U S V.T`` (singular values mapped near 1)."""
    a, b, c = _NS_COEFFICIENTS
    x = matrix.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T  # (cols, rows): iterate on the wide side so X @ X.T is the small Gram matrix
    x = x / (x.norm() + eps)  # spectral norm <= Frobenius norm <= 1: inside the iteration's basin
    for _ in range(steps):
        gram = x @ x.T  # (r, r)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(matrix.dtype)


class MuonWithAdamW(torch.optim.Optimizer):
    """Param groups with ``muon=True`` take Muon steps (2-D tensors only), the others AdamW steps.

    Every group has ``lr`` and ``weight_decay`` (decoupled, as in AdamW); Muon groups also ``momentum``
    and ``nesterov``, AdamW groups ``betas`` and ``eps``.
    """

    def __init__(
        self,
        params: Iterable[dict],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
    ) -> None:
        defaults = dict(
            lr=lr, weight_decay=0.0, muon=False, betas=betas, eps=eps, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"]:
                bad = [tuple(p.shape) for p in group["params"] if p.ndim != 2]
                if bad:
                    raise ValueError(f"Muon takes 2-D weight matrices only, got shapes {bad}")

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(mu).add_(p.grad)
            direction = p.grad.add(buf, alpha=mu) if group["nesterov"] else buf
            update = orthogonalize(direction, steps=group["ns_steps"])  # (rows, cols), singular values ~1
            scale = 0.2 * math.sqrt(max(p.shape))  # RMS of the update ~0.2, as AdamW's typically is
            if wd:
                p.mul_(1.0 - lr * wd)
            p.add_(update, alpha=-lr * scale)

    def _adamw_step(self, group: dict) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = float(state["step"])
            state["exp_avg"].lerp_(p.grad, 1.0 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
            denom = (state["exp_avg_sq"] / (1.0 - beta2**t)).sqrt_().add_(eps)
            if wd:
                p.mul_(1.0 - lr * wd)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1.0 - beta1**t))
