"""The optimiser :func:`~brl_graph.train.fit` trains with, and the weight average it can evaluate."""
from __future__ import annotations

import copy
from typing import Any, Dict

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


class WeightAverage(torch.nn.Module):
    r"""An exponential moving average of a model's weights (Polyak averaging), the
    model that is evaluated and selected when ``train.ema_decay`` is set.

    After every optimiser step the average moves towards the trained weights,

    .. math::
        \bar\theta \leftarrow \beta_t \bar\theta + (1 - \beta_t)\theta,\qquad
        \beta_t = \min\left(\beta, \frac{1 + t}{10 + t}\right),

    where :math:`t` counts the updates so far: the ramp keeps the first
    epochs' average from being dominated by the random initial weights.
    Floating-point buffers (batch norm's running statistics) are averaged the
    same way; other buffers (batch counts) are copied. Those statistics were
    gathered under the trained weights, not the averaged ones: with a slow
    decay they are the average's approximation, as in SWA without a final
    statistics pass.

    Args:
        model (torch.nn.Module): The trained model (not a DDP wrapper).
        decay (float): :math:`\beta`, in :math:`(0, 1)`.
    """
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        # Which tensors are averaged and which copied, decided once (the tensors
        # themselves are looked up each step: .to() would replace the buffers).
        self._is_float = [t.is_floating_point() for t in _state_tensors(self.module)]
        self._float_index = [i for i, f in enumerate(self._is_float) if f]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Moves the average one step towards ``model``'s current weights."""
        beta = min(self.decay, (1.0 + float(self.updates)) / (10.0 + float(self.updates)))
        theirs = _state_tensors(model)
        if len(theirs) != len(self._is_float):
            raise ValueError(f"the model has {len(theirs)} parameters and buffers, the "
                             f"average {len(self._is_float)}: not the model it was made from")
        mine = _state_tensors(self.module)
        if self._float_index:
            torch._foreach_lerp_([mine[i] for i in self._float_index],
                                 [theirs[i] for i in self._float_index], 1.0 - beta)
        for a, b, f in zip(mine, theirs, self._is_float):
            if not f:
                a.copy_(b)
        self.updates += 1

    @staticmethod
    def model_state(average_state: Dict[str, Any]) -> Dict[str, Any]:
        """The averaged model's own state dict, out of this module's ``state_dict()``."""
        return {key[len("module."):]: value for key, value in average_state.items()
                if key.startswith("module.")}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(decay={self.decay}, updates={int(self.updates)})"


def _state_tensors(model: torch.nn.Module) -> list:
    """Parameters then buffers, in registration order (the two models share it)."""
    return [*model.parameters(), *model.buffers()]
