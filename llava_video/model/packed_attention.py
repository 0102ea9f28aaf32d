"""Attention over packed rows, one sample at a time: the CPU (and no-flash-attn) counterpart of varlen.

A packed row holds several samples with ``position_ids`` restarting at 0. transformers' sdpa path
isolates them with a block-diagonal mask but still computes the full (L x L) score matrix; this kernel
runs causal SDPA on each sample's slice instead (sum of L_i^2 work, as flash-attention's varlen does),
which is the same computation. It is registered under its own name through transformers' public
attention registry; anything that is not a single packed row falls back to the regular sdpa kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["PACKED_SDPA", "register_packed_attention", "segment_bounds"]

PACKED_SDPA = "llava_video_packed_sdpa"


def segment_bounds(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """[(start, end)] of each sample in a (1, L) row whose positions restart at 0 per sample."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    ends = starts[1:] + [position_ids.shape[1]]
    return list(zip(starts, ends))


def _packed_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,  # (b, h, L, d)
    key: torch.Tensor,  # (b, kv_h, L, d)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    packed = (
        position_ids is not None
        and query.shape[0] == 1
        and query.shape[2] == key.shape[2]  # no KV cache
        and position_ids.shape[-1] == query.shape[2]
        and int((position_ids == 0).sum()) > 1
    )
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)  # (1, h, L, d)
        value = value.repeat_interleave(groups, dim=1)
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, dropout_p=dropout, scale=scaling
        )  # (1, h, L_i, d)
        for s, e in segment_bounds(position_ids.reshape(1, -1))
    ]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None  # (1, L, h, d)


def register_packed_attention() -> str:
    """Register the kernel (idempotent) and return the ``attn_implementation`` name to build models with."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PACKED_SDPA, _packed_sdpa)
    # Its fallback is plain sdpa, so it takes sdpa's masks.
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)
    return PACKED_SDPA
