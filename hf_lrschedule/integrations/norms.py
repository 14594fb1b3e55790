"""Gradient-norm helpers shared by the Trainer callback and accelerate loops (torch only)."""

from __future__ import annotations

import math

import torch


def grad_l1_norm(parameters, sharded: bool = False) -> torch.Tensor | None:
    """l1 norm of the gradients of `parameters`, as a tensor; None where they are not held in `.grad` (DeepSpeed).

    `sharded`: each process holds a disjoint shard of every gradient (FSDP), so the local sums are added up.
    """
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    grads = [g.to_local() if hasattr(g, "to_local") else g for g in grads]  # FSDP2 DTensor shards
    total = torch.stack(torch._foreach_norm(grads, 1)).double().sum() if grads else None
    if sharded and torch.distributed.is_available() and torch.distributed.is_initialized():
        if total is None:
            total = torch.zeros((), dtype=torch.float64)
        torch.distributed.all_reduce(total)
    return total


def unclip(clipped_norm: float | None, pre_clip_l2: float, max_grad_norm: float) -> float | None:
    """Undo torch's `clip_grad_norm_` scaling (one factor for all gradients) on a norm of the clipped gradients."""
    if clipped_norm is None or not math.isfinite(pre_clip_l2):
        return clipped_norm
    if max_grad_norm and max_grad_norm > 0:
        coefficient = min(1.0, max_grad_norm / (pre_clip_l2 + 1e-6))
        if coefficient > 0:
            return clipped_norm / coefficient
    return clipped_norm
