r"""Training losses chosen by task type, with missing labels masked out.

* ``binary`` / ``multilabel``: binary cross-entropy on logits over the
  labelled entries only,
  :math:`\mathcal{L} = \frac{1}{|M|}\sum_{(i,t) \in M} \mathrm{BCE}(\hat y_{it}, y_{it})`
  with :math:`M = \{(i,t) : y_{it} \text{ is not NaN}\}`.
* ``multiclass``: cross-entropy on logits against integer classes
  (graph-level ``y`` of shape ``[B]`` or ``[B, 1]``, node-level ``[N]``).
* ``regression``: L1 or MSE over the labelled entries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from brl_graph.data.benchmark import TASKS  # noqa: F401 (one declaration, re-exported)


def _align(pred: Tensor, y: Tensor) -> Tensor:
    """Reshapes ``y`` to ``pred``'s shape when they hold the same number of entries."""
    if y.shape == pred.shape:
        return y
    if y.numel() != pred.numel():
        raise ValueError(f"labels of shape {tuple(y.shape)} do not match predictions of shape "
                         f"{tuple(pred.shape)}")
    return y.reshape(pred.shape)


def _masked_mean(loss: Tensor, mask: Tensor) -> Tensor:
    # With no labelled entry in the batch the loss is an exact zero that keeps
    # the graph connected, rather than the NaN of a mean over nothing.
    count = mask.sum()
    if count == 0:
        return loss.sum() * 0.0
    return loss.masked_fill(~mask, 0.0).sum() / count


def task_loss(pred: Tensor, y: Tensor, task: str, regression: str = "l1") -> Tensor:
    r"""The training loss for one batch.

    Args:
        pred: model outputs (logits for classification), ``[B, T]`` or
            ``[B, C]`` (multiclass), or ``[N, C]`` for node-level tasks.
        y: labels; float with NaN for missing entries (binary, multilabel,
            regression) or integer classes (multiclass).
        task: one of ``binary``, ``multilabel``, ``multiclass``, ``regression``.
        regression: ``l1`` or ``mse``, for regression tasks.

    Returns:
        A scalar tensor.
    """
    pred = pred.float()
    if task in ("binary", "multilabel"):
        target = _align(pred, y).to(pred.dtype)
        mask = ~torch.isnan(target)
        # torch.where, not nan_to_num: an infinite label must stay infinite
        # so that bad data stops the run instead of training on a clamp.
        loss = F.binary_cross_entropy_with_logits(pred, torch.where(mask, target, 0.0),
                                                  reduction="none")
        return _masked_mean(loss, mask)
    if task == "multiclass":
        target = y.reshape(-1).long()
        if target.numel() != pred.size(0):
            raise ValueError(f"multiclass labels of shape {tuple(y.shape)} do not match "
                             f"predictions of shape {tuple(pred.shape)}")
        return F.cross_entropy(pred, target)
    if task == "regression":
        target = _align(pred, y).to(pred.dtype)
        mask = ~torch.isnan(target)
        target = torch.where(mask, target, 0.0)
        if regression == "l1":
            loss = (pred - target).abs()
        elif regression == "mse":
            loss = (pred - target).square()
        else:
            raise ValueError(f"regression loss must be 'l1' or 'mse', got {regression!r}")
        return _masked_mean(loss, mask)
    raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
