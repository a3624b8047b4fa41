import math

import pytest
import torch
import torch.nn.functional as F

from brl_graph.train.losses import task_loss


def test_bce_masks_nan_labels():
    pred = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    y = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    loss = task_loss(pred, y, "multilabel")
    kept = torch.tensor([0.3, 2.0, 0.5]), torch.tensor([1.0, 0.0, 1.0])
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(*kept).item())
    # the masked entry gets no gradient
    pred.requires_grad_(True)
    task_loss(pred, y, "binary" if y.size(1) == 1 else "multilabel").backward()
    assert pred.grad[0, 1] == 0 and pred.grad[0, 0] != 0


def test_all_missing_gives_zero_not_nan():
    pred = torch.randn(3, 2, requires_grad=True)
    y = torch.full((3, 2), float("nan"))
    loss = task_loss(pred, y, "binary")
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(pred.grad == 0)


def test_cross_entropy_graph_and_node_level():
    pred = torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 1])
    ref = F.cross_entropy(pred, y).item()
    assert task_loss(pred, y, "multiclass").item() == pytest.approx(ref)
    assert task_loss(pred, y.view(-1, 1), "multiclass").item() == pytest.approx(ref)
    with pytest.raises(ValueError, match="do not match"):
        task_loss(pred, y[:3], "multiclass")


def test_regression_l1_and_mse_with_nan():
    pred = torch.tensor([[1.0], [2.0], [4.0]])
    y = torch.tensor([[0.0], [float("nan")], [1.0]])
    assert task_loss(pred, y, "regression", "l1").item() == pytest.approx((1 + 3) / 2)
    assert task_loss(pred, y.view(-1), "regression", "mse").item() == pytest.approx((1 + 9) / 2)
    with pytest.raises(ValueError, match="'l1' or 'mse'"):
        task_loss(pred, y, "regression", "huber")


def test_inf_label_gives_non_finite_loss_and_bad_task():
    pred = torch.zeros(2, 1)
    y = torch.tensor([[math.inf], [0.0]])
    assert not torch.isfinite(task_loss(pred, y, "regression"))
    with pytest.raises(ValueError, match="unknown task"):
        task_loss(pred, y, "ranking")
    with pytest.raises(ValueError, match="do not match"):
        task_loss(torch.zeros(2, 2), torch.zeros(3, 1), "binary")
