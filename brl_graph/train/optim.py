"""The optimiser :func:`~brl_graph.train.fit` trains with."""
from __future__ import annotations

import torch


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with the fused kernel where there is one.

    A BRL model has about a hundred small parameter tensors. The default
    per-tensor AdamW update costs a few ops for each of them every step, which on
    small molecule batches was a visible share of the step; the fused update
    does all of them in one kernel and gives the same result up to rounding.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    devices = {p.device.type for p in params}
    # Fused AdamW exists for CPU and CUDA tensors; anything else takes the default.
    fused = bool(params) and devices <= {"cpu", "cuda"} and len(devices) == 1
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
