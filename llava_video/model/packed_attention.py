"""Attention over packed rows without flash-attn: torch's own varlen kernel on CUDA, per-sample SDPA elsewhere.

A packed row holds several samples with ``position_ids`` restarting at 0. transformers' sdpa path
isolates them with a block-diagonal mask but still computes the full (L x L) score matrix; this kernel
attends within each sample instead (sum of L_i^2 work, as flash-attention's varlen does), which is the
same computation. On a CUDA device in bf16/fp16, with a torch that ships
``torch.nn.attention.varlen.varlen_attn`` (flash-attention inside torch, no extra package), the whole
row goes through that one kernel; otherwise causal SDPA runs on each sample's slice. The kernel is
registered under its own name through transformers' public attention registry; anything that is not a
single packed row falls back to the regular sdpa kernel.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any, Callable

import torch
import torch.nn.functional as F

__all__ = ["PACKED_SDPA", "packed_kernel_name", "packed_row_kwargs", "register_packed_attention", "segment_bounds"]

PACKED_SDPA = "llava_video_packed_sdpa"


def segment_bounds(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """[(start, end)] of each sample in a (1, L) row whose positions restart at 0 per sample."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    ends = starts[1:] + [position_ids.shape[1]]
    return list(zip(starts, ends))


def packed_row_kwargs(position_ids: torch.Tensor) -> dict[str, Any]:
    """The sample boundaries of a packed (1, L) row, in the keyword names transformers' attention takes.

    Computed once per forward, so no attention layer has to read them back from the GPU (a sync per
    layer, and a graph break under torch.compile). flash-attn 2 reads the same keywords.
    """
    bounds = segment_bounds(position_ids.reshape(1, -1))
    cu = torch.tensor([0] + [e for _, e in bounds], dtype=torch.int32, device=position_ids.device)  # (n+1,)
    longest = max(e - s for s, e in bounds)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


@cache
def _torch_varlen() -> tuple[Callable[..., torch.Tensor], frozenset[str]] | None:
    """torch's varlen flash-attention and its keyword names, or None on a torch without it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    # The keywords moved between releases (is_causal in early ones, window_size later).
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def _use_varlen(device: torch.device | str, dtype: torch.dtype, dropout: float = 0.0) -> bool:
    return (
        torch.device(device).type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
        and dropout == 0.0
        and _torch_varlen() is not None
    )


def packed_kernel_name(device: torch.device | str, dtype: torch.dtype) -> str:
    """What the packed kernel runs for this device and dtype, for reports."""
    return "torch varlen_attn (flash)" if _use_varlen(device, dtype) else "per-sample sdpa"


def _varlen_row(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu: torch.Tensor, longest: int, scaling: float | None
) -> torch.Tensor:
    varlen_attn, params = _torch_varlen()  # type: ignore[misc]
    q = query[0].transpose(0, 1)  # (L, h, d)
    k = key[0].transpose(0, 1)  # (L, kv_h, d)
    v = value[0].transpose(0, 1)
    kwargs: dict[str, Any] = {"scale": scaling}
    if "is_causal" in params:
        kwargs["is_causal"] = True
    else:
        kwargs["window_size"] = (-1, 0)  # (left, right) = (unbounded, 0): causal
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # (L, h, d)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    return varlen_attn(q, k, v, cu, cu, longest, longest, **kwargs).unsqueeze(0)  # (1, L, h, d)


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
    single_row = query.shape[0] == 1 and query.shape[2] == key.shape[2]  # one row, no KV cache
    if single_row and kwargs.get("cu_seq_lens_q") is not None:
        cu, longest = kwargs["cu_seq_lens_q"], int(kwargs["max_length_q"])  # boundaries given by the caller
    elif (
        single_row
        and position_ids is not None
        and position_ids.shape[-1] == query.shape[2]
        and int((position_ids == 0).sum()) > 1
    ):
        given = packed_row_kwargs(position_ids)
        cu, longest = given["cu_seq_lens_q"], given["max_length_q"]
    else:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if _use_varlen(query.device, query.dtype, dropout):
        return _varlen_row(query, key, value, cu, longest, scaling), None
    ends = cu.tolist()
    bounds = list(zip(ends[:-1], ends[1:]))
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)  # (1, h, L, d)
        value = value.repeat_interleave(groups, dim=1)
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, dropout_p=dropout, scale=scaling
        )  # (1, h, L_i, d)
        for s, e in bounds
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
